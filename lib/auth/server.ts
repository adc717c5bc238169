/**
 * The server side of authentication (the notes' server `authenticate(&Packet)`): decides for
 * every datagram, from its header and auth block alone, whether to drop it silently, treat it
 * as a replay, refuse it with an error code signed with a key the client holds, or accept it,
 * in the four auth modes. The tag is verified before any state (replay window, nonce tables)
 * is read for freshness or changed; the only work before it is key lookup and, in mode 2
 * with a token the server holds no key for yet, the token's own checksum.
 *
 * What cannot be answered is dropped: a bad tag, an unknown credential or admin key, a token
 * whose key or checksum fails (no session key to sign with), an unknown session id in mode 3,
 * or a session whose server key is gone (there is no fallback key: such a session is unknown
 * in every mode).
 */
import { KeyedHmac, type Keyring } from '../crypto/index.ts';
import {
  DEFAULT_SKEW_MS,
  parseIp,
  sameIp,
  sessionKeyFor,
  type Token,
  testTokenChecksum,
} from '../token/index.ts';
import {
  AuthMode,
  ErrorCode,
  Flags,
  type Head,
  MIN_FIRST_CONTACT,
  MsgType,
  TAG_LENGTH,
} from '../wire/index.ts';
import { checkSkew, RecentNonces } from './replay.ts';

/** What ServerAuth needs to know of a live session (the daemon's session record). */
export interface AuthSession {
  /** The session key, keyed once; undefined when its server key is gone (session unknown). */
  readonly hmac: KeyedHmac | undefined;
  /** Replay window over the client's seq: would it accept `seq`? */
  checkSeq(seq: number): boolean;
  /** Marks `seq` seen. */
  acceptSeq(seq: number): void;
  /** True when `bytes` are exactly this session's token. */
  tokenIs(bytes: Uint8Array): boolean;
  /** Token expiry, ms since the epoch: requests from then on get TOKEN_EXPIRED. */
  readonly expires: number;
  /** Where the session's datagrams come from (TEST_CONN goes there). */
  readonly address: string;
  readonly port: number;
}

/** The daemon's session table, as seen by ServerAuth. */
export interface SessionLookup {
  getSession(sessionId: bigint): AuthSession | undefined;
}

export interface PeerAddress {
  address: string;
  port: number;
}

export type DropReason =
  | 'not-a-request'
  | 'unknown-credential'
  | 'unknown-admin-key'
  | 'unknown-session'
  | 'bad-token'
  | 'bad-mac'
  | 'over-budget';

export type AuthDecision =
  | { action: 'drop'; reason: DropReason }
  | {
      /** Verified, but its nonce or seq was seen: answer from what was kept, never again. */
      action: 'replay';
      mode: AuthMode;
      key: KeyedHmac;
    }
  | {
      action: 'refuse';
      code: ErrorCode;
      /** Auth mode of the request; the ERROR reply carries it. */
      mode: AuthMode;
      /** Sign the ERROR reply with this key. */
      key: KeyedHmac;
      /** ms, for BUSY. */
      retryAfterMs: number;
    }
  | {
      action: 'accept';
      mode: AuthMode;
      /** The key that verified the request: sign the reply with it (HELLO_OK excepted). */
      key: KeyedHmac;
      /** Header session id (the token id in modes 2 and 3; 0 in modes 1 and 4). */
      sessionId: bigint;
      /** Mode 1: the credential id (also the key for returnToken's wrap). */
      credId?: string;
      /** Mode 4: the admin key id. */
      adminId?: string;
      /** Mode 2: the verified token. */
      token?: Token;
      /** Mode 2, session unknown: its raw session key; create the session, accept the seq. */
      sessionKey?: Uint8Array;
      /** Modes 2 and 3: same IP, new port; the MAC verified, so move the session's address. */
      moved?: boolean;
    };

export interface ServerAuthOptions {
  keyring: Keyring;
  /** Credential keys by id (`vendor` or `vendor/user`). */
  credentials: ReadonlyMap<string, Uint8Array>;
  /** Admin keys by id. */
  admin: ReadonlyMap<string, Uint8Array>;
  sessions: SessionLookup;
  /** The revoked list (TokenStore). */
  revoked: { isRevoked(tokenId: bigint): boolean };
  now: () => number;
  /** Default 300 000 ms. */
  skewMs?: number;
  /**
   * Asked before work that costs more than one HMAC for a datagram not yet verified (mode 2
   * with a token the server has no key for yet): false drops it ('over-budget').
   */
  budget?: (address: string) => boolean;
}

