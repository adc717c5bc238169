/**
 * The token (the notes' token.c, server side): its byte format, `makeToken`,
 * `testTokenChecksum`, `tokenValid`, and the session key any server holding the keyring
 * derives from a token alone, plus the wrap that carries that key to the client in HELLO_OK.
 *
 * Layout (protocol.md "Token"): version u8 (=1) | keyId u32 | tokenId u64 | issuedAt u32 (s) |
 * expires u32 (s) | family u8 (4|6) | addr 4|16 | port u16 | host str | vendor str |
 * program str | version str | user str | mac[32], strings u8-length UTF-8,
 * mac = HMAC-SHA256(serverKey[keyId], "floatlm token v1" || bytes before mac).
 */
import {
  concatBytes,
  equalBytes,
  hkdfSha256,
  KEY_LENGTH,
  KeyedHmac,
  type Keyring,
  label,
  MAC_LENGTH,
  randomBytes,
  type ServerKey,
  u64be,
} from '../crypto/index.ts';
import {
  type Cursor,
  cursor,
  DecodeError,
  DecodeErrorCode,
  ErrorCode,
  expectEnd,
  Limits,
  NONCE_LENGTH,
  readBytes,
  readString,
  readU8,
  readU16,
  readU32,
  readU64,
  stringLength,
  writeBytes,
  writeString,
  writeU8,
  writeU16,
  writeU32,
  writeU64,
} from '../wire/index.ts';
import { formatIp, type IpBytes, parseIp, sameIp } from './addr.ts';

export const TOKEN_VERSION = 1;
/** Default allowed clock skew between a client or peer server and this one. */
export const DEFAULT_SKEW_MS = 300_000;
const TOKEN_LABEL = label('floatlm token v1');
const SESSION_LABEL = label('floatlm session v1');
const WRAP_LABEL = label('floatlm wrap v1');

/** A decoded token. `bytes` is the exact encoding, what clients store and re-present. */
export interface Token {
  keyId: number;
  /** Also the session id of every datagram of the session. Never 0. */
  tokenId: bigint;
  /** Seconds since the epoch (UTC). */
  issuedAt: number;
  /** Seconds since the epoch (UTC); the token is expired from this second on. */
  expires: number;
  /** The client's IP when the token was issued. */
  ip: IpBytes;
  /** `ip` as text (dotted IPv4, or 8 hex groups for IPv6). */
  addr: string;
  port: number;
  host: string;
  vendor: string;
  program: string;
  /** The application's version string. */
  version: string;
  user: string;
  mac: Uint8Array;
  bytes: Uint8Array;
}

/** What the server knows about a client when it issues a token. */
export interface TokenFields {
  /** The client's IP as node:dgram reports it. */
  addr: string;
  port: number;
  host: string;
  vendor: string;
  program: string;
  version: string;
  user: string;
  /** Seconds from issue to expiry; keep ≤ the keyring's grace. */
  lifetimeS: number;
  /** Random unless given (tests, vectors); must be non-zero. */
  tokenId?: bigint;
}

/** Where a datagram came from. */
export interface PeerAddress {
  address: string;
  port: number;
}

function checkStr(name: string, v: unknown, max: number): void {
  if (typeof v !== 'string') throw new TypeError(`fields.${name} must be a string`);
  if (stringLength(v) - 1 > max) throw new RangeError(`fields.${name} exceeds ${max} bytes`);
}

/**
 * Encodes a token under the given server key and decodes it back into a Token.
 * @throws {TypeError|RangeError} naming the field when one is out of range
 */
