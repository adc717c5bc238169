/**
 * The exactly-once reply cache: the bytes of every answered request, keyed by who sent it
 * and its request id, so a retransmission gets the same reply byte for byte and is never
 * processed twice. Bounded in entries and in time; oldest entries go first.
 *
 * Entries sit in a ring in insertion order (which is expiry order, the TTL being fixed) and a
 * Map finds them by key. Eviction takes the ring's head and deletes its key from the Map by
 * name: never by iterating the Map from its front, which in V8 walks every deleted entry
 * still there and made a full cache cost 16 µs per reply.
 */

export class ReplyCache {
  readonly #max: number;
  readonly #ttl: number;
  /** Key → ring slot of its newest entry. */
  readonly #index = new Map<string, number>();
  readonly #keys: (string | undefined)[];
  readonly #bytes: (Uint8Array | undefined)[];
  readonly #expires: Float64Array;
  /** Ring slot of the oldest entry, and how many slots are in use. */
  #head = 0;
  #used = 0;

  /** @throws {RangeError} when max or ttlMs is not positive */
  constructor(max: number, ttlMs: number) {
    if (!Number.isInteger(max) || max <= 0) throw new RangeError('max must be a positive integer');
    if (!(ttlMs > 0)) throw new RangeError('ttlMs must be > 0');
    this.#max = max;
    this.#ttl = ttlMs;
    this.#keys = new Array<string | undefined>(max).fill(undefined);
    this.#bytes = new Array<Uint8Array | undefined>(max).fill(undefined);
    this.#expires = new Float64Array(max);
  }

  /** Live entries (a key set twice counts once). */
  get size(): number {
    return this.#index.size;
  }

  /** The cached reply for `key`, if still fresh. */
  get(key: string, now: number): Uint8Array | undefined {
    const slot = this.#index.get(key);
    if (slot === undefined || this.#expires[slot]! <= now) return undefined;
    return this.#bytes[slot];
  }

  /** Caches `bytes` as the reply for `key` (replacing an earlier one), evicting the oldest. */
  set(key: string, bytes: Uint8Array, now: number): void {
    if (this.#used === this.#max) this.#evict();
    const slot = (this.#head + this.#used) % this.#max;
    this.#used++;
    this.#keys[slot] = key;
    this.#bytes[slot] = bytes;
    this.#expires[slot] = now + this.#ttl;
    // A replaced entry's old slot stays in the ring until it is evicted; it no longer owns
    // the key, so evicting it leaves the new entry alone.
    this.#index.set(key, slot);
  }

  /** Drops expired entries from the front; bounded work per call. */
  sweep(now: number, budget = 1000): void {
    while (this.#used > 0 && budget-- > 0 && this.#expires[this.#head]! <= now) this.#evict();
  }

  #evict(): void {
    const slot = this.#head;
    const key = this.#keys[slot] as string;
    if (this.#index.get(key) === slot) this.#index.delete(key);
    this.#keys[slot] = undefined;
    this.#bytes[slot] = undefined;
    this.#head = (slot + 1) % this.#max;
    this.#used--;
  }
}
