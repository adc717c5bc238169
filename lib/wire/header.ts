/**
 * The fixed 32-byte header: its named offsets (the one place they are written down), and
 * the first stage of decoding, which reads the header and the auth block and nothing else.
 * The server authenticates on what this stage returns and decodes the body (`decodeBody`)
 * only once the tag has verified, so a forged datagram costs no body parsing.
 */
import {
  AuthMode,
  Flags,
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
  expectEnd,
  readString,
  readU8,
  readU16,
  readU32,
  readU53,
  readU64,
  readVarView,
  readView,
} from './cursor.ts';
import { DecodeError, DecodeErrorCode } from './errors.ts';
import { BODIES, type Bodies } from './messages.ts';

/** Byte offsets of the header fields (protocol.md section 3), big-endian. */
export const Offset = {
  MAGIC: 0,
  VERSION: 2,
  TYPE: 3,
  FLAGS: 4,
  MODE: 5,
  LENGTH: 6,
  REQUEST_ID: 8,
  SESSION_ID: 12,
  SEQ: 20,
  TIMESTAMP: 24,
} as const;

/** Auth data a client request carries right after the header, by auth mode. */
export type AuthBlock =
  | { mode: typeof AuthMode.CREDENTIAL; credId: string; nonce: Uint8Array }
  | { mode: typeof AuthMode.TOKEN; token: Uint8Array }
  | { mode: typeof AuthMode.SESSION }
  | { mode: typeof AuthMode.ADMIN; keyId: string };

/**
 * Header and auth block of a datagram, and where its body lies; the tag is unchecked. The
 * auth block's nonce and token are views into `bytes`, like `bytes` itself: nothing is copied
 * before the tag has verified.
 */
export interface Head {
  type: MsgType;
  flags: number;
  auth: AuthBlock;
  requestId: number;
  sessionId: bigint;
  seq: number;
  timestamp: number;
  /** The datagram's bytes (a view, not a copy). */
  bytes: Uint8Array;
  /** Body: `bytes[bodyStart, bodyEnd)`; the tag follows at bodyEnd. */
  bodyStart: number;
  bodyEnd: number;
}

const TYPES: ReadonlySet<number> = new Set(Object.values(MsgType));

/** The auth block of mode 3, which carries nothing: one frozen object for every datagram. */
const SESSION_AUTH: AuthBlock = Object.freeze({ mode: AuthMode.SESSION });

/** True when a datagram with these flags carries an auth block (a client request). */
export function hasAuthBlock(flags: number): boolean {
  return (flags & (Flags.REPLY | Flags.FROM_SERVER)) === 0;
}

/**
 * Reads the header and auth block of the datagram at the cursor, and advances past the whole
 * datagram (its header's length). Strings and the token in the auth block are checked and
 * capped like every other field; the body is not looked at.
 * @throws {DecodeError} TRUNCATED, BAD_MAGIC, BAD_VERSION, UNKNOWN_TYPE, BAD_FLAGS,
 *   BAD_AUTH_MODE, BAD_LENGTH, TOO_LARGE, OUT_OF_RANGE, BAD_STRING
 */