const REQUEST_TYPES = [
  MsgType.CHECKOUT,
  MsgType.HEARTBEAT,
  MsgType.CHECKIN,
  MsgType.RECLAIM,
  MsgType.STATUS,
  MsgType.PING,
];
const MODE_TYPES: Readonly<Record<AuthMode, ReadonlySet<number>>> = {
  [AuthMode.CREDENTIAL]: new Set([MsgType.HELLO, MsgType.PING, MsgType.STATUS]),
  [AuthMode.TOKEN]: new Set(REQUEST_TYPES),
  [AuthMode.SESSION]: new Set(REQUEST_TYPES),
  [AuthMode.ADMIN]: new Set([MsgType.ADMIN, MsgType.STATUS, MsgType.PING]),
};

/** Message types allowed in each auth mode (others are refused WRONG_MODE). */
export function typeAllowed(mode: AuthMode, type: number): boolean {
  return MODE_TYPES[mode].has(type);
}

/** One frozen decision per drop reason: a flood of bad datagrams allocates none. */
const DROPS: Readonly<Record<DropReason, AuthDecision>> = Object.freeze({
  'not-a-request': Object.freeze({ action: 'drop', reason: 'not-a-request' }),
  'unknown-credential': Object.freeze({ action: 'drop', reason: 'unknown-credential' }),
  'unknown-admin-key': Object.freeze({ action: 'drop', reason: 'unknown-admin-key' }),
  'unknown-session': Object.freeze({ action: 'drop', reason: 'unknown-session' }),
  'bad-token': Object.freeze({ action: 'drop', reason: 'bad-token' }),
  'bad-mac': Object.freeze({ action: 'drop', reason: 'bad-mac' }),
  'over-budget': Object.freeze({ action: 'drop', reason: 'over-budget' }),
});
const drop = (reason: DropReason): AuthDecision => DROPS[reason];

/**
 * Authenticates datagrams for the daemon; one instance per server. Works on the header and
 * auth block only (`decodeHead`): the body is decoded after the tag verified. Nothing a
 * refused request carries changes state: the replay window takes a seq, and the recent-nonce
 * tables a nonce, only when the request is accepted.
 */
export class ServerAuth {
  private keyring: Keyring;
  private readonly sessions: SessionLookup;
  private readonly revoked: { isRevoked(tokenId: bigint): boolean };
  private readonly now: () => number;
  private readonly skewMs: number;
  private readonly budget: ((address: string) => boolean) | undefined;
  private credentials = new Map<string, KeyedHmac>();
  private admin = new Map<string, KeyedHmac>();
  /** Nonces of mode-1 PING and STATUS (HELLO is guarded by its idempotency record). */
  readonly recentCredential: RecentNonces;
  /** Tag prefixes of mode-4 PING and STATUS (ADMIN: idempotency record). */
  readonly recentAdmin: RecentNonces;

  /** @throws {TypeError|RangeError} naming the option when one is missing or out of range */
  constructor(opts: ServerAuthOptions) {
    if (!opts.keyring) throw new TypeError('opts.keyring is required');
    if (!opts.sessions || typeof opts.sessions.getSession !== 'function') {
      throw new TypeError('opts.sessions must have getSession(id)');
    }
    if (!opts.revoked || typeof opts.revoked.isRevoked !== 'function') {
      throw new TypeError('opts.revoked must have isRevoked(id)');
    }
    if (typeof opts.now !== 'function') throw new TypeError('opts.now must be a function');
    this.keyring = opts.keyring;
    this.sessions = opts.sessions;
    this.revoked = opts.revoked;
    this.now = opts.now;
    this.skewMs = opts.skewMs ?? DEFAULT_SKEW_MS;
    if (!(this.skewMs >= 0)) throw new RangeError('opts.skewMs must be ≥ 0');
    this.budget = opts.budget;
    // Separate tables: a mode-1 flood (anyone with a vendor credential) cannot push out the
    // admin entries that stop a large admin STATUS reply being replayed.
    this.recentCredential = new RecentNonces(16384, this.skewMs);
    this.recentAdmin = new RecentNonces(4096, this.skewMs);
    this.setKeys(opts.credentials, opts.admin);
  }

  /**
   * Replaces the credential and admin keys (after a reread of the keys file).
   * @throws {TypeError} when a key is empty
   */
  setKeys(
    credentials: ReadonlyMap<string, Uint8Array>,
    admin: ReadonlyMap<string, Uint8Array>,
  ): void {
    this.credentials = new Map([...credentials].map(([id, k]) => [id, new KeyedHmac(k)]));
    this.admin = new Map([...admin].map(([id, k]) => [id, new KeyedHmac(k)]));
  }

