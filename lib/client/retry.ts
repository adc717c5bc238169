/**
 * The retransmission schedule (RFC 5080 §2.2.1 as the reference): an initial timeout,
 * doubling per retry, randomized by ±jitter, capped per interval and in total, and how long
 * one request stays with one server before the next of the list is tried (protocol.md
 * section 11): with the defaults a server gets the first send and one retransmission (1 s)
 * before the request goes to the next one, so a client whose server stopped answering is
 * answered by the next server about 1 s after its first unanswered datagram. Pure: the
 * transport asks it for the next delay and window; tests check the schedule without waiting.
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
  /**
   * With several servers: how long a request stays unanswered on one server before it goes
   * to the next one (doubled on each round of the list), ms. Also when the client reports
   * lost contact ('contact-lost'), with one server or several.
   */
  failoverMs: number;
}

/**
 * The defaults: sends at 0, 0.5, 1.5, 3.5, 7.5 s… (±25 %) to one server; with several, 1 s
 * per server in the first round of the list (the first send and its retransmission), 2 s in
 * the second, 4 s in the third…; 30 s in all.
 */
export const DEFAULT_RETRY: Readonly<RetryPolicy> = {
  initialMs: 500,
  maxIntervalMs: 8000,
  maxTotalMs: 30_000,
  jitter: 0.25,
  failoverMs: 1000,
};

/**
 * Validates a retry policy, filling gaps from the default.
 * @throws {RangeError} naming the bad field
 */
export function retryPolicy(p: Partial<RetryPolicy> = {}): RetryPolicy {
  const out = { ...DEFAULT_RETRY, ...p };
  for (const k of ['initialMs', 'maxIntervalMs', 'maxTotalMs', 'failoverMs'] as const) {
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

/**
 * How long visit number `visit` (0-based, counted over the whole request) of a request sends
 * to its server before moving on, given the request's budget and what is left of it. One
 * server: the first visit in mode 3 gets half the budget (then the request is upgraded to
 * mode 2 for the rest), any other the whole of what is left. Several servers: `failoverMs`
 * per server in the first round of the list, doubled each round after.
 */
export function serverWindow(
  p: RetryPolicy,
  servers: number,
  visit: number,
  mode3: boolean,
  budgetMs: number,
  leftMs: number,
): number {
  if (servers <= 1) return visit === 0 && mode3 ? Math.min(budgetMs / 2, leftMs) : leftMs;
  const round = Math.floor(visit / servers);
  return Math.min(p.failoverMs * 2 ** Math.min(round, 30), leftMs);
}
