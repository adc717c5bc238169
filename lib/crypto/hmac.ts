/**
 * HMAC-SHA256, HKDF-SHA256, constant-time comparison and random bytes: the only
 * cryptographic primitives floatlm uses. `KeyedHmac` keys the HMAC once and reuses the keyed
 * state per message, because re-keying per datagram halves server throughput (BRIEF.md).
 *
 * SHA-256 is computed here (FIPS 180-4; the compression function, unrolled, is generated into
 * sha256-compress.ts) rather than by @noble/hashes or node:crypto: a keyed HMAC is then its two
 * 32-byte midstates and its inner key pad (a fraction of noble's keyed objects, and a daemon
 * keeps tens of thousands), and a short datagram's tag costs two compressions and one per 64
 * bytes of it, with no allocation, where node:crypto costs ~2 µs a call whatever the length.
 * A long datagram (≥ 448 bytes, e.g. a padded first contact) has its inner hash done by
 * node:crypto's one-shot `hash` when the runtime has it: past ~7 blocks that is cheaper.
 * Every step is data-independent: no branch and no table index depends on a key or message
 * byte. The tests check it against node:crypto over every length around the block
 * boundaries and the long-message threshold, and against the NIST CAVP and RFC 4231 vectors.
 *
 * The hash state lives in module-level scratch shared by every call (no allocation per
 * datagram). Every exported operation zeroes that scratch before it returns, so no key pad,
 * midstate, message block or expected tag outlives the call that put it there (a heap
 * snapshot or core dump of the daemon shows no key material beyond the keyed objects).
 */
import * as nodeCrypto from 'node:crypto';
import { randomFillSync, timingSafeEqual } from 'node:crypto';
import { type Addon, loadAddon } from '../native.ts';
import { compress } from './sha256-compress.ts';

/**
 * The addon's SHA-256 (native/hmac.c), when built: a datagram's tag (~0.3 µs instead of
 * ~1.1 µs, hashed where the datagram lies), keying a KeyedHmac and HKDF (a restored session's
 * key: ~5 µs of JavaScript compressions) are done there; everything else here.
 */
let fast: Addon | undefined = loadAddon();

/**
 * @internal Whether KeyedHmac's trailing-tag operations use the addon (`on`, when it is
 * built) or the JavaScript below; returns whether the addon is now in use. For the tests
 * and the benchmark, which hold both to the same answers.
 */
export function useNativeHmac(on: boolean): boolean {
  fast = on ? loadAddon() : undefined;
  return fast !== undefined;
}

/** Bytes of an HMAC-SHA256 tag and of every floatlm key. */
export const MAC_LENGTH = 32;
export const KEY_LENGTH = 32;

const textEncoder = new TextEncoder();

/** UTF-8 bytes of a label such as "floatlm token v1". */
export function label(s: string): Uint8Array {
  return textEncoder.encode(s);
}

// ---------------------------------------------------------------- SHA-256 core

