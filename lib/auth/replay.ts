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
/** Width of a compact window's bitmap (the seqs nearest its top). */
const NEAR = 64;

/**
 * The replay windows of every live session in one shared slab: RFC 6479 over u32 seqs, 1024
 * wide, without an object, ArrayBuffer or off-heap block per session.
 *
 * Most sessions see their seqs in order, so a window starts compact: its top and a 64-bit
 * bitmap of the seqs just below it (20 bytes a slot), with every seq from 64 to 1023 below
 * the top seen. A seq that would fall out of those 64 bits unseen (a datagram lost or
 * delayed past 64 later ones, or a jump in the seqs) makes the window spill into a full
 * 1024-bit bitmap (132 bytes more) before anything is forgotten, so the semantics are exactly
 * ReplayWindow(1024)'s. Slots and bitmaps are reused through free lists; the slab doubles
 * when full.
 */
export class WindowSlab {
  /** Highest seq accepted (or the floor) per slot, -1 when none. */
  #top: Float64Array;
  /** Compact bitmap per slot, two words: bit i is seq top - i (word 0 holds bits 0..31). */
  #near: Uint32Array;
  /** Full bitmap index per slot, -1 while compact. */
  #spill: Int32Array;
  /** Full bitmaps, SLAB_WORDS each, indexed by seq as in ReplayWindow. */
  #bits = new Uint32Array(0);
  #free: number[] = [];
  #freeBits: number[] = [];
  #used = 0;
  #usedBits = 0;

  /** @throws {RangeError} when initial is not a positive integer */
  constructor(initial = 1024) {
    if (!Number.isInteger(initial) || initial < 1) throw new RangeError('initial must be ≥ 1');
    this.#top = new Float64Array(initial).fill(-1);
    this.#near = new Uint32Array(initial * 2);
    this.#spill = new Int32Array(initial).fill(-1);
  }

  /** Slots in use. */
  get size(): number {
    return this.#used - this.#free.length;
  }

  /** Windows in use that have spilled into a full bitmap. */
  get spilled(): number {
    return this.#usedBits - this.#freeBits.length;
  }

  /** Bytes the slab holds (every slot and bitmap, used or free). */
  get bytes(): number {
    return (
      this.#top.byteLength + this.#near.byteLength + this.#spill.byteLength + this.#bits.byteLength
    );
  }