  /** Replaces the server keyring (after a reread of the keys file or a forced rotation). */
  setKeyring(keyring: Keyring): void {
    if (!keyring || typeof keyring.lookup !== 'function')
      throw new TypeError('keyring must be a Keyring');
    this.keyring = keyring;
  }

  /** The keyed credential key with this id (for returnToken's wrap). */
  credentialKey(credId: string): KeyedHmac | undefined {
    return this.credentials.get(credId);
  }

  /**
   * Decides what to do with one datagram from its head (`h.bytes` are exactly the
   * datagram); `from` is its source. Never throws on hostile input.
   */
  authenticate(h: Head, from: PeerAddress): AuthDecision {
    if (h.type === MsgType.TEST_CONN_ACK) return this.testConnAck(h, from);
    if (h.flags !== 0) return drop('not-a-request');
    switch (h.auth.mode) {
      case AuthMode.CREDENTIAL:
        return this.keyed(h, this.credentials.get(h.auth.credId), 'unknown-credential');
      case AuthMode.ADMIN:
        return this.keyed(h, this.admin.get(h.auth.keyId), 'unknown-admin-key');
      case AuthMode.TOKEN:
        return this.token(h, h.auth.token, from);
      case AuthMode.SESSION:
        return this.session(h, from);
    }
  }

  private refuse(code: ErrorCode, mode: AuthMode, key: KeyedHmac, retryAfterMs = 0): AuthDecision {
    return { action: 'refuse', code, mode, key, retryAfterMs };
  }

  /** Modes 1 and 4: a named static key. */
  private keyed(h: Head, key: KeyedHmac | undefined, unknown: DropReason): AuthDecision {
    if (!key) return drop(unknown);
    if (!key.verifyTrailing(h.bytes)) return drop('bad-mac');
    const now = this.now();
    const mode = h.auth.mode;
    if (!checkSkew(h.timestamp, now, this.skewMs))
      return this.refuse(ErrorCode.CLOCK_SKEW, mode, key);
    if (!typeAllowed(mode, h.type)) return this.refuse(ErrorCode.WRONG_MODE, mode, key);
    if (h.auth.mode === AuthMode.CREDENTIAL) {
      if (h.type === MsgType.HELLO) {
        if (h.bytes.length < MIN_FIRST_CONTACT)
          return this.refuse(ErrorCode.NEED_PADDING, mode, key);
      } else if (this.recentCredential.seen(h.auth.nonce, now)) {
        return { action: 'replay', mode, key };
      }
      return { action: 'accept', mode, key, sessionId: h.sessionId, credId: h.auth.credId };
    }
    if (h.auth.mode === AuthMode.ADMIN) {
      if (h.type !== MsgType.ADMIN && this.recentAdmin.seen(tagId(h.bytes), now)) {
        return { action: 'replay', mode, key };
      }
      return { action: 'accept', mode, key, sessionId: h.sessionId, adminId: h.auth.keyId };
    }
    return drop('not-a-request');
  }

  /** Mode 2: the token names the server key; the session key comes from the token. */
  private token(h: Head, tokenBytes: Uint8Array, from: PeerAddress): AuthDecision {
    const known = this.sessions.getSession(h.sessionId);
    const mode = AuthMode.TOKEN;
    // The session's own token and its cached key: no decoding or derivation at all.
    const fast = known?.tokenIs(tokenBytes) ? known.hmac : undefined;
    if (fast) {
      if (!fast.verifyTrailing(h.bytes)) return drop('bad-mac');
      return this.sessionChecks(h, known!, fast, mode, from, this.now());
    }
    if (this.budget && !this.budget(from.address)) return drop('over-budget');
    const now = this.now();
    const sum = testTokenChecksum(tokenBytes, this.keyring, now);
    if (!sum.ok) return drop('bad-token');
    const { token, serverKey } = sum;
    const sessionKey = sessionKeyFor(token, serverKey);
    const key = new KeyedHmac(sessionKey);
    if (!key.verifyTrailing(h.bytes)) return drop('bad-mac');
    if (h.sessionId !== token.tokenId) return this.refuse(ErrorCode.BAD_REQUEST, mode, key);
    if (known) return this.sessionChecks(h, known, key, mode, from, now);
    if (!checkSkew(h.timestamp, now, this.skewMs))
      return this.refuse(ErrorCode.CLOCK_SKEW, mode, key);
    if (this.revoked.isRevoked(token.tokenId))
      return this.refuse(ErrorCode.TOKEN_REVOKED, mode, key);
    if (now >= token.expires * 1000) return this.refuse(ErrorCode.TOKEN_EXPIRED, mode, key);
    if (token.issuedAt * 1000 - now > this.skewMs)
      return this.refuse(ErrorCode.TOKEN_FUTURE, mode, key);
    let peer: ReturnType<typeof parseIp>;
    try {
      peer = parseIp(from.address);
    } catch {
      return drop('not-a-request');
    }
    if (!sameIp(token.ip, peer)) return this.refuse(ErrorCode.TOKEN_WRONG_HOST, mode, key);
    if (!typeAllowed(mode, h.type)) return this.refuse(ErrorCode.WRONG_MODE, mode, key);
    return {
      action: 'accept',
      mode,
      key,
      sessionId: token.tokenId,
      token,
      sessionKey,
      moved: token.port !== from.port,
    };
  }