const IV = Int32Array.from([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);

// Scratch shared by every hash: each call runs to the end synchronously, so none overlap.
/** The chaining state of the hash in progress. */
const S = new Int32Array(8);
/** Bytes not yet compressed (and the padded last blocks), and how many; bytes hashed so far. */
const BLOCK = new Uint8Array(64);
/** BLOCK as words, to zero it in 16 stores. */
const BLOCK32 = new Int32Array(BLOCK.buffer);
let buffered = 0;
let hashed = 0;

/** Starts a hash from the 8 state words at `at` of `from`, `already` bytes in. */
function begin(from: Int32Array, at: number, already: number): void {
  for (let i = 0; i < 8; i++) S[i] = from[at + i]!;
  buffered = 0;
  hashed = already;
}

/** Hashes bytes [start, end) of `src`. */
function absorb(src: Uint8Array, start: number, end: number): void {
  hashed += end - start;
  let p = start;
  if (buffered > 0) {
    while (buffered < 64 && p < end) BLOCK[buffered++] = src[p++]!;
    if (buffered < 64) return;
    compress(S, BLOCK, 0);
    buffered = 0;
  }
  // Whole blocks straight from the message: no copy.
  for (; end - p >= 64; p += 64) compress(S, src, p);
  while (p < end) BLOCK[buffered++] = src[p++]!;
}

/** Pads and compresses the last block(s): the digest is then S. */
function finish(): void {
  BLOCK[buffered] = 0x80;
  for (let i = buffered + 1; i < 64; i++) BLOCK[i] = 0;
  if (buffered >= 56) {
    compress(S, BLOCK, 0);
    for (let i = 0; i < 16; i++) BLOCK32[i] = 0;
  }
  // The length in bits, big-endian, in the last 8 bytes (bytes 56..58 stay 0: < 2^40 bits).
  const bits = hashed * 8;
  const high = Math.floor(bits / 0x1_0000_0000);
  BLOCK[59] = high;
  BLOCK[60] = bits >>> 24;
  BLOCK[61] = bits >>> 16;
  BLOCK[62] = bits >>> 8;
  BLOCK[63] = bits;
  compress(S, BLOCK, 0);
}

/** Writes S big-endian into `out` at `at`. */
function digestInto(out: Uint8Array, at: number): void {
  for (let i = 0; i < 8; i++, at += 4) {
    const w = S[i]!;
    out[at] = w >>> 24;
    out[at + 1] = w >>> 16;
    out[at + 2] = w >>> 8;
    out[at + 3] = w;
  }
}

/**
 * Finishes the inner hash and runs the outer one, keyed by the 32 words of `mid` at `at`:
 * the HMAC is then S.
 */
function outer(mid: Int32Array, at: number): void {
  finish();
  // The outer hash is one block: the inner digest, padding, and its length (64 + 32 bytes).
  digestInto(BLOCK, 0);
  outerBlock(mid, at);
}

/** The outer hash over the inner digest in BLOCK[0, 32), keyed by `mid` at `at`. */
function outerBlock(mid: Int32Array, at: number): void {
  BLOCK[32] = 0x80;
  for (let i = 33; i < 62; i++) BLOCK[i] = 0;
  BLOCK[62] = ((64 + 32) * 8) >>> 8;
  BLOCK[63] = 0;
  for (let i = 0; i < 8; i++) S[i] = mid[at + 8 + i]!;
  compress(S, BLOCK, 0);
}

/**
 * node:crypto's one-shot hash (Node ≥ 20.12), when present: OpenSSL's SHA-256 has a fixed cost
 * per call (~2 µs) but then runs at a few ns a block, where the code here costs well under
 * that for a short message and ~0.3 µs a block. A long datagram's inner hash (a padded
 * first contact: 600 bytes, ten blocks) is therefore cheaper there.
 */
const nodeHash = (nodeCrypto as { hash?: typeof nodeCrypto.hash }).hash;

/**
 * Messages of at least this many bytes take node:crypto for the inner hash (measured: the
 * two cost about the same near 400 bytes, 7 blocks with the key pad).
 */
const LONG_MESSAGE = 448;
/** The longest message the long path takes: a whole datagram. */
const LONG_MAX = 2048;
/** The inner key pad then the message, for the long path (zeroed after each use). */
const LONG = Buffer.alloc(64 + LONG_MAX);
const LONG32 = new Int32Array(LONG.buffer, LONG.byteOffset, 16);

/** HMAC of `bytes[0, end)` into S, keyed by `mid` at `at` (midstates, then the inner pad). */
function macTrailing(mid: Int32Array, at: number, bytes: Uint8Array, end: number): void {
  if (nodeHash === undefined || end < LONG_MESSAGE || end > LONG_MAX) {
    begin(mid, at, 64);
    absorb(bytes, 0, end);
    outer(mid, at);
    return;
  }
  for (let i = 0; i < 16; i++) LONG32[i] = mid[at + 16 + i]!;
  LONG.set(bytes.subarray(0, end), 64);
  const inner = nodeHash('sha256', LONG.subarray(0, 64 + end), 'buffer');
  LONG.fill(0, 0, 64 + end);
  for (let i = 0; i < 32; i++) BLOCK[i] = inner[i]!;
  inner.fill(0);
  outerBlock(mid, at);
}

/**
 * Zeroes every shared buffer: called by each exported operation before it returns. A few
 * dozen stores, small beside the two compressions of the shortest tag.
 */
function wipe(): void {
  for (let i = 0; i < 8; i++) S[i] = 0;
  for (let i = 0; i < 16; i++) BLOCK32[i] = 0;
  buffered = 0;
  hashed = 0;
}

/**
 * A copy of every byte of the shared scratch (chaining state, block buffer, the long path's
 * buffer, counters), for
 * the test that checks each operation leaves it zeroed.
 * Not part of the layer's API: nothing but that test calls it.
 */
export function scratchSnapshotForTest(): Uint8Array {
  const views = [S, BLOCK, LONG, PAD, HK, HK_PRK, HK_T, HK_COUNTER].map(
    (a) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength),
  );
  return concatBytes(...views, new Uint8Array(Float64Array.of(buffered, hashed).buffer));
}

