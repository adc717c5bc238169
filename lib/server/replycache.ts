/**
 * The reply cache: the bytes of recently answered requests, keyed by who sent them and their
 * request id, with the address each came from, so a retransmission from that address gets
 * the same reply byte for byte, fast. It is bounded in entries and in time (oldest first) and
 * is only the fast path: exactly-once rests on the durable reply records of the store.
 *
 * Entries sit in a ring in insertion order (which is expiry order, the TTL being fixed) and a
 * Map finds them by key. Eviction takes the ring's head and deletes its key from the Map by
 * name: never by iterating the Map from its front, which in V8 walks every deleted entry
 * still there and made a full cache cost 16 µs per reply.
 */

/** A cached reply and the source of the request it answered. */
export interface CachedReply {
  bytes: Uint8Array;
  address: string;
  port: number;
  /** How often it was sent again already. */
  resent: number;
}

export class ReplyCache {
  readonly #max: number;
  readonly #ttl: number;
  /** Key → ring slot of its newest entry. */
  readonly #index = new Map<string, number>();
  readonly #keys: (string | undefined)[];
  readonly #bytes: (Uint8Array | undefined)[];
  readonly #address: (string | undefined)[];
  readonly #port: Uint16Array;
  /** Times an entry was sent again: a bound on what replays can make it send. */
  readonly #resent: Uint8Array;
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
    this.#address = new Array<string | undefined>(max).fill(undefined);
    this.#port = new Uint16Array(max);
    this.#resent = new Uint8Array(max);
    this.#expires = new Float64Array(max);
  }

  /** Live entries (a key set twice counts once). */
  get size(): number {
    return this.#index.size;
  }

  /** The cached reply for `key`, if still fresh, and where its request came from. */
  get(key: string, now: number): CachedReply | undefined {
    const slot = this.#index.get(key);
    if (slot === undefined || this.#expires[slot]! <= now) return undefined;
    return {
      bytes: this.#bytes[slot]!,
      address: this.#address[slot]!,
      port: this.#port[slot]!,
      resent: this.#resent[slot]!,
    };
  }

  /** Counts one more resend of the entry for `key` (saturating at 255). */
  resent(key: string): void {
    const slot = this.#index.get(key);
    if (slot !== undefined && this.#resent[slot]! < 255) this.#resent[slot]!++;
  }

  /**
   * Caches `bytes` as the reply for `key` (replacing an earlier one), evicting the oldest;
   * `address` and `port` are where the request came from, the only place it may go again.
   */
  set(key: string, bytes: Uint8Array, address: string, port: number, now: number): void {
    if (this.#used === this.#max) this.#evict();
    const slot = (this.#head + this.#used) % this.#max;
    this.#used++;
    this.#keys[slot] = key;
    this.#bytes[slot] = bytes;
    this.#address[slot] = address;
    this.#port[slot] = port;
    this.#resent[slot] = 0;
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
    this.#address[slot] = undefined;
    this.#head = (slot + 1) % this.#max;
    this.#used--;
  }
}