export function encodeToken(
  f: Omit<TokenFields, 'lifetimeS' | 'tokenId'> & {
    tokenId: bigint;
    issuedAt: number;
    expires: number;
  },
  key: ServerKey,
): Token {
  const ip = parseIp(f.addr);
  if (typeof f.tokenId !== 'bigint' || f.tokenId <= 0n || f.tokenId > 0xffffffffffffffffn) {
    throw new RangeError('fields.tokenId must be a bigint in [1, 2^64)');
  }
  for (const [n, v] of [
    ['issuedAt', f.issuedAt],
    ['expires', f.expires],
  ] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff)
      throw new RangeError(`fields.${n} must be a u32`);
  }
  if (!Number.isInteger(f.port) || f.port < 0 || f.port > 0xffff)
    throw new RangeError('fields.port must be a u16');
  checkStr('host', f.host, Limits.NAME);
  checkStr('vendor', f.vendor, Limits.NAME);
  checkStr('program', f.program, Limits.NAME);
  checkStr('version', f.version, Limits.VERSION_STR);
  checkStr('user', f.user, Limits.NAME);
  const length =
    1 +
    4 +
    8 +
    4 +
    4 +
    1 +
    ip.bytes.length +
    2 +
    stringLength(f.host) +
    stringLength(f.vendor) +
    stringLength(f.program) +
    stringLength(f.version) +
    stringLength(f.user) +
    MAC_LENGTH;
  const out = new Uint8Array(length);
  const c = cursor(out);
  writeU8(c, TOKEN_VERSION);
  writeU32(c, key.keyId);
  writeU64(c, f.tokenId);
  writeU32(c, f.issuedAt);
  writeU32(c, f.expires);
  writeU8(c, ip.family);
  writeBytes(c, ip.bytes);
  writeU16(c, f.port);
  writeString(c, f.host);
  writeString(c, f.vendor);
  writeString(c, f.program);
  writeString(c, f.version);
  writeString(c, f.user);
  key.hmac.macInto(out, length - MAC_LENGTH, TOKEN_LABEL, out.subarray(0, length - MAC_LENGTH));
  return decodeToken(out);
}

/**
 * The cursor over a server-signed blob (token or lease ticket) after its version byte, up
 * to its trailing MAC; lengths checked before anything is read.
 * @throws {DecodeError} TOO_LARGE, TRUNCATED, BAD_VERSION
 */
export function openSigned(bytes: Uint8Array, max: number, what: string, version: number): Cursor {
  if (bytes.length > max) {
    throw new DecodeError(
      DecodeErrorCode.TOO_LARGE,
      `${what} of ${bytes.length} bytes exceeds ${max}`,
      0,
    );
  }
  if (bytes.length < 1 + MAC_LENGTH) {
    throw new DecodeError(
      DecodeErrorCode.TRUNCATED,
      `${what} of ${bytes.length} bytes is too short`,
      0,
    );
  }
  const c = cursor(bytes, 0, bytes.length - MAC_LENGTH);
  const v = readU8(c, `${what} version`);
  if (v !== version) {
    throw new DecodeError(
      DecodeErrorCode.BAD_VERSION,
      `${what} version ${v}, expected ${version}`,
      0,
    );
  }
  return c;
}

/**
 * Decodes a token's bytes without checking its mac.
 * @throws {DecodeError} TOO_LARGE, TRUNCATED, BAD_VERSION, OUT_OF_RANGE, BAD_LENGTH,
 *   BAD_STRING, TRAILING_BYTES
 */
export function decodeToken(bytes: Uint8Array): Token {
  if (!(bytes instanceof Uint8Array))
    throw new DecodeError(DecodeErrorCode.TRUNCATED, 'token is not bytes', 0);
  const c = openSigned(bytes, Limits.TOKEN, 'token', TOKEN_VERSION);
  const keyId = readU32(c, 'keyId');
  const tokenIdAt = c.start;
  const tokenId = readU64(c, 'tokenId');
  if (tokenId === 0n) throw new DecodeError(DecodeErrorCode.OUT_OF_RANGE, 'tokenId 0', tokenIdAt);
  const issuedAt = readU32(c, 'issuedAt');
  const expires = readU32(c, 'expires');
  const familyAt = c.start;
  const family = readU8(c, 'addr family');
  if (family !== 4 && family !== 6) {
    throw new DecodeError(DecodeErrorCode.OUT_OF_RANGE, `addr family ${family}`, familyAt);
  }
  const ip: IpBytes = { family, bytes: readBytes(c, family === 4 ? 4 : 16, 'addr') };
  const port = readU16(c, 'port');
  const host = readString(c, Limits.NAME, 'host');
  const vendor = readString(c, Limits.NAME, 'vendor');
  const program = readString(c, Limits.NAME, 'program');
  const appVersion = readString(c, Limits.VERSION_STR, 'version');
  const user = readString(c, Limits.NAME, 'user');
  expectEnd(c, 'token fields');
  return {
    keyId,
    tokenId,
    issuedAt,
    expires,
    ip,
    addr: formatIp(ip),
    port,
    host,
    vendor,
    program,
    version: appVersion,
    user,
    mac: bytes.slice(bytes.length - MAC_LENGTH),
    bytes: bytes.slice(),
  };
}