/** SHA-256 of `bytes` into a new array; leaves the scratch zeroed. */
function digest(bytes: Uint8Array): Uint8Array {
  begin(IV, 0, 0);
  absorb(bytes, 0, bytes.length);
  finish();
  const out = new Uint8Array(32);
  digestInto(out, 0);
  wipe();
  return out;
}

/**
 * SHA-256 (FIPS 180-4) of the concatenation of `parts`: the hash the HMAC is built on,
 * exported so the tests can hold it to the NIST vectors. Not for per-datagram use.
 * @throws {TypeError} when a part is not a Uint8Array
 */
export function sha256(...parts: Uint8Array[]): Uint8Array {
  for (const p of parts) {
    if (!(p instanceof Uint8Array)) throw new TypeError('parts must be Uint8Arrays');
  }
  return digest(parts.length === 1 ? parts[0]! : concatBytes(...parts));
}

// ---------------------------------------------------------------- HMAC

/** Words of keyed state a KeyedHmac holds (its own array, or a slot of a shared slab). */
export const KEYED_WORDS = 32;

/**
 * An HMAC-SHA256 keyed once: the SHA-256 states after the key's inner and outer pad
 * blocks, so a message costs two compressions plus one per 64 bytes of it, and no
 * allocation but the output. Not re-entrant across async boundaries by design: every call
 * finishes synchronously.
 */
export class KeyedHmac {
  /**
   * At #at: inner (0..7) and outer (8..15) midstates, then the inner key pad (16..31, its 64
   * bytes) for the long-message path. Either this object's own 32 words, or a slot of a slab
   * shared by many (the daemon's cache of session keys: no ArrayBuffer each).
   */
  readonly #mid: Int32Array;
  #at: number;

