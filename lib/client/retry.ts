/**
 * The retransmission schedule (RFC 5080 §2.2.1 as the reference): an initial timeout,
 * doubling per retry, randomized by ±jitter, capped per interval and in total. Pure: the
 * transport asks it for the next delay; tests check the schedule without waiting.
 */

export interface RetryPolicy {
  /** First wait for a reply, ms. */
  initialMs: number;
  /** Cap on any one wait, ms. */
  maxIntervalMs: number;
  /** Give up once this much time has passed since the first send, ms. */
  maxTotalMs: number;
  /** Fraction (0..1) by which each wait is randomized up or down. */
  jitter: number;
}

export const DEFAULT_RETRY: Readonly<RetryPolicy> = {
  initialMs: 500,
  maxIntervalMs: 8000,
  maxTotalMs: 30_000,
  jitter: 0.25,
};

/**
 * Validates a retry policy, filling gaps from the default.
 * @throws {RangeError} naming the bad field
 */
export function retryPolicy(p: Partial<RetryPolicy> = {}): RetryPolicy {
  const out = { ...DEFAULT_RETRY, ...p };
  for (const k of ['initialMs', 'maxIntervalMs', 'maxTotalMs'] as const) {
    if (!Number.isFinite(out[k]) || out[k] <= 0) throw new RangeError(`retry.${k} must be > 0`);
  }
  if (!(out.jitter >= 0 && out.jitter < 1)) throw new RangeError('retry.jitter must be in [0, 1)');
  if (out.maxIntervalMs < out.initialMs) {
    throw new RangeError('retry.maxIntervalMs must be >= retry.initialMs');
  }
  return out;
}

/**
 * The wait before retransmission number `attempt` (0 = after the first send), given the
 * time already spent; `undefined` when the total budget is used up.
 */
export function nextDelay(
  p: RetryPolicy,
  attempt: number,
  elapsedMs: number,
  random: () => number = Math.random,
): number | undefined {
  const left = p.maxTotalMs - elapsedMs;
  if (left <= 0) return undefined;
  const base = Math.min(p.initialMs * 2 ** attempt, p.maxIntervalMs);
  const jittered = base * (1 + p.jitter * (2 * random() - 1));
  return Math.max(1, Math.min(jittered, left));
}
