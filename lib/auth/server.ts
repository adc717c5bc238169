/**
 * The server side of authentication (the notes' server `authenticate(&Packet)`): decides for
 * every decoded datagram whether to drop it silently, refuse it with an error code signed
 * with a key the client holds, or accept it, in the four auth modes. The MAC is verified
 * before any state (nonce cache, replay window, sessions) is read for freshness or changed;
 * the only work before it is key lookup and, in mode 2, the token's own checksum.
 *
 * What cannot be answered is dropped: a bad MAC, an unknown credential or admin key, a
 * token whose key or checksum fails (no session key to sign with), an unknown session id in
 * mode 3 (the client times out and falls back to mode 2 by itself), replays.
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
  type AnyDatagram,
  AuthMode,
  ErrorCode,
  Flags,
  MIN_FIRST_CONTACT,
  MsgType,
  TAG_LENGTH,
} from '../wire/index.ts';
import { checkSkew, NonceCache, ReplayWindow } from './replay.ts';

/** What ServerAuth needs to know of a live session (the daemon's session record). */
export interface AuthSession {
  /** The session key, keyed once. */
  hmac: KeyedHmac;
  /** Replay window over the client's seq. */
  window: ReplayWindow;
  /** Token expiry, ms since the epoch: requests from then on get TOKEN_EXPIRED. */
  expires: number;
  /** Where the session's datagrams come from (TEST_CONN goes there). */
  address: string;
  port: number;
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
  | 'replay';

export type AuthDecision =
  | { action: 'drop'; reason: DropReason }
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
      /** Mode 2: the raw session key (to store with a restored session). */
      sessionKey?: Uint8Array;
      /** Mode 2: the session was unknown; create it with `window` and `key`. */
      restored?: boolean;
      /** Mode 2 restored: the session's new replay window, this seq already marked. */
      window?: ReplayWindow;
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
  /** Bound of the nonce cache (default 200 000). */
  maxNonces?: number;
  /** Replay window width for restored sessions (default 1024). */
  windowSize?: number;
}

const MODE_TYPES: Readonly<Record<AuthMode, ReadonlySet<number>>> = {
  [AuthMode.CREDENTIAL]: new Set([MsgType.HELLO, MsgType.PING, MsgType.STATUS]),
  [AuthMode.TOKEN]: new Set([
    MsgType.CHECKOUT,
    MsgType.HEARTBEAT,
    MsgType.CHECKIN,
    MsgType.RECLAIM,
    MsgType.STATUS,
    MsgType.PING,
  ]),
  [AuthMode.SESSION]: new Set([
    MsgType.CHECKOUT,
    MsgType.HEARTBEAT,
    MsgType.CHECKIN,
    MsgType.RECLAIM,
    MsgType.STATUS,
    MsgType.PING,
  ]),
  [AuthMode.ADMIN]: new Set([MsgType.ADMIN, MsgType.STATUS, MsgType.PING]),
};

/** Message types allowed in each auth mode (others are refused WRONG_MODE). */
export function typeAllowed(mode: AuthMode, type: number): boolean {
  return MODE_TYPES[mode].has(type);
}

const drop = (reason: DropReason): AuthDecision => ({ action: 'drop', reason });

/** Authenticates datagrams for the daemon; one instance per server. */
export class ServerAuth {
  private keyring: Keyring;
  private readonly sessions: SessionLookup;
  private readonly revoked: { isRevoked(tokenId: bigint): boolean };
  private readonly now: () => number;
  private readonly skewMs: number;
  private readonly windowSize: number;
  private credentials = new Map<string, KeyedHmac>();
  private admin = new Map<string, KeyedHmac>();
  /** Nonces of mode 1, and first tag bytes of modes 2 and 4 (which carry no nonce). */
  readonly nonces: NonceCache;

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
    this.windowSize = opts.windowSize ?? 1024;
    new ReplayWindow(this.windowSize); // validates windowSize
    this.nonces = new NonceCache({ maxEntries: opts.maxNonces ?? 200_000, skewMs: this.skewMs });
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
   * Decides what to do with one datagram. `bytes` are exactly the datagram that `d` was
   * decoded from; `from` is its source. Never throws on hostile input.
   */
  authenticate(bytes: Uint8Array, d: AnyDatagram, from: PeerAddress): AuthDecision {
    if (d.type === MsgType.TEST_CONN_ACK) return this.testConnAck(bytes, d, from);
    if (d.flags !== 0) return drop('not-a-request');
    switch (d.auth.mode) {
      case AuthMode.CREDENTIAL:
        return this.keyed(
          bytes,
          d,
          this.credentials.get(d.auth.credId),
          'unknown-credential',
          d.auth.nonce,
        );
      case AuthMode.ADMIN:
        return this.keyed(
          bytes,
          d,
          this.admin.get(d.auth.keyId),
          'unknown-admin-key',
          tagId(bytes),
        );
      case AuthMode.TOKEN:
        return this.token(bytes, d, d.auth.token, from);
      case AuthMode.SESSION:
        return this.session(bytes, d, from);
    }
  }

