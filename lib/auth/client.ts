/**
 * The client side of authentication (the notes' client `authenticate(&Packet)`): session
 * state, the choice of auth mode, sequence numbers, signing requests, verifying replies,
 * and answering the server's TEST_CONN behind a replay window.
 *
 * Mode choice: no live token → 1 (HELLO with the credential key); a token this server has
 * not acknowledged (a new server, or after UNKNOWN_SESSION, or a server that went silent
 * and was `forgetServer`ed) → 2 (token + session-key MAC); otherwise 3 (session-key MAC).
 * A server "knows" the session once it issued it or answered a mode-2 request with a
 * reply that verified under the session key.
 */
import { KeyedHmac, randomBytes } from '../crypto/index.ts';
import {
  type ExtractedToken,
  extractToken,
  getToken,
  sessionKeyFor,
  unwrapSessionKey,
  wrapSessionKey,
} from '../token/index.ts';
import {
  type AnyDatagram,
  type AuthBlock,
  AuthMode,
  type Bodies,
  type Datagram,
  DecodeError,
  decodeDatagram,
  ErrorCode,
  Flags,
  MsgType,
  NONCE_LENGTH,
  TAG_LENGTH,
} from '../wire/index.ts';
import { checkSkew, ReplayWindow, SKEW_MS } from './replay.ts';
import { typeAllowed } from './server.ts';
import { signDatagram, verifyTag } from './sign.ts';

/** Session key derivation and wrap, re-exported for the client's convenience. */
export { sessionKeyFor, unwrapSessionKey, wrapSessionKey };

/** The client's session: what HELLO_OK gave it. */
export interface ClientSession extends ExtractedToken {
  hmac: KeyedHmac;
}

export interface ClientAuthOptions {
  /** Credential id, `vendor` or `vendor/user`. */
  credId: string;
  /** 32-byte credential key. */
  credKey: Uint8Array;
  /** Admin key for mode 4 (floatlm admin tools only). */
  admin?: { id: string; key: Uint8Array };
  now: () => number;
  /** Default 300 000 ms (for the server's TEST_CONN timestamps). */
  skewMs?: number;
  /** Random bytes source (tests); default node:crypto. */
  random?: (n: number) => Uint8Array;
}

/** A signed request and what is needed to check its reply. */
export interface SignedRequest {
  bytes: Uint8Array;
  mode: AuthMode;
  requestId: number;
  seq: number;
}

/** Error codes after which the token is useless and the client must HELLO again. */
const TOKEN_DEAD: ReadonlySet<number> = new Set([
  ErrorCode.TOKEN_BAD_SIGNATURE,
  ErrorCode.TOKEN_UNKNOWN_KEY,
  ErrorCode.TOKEN_EXPIRED,
  ErrorCode.TOKEN_FUTURE,
  ErrorCode.TOKEN_REVOKED,
  ErrorCode.TOKEN_WRONG_HOST,
  ErrorCode.TOKEN_MALFORMED,
]);

export class ClientAuth {
  readonly credId: string;
  private readonly cred: KeyedHmac;
  private readonly adminKey: { id: string; hmac: KeyedHmac } | undefined;
  private readonly now: () => number;
  private readonly skewMs: number;
  private readonly random: ((n: number) => Uint8Array) | undefined;
  private current: ClientSession | undefined;
  private seq = 0;
  private readonly knownBy = new Set<string>();
  private readonly pendingHello = new Map<number, { nonce: Uint8Array; server: string }>();
  /** Replay window over the server's seq in TEST_CONN. */
  private serverWindow = new ReplayWindow(1024);

  /** @throws {TypeError|RangeError} naming the option */
  constructor(opts: ClientAuthOptions) {
    if (typeof opts.credId !== 'string' || opts.credId === '')
      throw new TypeError('opts.credId must be a string');
    if (!(opts.credKey instanceof Uint8Array) || opts.credKey.length !== 32) {
      throw new TypeError('opts.credKey must be 32 bytes');
    }
    if (typeof opts.now !== 'function') throw new TypeError('opts.now must be a function');
    this.credId = opts.credId;
    this.cred = new KeyedHmac(opts.credKey);
    this.adminKey = opts.admin
      ? { id: opts.admin.id, hmac: new KeyedHmac(opts.admin.key) }
      : undefined;
    this.now = opts.now;
    this.skewMs = opts.skewMs ?? SKEW_MS;
    this.random = opts.random;
  }

