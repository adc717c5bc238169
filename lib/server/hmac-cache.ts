/**
 * Keyed HMACs of the most recently active sessions, in two generations (O(1), no Map
 * iteration), and the key derivation that rebuilds an evicted one.
 */
import type { KeyedHmac } from '../crypto/hmac.ts';
import type { KeyDeriver, Session } from './session.ts';

/**
 * Keyed HMACs of the most recently active sessions, at most `max`, and the key derivation
 * that rebuilds an evicted one. Two generations: new and refreshed entries go to the young
 * one; when it holds max/2 the old generation is dropped whole and the young one takes its
 * place. Every operation is O(1), with no Map iteration (V8 walks the deleted entries at a
 * Map's front, so evicting one at a time by iteration grows costly), and a session used
 * within the last max/2 insertions is always kept.
 */
export class HmacCache {
  readonly derive: KeyDeriver;
  readonly #half: number;
  #young = new Map<Session, KeyedHmac>();
  #old = new Map<Session, KeyedHmac>();

  /** @throws {RangeError} when max is not an integer ≥ 2; {TypeError} without derive */
  constructor(max: number, derive: KeyDeriver) {
    if (!Number.isInteger(max) || max < 2) throw new RangeError('max must be an integer ≥ 2');
    if (typeof derive !== 'function') throw new TypeError('derive must be a function');
    this.#half = Math.floor(max / 2);
    this.derive = derive;
  }

  get size(): number {
    return this.#young.size + this.#old.size;
  }

  get(s: Session): KeyedHmac | undefined {
    const h = this.#young.get(s);
    if (h) return h;
    const o = this.#old.get(s);
    if (o) {
      this.#old.delete(s);
      this.set(s, o);
    }
    return o;
  }

  set(s: Session, h: KeyedHmac): void {
    this.#old.delete(s);
    this.#young.set(s, h);
    if (this.#young.size >= this.#half) {
      this.#old = this.#young;
      this.#young = new Map();
    }
  }

  delete(s: Session): void {
    this.#young.delete(s);
    this.#old.delete(s);
  }
}
