/**
 * The explicit cursor every codec reads and writes through: `{buffer, start, end}`.
 * All reads check the bytes left and throw DecodeError; all writes check capacity and
 * throw RangeError (a write overflow is a programming error, not hostile input).
 */
import { DecodeError, DecodeErrorCode } from './errors.ts';

export interface Cursor {
  buffer: Uint8Array;
  /** Next byte to read or write. */
  start: number;
  /** One past the last byte that may be read or written. */
  end: number;
}

const textEncoder = new TextEncoder();
// ignoreBOM keeps a leading U+FEFF in the string: stripping it would make decode then
// encode change the bytes (and the string's wire length).
const textDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
// A lone surrogate would be written as U+FFFD and decode to a different string.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** A cursor over `buffer[start, end)`. */
export function cursor(buffer: Uint8Array, start = 0, end = buffer.length): Cursor {
  if (!(buffer instanceof Uint8Array)) throw new TypeError('buffer must be a Uint8Array');
  if (!Number.isInteger(start) || start < 0 || start > buffer.length) {
    throw new RangeError(`start must be an integer in [0, ${buffer.length}]`);
  }
  if (!Number.isInteger(end) || end < start || end > buffer.length) {
    throw new RangeError(`end must be an integer in [start, ${buffer.length}]`);
  }
  return { buffer, start, end };
}

/** Bytes left between `start` and `end`. */
export function remaining(c: Cursor): number {
  return c.end - c.start;
}

function need(c: Cursor, n: number, what: string): void {
  if (c.end - c.start < n) {
    throw new DecodeError(
      DecodeErrorCode.TRUNCATED,
      `${what} needs ${n} bytes, ${c.end - c.start} left`,
      c.start,
    );
  }
}

function room(c: Cursor, n: number, what: string): void {
  if (c.end - c.start < n) throw new RangeError(`no room to write ${what} (${n} bytes)`);
}

/** @throws {DecodeError} TRUNCATED */
export function readU8(c: Cursor, what = 'u8'): number {
  need(c, 1, what);
  return c.buffer[c.start++]!;
}

/** @throws {DecodeError} TRUNCATED */
export function readU16(c: Cursor, what = 'u16'): number {
  need(c, 2, what);
  const b = c.buffer;
  const v = (b[c.start]! << 8) | b[c.start + 1]!;
  c.start += 2;
  return v;
}

/** @throws {DecodeError} TRUNCATED */
export function readU32(c: Cursor, what = 'u32'): number {
  need(c, 4, what);
  const b = c.buffer;
  const s = c.start;
  const v = b[s]! * 0x1000000 + ((b[s + 1]! << 16) | (b[s + 2]! << 8) | b[s + 3]!);
  c.start += 4;
  return v;
}

/** A u64 on the wire as a bigint. @throws {DecodeError} TRUNCATED */
export function readU64(c: Cursor, what = 'u64'): bigint {
  need(c, 8, what);
  const hi = readU32(c, what);
  const lo = readU32(c, what);
  // One BigInt instead of four when the high word is 0 (every session id of modes 1 and 4).
  return hi === 0 ? BigInt(lo) : (BigInt(hi) << 32n) | BigInt(lo);
}

/**
 * A u64 that must fit a JS number exactly (times in milliseconds).
 * @throws {DecodeError} TRUNCATED, OUT_OF_RANGE
 */
export function readU53(c: Cursor, what = 'u64'): number {
  need(c, 8, what);
  const at = c.start;
  const hi = readU32(c, what);
  const lo = readU32(c, what);
  if (hi > 0x1fffff) {
    throw new DecodeError(DecodeErrorCode.OUT_OF_RANGE, `${what} exceeds 2^53-1`, at);
  }
  return hi * 0x100000000 + lo;
}

/** Exactly `n` bytes, copied. @throws {DecodeError} TRUNCATED */
export function readBytes(c: Cursor, n: number, what = 'bytes'): Uint8Array {
  need(c, n, what);
  const out = c.buffer.slice(c.start, c.start + n);
  c.start += n;
  return out;
}

/**
 * Exactly `n` bytes as a view into the cursor's buffer (no copy: for fields read once on the
 * receive path, before a datagram's tag is checked). @throws {DecodeError} TRUNCATED
 */
export function readView(c: Cursor, n: number, what = 'bytes'): Uint8Array {
  need(c, n, what);
  const out = c.buffer.subarray(c.start, c.start + n);
  c.start += n;
  return out;
}

/**
 * Length-prefixed (u8 or u16) bytes as a view into the cursor's buffer (see `readView`).
 * @throws {DecodeError} TRUNCATED, BAD_LENGTH
 */
export function readVarView(c: Cursor, prefix: 1 | 2, max: number, what = 'bytes'): Uint8Array {
  const at = c.start;
  const n = prefix === 1 ? readU8(c, `${what} length`) : readU16(c, `${what} length`);
  if (n > max) {
    throw new DecodeError(DecodeErrorCode.BAD_LENGTH, `${what} length ${n} exceeds ${max}`, at);
  }
  return readView(c, n, what);
}

/**
 * Length-prefixed (u8 or u16) bytes; the length is checked against `max` before anything
 * is allocated. @throws {DecodeError} TRUNCATED, BAD_LENGTH
 */
export function readVarBytes(c: Cursor, prefix: 1 | 2, max: number, what = 'bytes'): Uint8Array {
  const at = c.start;
  const n = prefix === 1 ? readU8(c, `${what} length`) : readU16(c, `${what} length`);
  if (n > max) {
    throw new DecodeError(DecodeErrorCode.BAD_LENGTH, `${what} length ${n} exceeds ${max}`, at);
  }
  return readBytes(c, n, what);
}

