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

/** Words of one 1024-wide window in a WindowSlab: 1024 bits and one word of slack. */
const SLAB_WORDS = 1024 / WORD_BITS + 1;

/**
 * The replay windows of every live session in one shared slab: RFC 6479 over u32 seqs, 1024
 * wide, with the bitmap words of all windows in one Uint32Array and their highest seqs in one
 * Float64Array. A window is a slot number: no object, ArrayBuffer or off-heap block per
 * session (a ReplayWindow each cost ~400 bytes at a million sessions). Slots are reused
 * through a free list; the slab doubles when full.
 */
export class WindowSlab {
  #bits: Uint32Array;
  #top: Float64Array;
  #free: number[] = [];
  #used = 0;

  /** @throws {RangeError} when initial is not a positive integer */
  constructor(initial = 1024) {
    if (!Number.isInteger(initial) || initial < 1) throw new RangeError('initial must be ≥ 1');
    this.#bits = new Uint32Array(initial * SLAB_WORDS);
    this.#top = new Float64Array(initial).fill(-1);
  }

  /** Slots in use. */
  get size(): number {
    return this.#used - this.#free.length;
  }

  /** Bytes the slab holds (every slot, used or free). */
  get bytes(): number {
    return this.#bits.byteLength + this.#top.byteLength;
  }

  /** A fresh window in which every seq at or below `floor` counts as seen (-1: none). */
  alloc(floor = -1): number {
    let slot = this.#free.pop();
    if (slot === undefined) {
      if (this.#used === this.#top.length) this.#grow();
      slot = this.#used++;
    }
    // Bits only matter within the window below top; all set = all seen, except the seqs
    // above the floor in the floor's own word, which have not been seen.
    this.#bits.fill(floor >= 0 ? 0xffffffff : 0, slot * SLAB_WORDS, (slot + 1) * SLAB_WORDS);
    if (floor >= 0) {
      const bit = floor % WORD_BITS;
      const word = slot * SLAB_WORDS + (Math.floor(floor / WORD_BITS) % SLAB_WORDS);
      this.#bits[word] = bit === 31 ? 0xffffffff : ((1 << (bit + 1)) - 1) >>> 0;
    }
    this.#top[slot] = floor;
    return slot;
  }

  /** Returns a slot to the free list. */
  release(slot: number): void {
    this.#free.push(slot);
  }

  /** Highest seq accepted (or the floor), -1 when none. */
  highest(slot: number): number {
    return this.#top[slot]!;
  }

  /** True when `seq` would be accepted in this window now (no change). */
  check(slot: number, seq: number): boolean {
    if (!Number.isInteger(seq) || seq < 0 || seq > 0xffffffff) return false;
    const top = this.#top[slot]!;
    if (seq > top) return true;
    if (top - seq >= 1024) return false;
    const word = slot * SLAB_WORDS + (Math.floor(seq / WORD_BITS) % SLAB_WORDS);
    return (this.#bits[word]! & (1 << (seq % WORD_BITS))) === 0;
  }

  /** Marks `seq` seen; call only after `check` and after the datagram verified. */
  update(slot: number, seq: number): void {
    if (!this.check(slot, seq)) return;
    const base = slot * SLAB_WORDS;
    const index = Math.floor(seq / WORD_BITS);
    const top = this.#top[slot]!;
    if (seq > top) {
      const current = top < 0 ? -1 : Math.floor(top / WORD_BITS);
      const diff = Math.min(index - current, SLAB_WORDS);
      for (let i = 1; i <= diff; i++) this.#bits[base + ((current + i) % SLAB_WORDS)] = 0;
      this.#top[slot] = seq;
    }
    this.#bits[base + (index % SLAB_WORDS)]! |= 1 << (seq % WORD_BITS);
  }

  #grow(): void {
    const n = this.#top.length * 2;
    const bits = new Uint32Array(n * SLAB_WORDS);
    bits.set(this.#bits);
    const top = new Float64Array(n).fill(-1);
    top.set(this.#top);
    this.#bits = bits;
    this.#top = top;
  }
}

/**
 * Recently accepted nonces (or tag prefixes) of requests that change nothing (PING and STATUS
 * in modes 1 and 4), in a fixed table: a slot per hash, a newer entry overwriting an older
 * one. It can never fill up or refuse anyone, whatever a flood sends; what it forgets only
 * lets a replay of a request with no effect be answered again, and that answer is never
 * larger than the request (mode 1) or was only possible with the admin key (mode 4). Requests
 * that change state are guarded by the idempotency records instead, which forget nothing
 * while a replay could still pass the skew check.
 */
export class RecentNonces {
  readonly #mask: number;
  readonly #words: Uint32Array;
  readonly #expires: Float64Array;
  readonly lifetimeMs: number;

  /** @throws {RangeError} when slots is not a power of two or skewMs < 0 */
  constructor(slots = 16384, skewMs: number = SKEW_MS) {
    if (!Number.isInteger(slots) || slots < 1 || (slots & (slots - 1)) !== 0) {
      throw new RangeError('slots must be a power of two');
    }
    if (!(skewMs >= 0)) throw new RangeError('skewMs must be ≥ 0');
    this.#mask = slots - 1;
    this.#words = new Uint32Array(slots * 4);
    this.#expires = new Float64Array(slots);
    this.lifetimeMs = 2 * skewMs;
  }

  /** Marks `id` (its first 16 bytes) seen at `now`; true when it was seen already (a replay). */
  seen(id: Uint8Array, now: number): boolean {
    if (id.length < 16) throw new RangeError('id must have at least 16 bytes');
    const v = new DataView(id.buffer, id.byteOffset, 16);
    const a = v.getUint32(0);
    const b = v.getUint32(4);
    const c = v.getUint32(8);
    const d = v.getUint32(12);
    const slot = (a ^ Math.imul(b, 0x9e3779b1) ^ Math.imul(c, 0x85ebca6b) ^ d) & this.#mask;
    const w = slot * 4;
    const ws = this.#words;
    if (
      this.#expires[slot]! > now &&
      ws[w] === a &&
      ws[w + 1] === b &&
      ws[w + 2] === c &&
      ws[w + 3] === d
    ) {
      return true;
    }
    ws[w] = a;
    ws[w + 1] = b;
    ws[w + 2] = c;
    ws[w + 3] = d;
    this.#expires[slot] = now + this.lifetimeMs;
    return false;
  }
}
