/** Test harness for the auth layer: a minimal daemon around ServerAuth and a client clock. */
import { WindowSlab } from '../../lib/auth/replay.ts';
import {
  type AuthDecision,
  type AuthSession,
  credentialCovers,
  ServerAuth,
} from '../../lib/auth/server.ts';
import { signDatagram } from '../../lib/auth/sign.ts';
import { KeyedHmac, randomBytes } from '../../lib/crypto/hmac.ts';
import { Keyring } from '../../lib/crypto/keyring.ts';
import { returnToken, TokenStore } from '../../lib/token/store.ts';
import { makeToken, sessionKeyFor } from '../../lib/token/token.ts';
import {
  type AnyDatagram,
  AuthMode,
  cursor,
  DecodeError,
  decodeBody,
  decodeHead,
  ErrorCode,
  Flags,
  type Head,
  MsgType,
  Offset,
  TAG_LENGTH,
} from '../../lib/wire/index.ts';

export const T0 = Date.parse('2030-01-01T00:00:00Z');
export const CRED = randomBytes(32);
export const ADMIN = randomBytes(32);
export const CLIENT = { address: '192.0.2.7', port: 40001 };

export function newKeyring(): Keyring {
  return new Keyring({
    period: 86_400,
    grace: 172_800,
    secrets: [{ id: 1, secret: randomBytes(32), activates: T0 }],
  });
}

/**
 * The daemon's session record as ServerAuth sees it, with its window in a shared WindowSlab
 * (as lib/server/session.ts keeps it). `hmac` and the address are writable: the harness
 * moves sessions, and a test can make the server key of one gone.
 */
export class TestSession implements AuthSession {
  hmac: KeyedHmac | undefined;
  expires: number;
  address: string;
  port: number;
  readonly #slab: WindowSlab;
  readonly #slot: number;
  readonly #token: Uint8Array;

  constructor(
    slab: WindowSlab,
    f: { hmac: KeyedHmac; token: Uint8Array; expires: number; address: string; port: number },
  ) {
    this.#slab = slab;
    this.#slot = slab.alloc();
    this.hmac = f.hmac;
    this.#token = f.token.slice();
    this.expires = f.expires;
    this.address = f.address;
    this.port = f.port;
  }

  checkSeq(seq: number): boolean {
    return this.#slab.check(this.#slot, seq);
  }

  acceptSeq(seq: number): void {
    this.#slab.update(this.#slot, seq);
  }

  tokenIs(bytes: Uint8Array): boolean {
    return bytes.length === this.#token.length && bytes.every((b, i) => b === this.#token[i]);
  }

  /** Highest seq the window took (-1 when none). */
  get highest(): number {
    return this.#slab.highest(this.#slot);
  }
}

export interface Handled {
  decision: AuthDecision;
  reply?: Uint8Array;
}

/** Decodes the head of a datagram the way the daemon's pipeline does. */
export function head(bytes: Uint8Array): Head {
  return decodeHead(cursor(bytes));
}

/** `bytes` with its timestamp changed and signed again with `key` (same seq, nonce, body). */
export function resign(bytes: Uint8Array, key: KeyedHmac, timestamp: number): Uint8Array {
  const b = bytes.slice();
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  v.setUint32(Offset.TIMESTAMP, Math.floor(timestamp / 0x1_0000_0000));
  v.setUint32(Offset.TIMESTAMP + 4, timestamp >>> 0);
  key.signTrailing(b);
  return b;
}

