/**
 * Per-source rate limiting in fixed memory. Sources hash into a fixed table of token
 * buckets, so a flood from many spoofed addresses allocates nothing: the cost of an
 * unauthenticated source is zero state (collisions only make the limit stricter).
 */

export interface RateLimitOptions {
  /** Sustained datagrams per second per source. */
  rate: number;
  /** Burst size per source. */
  burst: number;
  /** Number of buckets (a power of two). */
  slots?: number;
}

/** A fixed-size table of token buckets keyed by a hash of the source address. */
export class RateLimiter {
  readonly #rate: number;
  readonly #burst: number;
  readonly #mask: number;
  readonly #tokens: Float64Array;
  readonly #stamp: Float64Array;

  /** @throws {RangeError} when rate, burst or slots are not positive (slots a power of two) */
  constructor(opts: RateLimitOptions) {
    const slots = opts.slots ?? 4096;
    if (!(opts.rate > 0)) throw new RangeError('rate must be > 0');
    if (!(opts.burst >= 1)) throw new RangeError('burst must be >= 1');
    if (!Number.isInteger(slots) || slots <= 0 || (slots & (slots - 1)) !== 0) {
      throw new RangeError('slots must be a positive power of two');
    }
    this.#rate = opts.rate;
    this.#burst = opts.burst;
    this.#mask = slots - 1;
    this.#tokens = new Float64Array(slots).fill(opts.burst);
    this.#stamp = new Float64Array(slots);
  }

  /** Takes one token for `source` at time `now` (ms); false when the source is over its rate. */
  allow(source: string, now: number): boolean {
    const i = fnv1a(source) & this.#mask;
    const elapsed = Math.max(0, now - this.#stamp[i]!) / 1000;
    const tokens = Math.min(this.#burst, this.#tokens[i]! + elapsed * this.#rate);
    this.#stamp[i] = now;
    if (tokens < 1) {
      this.#tokens[i] = tokens;
      return false;
    }
    this.#tokens[i] = tokens - 1;
    return true;
  }
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