/**
 * A u8-length-prefixed UTF-8 string of at most `max` bytes.
 * @throws {DecodeError} TRUNCATED, BAD_LENGTH, BAD_STRING
 */
export function readString(c: Cursor, max: number, what = 'string'): string {
  const at = c.start;
  const n = c.start < c.end ? c.buffer[c.start]! : -1;
  // ASCII (names, ids, versions almost always are) without a copy or the UTF-8 decoder:
  // the same string the decoder would give, a fraction of the cost on the receive path.
  if (n >= 0 && n <= max && c.end - c.start > n) {
    const b = c.buffer;
    let ascii = true;
    for (let i = c.start + 1; i <= c.start + n; i++) {
      if (b[i]! >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) {
      let out = '';
      for (let i = c.start + 1; i <= c.start + n; i++) out += String.fromCharCode(b[i]!);
      c.start += 1 + n;
      return out;
    }
  }
  const bytes = readVarBytes(c, 1, max, what);
  try {
    return textDecoder.decode(bytes);
  } catch {
    throw new DecodeError(DecodeErrorCode.BAD_STRING, `${what} is not valid UTF-8`, at + 1);
  }
}

/** @throws {RangeError} when the cursor has no room */
export function writeU8(c: Cursor, v: number, what = 'u8'): void {
  room(c, 1, what);
  c.buffer[c.start++] = v & 0xff;
}

/** @throws {RangeError} when the cursor has no room */
export function writeU16(c: Cursor, v: number, what = 'u16'): void {
  room(c, 2, what);
  c.buffer[c.start++] = (v >>> 8) & 0xff;
  c.buffer[c.start++] = v & 0xff;
}

/** @throws {RangeError} when the cursor has no room */
export function writeU32(c: Cursor, v: number, what = 'u32'): void {
  room(c, 4, what);
  c.buffer[c.start++] = (v >>> 24) & 0xff;
  c.buffer[c.start++] = (v >>> 16) & 0xff;
  c.buffer[c.start++] = (v >>> 8) & 0xff;
  c.buffer[c.start++] = v & 0xff;
}

/** @throws {RangeError} when the cursor has no room */
export function writeU64(c: Cursor, v: bigint, what = 'u64'): void {
  room(c, 8, what);
  writeU32(c, Number((v >> 32n) & 0xffffffffn), what);
  writeU32(c, Number(v & 0xffffffffn), what);
}

/** A non-negative safe integer as u64. @throws {RangeError} when the cursor has no room */
export function writeU53(c: Cursor, v: number, what = 'u64'): void {
  room(c, 8, what);
  writeU32(c, Math.floor(v / 0x100000000), what);
  writeU32(c, v >>> 0, what);
}

/** @throws {RangeError} when the cursor has no room */
export function writeBytes(c: Cursor, bytes: Uint8Array, what = 'bytes'): void {
  room(c, bytes.length, what);
  c.buffer.set(bytes, c.start);
  c.start += bytes.length;
}

/** @throws {RangeError} when the cursor has no room */
export function writeVarBytes(c: Cursor, prefix: 1 | 2, bytes: Uint8Array, what = 'bytes'): void {
  if (prefix === 1) writeU8(c, bytes.length, what);
  else writeU16(c, bytes.length, what);
  writeBytes(c, bytes, what);
}

/** UTF-8 bytes of a string (encoding helpers share this so lengths agree). */
export function utf8(s: string): Uint8Array {
  return textEncoder.encode(s);
}

/** @throws {RangeError} when the cursor has no room */
export function writeString(c: Cursor, s: string, what = 'string'): void {
  writeVarBytes(c, 1, utf8(s), what);
}

/**
 * Checks a string about to be written as a u8-length UTF-8 field.
 * @throws {TypeError} when `s` is not a string or holds a lone surrogate
 * @throws {RangeError} when its UTF-8 form is longer than `max` bytes
 */
export function checkString(s: unknown, max: number, what: string): string {
  if (typeof s !== 'string') throw new TypeError(`${what} must be a string`);
  if (LONE_SURROGATE.test(s)) throw new TypeError(`${what} must be well-formed Unicode`);
  const n = Buffer.byteLength(s, 'utf8');
  if (n > max) throw new RangeError(`${what} is ${n} bytes, at most ${max} allowed`);
  return s;
}

/** Wire length of a u8-prefixed UTF-8 string. */
export function stringLength(s: string): number {
  return 1 + Buffer.byteLength(s, 'utf8');
}

/** Throws DecodeError TRAILING_BYTES unless the cursor is exhausted. */
export function expectEnd(c: Cursor, what: string): void {
  if (c.start !== c.end) {
    throw new DecodeError(
      DecodeErrorCode.TRAILING_BYTES,
      `${c.end - c.start} unexpected bytes after ${what}`,
      c.start,
    );
  }
}

/** Hex of bytes (lower case); the tests, the CLI and the vectors share it. */
export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/**
 * Bytes from hex; whitespace is ignored.
 * @throws {TypeError} when `hex` is not an even-length hex string
 */
export function fromHex(hex: string): Uint8Array {
  const clean = hex.replace(/\s+/g, '');
  if (clean.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(clean)) {
    throw new TypeError('hex must be an even-length string of hex digits');
  }
  return new Uint8Array(Buffer.from(clean, 'hex'));
}