  /** The live session, if any. */
  get session(): ClientSession | undefined {
    return this.current;
  }

  /** True when `server` (any stable name, e.g. "host:port") is known to hold the session. */
  knows(server: string): boolean {
    return this.knownBy.has(server);
  }

  /**
   * The auth mode this client uses for `type` to `server` now: 4 for ADMIN, and for
   * STATUS/PING without a live token when an admin key is configured; 1 without a live
   * token (or for HELLO); 2 when `server` does not know the session; else 3.
   */
  chooseMode(server: string, type: MsgType): AuthMode {
    if (type === MsgType.ADMIN) return AuthMode.ADMIN;
    if (type === MsgType.HELLO) return AuthMode.CREDENTIAL;
    const s = this.current;
    if (!s || this.now() >= s.expires) {
      return this.adminKey && typeAllowed(AuthMode.ADMIN, type)
        ? AuthMode.ADMIN
        : AuthMode.CREDENTIAL;
    }
    return this.knownBy.has(server) ? AuthMode.SESSION : AuthMode.TOKEN;
  }

  /**
   * A signed HELLO (mode 1, padded to ≥ 600 bytes); its nonce is kept for `acceptHelloOk`.
   * @throws {RangeError} when a field is too long
   */
  hello(
    server: string,
    fields: { vendor: string; program: string; version: string; user: string; host: string },
    requestId: number,
  ): SignedRequest {
    const nonce = this.random ? this.random(NONCE_LENGTH) : undefined;
    const { datagram, nonce: used } = getToken({
      ...fields,
      credId: this.credId,
      requestId,
      now: this.now(),
      ...(nonce ? { nonce } : {}),
    });
    this.pendingHello.set(requestId >>> 0, { nonce: used, server });
    return {
      bytes: signDatagram(datagram, this.cred),
      mode: AuthMode.CREDENTIAL,
      requestId,
      seq: 0,
    };
  }

  /**
   * Takes a HELLO_OK for a pending HELLO: verifies it (extractToken), starts the session,
   * resets seq, and records that the issuing server knows it. Null when it does not verify.
   */
  acceptHelloOk(bytes: Uint8Array, requestId: number): ClientSession | null {
    const pending = this.pendingHello.get(requestId >>> 0);
    if (!pending) return null;
    const got = extractToken(bytes, this.cred, pending.nonce, requestId);
    if (!got) return null;
    this.pendingHello.clear();
    this.current = { ...got, hmac: new KeyedHmac(got.sessionKey) };
    this.seq = 0;
    this.knownBy.clear();
    this.knownBy.add(pending.server);
    this.serverWindow = new ReplayWindow(1024);
    return this.current;
  }

  /**
   * Builds and signs a request of `type` to `server` in the mode `chooseMode` picks; each
   * call takes the next seq (retransmit the returned bytes unchanged, never re-sign).
   * @throws {RangeError} when the type needs a session and there is none, or ADMIN without
   *   an admin key; as lib/wire encode for bad bodies
   */
  request<T extends MsgType>(
    server: string,
    type: T,
    body: Bodies[T],
    requestId: number,
  ): SignedRequest {
    if (type === MsgType.HELLO) throw new RangeError('type HELLO: use hello()');
    const mode = this.chooseMode(server, type);
    let auth: AuthBlock;
    let key: KeyedHmac;
    let sessionId = 0n;
    let seq = 0;
    if (mode === AuthMode.ADMIN) {
      if (!this.adminKey) throw new RangeError('type ADMIN needs opts.admin');
      auth = { mode, keyId: this.adminKey.id };
      key = this.adminKey.hmac;
    } else if (mode === AuthMode.CREDENTIAL) {
      if (!typeAllowed(mode, type))
        throw new RangeError(`type ${type} needs a session: call hello() first`);
      const nonce = (this.random ?? randomBytes)(NONCE_LENGTH);
      auth = { mode, credId: this.credId, nonce };
      key = this.cred;
    } else {
      const s = this.current!;
      auth = mode === AuthMode.TOKEN ? { mode, token: s.token } : { mode };
      key = s.hmac;
      sessionId = s.sessionId;
      seq = ++this.seq;
    }
    const d = {
      type,
      flags: 0,
      auth,
      requestId: requestId >>> 0,
      sessionId,
      seq,
      timestamp: this.now(),
      body,
      tag: new Uint8Array(TAG_LENGTH),
    } as Datagram<T> as AnyDatagram;
    return { bytes: signDatagram(d, key), mode, requestId: requestId >>> 0, seq };
  }

