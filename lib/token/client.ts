/**
 * The client side of the token layer (the notes' get_token and extract_token): the HELLO
 * that asks for a token, and pulling the token and session key out of HELLO_OK after its
 * tag verifies under the unwrapped key. The token itself stays opaque to the client.
 */
import { KeyedHmac, randomBytes } from '../crypto/index.ts';
import {
  AuthMode,
  type Datagram,
  DecodeError,
  decodeDatagram,
  encodingLength,
  Flags,
  type Hello,
  MIN_FIRST_CONTACT,
  MsgType,
  NONCE_LENGTH,
  signedRange,
  TAG_LENGTH,
} from '../wire/index.ts';
import { unwrapSessionKey } from './token.ts';

export interface HelloFields {
  credId: string;
  vendor: string;
  program: string;
  version: string;
  user: string;
  host: string;
  requestId: number;
  /** ms since the epoch: the request's timestamp. */
  now: number;
  /** Random unless given (tests). */
  nonce?: Uint8Array;
}

/**
 * The notes' get_token: an unsigned HELLO request (mode 1, zero tag) padded to at least
 * MIN_FIRST_CONTACT bytes, and the nonce to keep for `extractToken`. Sign it with the
 * credential key (lib/auth signDatagram).
 * @throws {RangeError} when the nonce is not 16 bytes or a field is too long
 */
export function getToken(f: HelloFields): {
  datagram: Datagram<typeof MsgType.HELLO>;
  nonce: Uint8Array;
} {
  const nonce = f.nonce ?? randomBytes(NONCE_LENGTH);
  if (!(nonce instanceof Uint8Array) || nonce.length !== NONCE_LENGTH) {
    throw new RangeError(`nonce must be ${NONCE_LENGTH} bytes`);
  }
  const body: Hello = {
    vendor: f.vendor,
    program: f.program,
    version: f.version,
    user: f.user,
    host: f.host,
    padding: new Uint8Array(0),
  };
  const datagram: Datagram<typeof MsgType.HELLO> = {
    type: MsgType.HELLO,
    flags: 0,
    auth: { mode: AuthMode.CREDENTIAL, credId: f.credId, nonce },
    requestId: f.requestId >>> 0,
    sessionId: 0n,
    seq: 0,
    timestamp: f.now,
    body,
    tag: new Uint8Array(TAG_LENGTH),
  };
  const short = MIN_FIRST_CONTACT - encodingLength(datagram);
  if (short > 0) body.padding = new Uint8Array(short);
  return { datagram, nonce };
}

/** What a client keeps from HELLO_OK. */
export interface ExtractedToken {
  /** Opaque; presented in auth mode 2. */
  token: Uint8Array;
  /** Equals the token id; goes in every later header. */
  sessionId: bigint;
  sessionKey: Uint8Array;
  /** Token expiry, ms since the epoch. */
  expires: number;
  heartbeatMs: number;
}

/**
 * The notes' extract_token: decodes a HELLO_OK (REPLY|FROM_SERVER, mode 1, the expected
 * request id), unwraps the session key with the credential key and the HELLO's nonce, and
 * checks the reply's tag under that key in constant time, which proves the server knew the
 * credential key. Returns null for anything else (drop it); never throws on hostile bytes.
 */
export function extractToken(
  bytes: Uint8Array,
  credentialKey: Uint8Array | KeyedHmac,
  nonce: Uint8Array,
  requestId: number,
): ExtractedToken | null {
  let d: ReturnType<typeof decodeDatagram>;
  try {
    d = decodeDatagram(bytes);
  } catch (e) {
    if (e instanceof DecodeError) return null;
    throw e;
  }
  if (
    d.type !== MsgType.HELLO_OK ||
    d.flags !== (Flags.REPLY | Flags.FROM_SERVER) ||
    d.auth.mode !== AuthMode.CREDENTIAL ||
    d.requestId !== requestId >>> 0 ||
    d.sessionId === 0n
  ) {
    return null;
  }
  const sessionKey = unwrapSessionKey(d.body.wrappedKey, credentialKey, nonce, d.sessionId);
  const [start, end] = signedRange(bytes.length);
  if (!new KeyedHmac(sessionKey).verify(d.tag, bytes.subarray(start, end))) return null;
  return {
    token: d.body.token,
    sessionId: d.sessionId,
    sessionKey,
    expires: d.body.tokenExpires,
    heartbeatMs: d.body.heartbeatMs,
  };
}
