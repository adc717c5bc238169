/**
 * The whole datagram: header, auth block, body, tag. Decoding checks framing and every
 * field but not the tag: which key verifies it depends on the auth layer, which gets the
 * exact signed byte range from `signedRange`.
 */
import {
  AuthMode,
  HEADER_LENGTH,
  KNOWN_FLAGS,
  Limits,
  MAGIC,
  MAX_DATAGRAM,
  MsgType,
  NONCE_LENGTH,
  TAG_LENGTH,
  VERSION,
} from './constants.ts';
import {
  type Cursor,
  checkString,
  cursor,
  expectEnd,
  writeBytes,
  writeString,
  writeU8,
  writeU16,
  writeU32,
  writeU53,
  writeU64,
  writeVarBytes,
} from './cursor.ts';
import { type AuthBlock, decodeBody, decodeHead, hasAuthBlock } from './header.ts';
import { BODIES, type Bodies } from './messages.ts';

export { type AuthBlock, hasAuthBlock };

/** A datagram of type T, decoded. */
export interface Datagram<T extends MsgType = MsgType> {
  type: T;
  flags: number;
  /** Present (and only present) on client requests: flags === 0. */
  auth: AuthBlock;
  requestId: number;
  sessionId: bigint;
  seq: number;
  /** Milliseconds since the Unix epoch, UTC. */
  timestamp: number;
  body: Bodies[T];
  /** HMAC-SHA256 over every byte before it; all zero until signed. */
  tag: Uint8Array;
}

export type AnyDatagram = { [K in MsgType]: Datagram<K> }[MsgType];

const TYPES: ReadonlySet<number> = new Set(Object.values(MsgType));

function authBlockLength(flags: number, a: AuthBlock): number {
  if (typeof a !== 'object' || a === null) throw new TypeError('auth must be an object');
  if (a.mode !== 1 && a.mode !== 2 && a.mode !== 3 && a.mode !== 4) {
    throw new RangeError(`auth.mode must be 1, 2, 3 or 4, got ${String((a as AuthBlock).mode)}`);
  }
  if (!hasAuthBlock(flags)) return 0;
  switch (a.mode) {
    case AuthMode.CREDENTIAL:
      if (!(a.nonce instanceof Uint8Array) || a.nonce.length !== NONCE_LENGTH) {
        throw new TypeError(`auth.nonce must be a Uint8Array of ${NONCE_LENGTH} bytes`);
      }
      return (
        1 + Buffer.byteLength(checkString(a.credId, Limits.CRED_ID, 'auth.credId')) + NONCE_LENGTH
      );
    case AuthMode.TOKEN:
      if (!(a.token instanceof Uint8Array)) throw new TypeError('auth.token must be a Uint8Array');
      if (a.token.length > Limits.TOKEN) {
        throw new RangeError(`auth.token is ${a.token.length} bytes, at most ${Limits.TOKEN}`);
      }
      return 2 + a.token.length;
    case AuthMode.SESSION:
      return 0;
    case AuthMode.ADMIN:
      return 1 + Buffer.byteLength(checkString(a.keyId, Limits.CRED_ID, 'auth.keyId'));
  }
}

function checkU32(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw new RangeError(`${what} must be an integer in [0, 2^32-1], got ${String(v)}`);
  }
  return v;
}

/** Checks every header field; the body codec checks the body. */
function checkHeader(d: AnyDatagram): void {
  if (typeof d !== 'object' || d === null) throw new TypeError('datagram must be an object');
  if (!TYPES.has(d.type)) {
    throw new RangeError(`type must be a known message type, got ${String(d.type)}`);
  }
  if (typeof d.flags !== 'number' || !Number.isInteger(d.flags) || (d.flags & ~KNOWN_FLAGS) !== 0) {
    throw new RangeError(`flags must be a combination of 0x01 and 0x02, got ${String(d.flags)}`);
  }
  checkU32(d.requestId, 'requestId');
  if (typeof d.sessionId !== 'bigint' || d.sessionId < 0n || d.sessionId > 0xffffffffffffffffn) {
    throw new RangeError(`sessionId must be a bigint in [0, 2^64-1], got ${String(d.sessionId)}`);
  }
  checkU32(d.seq, 'seq');
  if (!Number.isSafeInteger(d.timestamp) || d.timestamp < 0) {
    throw new RangeError(`timestamp must be a non-negative safe integer (ms), got ${d.timestamp}`);
  }
  if (!(d.tag instanceof Uint8Array) || d.tag.length !== TAG_LENGTH) {
    throw new TypeError(`tag must be a Uint8Array of ${TAG_LENGTH} bytes`);
  }
}

/**
 * Total bytes of the datagram, tag included.
 * @throws {RangeError|TypeError} naming the field, when a field is invalid
 */