  /**
   * Verifies a reply to `req` from `server`: framing, REPLY|FROM_SERVER, request id, mode,
   * session id, and the tag under the key of that mode. Null when anything fails (drop it).
   * On a verified reply to a mode-2 request the server is marked as knowing the session
   * (except ERROR BUSY or SHUTTING_DOWN, which may refuse before restoring it); a
   * verified ERROR UNKNOWN_SESSION forgets the server; a verified ERROR REPLAY moves the seq
   * above the floor its header carries (protocol.md section 10); a verified ERROR with a TOKEN_* code
   * ends the session (the next request is a HELLO).
   */
  verifyReply(server: string, bytes: Uint8Array, req: SignedRequest): AnyDatagram | null {
    let d: AnyDatagram;
    try {
      d = decodeDatagram(bytes);
    } catch (e) {
      if (e instanceof DecodeError) return null;
      throw e;
    }
    if (
      d.flags !== (Flags.REPLY | Flags.FROM_SERVER) ||
      d.requestId !== req.requestId ||
      d.auth.mode !== req.mode
    ) {
      return null;
    }
    let key: KeyedHmac;
    if (req.mode === AuthMode.CREDENTIAL) key = this.cred;
    else if (req.mode === AuthMode.ADMIN) {
      if (!this.adminKey) return null;
      key = this.adminKey.hmac;
    } else {
      const s = this.current;
      if (!s || d.sessionId !== s.sessionId) return null;
      key = s.hmac;
    }
    if (!verifyTag(bytes, key)) return null;
    // A refusal for want of service (BUSY, SHUTTING_DOWN) may come before the session was
    // restored there: the server is not known to hold it yet.
    const refused =
      d.type === MsgType.ERROR &&
      (d.body.code === ErrorCode.BUSY || d.body.code === ErrorCode.SHUTTING_DOWN);
    if (req.mode === AuthMode.TOKEN && !refused) this.knownBy.add(server);
    if (
      d.type === MsgType.ERROR &&
      (req.mode === AuthMode.TOKEN || req.mode === AuthMode.SESSION)
    ) {
      if (d.body.code === ErrorCode.UNKNOWN_SESSION) this.knownBy.delete(server);
      else if (d.body.code === ErrorCode.REPLAY) {
        // The server restarted with a replay floor above our seqs: continue above it.
        this.seq = Math.max(this.seq, d.seq);
      } else if (TOKEN_DEAD.has(d.body.code)) this.dropSession();
    }
    return d;
  }

  /**
   * Answers a server's TEST_CONN: checks FROM_SERVER without REPLY, mode 3, our session id,
   * the tag under the session key, the server's timestamp within the skew and its seq in
   * the replay window. Returns the signed TEST_CONN_ACK (same request id and seq, REPLY set),
   * or null to drop.
   */
  answerTestConn(bytes: Uint8Array, leases: number): Uint8Array | null {
    const s = this.current;
    if (!s) return null;
    let d: AnyDatagram;
    try {
      d = decodeDatagram(bytes);
    } catch (e) {
      if (e instanceof DecodeError) return null;
      throw e;
    }
    if (
      d.type !== MsgType.TEST_CONN ||
      d.flags !== Flags.FROM_SERVER ||
      d.auth.mode !== AuthMode.SESSION ||
      d.sessionId !== s.sessionId ||
      !verifyTag(bytes, s.hmac) ||
      !this.serverWindow.check(d.seq)
    ) {
      return null;
    }
    const now = this.now();
    if (!checkSkew(d.timestamp, now, this.skewMs)) return null;
    this.serverWindow.update(d.seq);
    const ack: Datagram<typeof MsgType.TEST_CONN_ACK> = {
      type: MsgType.TEST_CONN_ACK,
      flags: Flags.REPLY,
      auth: { mode: AuthMode.SESSION },
      requestId: d.requestId,
      sessionId: s.sessionId,
      seq: d.seq,
      timestamp: now,
      body: { nonce: d.body.nonce, leases },
      tag: new Uint8Array(TAG_LENGTH),
    };
    return signDatagram(ack, s.hmac);
  }

  /** The server no longer knows the session (restart, failover): use mode 2 with it. */
  forgetServer(server: string): void {
    this.knownBy.delete(server);
  }

  /** Drops the session: the next request is a HELLO (mode 1). */
  dropSession(): void {
    this.current = undefined;
    this.knownBy.clear();
    this.seq = 0;
  }
}
