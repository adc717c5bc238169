/**
 * HMAC-SHA256, HKDF-SHA256, constant-time comparison and random bytes: the only
 * cryptographic primitives floatlm uses. `KeyedHmac` keys the HMAC once and reuses the keyed
 * state per message, because re-keying per datagram halves server throughput (BRIEF.md).
 *
 * SHA-256 is computed here (FIPS 180-4) rather than by @noble/hashes: a keyed HMAC is then
 * its two 32-byte midstates (about half the memory of noble's keyed objects, and a daemon
 * keeps tens of thousands), and a datagram's tag costs half the time, with no allocation.
 * Every step is data-independent: no branch and no table index depends on a key or message
 * byte. The tests check it against node:crypto over every length around the block
 * boundaries, and against the NIST CAVP and RFC 4231 vectors.
 *
 * The hash state lives in module-level scratch shared by every call (no allocation per
 * datagram). Every exported operation zeroes that scratch before it returns, so no key pad,
 * midstate, message block or expected tag outlives the call that put it there (a heap
 * snapshot or core dump of the daemon shows no key material beyond the keyed objects).
 */
import { randomFillSync, timingSafeEqual } from 'node:crypto';

/** Bytes of an HMAC-SHA256 tag and of every floatlm key. */
export const MAC_LENGTH = 32;
export const KEY_LENGTH = 32;

const textEncoder = new TextEncoder();

/** UTF-8 bytes of a label such as "floatlm token v1". */
export function label(s: string): Uint8Array {
  return textEncoder.encode(s);
}

// ---------------------------------------------------------------- SHA-256 core