/** A daemon's worth of auth state: sessions, a token store, and replies for HELLO and errors. */
export function daemon(
  keyring: Keyring,
  clock: { now: number },
  opts: { budget?: (address: string) => boolean } = {},
) {
  const sessions = new Map<bigint, TestSession>();
  const slab = new WindowSlab(4);
  const store = new TokenStore();
  const auth = new ServerAuth({
    keyring,
    credentials: new Map([
      ['demo', CRED],
      ['demo/bob', CRED],
    ]),
    admin: new Map([['admin', ADMIN]]),
    sessions: { getSession: (id) => sessions.get(id) },
    revoked: store,
    now: () => clock.now,
    ...(opts.budget ? { budget: opts.budget } : {}),
  });
  function reply(h: Head, type: MsgType, body: unknown, key: KeyedHmac, sessionId = h.sessionId) {
    const mode = h.auth.mode;
    return signDatagram(
      {
        type,
        flags: Flags.REPLY | Flags.FROM_SERVER,
        auth:
          mode === AuthMode.CREDENTIAL
            ? { mode: 1, credId: '', nonce: new Uint8Array(16) }
            : mode === AuthMode.TOKEN
              ? { mode: 2, token: new Uint8Array(0) }
              : mode === AuthMode.ADMIN
                ? { mode: 4, keyId: '' }
                : { mode: 3 },
        requestId: h.requestId,
        sessionId,
        seq: 0,
        timestamp: clock.now,
        body,
        tag: new Uint8Array(TAG_LENGTH),
      } as AnyDatagram,
      key,
    );
  }
  const error = (h: Head, code: ErrorCode, key: KeyedHmac, retryAfterMs = 0) =>
    reply(h, MsgType.ERROR, { code, retryAfterMs, message: '' }, key);
  /** One datagram through auth and, when accepted, the minimal handling a daemon does. */
  function handle(bytes: Uint8Array, from = CLIENT): Handled {
    const h = head(bytes);
    const decision = auth.authenticate(h, from);
    if (decision.action === 'drop' || decision.action === 'replay') return { decision };
    if (decision.action === 'refuse') {
      return { decision, reply: error(h, decision.code, decision.key, decision.retryAfterMs) };
    }
    if (h.type === MsgType.HELLO && h.auth.mode === AuthMode.CREDENTIAL) {
      const body = decodeBody(h as Head & { type: typeof MsgType.HELLO });
      // The daemon's HELLO handler, not auth, refuses a credential that does not cover the user.
      if (!credentialCovers(h.auth.credId, body.vendor, body.user)) {
        return { decision, reply: error(h, ErrorCode.NOT_PERMITTED, decision.key) };
      }
      const tok = makeToken(
        { addr: from.address, port: from.port, ...body, lifetimeS: 3600 },
        keyring,
        clock.now,
      );
      store.storeToken(tok);
      const sk = sessionKeyFor(tok, keyring.current(clock.now));
      const hmac = new KeyedHmac(sk);
      sessions.set(
        tok.tokenId,
        new TestSession(slab, {
          hmac,
          token: tok.bytes,
          expires: tok.expires * 1000,
          address: from.address,
          port: from.port,
        }),
      );
      const ok = returnToken(tok, sk, auth.credentialKey(h.auth.credId)!, h.auth.nonce, 30_000);
      return { decision, reply: reply(h, MsgType.HELLO_OK, ok, hmac, tok.tokenId) };
    }
    if (decision.token && decision.sessionKey && !sessions.has(decision.sessionId)) {
      // Mode 2 from a session this daemon does not hold: create it and take the seq.
      const s = new TestSession(slab, {
        hmac: new KeyedHmac(decision.sessionKey),
        token: decision.token.bytes,
        expires: decision.token.expires * 1000,
        address: from.address,
        port: from.port,
      });
      s.acceptSeq(h.seq);
      sessions.set(decision.sessionId, s);
    }
    const s = sessions.get(decision.sessionId);
    if (decision.moved && s) {
      s.address = from.address;
      s.port = from.port;
    }
    if (h.type === MsgType.TEST_CONN_ACK) return { decision };
    try {
      decodeBody(h);
    } catch (e) {
      if (!(e instanceof DecodeError)) throw e;
      return { decision };
    }
    return {
      decision,
      reply: reply(
        h,
        MsgType.PONG,
        { serverVersion: 't', uptimeMs: 0, state: 0, graceLeftMs: 0 },
        decision.key,
      ),
    };
  }
  return { auth, sessions, store, slab, handle };
}