  private refuse(code: ErrorCode, mode: AuthMode, key: KeyedHmac, retryAfterMs = 0): AuthDecision {
    return { action: 'refuse', code, mode, key, retryAfterMs };
  }

  /** Modes 1 and 4: a named static key, replay defence by nonce (mode 4: the tag). */
  private keyed(
    bytes: Uint8Array,
    d: AnyDatagram,
    key: KeyedHmac | undefined,
    unknown: DropReason,
    nonce: Uint8Array,
  ): AuthDecision {
    if (!key) return drop(unknown);
    if (!verify(bytes, key)) return drop('bad-mac');
    const now = this.now();
    const mode = d.auth.mode;
    if (this.nonces.has(nonce, now)) return drop('replay');
    if (!checkSkew(d.timestamp, now, this.skewMs))
      return this.refuse(ErrorCode.CLOCK_SKEW, mode, key);
    const added = this.nonces.add(nonce, now);
    if (added === 'replay') return drop('replay');
    if (added === 'full') return this.refuse(ErrorCode.BUSY, mode, key, 1000);
    if (!typeAllowed(mode, d.type)) return this.refuse(ErrorCode.WRONG_MODE, mode, key);
    if (d.auth.mode === AuthMode.CREDENTIAL) {
      if (d.type === MsgType.HELLO) {
        if (bytes.length < MIN_FIRST_CONTACT) return this.refuse(ErrorCode.NEED_PADDING, mode, key);
        if (!credentialCovers(d.auth.credId, d.body.vendor, d.body.user)) {
          return this.refuse(ErrorCode.NOT_PERMITTED, mode, key);
        }
      }
      return { action: 'accept', mode, key, sessionId: d.sessionId, credId: d.auth.credId };
    }
    if (d.auth.mode === AuthMode.ADMIN) {
      return { action: 'accept', mode, key, sessionId: d.sessionId, adminId: d.auth.keyId };
    }
    return drop('not-a-request');
  }

  /** Mode 2: the token names the server key; the session key comes from the token. */
  private token(
    bytes: Uint8Array,
    d: AnyDatagram,
    tokenBytes: Uint8Array,
    from: PeerAddress,
  ): AuthDecision {
    const now = this.now();
    const sum = testTokenChecksum(tokenBytes, this.keyring, now);
    if (!sum.ok) return drop('bad-token');
    const { token, serverKey } = sum;
    const sessionKey = sessionKeyFor(token, serverKey);
    const key = new KeyedHmac(sessionKey);
    if (!verify(bytes, key)) return drop('bad-mac');
    const mode = AuthMode.TOKEN;
    if (d.sessionId !== token.tokenId) return this.refuse(ErrorCode.BAD_REQUEST, mode, key);
    const known = this.sessions.getSession(token.tokenId);
    const id = tagId(bytes);
    if (this.nonces.has(id, now) || (known && !known.window.check(d.seq))) return drop('replay');
    if (!checkSkew(d.timestamp, now, this.skewMs))
      return this.refuse(ErrorCode.CLOCK_SKEW, mode, key);
    const added = this.nonces.add(id, now);
    if (added === 'full') return this.refuse(ErrorCode.BUSY, mode, key, 1000);
    const window = known ? known.window : new ReplayWindow(this.windowSize);
    window.update(d.seq);
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
    if (!typeAllowed(mode, d.type)) return this.refuse(ErrorCode.WRONG_MODE, mode, key);
    const moved = known ? this.hostCheck(known, from) === true : token.port !== from.port;
    return {
      action: 'accept',
      mode,
      key,
      sessionId: token.tokenId,
      token,
      sessionKey,
      restored: !known,
      ...(known ? {} : { window }),
      moved,
    };
  }

