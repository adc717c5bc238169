/**
 * Keyed HMACs of the most recently active sessions, in two generations (O(1), no Map
 * lookups beyond the two), their keyed states in one slab, and the key derivation that
 * rebuilds an evicted one.
 */
import { KEYED_WORDS, KeyedHmac } from '../crypto/hmac.ts';
import type { KeyDeriver, Session } from './session.ts';

/**
 * Keyed HMACs of the most recently active sessions, at most `max`, and the key derivation
 * that rebuilds an evicted one. Two generations: new and refreshed entries go to the young
 * one; when it holds max/2 the old generation is dropped whole and the young one takes its
 * place. Every operation is O(1) amortized (dropping a generation walks it once, to give its
 * slots back), and a session used within the last max/2 insertions is always kept.
 *
 * The keyed states live in one Int32Array of 32 words a slot, not in an ArrayBuffer each
 * (~575 bytes each, a 128-byte state behind it); a dropped entry is zeroed and disposed, so a
 * KeyedHmac kept past its eviction throws rather than computing with a reused slot's key.
 */
export class HmacCache {
  readonly derive: KeyDeriver;
  readonly #half: number;
  #young = new Map<Session, KeyedHmac>();
  #old = new Map<Session, KeyedHmac>();
  readonly #slab: Int32Array;
  /** Free slots, a stack. */
  readonly #free: Int32Array;
  #nFree: number;

  /** @throws {RangeError} when max is not an integer ≥ 2; {TypeError} without derive */
  constructor(max: number, derive: KeyDeriver) {
    if (!Number.isInteger(max) || max < 2) throw new RangeError('max must be an integer ≥ 2');
    if (typeof derive !== 'function') throw new TypeError('derive must be a function');
    this.#half = Math.floor(max / 2);
    this.derive = derive;
    // At most half entries in each generation.
    const slots = 2 * this.#half;
    this.#slab = new Int32Array(slots * KEYED_WORDS);
    this.#free = new Int32Array(slots);
    for (let i = 0; i < slots; i++) this.#free[i] = slots - 1 - i;
    this.#nFree = slots;
  }

  get size(): number {
    return this.#young.size + this.#old.size;
  }

  /** Bytes of the slab the keyed states live in. */
  get slabBytes(): number {
    return this.#slab.byteLength;
  }

  get(s: Session): KeyedHmac | undefined {
    const h = this.#young.get(s);
    if (h) return h;
    const o = this.#old.get(s);
    if (o) {
      this.#old.delete(s);
      this.#insert(s, o);
    }
    return o;
  }

  /** Keys `s`'s HMAC with `key` in a slot of the slab (replacing any it had). */
  make(s: Session, key: Uint8Array): KeyedHmac {
    this.delete(s);
    // young < half and old ≤ half here: a slot is free.
    const slot = this.#free[--this.#nFree] as number;
    const h = new KeyedHmac(key, this.#slab, slot * KEYED_WORDS);
    this.#insert(s, h);
    return h;
  }

  #insert(s: Session, h: KeyedHmac): void {
    this.#young.set(s, h);
    if (this.#young.size >= this.#half) {
      for (const o of this.#old.values()) this.#release(o);
      this.#old = this.#young;
      this.#young = new Map();
    }
  }

  #release(h: KeyedHmac): void {
    const slot = h.offset / KEYED_WORDS;
    h.dispose();
    this.#free[this.#nFree++] = slot;
  }

  delete(s: Session): void {
    const h = this.#young.get(s) ?? this.#old.get(s);
    if (!h) return;
    this.#young.delete(s);
    this.#old.delete(s);
    this.#release(h);
  }
}
