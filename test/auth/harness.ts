/** Test harness for the auth layer: a minimal daemon around ServerAuth and a client clock. */
import { ReplayWindow } from '../../lib/auth/replay.ts';
import { type AuthDecision, type AuthSession, ServerAuth } from '../../lib/auth/server.ts';
import { signDatagram } from '../../lib/auth/sign.ts';
import { KeyedHmac, randomBytes } from '../../lib/crypto/hmac.ts';
import { Keyring } from '../../lib/crypto/keyring.ts';
import { returnToken, TokenStore } from '../../lib/token/store.ts';
import { makeToken, sessionKeyFor } from '../../lib/token/token.ts';
import {
  type AnyDatagram,
  AuthMode,
  decodeDatagram,
  Flags,
  MsgType,
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

export interface Handled {
  decision: AuthDecision;
  reply?: Uint8Array;
}

/** A daemon's worth of auth state: sessions, a token store, and replies for HELLO and errors. */
export function daemon(
  keyring: Keyring,
  clock: { now: number },
  opts: { maxNonces?: number } = {},
) {
  const sessions = new Map<bigint, AuthSession>();
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
    ...(opts.maxNonces ? { maxNonces: opts.maxNonces } : {}),
  });
  function reply(
    d: AnyDatagram,
    type: MsgType,
    body: unknown,
    key: Parameters<typeof signDatagram>[1],
    sessionId = d.sessionId,
  ) {
    return signDatagram(
      {
        type,
        flags: Flags.REPLY | Flags.FROM_SERVER,
        auth:
          d.auth.mode === AuthMode.CREDENTIAL
            ? { mode: 1, credId: '', nonce: new Uint8Array(16) }
            : d.auth.mode === AuthMode.TOKEN
              ? { mode: 2, token: new Uint8Array(0) }
              : d.auth.mode === AuthMode.ADMIN
                ? { mode: 4, keyId: '' }
                : { mode: 3 },
        requestId: d.requestId,
        sessionId,
        seq: 0,
        timestamp: clock.now,
        body,
        tag: new Uint8Array(TAG_LENGTH),
      } as AnyDatagram,
      key,
    );
  }
  function handle(bytes: Uint8Array, from = CLIENT): Handled {
    const d = decodeDatagram(bytes);
    const decision = auth.authenticate(bytes, d, from);
    if (decision.action === 'drop') return { decision };
    if (decision.action === 'refuse') {
      const body = { code: decision.code, retryAfterMs: decision.retryAfterMs, message: '' };
      return { decision, reply: reply(d, MsgType.ERROR, body, decision.key) };
    }
    if (d.type === MsgType.HELLO && d.auth.mode === AuthMode.CREDENTIAL) {
      const tok = makeToken(
        { addr: from.address, port: from.port, ...d.body, lifetimeS: 3600 },
        keyring,
        clock.now,
      );
      store.storeToken(tok);
      const sk = sessionKeyFor(tok, keyring.current(clock.now));
      const hmac = new KeyedHmac(sk);
      sessions.set(tok.tokenId, {
        hmac,
        window: new ReplayWindow(),
        expires: tok.expires * 1000,
        address: from.address,
        port: from.port,
      });
      const body = returnToken(tok, sk, auth.credentialKey(d.auth.credId)!, d.auth.nonce, 30_000);
      return { decision, reply: reply(d, MsgType.HELLO_OK, body, hmac, tok.tokenId) };
    }
    if (decision.restored && decision.token && decision.window) {
      sessions.set(decision.sessionId, {
        hmac: decision.key,
        window: decision.window,
        expires: decision.token.expires * 1000,
        address: from.address,
        port: from.port,
      });
    }
    const s = sessions.get(decision.sessionId);
    if (decision.moved && s) {
      s.address = from.address;
      s.port = from.port;
    }
    if (d.type === MsgType.TEST_CONN_ACK) return { decision };
    return {
      decision,
      reply: reply(
        d,
        MsgType.PONG,
        { serverVersion: 't', uptimeMs: 0, state: 0, graceLeftMs: 0 },
        decision.key,
      ),
    };
  }
  return { auth, sessions, store, handle };
}