  /** Mode 3: the session named in the header. */
  private session(h: Head, from: PeerAddress): AuthDecision {
    const s = this.sessions.getSession(h.sessionId);
    const key = s?.hmac;
    if (!s || !key) return drop('unknown-session');
    if (!key.verifyTrailing(h.bytes)) return drop('bad-mac');
    return this.sessionChecks(h, s, key, AuthMode.SESSION, from, this.now());
  }

  /** Modes 2 and 3 of a known session, tag verified: window, skew, expiry, host, type. */
  private sessionChecks(
    h: Head,
    s: AuthSession,
    key: KeyedHmac,
    mode: AuthMode,
    from: PeerAddress,
    now: number,
  ): AuthDecision {
    if (!s.checkSeq(h.seq)) return { action: 'replay', mode, key };
    if (!checkSkew(h.timestamp, now, this.skewMs))
      return this.refuse(ErrorCode.CLOCK_SKEW, mode, key);
    if (mode === AuthMode.TOKEN && this.revoked.isRevoked(h.sessionId))
      return this.refuse(ErrorCode.TOKEN_REVOKED, mode, key);
    if (now >= s.expires) return this.refuse(ErrorCode.TOKEN_EXPIRED, mode, key);
    const moved = hostCheck(s, from);
    if (moved === undefined) return this.refuse(ErrorCode.TOKEN_WRONG_HOST, mode, key);
    if (!typeAllowed(mode, h.type)) return this.refuse(ErrorCode.WRONG_MODE, mode, key);
    // Accepted: only now does the window take the seq, so a refused copy cannot burn it.
    s.acceptSeq(h.seq);
    return { action: 'accept', mode, key, sessionId: h.sessionId, moved };
  }

  /**
   * TEST_CONN_ACK: the client's answer to the server's TEST_CONN (REPLY set, mode 3). No
   * replay window: the caller matches its nonce against the one outstanding TEST_CONN. It is
   * never answered, so every failure here is a silent drop.
   */
  private testConnAck(h: Head, from: PeerAddress): AuthDecision {
    if (h.flags !== Flags.REPLY || h.auth.mode !== AuthMode.SESSION) return drop('not-a-request');
    const s = this.sessions.getSession(h.sessionId);
    const key = s?.hmac;
    if (!s || !key) return drop('unknown-session');
    if (!key.verifyTrailing(h.bytes)) return drop('bad-mac');
    if (!checkSkew(h.timestamp, this.now(), this.skewMs)) return drop('not-a-request');
    const moved = hostCheck(s, from);
    if (moved === undefined) return drop('not-a-request');
    return { action: 'accept', mode: AuthMode.SESSION, key, sessionId: h.sessionId, moved };
  }
}

/** false: same address; true: same IP, other port; undefined: another host. */
function hostCheck(s: AuthSession, from: PeerAddress): boolean | undefined {
  if (s.address === from.address) return s.port !== from.port;
  try {
    if (!sameIp(parseIp(s.address), parseIp(from.address))) return undefined;
  } catch {
    return undefined;
  }
  return true;
}

/** A unique id of a datagram without a nonce: the first half of its (verified) tag. */
export function tagId(bytes: Uint8Array): Uint8Array {
  return bytes.subarray(bytes.length - TAG_LENGTH, bytes.length - TAG_LENGTH / 2);
}

/**
 * A credential `vendor` covers every user of that vendor; `vendor/user` covers that user
 * only.
 */
export function credentialCovers(credId: string, vendor: string, user: string): boolean {
  const slash = credId.indexOf('/');
  if (slash < 0) return credId === vendor;
  return credId.slice(0, slash) === vendor && credId.slice(slash + 1) === user;
}