export function decodeHead(c: Cursor): Head {
  const begin = c.start;
  const magic = readU16(c, 'magic');
  if (magic !== MAGIC)
    throw new DecodeError(DecodeErrorCode.BAD_MAGIC, 'not a floatlm datagram', begin);
  const version = readU8(c, 'version');
  if (version !== VERSION) {
    throw new DecodeError(
      DecodeErrorCode.BAD_VERSION,
      `version ${version}, expected ${VERSION}`,
      begin + Offset.VERSION,
    );
  }
  const type = readU8(c, 'type');
  if (!TYPES.has(type)) {
    throw new DecodeError(
      DecodeErrorCode.UNKNOWN_TYPE,
      `type 0x${type.toString(16)}`,
      begin + Offset.TYPE,
    );
  }
  const flags = readU8(c, 'flags');
  if ((flags & ~KNOWN_FLAGS) !== 0) {
    throw new DecodeError(
      DecodeErrorCode.BAD_FLAGS,
      `unknown flag bits 0x${flags.toString(16)}`,
      begin + Offset.FLAGS,
    );
  }
  const mode = readU8(c, 'auth');
  if (mode < AuthMode.CREDENTIAL || mode > AuthMode.ADMIN) {
    throw new DecodeError(DecodeErrorCode.BAD_AUTH_MODE, `auth mode ${mode}`, begin + Offset.MODE);
  }
  const length = readU16(c, 'length');
  if (length > MAX_DATAGRAM) {
    throw new DecodeError(
      DecodeErrorCode.TOO_LARGE,
      `length ${length} exceeds ${MAX_DATAGRAM}`,
      begin + Offset.LENGTH,
    );
  }
  if (length < HEADER_LENGTH + TAG_LENGTH) {
    throw new DecodeError(
      DecodeErrorCode.BAD_LENGTH,
      `length ${length} below minimum 64`,
      begin + Offset.LENGTH,
    );
  }
  if (c.end - begin < length) {
    throw new DecodeError(
      DecodeErrorCode.TRUNCATED,
      `datagram says ${length} bytes, ${c.end - begin} present`,
      begin + Offset.LENGTH,
    );
  }
  // Everything after here reads inside the datagram's own bounds, tag excluded.
  const inner: Cursor = { buffer: c.buffer, start: c.start, end: begin + length - TAG_LENGTH };
  const requestId = readU32(inner, 'requestId');
  const sessionId = readU64(inner, 'sessionId');
  const seq = readU32(inner, 'seq');
  const timestamp = readU53(inner, 'timestamp');
  let auth: AuthBlock;
  if (!hasAuthBlock(flags)) {
    auth = replyAuth(mode);
  } else if (mode === AuthMode.CREDENTIAL) {
    auth = {
      mode,
      credId: readString(inner, Limits.CRED_ID, 'credId'),
      nonce: readView(inner, NONCE_LENGTH, 'nonce'),
    };
  } else if (mode === AuthMode.TOKEN) {
    auth = { mode, token: readVarView(inner, 2, Limits.TOKEN, 'token') };
  } else if (mode === AuthMode.ADMIN) {
    auth = { mode, keyId: readString(inner, Limits.CRED_ID, 'keyId') };
  } else {
    auth = SESSION_AUTH;
  }
  c.start = begin + length;
  return {
    type: type as MsgType,
    flags,
    auth,
    requestId,
    sessionId,
    seq,
    timestamp,
    bytes: c.buffer.subarray(begin, begin + length),
    bodyStart: inner.start - begin,
    bodyEnd: length - TAG_LENGTH,
  };
}

/**
 * Decodes the body of a datagram whose head `decodeHead` read.
 * @throws {DecodeError} as the body codec (TRUNCATED, OUT_OF_RANGE, BAD_STRING, ...) and
 *   TRAILING_BYTES when the body does not fill its space exactly
 */
export function decodeBody<T extends MsgType>(head: Head & { type: T }): Bodies[T] {
  const inner: Cursor = { buffer: head.bytes, start: head.bodyStart, end: head.bodyEnd };
  const body = (BODIES[head.type] as { decode(c: Cursor): unknown }).decode(inner);
  expectEnd(inner, 'body');
  return body as Bodies[T];
}

/**
 * The auth field of a reply or server-originated datagram: only the mode is on the wire,
 * so the other members are empty placeholders that encode to nothing.
 */
function replyAuth(mode: number): AuthBlock {
  if (mode === AuthMode.CREDENTIAL)
    return { mode, credId: '', nonce: new Uint8Array(NONCE_LENGTH) };
  if (mode === AuthMode.TOKEN) return { mode, token: new Uint8Array(0) };
  if (mode === AuthMode.ADMIN) return { mode, keyId: '' };
  return { mode: AuthMode.SESSION };
}