/**
 * The notes' make_token: a new token signed with the keyring's current key, issued at
 * `now` (ms, truncated to seconds) for `fields.lifetimeS` seconds.
 * @throws {TypeError|RangeError} naming the field when one is out of range
 * @throws {RangeError} when no keyring secret has activated at `now`
 */
export function makeToken(fields: TokenFields, keyring: Keyring, now: number): Token {
  if (!Number.isInteger(fields.lifetimeS) || fields.lifetimeS < 1) {
    throw new RangeError('fields.lifetimeS must be a positive integer');
  }
  const issuedAt = Math.floor(now / 1000);
  let tokenId = fields.tokenId;
  while (tokenId === undefined || tokenId === 0n) {
    tokenId = new DataView(randomBytes(8).buffer).getBigUint64(0);
  }
  return encodeToken(
    { ...fields, tokenId, issuedAt, expires: issuedAt + fields.lifetimeS },
    keyring.current(now),
  );
}

export type ChecksumResult =
  | { ok: true; token: Token; serverKey: ServerKey }
  | { ok: false; code: ErrorCode };

/**
 * The notes' test_token_chksum: decodes the token, finds its server key (unknown or retired
 * → TOKEN_UNKNOWN_KEY) and checks its mac in constant time (→ TOKEN_BAD_SIGNATURE).
 * Malformed bytes → TOKEN_MALFORMED. Never throws on hostile input.
 */
export function testTokenChecksum(
  bytes: Uint8Array,
  keyring: Keyring,
  now: number,
): ChecksumResult {
  let token: Token;
  try {
    token = decodeToken(bytes);
  } catch (e) {
    if (e instanceof DecodeError) return { ok: false, code: ErrorCode.TOKEN_MALFORMED };
    throw e;
  }
  const found = keyring.lookup(token.keyId, now);
  if (!found.ok) return { ok: false, code: ErrorCode.TOKEN_UNKNOWN_KEY };
  const body = token.bytes.subarray(0, token.bytes.length - MAC_LENGTH);
  if (!found.key.hmac.verify(token.mac, TOKEN_LABEL, body)) {
    return { ok: false, code: ErrorCode.TOKEN_BAD_SIGNATURE };
  }
  return { ok: true, token, serverKey: found.key };
}

/** What `tokenValid` needs besides the token. */
export interface TokenContext {
  keyring: Keyring;
  /** ms since the epoch. */
  now: number;
  /** Allowed skew for issuedAt in the future (default 300 000 ms). */
  skewMs?: number;
  /** The revoked ("bad") list, consulted before anything trusts the token (TokenStore). */
  revoked?: { isRevoked(tokenId: bigint): boolean };
}

export type TokenValidity =
  | { ok: true; token: Token; sessionKey: Uint8Array; serverKey: ServerKey; moved: boolean }
  | { ok: false; code: ErrorCode; token?: Token };

/**
 * The notes' token_valid. In order: malformed → TOKEN_MALFORMED; unknown or retired key →
 * TOKEN_UNKNOWN_KEY; bad mac → TOKEN_BAD_SIGNATURE; on the revoked list → TOKEN_REVOKED
 * (checked before, and regardless of, the valid list); now ≥ expires → TOKEN_EXPIRED;
 * issuedAt more than `skewMs` ahead of now → TOKEN_FUTURE; presented from another IP →
 * TOKEN_WRONG_HOST.
 *
 * A presentation from the token's IP but another port is accepted with `moved: true`.
 * The caller must move the session's address (where TEST_CONN goes) only after the
 * datagram carrying the token has verified under `sessionKey`: a token alone is not proof
 * of anything, it is a bearer string that an on-path observer may have copied.
 * @throws {TypeError} when `from` is not an IP address
 */