  /** A fresh window in which every seq at or below `floor` counts as seen (-1: none). */
  alloc(floor = -1): number {
    let slot = this.#free.pop();
    if (slot === undefined) {
      if (this.#used === this.#top.length) this.#grow();
      slot = this.#used++;
    }
    // All seen below the top: below a floor that is true, below -1 there is nothing.
    this.#near[2 * slot] = 0xffffffff;
    this.#near[2 * slot + 1] = 0xffffffff;
    this.#spill[slot] = -1;
    this.#top[slot] = floor;
    return slot;
  }

  /** Returns a slot (and its full bitmap, if it spilled) to the free lists. */
  release(slot: number): void {
    const b = this.#spill[slot]!;
    if (b >= 0) {
      this.#freeBits.push(b);
      this.#spill[slot] = -1;
    }
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
    const d = top - seq;
    if (d >= 1024) return false;
    const b = this.#spill[slot]!;
    if (b >= 0) {
      const word = b * SLAB_WORDS + (Math.floor(seq / WORD_BITS) % SLAB_WORDS);
      return (this.#bits[word]! & (1 << (seq % WORD_BITS))) === 0;
    }
    if (d >= NEAR) return false;
    const w = this.#near[2 * slot + (d >= 32 ? 1 : 0)]!;
    return (w & (1 << (d % 32))) === 0;
  }

  /** Marks `seq` seen; call only after `check` and after the datagram verified. */
  update(slot: number, seq: number): void {
    if (!this.check(slot, seq)) return;
    const top = this.#top[slot]!;
    if (this.#spill[slot]! < 0) {
      if (seq <= top) {
        const d = top - seq;
        this.#near[2 * slot + (d >= 32 ? 1 : 0)]! |= 1 << (d % 32);
        return;
      }
      const shift = seq - top;
      const lo = this.#near[2 * slot]!;
      const hi = this.#near[2 * slot + 1]!;
      if (keepsCompact(lo, hi, shift)) {
        if (shift >= NEAR) {
          // Every bit left (all seen); the seqs between are unseen and within 64 of the top.
          this.#near[2 * slot] = 1;
          this.#near[2 * slot + 1] = 0;
        } else if (shift >= 32) {
          this.#near[2 * slot + 1] = shift === 32 ? lo : lo << (shift - 32);
          this.#near[2 * slot] = 1;
        } else {
          this.#near[2 * slot + 1] = (hi << shift) | (lo >>> (32 - shift));
          this.#near[2 * slot] = (lo << shift) | 1;
        }
        this.#top[slot] = seq;
        return;
      }
      this.#spillSlot(slot, top, lo, hi);
    }
    const base = this.#spill[slot]! * SLAB_WORDS;
    const index = Math.floor(seq / WORD_BITS);
    if (seq > top) {
      const current = top < 0 ? -1 : Math.floor(top / WORD_BITS);
      const diff = Math.min(index - current, SLAB_WORDS);
      for (let i = 1; i <= diff; i++) this.#bits[base + ((current + i) % SLAB_WORDS)] = 0;
      this.#top[slot] = seq;
    }
    this.#bits[base + (index % SLAB_WORDS)]! |= 1 << (seq % WORD_BITS);
  }

  /** Moves a compact window into a full bitmap, seen for seen. */
  #spillSlot(slot: number, top: number, lo: number, hi: number): void {
    let b = this.#freeBits.pop();
    if (b === undefined) {
      b = this.#usedBits++;
      if (this.#bits.length < this.#usedBits * SLAB_WORDS) {
        const bits = new Uint32Array(Math.max(this.#usedBits * 2, 64) * SLAB_WORDS);
        bits.set(this.#bits);
        this.#bits = bits;
      }
    }
    const base = b * SLAB_WORDS;
    // Everything more than 64 below the top is seen in a compact window.
    this.#bits.fill(0xffffffff, base, base + SLAB_WORDS);
    if (top >= 0) {
      // Above the top in its own word: unseen.
      const bit = top % WORD_BITS;
      const w = base + (Math.floor(top / WORD_BITS) % SLAB_WORDS);
      this.#bits[w] = bit === 31 ? 0xffffffff : ((1 << (bit + 1)) - 1) >>> 0;
      for (let d = 0; d < NEAR && d <= top; d++) {
        const seen = ((d >= 32 ? hi : lo) >>> (d % 32)) & 1;
        if (seen) continue;
        const q = top - d;
        this.#bits[base + (Math.floor(q / WORD_BITS) % SLAB_WORDS)]! &= ~(1 << (q % WORD_BITS));
      }
    }
    this.#spill[slot] = b;
  }

  #grow(): void {
    const n = this.#top.length * 2;
    const top = new Float64Array(n).fill(-1);
    top.set(this.#top);
    const near = new Uint32Array(n * 2);
    near.set(this.#near);
    const spill = new Int32Array(n).fill(-1);
    spill.set(this.#spill);
    this.#top = top;
    this.#near = near;
    this.#spill = spill;
  }
}

/**
 * Whether a compact window (bits `lo`, `hi`) can move its top up by `shift` and forget
 * nothing: every bit leaving the 64 is seen, and no unseen seq lands more than 64 below.
 */
function keepsCompact(lo: number, hi: number, shift: number): boolean {
  if (shift > NEAR) return false;
  if (shift === NEAR) return lo === 0xffffffff && hi === 0xffffffff;
  if (shift <= 32) return hi >>> (32 - shift) === 2 ** shift - 1;
  return hi === 0xffffffff && lo >>> (NEAR - shift) === 2 ** (shift - 32) - 1;
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
