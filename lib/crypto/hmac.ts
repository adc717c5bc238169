/**
 * HMAC-SHA256, HKDF-SHA256, constant-time comparison and random bytes: the only
 * cryptographic primitives floatlm uses. `KeyedHmac` keys the HMAC once and reuses the keyed
 * state per message, because re-keying per datagram halves server throughput (BRIEF.md).
 */
import { randomFillSync, timingSafeEqual } from 'node:crypto';
import { hkdf } from '@noble/hashes/hkdf.js';
import { type _HMAC, hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';

/** Bytes of an HMAC-SHA256 tag and of every floatlm key. */
export const MAC_LENGTH = 32;
export const KEY_LENGTH = 32;

const textEncoder = new TextEncoder();
/** The expected tag in verifyTrailing (synchronous, so one buffer serves every call). */
const VERIFY_SCRATCH = new Uint8Array(MAC_LENGTH);

/** UTF-8 bytes of a label such as "floatlm token v1". */
export function label(s: string): Uint8Array {
  return textEncoder.encode(s);
}

/**
 * An HMAC-SHA256 keyed once. `mac` clones the keyed state into a reused scratch instance,
 * so a message costs two compressions plus its length and no allocation but the output.
 * Not re-entrant across async boundaries by design: every call finishes synchronously.
 */
export class KeyedHmac {
  // biome-ignore lint/suspicious/noExplicitAny: noble's _HMAC is generic over its hash type
  private readonly keyed: _HMAC<any>;
  // One scratch state for every key: `mac` is synchronous, so no two uses overlap, and a
  // daemon with a million sessions does not pay a kilobyte each for it.
  // biome-ignore lint/suspicious/noExplicitAny: as above
  private static scratch: _HMAC<any> | undefined;

  /** @throws {TypeError} when `key` is not a non-empty Uint8Array */
  constructor(key: Uint8Array) {
    if (!(key instanceof Uint8Array) || key.length === 0) {
      throw new TypeError('key must be a non-empty Uint8Array');
    }
    this.keyed = hmac.create(sha256, key);
  }

  /** HMAC of the concatenation of `parts`, into `out` (32 bytes from `offset`). */
  macInto(out: Uint8Array, offset: number, ...parts: Uint8Array[]): void {
    const h = this.keyed._cloneInto(KeyedHmac.scratch);
    KeyedHmac.scratch = h;
    for (const p of parts) h.update(p);
    if (offset === 0 && out.length === MAC_LENGTH) {
      h.digestInto(out);
    } else {
      if (offset < 0 || offset + MAC_LENGTH > out.length) {
        throw new RangeError(`offset must leave ${MAC_LENGTH} bytes in out`);
      }
      h.digestInto(out.subarray(offset, offset + MAC_LENGTH));
    }
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
    const h = this.keyed._cloneInto(KeyedHmac.scratch);
    KeyedHmac.scratch = h;
    h.update(bytes.subarray(0, end));
    h.digestInto(bytes.subarray(end));
  }

  /**
   * Constant-time check that the last 32 bytes of `bytes` are the HMAC of the bytes before
   * them (a datagram's tag); false when `bytes` is shorter than 32. Allocates nothing.
   */
  verifyTrailing(bytes: Uint8Array): boolean {
    const end = bytes.length - MAC_LENGTH;
    if (end < 0) return false;
    const h = this.keyed._cloneInto(KeyedHmac.scratch);
    KeyedHmac.scratch = h;
    h.update(bytes.subarray(0, end));
    const want = VERIFY_SCRATCH;
    h.digestInto(want);
    // No early exit: the time does not depend on where the tags differ.
    let diff = 0;
    for (let i = 0; i < MAC_LENGTH; i++) diff |= want[i]! ^ bytes[end + i]!;
    return diff === 0;
  }

  /** Constant-time check that `tag` is the HMAC of the concatenation of `parts`. */
  verify(tag: Uint8Array, ...parts: Uint8Array[]): boolean {
    return equalBytes(tag, this.mac(...parts));
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
 * HKDF-SHA256 (RFC 5869).
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
  return hkdf(sha256, ikm, salt, info, length);
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