const K = Int32Array.from([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const IV = Int32Array.from([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);

// Scratch shared by every hash: each call runs to the end synchronously, so none overlap.
const W = new Int32Array(64);
/** The chaining state of the hash in progress. */
const S = new Int32Array(8);
/** Bytes not yet compressed, and how many; bytes hashed so far. */
const BLOCK = new Uint8Array(64);
let buffered = 0;
let hashed = 0;

/** Message schedule words 0..15 from 64 bytes of `src` at `off`, big-endian. */
function load(src: Uint8Array, off: number): void {
  for (let i = 0; i < 16; i++, off += 4) {
    W[i] = (src[off]! << 24) | (src[off + 1]! << 16) | (src[off + 2]! << 8) | src[off + 3]!;
  }
}

/** One compression of the block in W[0..15] into S. */
function compress(): void {
  for (let i = 16; i < 64; i++) {
    const x = W[i - 15]!;
    const y = W[i - 2]!;
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    W[i] = (s1 + W[i - 7]! + s0 + W[i - 16]!) | 0;
  }
  let a = S[0]!;
  let b = S[1]!;
  let c = S[2]!;
  let d = S[3]!;
  let e = S[4]!;
  let f = S[5]!;
  let g = S[6]!;
  let h = S[7]!;
  for (let i = 0; i < 64; i++) {
    const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + s1 + ((e & f) ^ (~e & g)) + K[i]! + W[i]!) | 0;
    const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (s0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  S[0] = (S[0]! + a) | 0;
  S[1] = (S[1]! + b) | 0;
  S[2] = (S[2]! + c) | 0;
  S[3] = (S[3]! + d) | 0;
  S[4] = (S[4]! + e) | 0;
  S[5] = (S[5]! + f) | 0;
  S[6] = (S[6]! + g) | 0;
  S[7] = (S[7]! + h) | 0;
}

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
    load(BLOCK, 0);
    compress();
    buffered = 0;
  }
  for (; end - p >= 64; p += 64) {
    load(src, p);
    compress();
  }
  while (p < end) BLOCK[buffered++] = src[p++]!;
}

/** Pads and compresses the last block(s): the digest is then S. */
function finish(): void {
  BLOCK[buffered] = 0x80;
  BLOCK.fill(0, buffered + 1);
  if (buffered >= 56) {
    load(BLOCK, 0);
    compress();
    BLOCK.fill(0);
  }
  load(BLOCK, 0);
  const bits = hashed * 8;
  W[14] = Math.floor(bits / 0x1_0000_0000) | 0;
  W[15] = bits | 0;
  compress();
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

/** HMAC of the absorbed message, keyed by `mid`, into `out` at `at` (after `begin`). */
function outer(mid: Int32Array, out: Uint8Array, at: number): void {
  finish();
  // The outer hash is one block: the inner digest, padding, and its length (64 + 32 bytes).
  for (let i = 0; i < 8; i++) W[i] = S[i]!;
  W[8] = 0x8000_0000 | 0;
  W.fill(0, 9, 15);
  W[15] = (64 + 32) * 8;
  for (let i = 0; i < 8; i++) S[i] = mid[8 + i]!;
  compress();
  digestInto(out, at);
}

/** The expected tag in verifyTrailing (synchronous, so one buffer serves every call). */
const VERIFY_SCRATCH = new Uint8Array(MAC_LENGTH);

/**
 * Zeroes every shared buffer: called by each exported operation before it returns. The
 * cost is a few fills of 64 words, small beside the two compressions of the shortest tag.
 */
function wipe(): void {
  W.fill(0);
  S.fill(0);
  BLOCK.fill(0);
  VERIFY_SCRATCH.fill(0);
  buffered = 0;
  hashed = 0;
}

/**
 * A copy of every byte of the shared scratch (schedule, chaining state, block buffer,
 * expected-tag buffer), for the test that checks each operation leaves it zeroed.
 * Not part of the layer's API: nothing but that test calls it.
 */
export function scratchSnapshotForTest(): Uint8Array {
  const views = [W, S, BLOCK, VERIFY_SCRATCH].map(
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

/**
 * An HMAC-SHA256 keyed once: the SHA-256 states after the key's inner and outer pad
 * blocks, so a message costs two compressions plus one per 64 bytes of it, and no
 * allocation but the output. Not re-entrant across async boundaries by design: every call
 * finishes synchronously.
 */
export class KeyedHmac {
  /** Inner (0..7) and outer (8..15) midstates. */
  readonly #mid = new Int32Array(16);

  /** @throws {TypeError} when `key` is not a non-empty Uint8Array */
  constructor(key: Uint8Array) {
    if (!(key instanceof Uint8Array) || key.length === 0) {
      throw new TypeError('key must be a non-empty Uint8Array');
    }
    this.#key(key);
  }

  #key(key: Uint8Array): void {
    const pad = new Uint8Array(64);
    if (key.length > 64) {
      // RFC 2104: a key longer than a block is its hash; that hash is key material too.
      const hashedKey = digest(key);
      pad.set(hashedKey);
      hashedKey.fill(0);
    } else {
      pad.set(key);
    }
    for (let i = 0; i < 64; i++) pad[i]! ^= 0x36;
    begin(IV, 0, 0);
    load(pad, 0);
    compress();
    this.#mid.set(S, 0);
    for (let i = 0; i < 64; i++) pad[i]! ^= 0x36 ^ 0x5c;
    begin(IV, 0, 0);
    load(pad, 0);
    compress();
    this.#mid.set(S, 8);
    pad.fill(0);
    wipe();
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
    begin(mid, 0, 64);
    for (const p of parts) absorb(p, 0, p.length);
    outer(mid, out, offset);
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
    const mid = this.#mid;
    begin(mid, 0, 64);
    absorb(bytes, 0, end);
    outer(mid, bytes, end);
    wipe();
  }

  /**
   * Constant-time check that the last 32 bytes of `bytes` are the HMAC of the bytes before
   * them (a datagram's tag); false when `bytes` is shorter than 32. Allocates nothing.
   */
  verifyTrailing(bytes: Uint8Array): boolean {
    const end = bytes.length - MAC_LENGTH;
    if (end < 0) return false;
    const mid = this.#mid;
    const want = VERIFY_SCRATCH;
    begin(mid, 0, 64);
    absorb(bytes, 0, end);
    outer(mid, want, 0);
    // No early exit: the time does not depend on where the tags differ.
    let diff = 0;
    for (let i = 0; i < MAC_LENGTH; i++) diff |= want[i]! ^ bytes[end + i]!;
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
  // An empty salt is 32 zero bytes (RFC 5869), which HMAC pads exactly as it pads none.
  const prk = new KeyedHmac(salt.length > 0 ? salt : new Uint8Array(32)).mac(ikm);
  const expand = new KeyedHmac(prk);
  prk.fill(0);
  const out = new Uint8Array(length);
  const counter = new Uint8Array(1);
  let t: Uint8Array = new Uint8Array(0);
  for (let at = 0, i = 1; at < length; at += 32, i++) {
    counter[0] = i;
    const next = expand.mac(t, info, counter);
    t.fill(0);
    out.set(next.subarray(0, Math.min(32, length - at)), at);
    t = next;
  }
  t.fill(0);
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