  /** Mode 3: the session named in the header. */
  private session(bytes: Uint8Array, d: AnyDatagram, from: PeerAddress): AuthDecision {
    const s = this.sessions.getSession(d.sessionId);
    if (!s) return drop('unknown-session');
    if (!verify(bytes, s.hmac)) return drop('bad-mac');
    if (!s.window.check(d.seq)) return drop('replay');
    const now = this.now();
    const mode = AuthMode.SESSION;
    if (!checkSkew(d.timestamp, now, this.skewMs))
      return this.refuse(ErrorCode.CLOCK_SKEW, mode, s.hmac);
    s.window.update(d.seq);
    if (now >= s.expires) return this.refuse(ErrorCode.TOKEN_EXPIRED, mode, s.hmac);
    const moved = this.hostCheck(s, from);
    if (moved === undefined) return this.refuse(ErrorCode.TOKEN_WRONG_HOST, mode, s.hmac);
    if (!typeAllowed(mode, d.type)) return this.refuse(ErrorCode.WRONG_MODE, mode, s.hmac);
    return { action: 'accept', mode, key: s.hmac, sessionId: d.sessionId, moved };
  }

  /**
   * The mode-3 checks of `authenticate`, for a request whose header the caller has read
   * itself (the daemon's HEARTBEAT fast path; `type`, `seq` and `timestamp` are the header's).
   * True when `authenticate` would accept the datagram from the session's own address and
   * port; the window has then taken `seq`. False in every other case (bad tag, replay, skew,
   * expiry, another address or port, a type mode 3 does not allow), with nothing changed:
   * pass the datagram to `authenticate` for the full answer.
   */
  acceptsAtOnce(
    s: AuthSession,
    bytes: Uint8Array,
    type: number,
    seq: number,
    timestamp: number,
    from: PeerAddress,
  ): boolean {
    if (!s.hmac.verifyTrailing(bytes) || !s.window.check(seq)) return false;
    const now = this.now();
    if (!checkSkew(timestamp, now, this.skewMs) || now >= s.expires) return false;
    if (s.address !== from.address || s.port !== from.port) return false;
    if (!typeAllowed(AuthMode.SESSION, type)) return false;
    s.window.update(seq);
    return true;
  }

  /**
   * TEST_CONN_ACK: the client's answer to the server's TEST_CONN (REPLY set, mode 3). No
   * replay window: the caller matches its nonce against the one outstanding TEST_CONN.
   */
  private testConnAck(bytes: Uint8Array, d: AnyDatagram, from: PeerAddress): AuthDecision {
    if (d.flags !== Flags.REPLY || d.auth.mode !== AuthMode.SESSION) return drop('not-a-request');
    const s = this.sessions.getSession(d.sessionId);
    if (!s) return drop('unknown-session');
    if (!verify(bytes, s.hmac)) return drop('bad-mac');
    const now = this.now();
    if (!checkSkew(d.timestamp, now, this.skewMs))
      return this.refuse(ErrorCode.CLOCK_SKEW, AuthMode.SESSION, s.hmac);
    const moved = this.hostCheck(s, from);
    if (moved === undefined)
      return this.refuse(ErrorCode.TOKEN_WRONG_HOST, AuthMode.SESSION, s.hmac);
    return { action: 'accept', mode: AuthMode.SESSION, key: s.hmac, sessionId: d.sessionId, moved };
  }

  /** false: same address; true: same IP, other port; undefined: another host. */
  private hostCheck(s: AuthSession, from: PeerAddress): boolean | undefined {
    if (s.address === from.address) return s.port !== from.port;
    try {
      if (!sameIp(parseIp(s.address), parseIp(from.address))) return undefined;
    } catch {
      return undefined;
    }
    return true;
  }
}

function verify(bytes: Uint8Array, key: KeyedHmac): boolean {
  return key.verifyTrailing(bytes);
}

/** A unique id of a datagram without a nonce: the first half of its (verified) tag. */
function tagId(bytes: Uint8Array): Uint8Array {
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