  /**
   * Keys an HMAC with `key`; with `slab`, its state goes in the KEYED_WORDS words at `at`
   * there, which the caller keeps for it until `dispose()`.
   * @throws {TypeError} when `key` is not a non-empty Uint8Array; {RangeError} when `at`
   *   does not leave KEYED_WORDS words in `slab`
   */
  constructor(key: Uint8Array, slab?: Int32Array, at = 0) {
    if (!(key instanceof Uint8Array) || key.length === 0) {
      throw new TypeError('key must be a non-empty Uint8Array');
    }
    if (slab === undefined) {
      this.#mid = new Int32Array(KEYED_WORDS);
      this.#at = 0;
    } else {
      if (!Number.isInteger(at) || at < 0 || at + KEYED_WORDS > slab.length) {
        throw new RangeError(`at must leave ${KEYED_WORDS} words in slab`);
      }
      this.#mid = slab;
      this.#at = at;
    }
    keyInto(this.#mid, this.#at, key);
    wipe();
  }

  /**
   * Zeroes the keyed state (its slot may then key another HMAC); any later use throws.
   * Idempotent.
   */
  dispose(): void {
    if (this.#at < 0) return;
    this.#mid.fill(0, this.#at, this.#at + KEYED_WORDS);
    this.#at = -1;
  }

  /** The word offset of the state in its array (its slab slot × KEYED_WORDS); -1 disposed. */
  get offset(): number {
    return this.#at;
  }

  /** Where the state is; throws once disposed (a slot reused by another key). */
  #state(): number {
    const at = this.#at;
    if (at < 0) throw new Error('KeyedHmac used after dispose()');
    return at;
  }

  /**
   * HMAC of the concatenation of `parts`, into `out` (32 bytes from `offset`).
   * @throws {RangeError} when `out` has no 32 bytes at `offset`
   */
  macInto(out: Uint8Array, offset: number, ...parts: Uint8Array[]): void {
    if (!Number.isInteger(offset) || offset < 0 || offset + MAC_LENGTH > out.length) {
      throw new RangeError(`offset must leave ${MAC_LENGTH} bytes in out`);
    }
    const mid = this.#mid;
    const at = this.#state();
    begin(mid, at, 64);
    for (const p of parts) absorb(p, 0, p.length);
    outer(mid, at);
    digestInto(out, offset);
    wipe();
  }

  /** HMAC of the concatenation of `parts`. */
  mac(...parts: Uint8Array[]): Uint8Array {
    const out = new Uint8Array(MAC_LENGTH);
    this.macInto(out, 0, ...parts);
    return out;
  }

  /**
   * Writes the HMAC of all but the last 32 bytes of `bytes` into those 32 (a datagram's tag).
   * @throws {RangeError} when `bytes` is shorter than 32
   */
  signTrailing(bytes: Uint8Array): void {
    const end = bytes.length - MAC_LENGTH;
    if (end < 0) throw new RangeError(`bytes must be at least ${MAC_LENGTH} long`);
    if (fast) {
      fast.hmacSign(this.#mid, this.#state(), bytes);
      return;
    }
    macTrailing(this.#mid, this.#state(), bytes, end);
    digestInto(bytes, end);
    wipe();
  }

  /**
   * Constant-time check that the last 32 bytes of `bytes` are the HMAC of the bytes before
   * them (a datagram's tag); false when `bytes` is shorter than 32. Allocates nothing.
   */
  verifyTrailing(bytes: Uint8Array): boolean {
    const end = bytes.length - MAC_LENGTH;
    if (end < 0) return false;
    if (fast) return fast.hmacVerify(this.#mid, this.#state(), bytes);
    macTrailing(this.#mid, this.#state(), bytes, end);
    // Word by word against the state, no early exit: the time does not depend on where the
    // tags differ.
    let diff = 0;
    for (let i = 0, at = end; i < 8; i++, at += 4) {
      const w =
        (bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!;
      diff |= w ^ S[i]!;
    }
    wipe();
    return diff === 0;
  }

  /** Constant-time check that `tag` is the HMAC of the concatenation of `parts`. */
  verify(tag: Uint8Array, ...parts: Uint8Array[]): boolean {
    const want = this.mac(...parts);
    const ok = equalBytes(tag, want);
    want.fill(0);
    return ok;
  }
}

/** The key pad being built (zeroed after each use), and as words to copy it out. */
const PAD = new Uint8Array(64);
const PAD32 = new Int32Array(PAD.buffer);

/**
 * Keys the 32 words of `mid` at `at` (inner and outer midstates, then the inner pad) with
 * `key`. Leaves S dirty: the caller wipes.
 */
function keyInto(mid: Int32Array, at: number, key: Uint8Array): void {
  if (fast) {
    fast.hmacKey(mid, at, key);
    return;
  }
  if (key.length > 64) {
    // RFC 2104: a key longer than a block is its hash; that hash is key material too.
    const hashedKey = digest(key);
    PAD.set(hashedKey);
    hashedKey.fill(0);
  } else {
    PAD.set(key);
  }
  for (let i = 0; i < 64; i++) PAD[i]! ^= 0x36;
  begin(IV, 0, 0);
  compress(S, PAD, 0);
  for (let i = 0; i < 8; i++) mid[at + i] = S[i]!;
  // Word copies keep the bytes in memory order, as the long path reads them back.
  for (let i = 0; i < 16; i++) mid[at + 16 + i] = PAD32[i]!;
  for (let i = 0; i < 64; i++) PAD[i]! ^= 0x36 ^ 0x5c;
  begin(IV, 0, 0);
  compress(S, PAD, 0);
  for (let i = 0; i < 8; i++) mid[at + 8 + i] = S[i]!;
  for (let i = 0; i < 16; i++) PAD32[i] = 0;
}

// HKDF's keys change every call (a session key derivation is two of them): keyed into
// scratch here rather than into KeyedHmac objects and their arrays. Zeroed after each call.
const HK = new Int32Array(32);
const HK_PRK = new Uint8Array(32);
const HK_T = new Uint8Array(32);
const HK_COUNTER = new Uint8Array(1);
const ZERO_SALT = new Uint8Array(32);

/**
 * One-shot HMAC-SHA256 (key derivation and tools; use `KeyedHmac` per datagram).
 * @throws {TypeError} when `key` is empty
 */
export function hmacSha256(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  return new KeyedHmac(key).mac(...parts);
}

/**
 * HKDF-SHA256 (RFC 5869); an empty salt means 32 zero bytes.
 * @throws {RangeError} when `length` is not in [1, 8160]
 */
export function hkdfSha256(
  ikm: Uint8Array,
  salt: Uint8Array,
  info: Uint8Array,
  length: number,
): Uint8Array {
  if (!Number.isInteger(length) || length < 1 || length > 255 * 32) {
    throw new RangeError('length must be an integer in [1, 8160]');
  }
  if (fast) {
    const out = new Uint8Array(length);
    if (fast.hkdf(ikm, salt, info, out)) return out;
  }
  // An empty salt is 32 zero bytes (RFC 5869), which HMAC pads exactly as it pads none.
  keyInto(HK, 0, salt.length > 0 ? salt : ZERO_SALT);
  begin(HK, 0, 64);
  absorb(ikm, 0, ikm.length);
  outer(HK, 0);
  digestInto(HK_PRK, 0);
  keyInto(HK, 0, HK_PRK);
  HK_PRK.fill(0);
  const out = new Uint8Array(length);
  for (let at = 0, i = 1; at < length; at += 32, i++) {
    // T(i) = HMAC(PRK, T(i-1) || info || i), T(0) empty.
    HK_COUNTER[0] = i;
    begin(HK, 0, 64);
    if (i > 1) absorb(HK_T, 0, 32);
    absorb(info, 0, info.length);
    absorb(HK_COUNTER, 0, 1);
    outer(HK, 0);
    digestInto(HK_T, 0);
    for (let k = 0; k < 32 && at + k < length; k++) out[at + k] = HK_T[k]!;
  }
  HK.fill(0);
  HK_T.fill(0);
  HK_COUNTER[0] = 0;
  wipe();
  return out;
}

/**
 * Constant-time equality of two byte strings (the time depends on the length only).
 * Different lengths compare unequal.
 */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  return timingSafeEqual(a, b);
}

/**
 * `n` cryptographically random bytes.
 * @throws {RangeError} when `n` is not a non-negative integer
 */
export function randomBytes(n: number): Uint8Array {
  if (!Number.isInteger(n) || n < 0) throw new RangeError('n must be a non-negative integer');
  const out = new Uint8Array(n);
  randomFillSync(out);
  return out;
}

/** Concatenation of byte strings. */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Big-endian u32 bytes.
 * @throws {RangeError} when `v` is not an integer in [0, 2^32)
 */
export function u32be(v: number): Uint8Array {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw new RangeError('v must be an integer in [0, 2^32)');
  }
  return new Uint8Array([v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff]);
}

/**
 * Big-endian u64 bytes.
 * @throws {RangeError} when `v` is not in [0, 2^64)
 */
export function u64be(v: bigint): Uint8Array {
  if (typeof v !== 'bigint' || v < 0n || v > 0xffffffffffffffffn) {
    throw new RangeError('v must be a bigint in [0, 2^64)');
  }
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, v);
  return out;
}
