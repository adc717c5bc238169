/**
 * Replay defences: the per-session sliding window on sequence numbers (RFC 6479, a bitmap
 * of u32 words), the bounded cache of first-contact nonces, and the clock-skew check.
 */

/** Default allowed clock skew, ms. */
export const SKEW_MS = 300_000;

/**
 * True when a request's timestamp is within ±skewMs of now (both ends inclusive).
 * @throws {RangeError} when skewMs is negative
 */
export function checkSkew(tsMs: number, nowMs: number, skewMs: number = SKEW_MS): boolean {
  if (!(skewMs >= 0)) throw new RangeError('skewMs must be ≥ 0');
  return Math.abs(tsMs - nowMs) <= skewMs;
}

const WORD_BITS = 32;

/**
 * RFC 6479 anti-replay window over u32 sequence numbers. The bitmap has one more word than
 * the window needs so that advancing only clears whole words. A sequence number is
 * accepted when it is above the highest seen, or within `size` below it and not yet seen.
 * Sequence 0 is accepted like any other (first datagram of a fresh window).
 */
export class ReplayWindow {
  /** Window width in sequence numbers. */
  readonly size: number;
  private readonly bitmap: Uint32Array;
  private readonly mask: number;
  private top = -1;

  /** @throws {RangeError} when size is not a multiple of 32 in [32, 65536] */
  constructor(size = 1024) {
    if (!Number.isInteger(size) || size < WORD_BITS || size > 65536 || size % WORD_BITS !== 0) {
      throw new RangeError('size must be a multiple of 32 in [32, 65536]');
    }
    this.size = size;
    // Words: a power of two ≥ size/32 + 1, so indexes wrap with a mask.
    let words = 1;
    while (words < size / WORD_BITS + 1) words <<= 1;
    this.bitmap = new Uint32Array(words);
    this.mask = words - 1;
  }

  /** Highest sequence number accepted so far (-1 when none). */
  get highest(): number {
    return this.top;
  }

  /** True when `seq` would be accepted now (no state change). */
  check(seq: number): boolean {
    if (!Number.isInteger(seq) || seq < 0 || seq > 0xffffffff) return false;
    if (seq > this.top) return true;
    if (this.top - seq >= this.size) return false;
    const word = Math.floor(seq / WORD_BITS) & this.mask;
    return (this.bitmap[word]! & (1 << (seq % WORD_BITS))) === 0;
  }

  /** Marks `seq` seen; call only after `check(seq)` and after the datagram's MAC verified. */
  update(seq: number): void {
    if (!this.check(seq)) return;
    const index = Math.floor(seq / WORD_BITS);
    if (seq > this.top) {
      const current = this.top < 0 ? -1 : Math.floor(this.top / WORD_BITS);
      const diff = Math.min(index - current, this.bitmap.length);
      for (let i = 1; i <= diff; i++) this.bitmap[(current + i) & this.mask] = 0;
      this.top = seq;
    }
    this.bitmap[index & this.mask]! |= 1 << (seq % WORD_BITS);
  }

  /** check then update: true when `seq` is fresh (and now marked). */
  checkAndUpdate(seq: number): boolean {
    if (!this.check(seq)) return false;
    this.update(seq);
    return true;
  }
}

/** Result of NonceCache.add. */
export type NonceResult = 'ok' | 'replay' | 'full';

/**
 * Nonces (or other unique datagram ids) of requests that carry no session sequence number,
 * bounded by count and time. An entry added at `now` lives until now + 2·skew: a replay
 * after that carries a timestamp at most now + skew, which the skew check then refuses.
 * Because entries expire in insertion order (given a monotone clock), pruning only looks at
 * the oldest end. When full of live entries it refuses new ones ('full') rather than evict a
 * live nonce, which would reopen a replay; the caller answers BUSY.
 */
export class NonceCache {
  private readonly map = new Map<string, number>();
  readonly maxEntries: number;
  readonly lifetimeMs: number;

  /**
   * @throws {RangeError} when maxEntries < 1 or skewMs < 0
   */
  constructor(opts: { maxEntries?: number; skewMs?: number } = {}) {
    const maxEntries = opts.maxEntries ?? 200_000;
    const skewMs = opts.skewMs ?? SKEW_MS;
    if (!Number.isInteger(maxEntries) || maxEntries < 1)
      throw new RangeError('opts.maxEntries must be ≥ 1');
    if (!(skewMs >= 0)) throw new RangeError('opts.skewMs must be ≥ 0');
    this.maxEntries = maxEntries;
    this.lifetimeMs = 2 * skewMs;
  }

  get size(): number {
    return this.map.size;
  }

  /** Drops expired entries from the oldest end; at most `budget` of them. */
  prune(now: number, budget = 1024): void {
    for (const [k, exp] of this.map) {
      if (exp > now || budget-- <= 0) break;
      this.map.delete(k);
    }
  }

  /** True when `nonce` is cached and live. */
  has(nonce: Uint8Array, now: number): boolean {
    const exp = this.map.get(Buffer.from(nonce).toString('latin1'));
    return exp !== undefined && exp > now;
  }

  /**
   * Records a nonce seen at `now`. Call only after the datagram's MAC and skew checked.
   * 'replay' when it is already cached, 'full' when the cache holds maxEntries live ones.
   */
  add(nonce: Uint8Array, now: number): NonceResult {
    const key = Buffer.from(nonce).toString('latin1');
    this.prune(now);
    const exp = this.map.get(key);
    if (exp !== undefined && exp > now) return 'replay';
    if (exp !== undefined) this.map.delete(key);
    if (this.map.size >= this.maxEntries) return 'full';
    this.map.set(key, now + this.lifetimeMs);
    return 'ok';
  }
}