export function tokenValid(bytes: Uint8Array, from: PeerAddress, ctx: TokenContext): TokenValidity {
  const peer = parseIp(from.address);
  const sum = testTokenChecksum(bytes, ctx.keyring, ctx.now);
  if (!sum.ok) return sum;
  const { token, serverKey } = sum;
  if (ctx.revoked?.isRevoked(token.tokenId))
    return { ok: false, code: ErrorCode.TOKEN_REVOKED, token };
  if (ctx.now >= token.expires * 1000) return { ok: false, code: ErrorCode.TOKEN_EXPIRED, token };
  if (token.issuedAt * 1000 - ctx.now > (ctx.skewMs ?? DEFAULT_SKEW_MS)) {
    return { ok: false, code: ErrorCode.TOKEN_FUTURE, token };
  }
  if (!sameIp(token.ip, peer)) return { ok: false, code: ErrorCode.TOKEN_WRONG_HOST, token };
  return {
    ok: true,
    token,
    serverKey,
    sessionKey: sessionKeyFor(token, serverKey),
    moved: token.port !== from.port,
  };
}

/**
 * Session key = HKDF-SHA256(ikm = serverKey[keyId], salt = u64be(tokenId),
 * info = "floatlm session v1" || mac, 32). Any server with the keyring recovers it.
 * @throws {RangeError} when `serverKey` is not the token's key
 */
export function sessionKeyFor(token: Token, serverKey: ServerKey | Uint8Array): Uint8Array {
  let raw: Uint8Array;
  if (serverKey instanceof Uint8Array) raw = serverKey;
  else {
    if (serverKey.keyId !== token.keyId) throw new RangeError("serverKey must be the token's key");
    raw = serverKey.key;
  }
  return hkdfSha256(raw, u64be(token.tokenId), concatBytes(SESSION_LABEL, token.mac), KEY_LENGTH);
}

/**
 * The session key of stored token bytes, reading only what the derivation needs (key id,
 * token id, mac) instead of decoding every field: the first datagram of each of a million
 * sessions restored after a restart pays this. Undefined when the bytes are too short to be
 * a token or its server key is unknown or retired at `now`.
 */
export function sessionKeyOfBytes(
  bytes: Uint8Array,
  keyring: Keyring,
  now: number,
): Uint8Array | undefined {
  if (bytes.length < 1 + 4 + 8 + MAC_LENGTH || bytes[0] !== TOKEN_VERSION) return undefined;
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const keyId = v.getUint32(1);
  const found = keyring.lookup(keyId, now);
  if (!found.ok) return undefined;
  const mac = bytes.subarray(bytes.length - MAC_LENGTH);
  return hkdfSha256(
    found.key.key,
    bytes.subarray(5, 13),
    concatBytes(SESSION_LABEL, mac),
    KEY_LENGTH,
  );
}

/**
 * The session key as HELLO_OK carries it: sessionKey XOR HMAC-SHA256(credentialKey,
 * "floatlm wrap v1" || nonce(16) || u64be(tokenId)). Its own inverse (wrap = unwrap).
 * @throws {RangeError} when `sessionKey` is not 32 bytes or `nonce` not 16
 */
export function wrapSessionKey(
  sessionKey: Uint8Array,
  credentialKey: Uint8Array | KeyedHmac,
  nonce: Uint8Array,
  tokenId: bigint,
): Uint8Array {
  if (!(sessionKey instanceof Uint8Array) || sessionKey.length !== KEY_LENGTH) {
    throw new RangeError(`sessionKey must be ${KEY_LENGTH} bytes`);
  }
  if (!(nonce instanceof Uint8Array) || nonce.length !== NONCE_LENGTH) {
    throw new RangeError(`nonce must be ${NONCE_LENGTH} bytes`);
  }
  const h = credentialKey instanceof KeyedHmac ? credentialKey : new KeyedHmac(credentialKey);
  const pad = h.mac(WRAP_LABEL, nonce, u64be(tokenId));
  for (let i = 0; i < KEY_LENGTH; i++) pad[i] = pad[i]! ^ sessionKey[i]!;
  return pad;
}

/** Inverse of `wrapSessionKey` (the same operation). @throws {RangeError} as wrapSessionKey */
export const unwrapSessionKey = wrapSessionKey;

/** Constant-time token equality (e.g. a presented token against the stored one). */
export function sameToken(a: Uint8Array, b: Uint8Array): boolean {
  return equalBytes(a, b);
}
