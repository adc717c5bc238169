/**
 * The exactly-once reply cache: the bytes of every answered request, keyed by who sent it
 * and its request id, so a retransmission gets the same reply byte for byte and is never
 * processed twice. Bounded in entries and in time; oldest entries go first.
 */

interface Entry {
  bytes: Uint8Array;
  expires: number;
}

export class ReplyCache {
  readonly #max: number;
  readonly #ttl: number;
  // Map keeps insertion order, which is expiry order because the TTL is fixed.
  readonly #map = new Map<string, Entry>();

  /** @throws {RangeError} when max or ttlMs is not positive */
  constructor(max: number, ttlMs: number) {
    if (!Number.isInteger(max) || max <= 0) throw new RangeError('max must be a positive integer');
    if (!(ttlMs > 0)) throw new RangeError('ttlMs must be > 0');
    this.#max = max;
    this.#ttl = ttlMs;
  }

  get size(): number {
    return this.#map.size;
  }

  /** The cached reply for `key`, if still fresh. */
  get(key: string, now: number): Uint8Array | undefined {
    const e = this.#map.get(key);
    if (!e) return undefined;
    if (e.expires <= now) {
      this.#map.delete(key);
      return undefined;
    }
    return e.bytes;
  }

  set(key: string, bytes: Uint8Array, now: number): void {
    this.#map.delete(key);
    this.#map.set(key, { bytes, expires: now + this.#ttl });
    while (this.#map.size > this.#max) {
      const oldest = this.#map.keys().next().value as string;
      this.#map.delete(oldest);
    }
  }

  /** Drops expired entries from the front; bounded work per call. */
  sweep(now: number, budget = 1000): void {
    for (const [k, e] of this.#map) {
      if (e.expires > now || budget-- <= 0) return;
      this.#map.delete(k);
    }
  }
}