export function encodingLength(d: AnyDatagram): number {
  checkHeader(d);
  const body = BODIES[d.type] as { encodingLength(v: unknown): number };
  return (
    HEADER_LENGTH + authBlockLength(d.flags, d.auth) + body.encodingLength(d.body) + TAG_LENGTH
  );
}

/**
 * Writes the datagram at the cursor (with `d.tag` as its tag) and advances it.
 * @throws {RangeError} when a field is out of range, the datagram exceeds 1200 bytes or the
 *   cursor has no room for it
 * @throws {TypeError} when a field has the wrong type
 */
export function encode(d: AnyDatagram, c: Cursor): void {
  const length = encodingLength(d);
  if (length > MAX_DATAGRAM) {
    throw new RangeError(`datagram would be ${length} bytes, at most ${MAX_DATAGRAM}`);
  }
  if (c.end - c.start < length) throw new RangeError(`no room for a ${length}-byte datagram`);
  writeU16(c, MAGIC);
  writeU8(c, VERSION);
  writeU8(c, d.type);
  writeU8(c, d.flags);
  writeU8(c, d.auth.mode);
  writeU16(c, length);
  writeU32(c, d.requestId, 'requestId');
  writeU64(c, d.sessionId, 'sessionId');
  writeU32(c, d.seq, 'seq');
  writeU53(c, d.timestamp, 'timestamp');
  if (hasAuthBlock(d.flags)) {
    const a = d.auth;
    if (a.mode === AuthMode.CREDENTIAL) {
      writeString(c, a.credId, 'credId');
      writeBytes(c, a.nonce, 'nonce');
    } else if (a.mode === AuthMode.TOKEN) {
      writeVarBytes(c, 2, a.token, 'token');
    } else if (a.mode === AuthMode.ADMIN) {
      writeString(c, a.keyId, 'keyId');
    }
  }
  (BODIES[d.type] as { encode(v: unknown, c: Cursor): void }).encode(d.body, c);
  writeBytes(c, d.tag, 'tag');
}

/**
 * Encodes into a fresh buffer of exactly the datagram's length.
 * @throws {RangeError|TypeError} as `encode`
 */
export function encodeToBytes(d: AnyDatagram): Uint8Array {
  const out = new Uint8Array(encodingLength(d));
  encode(d, cursor(out));
  return out;
}

/**
 * Reads one datagram at the cursor and advances past it (exactly its header's length).
 * @throws {DecodeError} TRUNCATED, BAD_MAGIC, BAD_VERSION, UNKNOWN_TYPE, BAD_FLAGS,
 *   BAD_AUTH_MODE, BAD_LENGTH, TOO_LARGE, TRAILING_BYTES, OUT_OF_RANGE, BAD_STRING
 */
export function decode(c: Cursor): AnyDatagram {
  const head = decodeHead(c);
  const body = decodeBody(head);
  const { type, flags, requestId, sessionId, seq, timestamp } = head;
  const tag = head.bytes.slice(head.bodyEnd, head.bodyEnd + TAG_LENGTH);
  // A decoded datagram owns its bytes: the head's nonce and token are views, copy them.
  const a = head.auth;
  const auth: AuthBlock =
    a.mode === AuthMode.CREDENTIAL
      ? { mode: a.mode, credId: a.credId, nonce: a.nonce.slice() }
      : a.mode === AuthMode.TOKEN
        ? { mode: a.mode, token: a.token.slice() }
        : a;
  return { type, flags, auth, requestId, sessionId, seq, timestamp, body, tag } as AnyDatagram;
}

/**
 * Decodes a whole UDP payload, which must be exactly one datagram.
 * @throws {DecodeError} as `decode`, or TRAILING_BYTES when bytes follow the datagram
 */
export function decodeDatagram(bytes: Uint8Array): AnyDatagram {
  const c = cursor(bytes);
  const d = decode(c);
  expectEnd(c, 'datagram');
  return d;
}

/**
 * The cheap prefilter the server runs before anything else: size bounds, magic, version,
 * and the length field agreeing with the payload. No allocation.
 */
export function looksLikeDatagram(bytes: Uint8Array): boolean {
  return (
    bytes.length >= HEADER_LENGTH + TAG_LENGTH &&
    bytes.length <= MAX_DATAGRAM &&
    bytes[0] === MAGIC >> 8 &&
    bytes[1] === (MAGIC & 0xff) &&
    bytes[2] === VERSION &&
    ((bytes[6]! << 8) | bytes[7]!) === bytes.length
  );
}

/** The byte range `[start, end)` of a datagram that its tag covers. */
export function signedRange(datagramLength: number): [number, number] {
  return [0, datagramLength - TAG_LENGTH];
}
