import t from 'tap';
import { ClientAuth } from '../../lib/auth/client.ts';
import { credentialCovers, ServerAuth, tagId, typeAllowed } from '../../lib/auth/server.ts';
import { signDatagram } from '../../lib/auth/sign.ts';
import { KeyedHmac, randomBytes } from '../../lib/crypto/hmac.ts';
import { type Keyring, keyringFromJSON } from '../../lib/crypto/keyring.ts';
import { getToken } from '../../lib/token/client.ts';
import { makeToken, sessionKeyFor } from '../../lib/token/token.ts';
import {
  type AnyDatagram,
  AuthMode,
  DecodeError,
  ErrorCode,
  Flags,
  MsgType,
  TAG_LENGTH,
} from '../../lib/wire/index.ts';
import { ADMIN, CLIENT, CRED, daemon, head, newKeyring, resign, T0 } from './harness.ts';

const S = 'server-1';
const who = { vendor: 'demo', program: 'cad', version: '2.1', user: 'alice', host: 'ws7' };
const ping = { payload: new Uint8Array(4) };
const checkout = { feature: 'solver', version: '1.0', count: 1, options: 0 };

function setup(opts: Parameters<typeof daemon>[2] = {}) {
  const keyring = newKeyring();
  const clock = { now: T0 + 3_600_000 };
  const server = daemon(keyring, clock, opts);
  const cclock = { now: clock.now };
  const client = new ClientAuth({ credId: 'demo', credKey: CRED, now: () => cclock.now });
  return { keyring, clock, cclock, server, client };
}

/** Setup plus a completed HELLO. */
function withSession(opts: Parameters<typeof daemon>[2] = {}) {
  const x = setup(opts);
  const h = x.client.hello(S, who, 1);
  const r = x.server.handle(h.bytes);
  if (!r.reply || !x.client.acceptHelloOk(r.reply, 1)) throw new Error('HELLO failed');
  return x;
}

function adminClient(x: { cclock: { now: number } }, id = 'admin', key = ADMIN) {
  return new ClientAuth({
    credId: 'demo',
    credKey: CRED,
    admin: { id, key },
    now: () => x.cclock.now,
  });
}

const action = (r: { decision: { action: string } }) => r.decision.action;
const code = (r: { decision: { action: string; code?: number } }) =>
  r.decision.action === 'refuse' ? r.decision.code : r.decision.action;

t.test('mode 1 HELLO is accepted and its HELLO_OK verifies at the client', async (t) => {
  const { server, client } = setup();
  const h = client.hello(S, who, 1);
  const r = server.handle(h.bytes);
  t.equal(action(r), 'accept');
  t.match(r.decision, { mode: AuthMode.CREDENTIAL, credId: 'demo', sessionId: 0n });
  const s = client.acceptHelloOk(r.reply!, 1);
  t.ok(s);
  t.ok(r.reply!.length <= h.bytes.length, 'no amplification');
});

t.test('skew on every mode: ±300 000 ms accepted, ±301 000 refused CLOCK_SKEW', async (t) => {
  const x = withSession();
  for (const [offset, want] of [
    [300_000, 'accept'],
    [-300_000, 'accept'],
    [301_000, ErrorCode.CLOCK_SKEW],
    [-301_000, ErrorCode.CLOCK_SKEW],
  ] as const) {
    x.cclock.now = x.clock.now + offset;
    const m1 = new ClientAuth({ credId: 'demo', credKey: CRED, now: () => x.cclock.now });
    t.equal(code(x.server.handle(m1.hello(S, who, 2).bytes)), want, `mode 1 HELLO, ${offset}`);
    t.equal(
      code(x.server.handle(m1.request(S, MsgType.PING, ping, 2).bytes)),
      want,
      `mode 1 PING, ${offset}`,
    );
    const m3 = x.client.request(S, MsgType.PING, ping, 3);
    t.equal(m3.mode, AuthMode.SESSION);
    t.equal(code(x.server.handle(m3.bytes)), want, `mode 3, ${offset}`);
    x.client.forgetServer(S);
    const m2 = x.client.request(S, MsgType.PING, ping, 4);
    t.equal(m2.mode, AuthMode.TOKEN);
    const r2 = x.server.handle(m2.bytes);
    t.equal(code(r2), want, `mode 2, ${offset}`);
    // Any verified reply to mode 2 (an ERROR too) tells the client the server knows it.
    t.ok(x.client.verifyReply(S, r2.reply!, m2), 'the reply (or ERROR) is signed');
    const a = adminClient(x).request(
      S,
      MsgType.ADMIN,
      { op: 2, feature: '', user: '', host: '', leaseId: 0n },
      6,
    );
    t.equal(code(x.server.handle(a.bytes)), want, `mode 4, ${offset}`);
  }
});

t.test('replays: verified but seen is a replay, never accepted twice', async (t) => {
  const x = withSession();
  const captured: [string, Uint8Array, AuthMode][] = [];
  captured.push([
    'mode 3 CHECKOUT',
    x.client.request(S, MsgType.CHECKOUT, checkout, 11).bytes,
    AuthMode.SESSION,
  ]);
  x.client.forgetServer(S);
  captured.push([
    'mode 2 HEARTBEAT',
    x.client.request(S, MsgType.HEARTBEAT, {}, 12).bytes,
    AuthMode.TOKEN,
  ]);
  const admin = adminClient(x);
  captured.push([
    'mode 4 STATUS',
    admin.request(S, MsgType.STATUS, { page: 0, feature: '' }, 13).bytes,
    AuthMode.ADMIN,
  ]);
  captured.push(['mode 4 PING', admin.request(S, MsgType.PING, ping, 15).bytes, AuthMode.ADMIN]);
  const noSession = new ClientAuth({ credId: 'demo', credKey: CRED, now: () => x.cclock.now });
  captured.push([
    'mode 1 PING',
    noSession.request(S, MsgType.PING, ping, 14).bytes,
    AuthMode.CREDENTIAL,
  ]);
  captured.push([
    'mode 1 STATUS',
    noSession.request(S, MsgType.STATUS, { page: 0, feature: '' }, 16).bytes,
    AuthMode.CREDENTIAL,
  ]);
  for (const [name, b, mode] of captured) {
    t.equal(action(x.server.handle(b)), 'accept', `${name}: first`);
    const again = x.server.handle(b);
    t.match(again.decision, { action: 'replay', mode }, `${name}: replay`);
    t.equal(again.reply, undefined, `${name}: nothing answered afresh`);
    x.clock.now += 250_000;
    t.match(x.server.handle(b).decision, { action: 'replay', mode }, `${name}: replay, later`);
    x.clock.now -= 250_000;
  }
  // HELLO and ADMIN are not nonce-checked here: the daemon's durable idempotency records
  // answer their retransmissions with the first answer.
  const hello = noSession.hello(S, who, 17).bytes;
  t.equal(action(x.server.handle(hello)), 'accept');
  t.equal(action(x.server.handle(hello)), 'accept', 'HELLO again: for the idempotency record');
  const op = admin.request(
    S,
    MsgType.ADMIN,
    { op: 2, feature: '', user: '', host: '', leaseId: 0n },
    18,
  ).bytes;
  t.equal(action(x.server.handle(op)), 'accept');
  t.equal(action(x.server.handle(op)), 'accept', 'ADMIN again: for the idempotency record');
});

t.test('mode 1 and 4 replays are remembered for 2 × skew, then forgotten', async (t) => {
  const x = withSession();
  const m1 = new ClientAuth({ credId: 'demo', credKey: CRED, now: () => x.cclock.now });
  const p = m1.request(S, MsgType.PING, ping, 1).bytes;
  const a = adminClient(x).request(S, MsgType.PING, ping, 2).bytes;
  t.equal(x.server.auth.recentCredential.lifetimeMs, 600_000);
  t.equal(x.server.auth.recentAdmin.lifetimeMs, 600_000);
  for (const b of [p, a]) t.equal(action(x.server.handle(b)), 'accept');
  // At +300 s the timestamps still pass the skew check: the tables must still remember.
  x.clock.now += 300_000;
  for (const b of [p, a]) t.equal(action(x.server.handle(b)), 'replay', 'at the skew edge');
  // Past the skew the skew check refuses them, whatever the tables forgot.
  x.clock.now += 1;
  for (const b of [p, a]) t.equal(code(x.server.handle(b)), ErrorCode.CLOCK_SKEW);
});

t.test('mode 1 PINGs never get BUSY: a flood of distinct nonces is all accepted', async (t) => {
  const x = withSession();
  const m1 = new ClientAuth({ credId: 'demo', credKey: CRED, now: () => x.cclock.now });
  const n = 20_000; // more than the 16384-slot table holds
  let accepted = 0;
  let last: Uint8Array = new Uint8Array(0);
  for (let i = 0; i < n; i++) {
    last = m1.request(S, MsgType.PING, ping, i).bytes;
    if (action(x.server.handle(last)) === 'accept') accepted++;
  }
  t.equal(accepted, n, 'every fresh PING accepted, none refused');
  t.equal(action(x.server.handle(last)), 'replay', 'the newest is still guarded');
});

t.test('every single-bit flip of a datagram is dropped, in every mode', async (t) => {
  const x = withSession();
  const admin = adminClient(x);
  const m1 = new ClientAuth({ credId: 'demo', credKey: CRED, now: () => x.cclock.now });
  const samples: [string, Uint8Array][] = [
    ['mode 3', x.client.request(S, MsgType.CHECKOUT, checkout, 20).bytes],
    ['mode 4', admin.request(S, MsgType.PING, ping, 21).bytes],
    ['mode 1 HELLO', m1.hello(S, who, 22).bytes],
    ['mode 1 PING', m1.request(S, MsgType.PING, ping, 24).bytes],
  ];
  x.client.forgetServer(S);
  samples.push(['mode 2', x.client.request(S, MsgType.CHECKOUT, checkout, 23).bytes]);
  for (const [name, bytes] of samples) {
    let passed = 0;
    let decoded = 0;
    for (let i = 0; i < bytes.length * 8; i++) {
      const b = bytes.slice();
      b[i >> 3]! ^= 1 << (i & 7);
      let h: ReturnType<typeof head>;
      try {
        h = head(b);
      } catch (e) {
        if (!(e instanceof DecodeError)) throw e;
        continue;
      }
      decoded++;
      if (x.server.auth.authenticate(h, CLIENT).action !== 'drop') passed++;
    }
    t.ok(decoded > bytes.length * 4, `${name}: most flips reach authenticate`);
    t.equal(passed, 0, `${name}: every flip dropped`);
    t.equal(
      action(x.server.handle(bytes)),
      'accept',
      `${name}: the original still verifies (no state was touched)`,
    );
  }
});

t.test('the MAC is checked before any state: a forgery burns no seq, nonce or tag', async (t) => {
  const x = withSession();
  const flipLast = (b: Uint8Array) => {
    const f = b.slice();
    f[f.length - 1]! ^= 1;
    return f;
  };
  const good = x.client.request(S, MsgType.PING, ping, 30).bytes;
  t.same(x.server.handle(flipLast(good)).decision, { action: 'drop', reason: 'bad-mac' });
  t.equal(action(x.server.handle(good)), 'accept', 'same seq still fresh');
  // Mode 1: a forgery carrying the genuine nonce does not put it in the table.
  const m1 = new ClientAuth({ credId: 'demo', credKey: CRED, now: () => x.cclock.now });
  const p = m1.request(S, MsgType.PING, ping, 31).bytes;
  t.same(x.server.handle(flipLast(p)).decision, { action: 'drop', reason: 'bad-mac' });
  t.equal(action(x.server.handle(p)), 'accept', 'the nonce is still fresh');
  // Mode 4: a forgery with the genuine tag (body changed) does not put the tag in the table.
  const a = adminClient(x).request(S, MsgType.PING, ping, 32).bytes;
  const af = a.slice();
  af[af.length - TAG_LENGTH - 1]! ^= 1; // last payload byte
  t.same(tagId(af), tagId(a), 'same tag prefix');
  t.same(x.server.handle(af).decision, { action: 'drop', reason: 'bad-mac' });
  t.equal(action(x.server.handle(a)), 'accept', 'the tag is still fresh');
});

t.test('a refusal does not consume the seq (or the nonce)', async (t) => {
  const x = withSession();
  const id = x.client.session!.sessionId;
  const s = x.server.sessions.get(id)!;
  const key = x.client.session!.hmac;
  // CLOCK_SKEW: the same seq, signed again with a skewed timestamp, then the genuine one.
  const hb = x.client.request(S, MsgType.HEARTBEAT, {}, 40);
  const top = s.highest;
  const skewed = resign(hb.bytes, key, x.clock.now + 301_000);
  t.equal(head(skewed).seq, hb.seq);
  t.equal(code(x.server.handle(skewed)), ErrorCode.CLOCK_SKEW);
  t.equal(s.highest, top, 'window unchanged');
  t.equal(action(x.server.handle(hb.bytes)), 'accept', 'the genuine one with that seq');
  t.equal(s.highest, hb.seq, 'the window took it on accept');
  t.equal(action(x.server.handle(hb.bytes)), 'replay');
  // TOKEN_WRONG_HOST: the datagram from another host, then from the session's address.
  const p = x.client.request(S, MsgType.PING, ping, 41);
  t.equal(
    code(x.server.handle(p.bytes, { address: '192.0.2.8', port: CLIENT.port })),
    ErrorCode.TOKEN_WRONG_HOST,
  );
  t.equal(s.highest, hb.seq, 'window unchanged');
  t.equal(action(x.server.handle(p.bytes)), 'accept');
  // WRONG_MODE: an ADMIN signed with the session key (mode 3) with the seq of a genuine PING,
  // then that PING.
  const q = x.client.request(S, MsgType.PING, ping, 42);
  const seq = q.seq;
  const mk = (type: MsgType, body: unknown) =>
    signDatagram(
      {
        type,
        flags: 0,
        auth: { mode: AuthMode.SESSION },
        requestId: 42,
        sessionId: id,
        seq,
        timestamp: x.clock.now,
        body,
        tag: new Uint8Array(TAG_LENGTH),
      } as AnyDatagram,
      key,
    );
  t.equal(
    code(
      x.server.handle(mk(MsgType.ADMIN, { op: 2, feature: '', user: '', host: '', leaseId: 0n })),
    ),
    ErrorCode.WRONG_MODE,
  );
  t.equal(action(x.server.handle(q.bytes)), 'accept', 'seq still fresh');
  // Mode 2 of a known session: skewed copy refused, then the genuine one.
  x.client.forgetServer(S);
  const m2 = x.client.request(S, MsgType.PING, ping, 43);
  t.equal(m2.mode, AuthMode.TOKEN);
  t.equal(
    code(x.server.handle(resign(m2.bytes, key, x.clock.now - 301_000))),
    ErrorCode.CLOCK_SKEW,
  );
  t.equal(action(x.server.handle(m2.bytes)), 'accept');
  t.equal(s.highest, m2.seq);
  // Mode 1: a skew-refused PING does not record its nonce.
  const m1 = new ClientAuth({ credId: 'demo', credKey: CRED, now: () => x.cclock.now });
  const pp = m1.request(S, MsgType.PING, ping, 44).bytes;
  const cred = new KeyedHmac(CRED);
  t.equal(code(x.server.handle(resign(pp, cred, x.clock.now + 301_000))), ErrorCode.CLOCK_SKEW);
  t.equal(action(x.server.handle(pp)), 'accept', 'same nonce, right time');
  t.equal(action(x.server.handle(pp)), 'replay');
  // Mode 3 at the session's expiry: refused, window unchanged.
  const late = x.client.request(S, MsgType.PING, ping, 45);
  const before = s.highest;
  s.expires = x.clock.now;
  t.equal(code(x.server.handle(late.bytes)), ErrorCode.TOKEN_EXPIRED);
  t.equal(s.highest, before, 'window unchanged');
  s.expires = x.clock.now + 1;
  t.equal(action(x.server.handle(late.bytes)), 'accept');
});

t.test('unknown credential, admin key or session: dropped silently', async (t) => {
  const x = withSession();
  const other = new ClientAuth({ credId: 'nobody', credKey: CRED, now: () => x.cclock.now });
  t.same(x.server.handle(other.hello(S, who, 40).bytes).decision, {
    action: 'drop',
    reason: 'unknown-credential',
  });
  t.same(
    x.server.handle(adminClient(x, 'root').request(S, MsgType.PING, ping, 41).bytes).decision,
    {
      action: 'drop',
      reason: 'unknown-admin-key',
    },
  );
  // Mode 3 to a server that never saw the session: nothing to sign an error with.
  const y = setup();
  t.same(y.server.handle(x.client.request(S, MsgType.PING, ping, 42).bytes).decision, {
    action: 'drop',
    reason: 'unknown-session',
  });
  const wrongKey = new ClientAuth({
    credId: 'demo',
    credKey: randomBytes(32),
    now: () => x.cclock.now,
  });
  t.same(x.server.handle(wrongKey.hello(S, who, 43).bytes).decision, {
    action: 'drop',
    reason: 'bad-mac',
  });
  // A reply or server-originated datagram is not a request.
  const pong = x.server.handle(x.client.request(S, MsgType.PING, ping, 44).bytes).reply!;
  t.same(x.server.auth.authenticate(head(pong), CLIENT), {
    action: 'drop',
    reason: 'not-a-request',
  });
});

t.test('a session whose server key is gone is unknown: no fallback key', async (t) => {
  const x = withSession();
  const id = x.client.session!.sessionId;
  const s = x.server.sessions.get(id)!;
  const tc = signDatagram(
    {
      type: MsgType.TEST_CONN,
      flags: Flags.FROM_SERVER,
      auth: { mode: AuthMode.SESSION },
      requestId: 901,
      sessionId: id,
      seq: 1,
      timestamp: x.clock.now,
      body: { nonce: randomBytes(8) },
      tag: new Uint8Array(TAG_LENGTH),
    },
    s.hmac!,
  );
  const ack = x.client.answerTestConn(tc, 0)!;
  const m3 = x.client.request(S, MsgType.PING, ping, 50);
  x.client.forgetServer(S);
  const m2 = x.client.request(S, MsgType.PING, ping, 51);
  // The key is gone: the daemon's Session.hmac is undefined, and the keyring lost it too.
  const top = s.highest;
  s.hmac = undefined;
  x.server.auth.setKeyring(newKeyring());
  const unknown = { action: 'drop', reason: 'unknown-session' };
  t.same(x.server.handle(m3.bytes).decision, unknown, 'mode 3');
  t.same(x.server.handle(ack).decision, unknown, 'TEST_CONN_ACK');
  // Mode 2 cannot reach the session either: its token's key is not in the keyring, so the
  // token itself fails (there is no key to sign an answer with).
  t.same(x.server.handle(m2.bytes).decision, { action: 'drop', reason: 'bad-token' }, 'mode 2');
  t.equal(s.highest, top, 'nothing reached the window');
  // Mode 2 with the keyring still holding the key but the session's hmac undefined: the
  // token's own key is derived, never a fallback.
  const y = withSession();
  const ys = y.server.sessions.get(y.client.session!.sessionId)!;
  const y3 = y.client.request(S, MsgType.PING, ping, 52);
  ys.hmac = undefined;
  t.same(y.server.handle(y3.bytes).decision, unknown, 'mode 3, keyring intact');
  y.client.forgetServer(S);
  const y2 = y.client.request(S, MsgType.PING, ping, 53);
  const r = y.server.handle(y2.bytes);
  t.match(r.decision, { action: 'accept', mode: AuthMode.TOKEN });
  t.ok(y.client.verifyReply(S, r.reply!, y2), 'signed with the key the token derives');
});

t.test(
  'mode 2 on a fresh server with only the keyring restores the session; mode 3 follows',
  async (t) => {
    const x = withSession();
    x.client.request(S, MsgType.CHECKOUT, checkout, 50);
    const fresh = daemon(keyringFromJSON(JSON.parse(JSON.stringify(x.keyring.toJSON()))), x.clock);
    const S2 = 'server-2';
    const m2 = x.client.request(S2, MsgType.HEARTBEAT, {}, 51);
    t.equal(m2.mode, AuthMode.TOKEN, 'the client picks mode 2 for a server that does not know it');
    const r = fresh.handle(m2.bytes);
    t.match(r.decision, { action: 'accept', mode: AuthMode.TOKEN, moved: false });
    if (r.decision.action !== 'accept') throw new Error('not accepted');
    t.equal(r.decision.token?.tokenId, x.client.session!.sessionId, 'the verified token');
    t.equal(r.decision.sessionKey?.length, 32, 'and its session key, to create the session');
    t.ok(fresh.sessions.has(x.client.session!.sessionId));
    t.ok(x.client.verifyReply(S2, r.reply!, m2), 'the reply verifies under the session key');
    const m3 = x.client.request(S2, MsgType.CHECKOUT, checkout, 52);
    t.equal(m3.mode, AuthMode.SESSION);
    const r3 = fresh.handle(m3.bytes);
    t.match(r3.decision, {
      action: 'accept',
      mode: AuthMode.SESSION,
      sessionId: x.client.session!.sessionId,
    });
    t.ok(x.client.verifyReply(S2, r3.reply!, m3));
    t.match(fresh.handle(m3.bytes).decision, { action: 'replay', mode: AuthMode.SESSION });
    t.match(
      fresh.handle(m2.bytes).decision,
      { action: 'replay', mode: AuthMode.TOKEN },
      'mode-2 replay too: the window took its seq when the session was made',
    );
  },
);

t.test(
  'mode 2 token derivation is gated by the budget; the session fast path is not',
  async (t) => {
    const asked: string[] = [];
    let allow = false;
    const x = withSession({
      budget: (address) => {
        asked.push(address);
        return allow;
      },
    });
    x.client.forgetServer(S);
    // The session's own token: its cached key verifies, no derivation, no budget.
    const own = x.client.request(S, MsgType.PING, ping, 60);
    t.equal(own.mode, AuthMode.TOKEN);
    t.equal(action(x.server.handle(own.bytes)), 'accept');
    t.same(asked, [], 'the budget was not asked');
    // A server that does not hold the session: derivation needs the budget.
    const fresh = daemon(x.keyring, x.clock, {
      budget: (address) => {
        asked.push(address);
        return allow;
      },
    });
    const m2 = x.client.request('other', MsgType.PING, ping, 61);
    t.same(fresh.handle(m2.bytes).decision, { action: 'drop', reason: 'over-budget' });
    t.same(asked, [CLIENT.address], 'asked for the source address');
    t.equal(fresh.sessions.size, 0, 'nothing created');
    allow = true;
    t.equal(action(fresh.handle(m2.bytes)), 'accept', 'the same datagram within the budget');
    t.equal(asked.length, 2);
  },
);

t.test('mode 2 token checks: revoked, expired, wrong host, moved port, bad token', async (t) => {
  const x = withSession();
  const id = x.client.session!.sessionId;
  x.client.forgetServer(S);
  t.match(
    x.server.handle(x.client.request(S, MsgType.PING, ping, 60).bytes, {
      address: CLIENT.address,
      port: 5,
    }).decision,
    {
      action: 'accept',
      moved: true,
    },
  );
  t.equal(x.server.sessions.get(id)!.port, 5, 'the session address moved after the MAC verified');
  x.client.forgetServer(S);
  t.equal(
    code(
      x.server.handle(x.client.request(S, MsgType.PING, ping, 61).bytes, {
        address: '192.0.2.99',
        port: 5,
      }),
    ),
    ErrorCode.TOKEN_WRONG_HOST,
  );
  x.server.store.invalidateToken(id);
  t.ok(x.server.sessions.has(id), 'still a live session in the daemon');
  t.equal(
    code(x.server.handle(x.client.request(S, MsgType.PING, ping, 62).bytes)),
    ErrorCode.TOKEN_REVOKED,
  );
  // The same on a server that does not hold the session (the unknown-session path).
  const w = withSession();
  w.client.forgetServer(S);
  const wf = daemon(w.keyring, w.clock);
  t.equal(
    code(
      wf.handle(w.client.request(S, MsgType.PING, ping, 65).bytes, {
        address: '192.0.2.99',
        port: 5,
      }),
    ),
    ErrorCode.TOKEN_WRONG_HOST,
  );
  wf.store.invalidateToken(w.client.session!.sessionId, w.client.session!.expires / 1000);
  t.equal(
    code(wf.handle(w.client.request(S, MsgType.PING, ping, 66).bytes)),
    ErrorCode.TOKEN_REVOKED,
  );
  t.equal(wf.sessions.size, 0, 'no session made by a refusal');
  // Expired: a fresh server, at the token's expiry.
  const y = withSession();
  y.client.forgetServer(S);
  y.clock.now = y.client.session!.expires;
  y.cclock.now = y.clock.now - 1;
  const fresh = daemon(y.keyring, y.clock);
  t.equal(
    code(fresh.handle(y.client.request(S, MsgType.PING, ping, 63).bytes)),
    ErrorCode.TOKEN_EXPIRED,
  );
  // A token under a key this keyring never had: no session key, so nothing to answer with.
  const z = withSession();
  const other = daemon(newKeyring(), z.clock);
  z.client.forgetServer(S);
  t.same(other.handle(z.client.request(S, MsgType.PING, ping, 64).bytes).decision, {
    action: 'drop',
    reason: 'bad-token',
  });
});

t.test(
  'mode 2 refusals on the unknown-session path leave the seq for the genuine one',
  async (t) => {
    const x = withSession();
    x.client.forgetServer(S);
    const fresh = daemon(x.keyring, x.clock);
    const m2 = x.client.request(S, MsgType.PING, ping, 70);
    const key = x.client.session!.hmac;
    t.equal(code(fresh.handle(resign(m2.bytes, key, x.clock.now + 301_000))), ErrorCode.CLOCK_SKEW);
    t.equal(
      code(fresh.handle(m2.bytes, { address: '192.0.2.99', port: 1 })),
      ErrorCode.TOKEN_WRONG_HOST,
    );
    t.equal(fresh.sessions.size, 0);
    t.equal(action(fresh.handle(m2.bytes)), 'accept', 'the genuine one with that seq');
    t.equal(fresh.sessions.get(x.client.session!.sessionId)!.highest, m2.seq);
  },
);

t.test('mode 2 with a token of another session id in the header is refused', async (t) => {
  const x = withSession();
  const tok = makeToken(
    { ...who, addr: CLIENT.address, port: CLIENT.port, lifetimeS: 60 },
    x.keyring,
    x.clock.now,
  );
  const key = sessionKeyFor(tok, x.keyring.current(x.clock.now));
  const d = {
    type: MsgType.PING,
    flags: 0,
    auth: { mode: AuthMode.TOKEN, token: tok.bytes },
    requestId: 1,
    sessionId: tok.tokenId + 1n,
    seq: 1,
    timestamp: x.clock.now,
    body: ping,
    tag: new Uint8Array(TAG_LENGTH),
  } as AnyDatagram;
  t.equal(code(x.server.handle(signDatagram(d, key))), ErrorCode.BAD_REQUEST);
});

t.test(
  'mode 3: other host refused, new port accepted and moves the session, expiry refused',
  async (t) => {
    const x = withSession();
    const id = x.client.session!.sessionId;
    t.equal(
      code(
        x.server.handle(x.client.request(S, MsgType.PING, ping, 70).bytes, {
          address: '198.51.100.1',
          port: CLIENT.port,
        }),
      ),
      ErrorCode.TOKEN_WRONG_HOST,
    );
    t.match(
      x.server.handle(x.client.request(S, MsgType.PING, ping, 71).bytes, {
        address: `::ffff:${CLIENT.address}`,
        port: 7,
      }).decision,
      {
        action: 'accept',
        moved: true,
      },
    );
    t.equal(x.server.sessions.get(id)!.port, 7);
    t.match(
      x.server.handle(x.client.request(S, MsgType.PING, ping, 74).bytes, {
        address: `::ffff:${CLIENT.address}`,
        port: 7,
      }).decision,
      { action: 'accept', moved: false },
      'from where it moved to: not moved again',
    );
    const exp = x.server.sessions.get(id)!.expires;
    x.clock.now = exp - 1;
    x.cclock.now = x.clock.now;
    const from = { address: `::ffff:${CLIENT.address}`, port: 7 };
    t.equal(
      action(x.server.handle(x.client.request(S, MsgType.PING, ping, 72).bytes, from)),
      'accept',
    );
    x.clock.now = exp;
    t.equal(
      code(x.server.handle(x.client.request(S, MsgType.PING, ping, 73).bytes, from)),
      ErrorCode.TOKEN_EXPIRED,
    );
  },
);

t.test(
  'wrong mode and padding are refused, signed; credential scope is the daemon’s',
  async (t) => {
    const x = withSession();
    // A CHECKOUT signed with the credential key (mode 1) is not allowed.
    const nonce = randomBytes(16);
    const co = {
      type: MsgType.CHECKOUT,
      flags: 0,
      auth: { mode: AuthMode.CREDENTIAL, credId: 'demo', nonce },
      requestId: 80,
      sessionId: 0n,
      seq: 0,
      timestamp: x.clock.now,
      body: checkout,
      tag: new Uint8Array(TAG_LENGTH),
    } as AnyDatagram;
    const r = x.server.handle(signDatagram(co, CRED));
    t.equal(code(r), ErrorCode.WRONG_MODE);
    t.match(r.decision, { mode: AuthMode.CREDENTIAL });
    t.ok(
      new KeyedHmac(CRED).verifyTrailing(r.reply!),
      'the ERROR is signed with the credential key',
    );
    // An unpadded HELLO.
    const { datagram } = getToken({ ...who, credId: 'demo', requestId: 81, now: x.clock.now });
    datagram.body.padding = new Uint8Array(0);
    t.equal(code(x.server.handle(signDatagram(datagram, CRED))), ErrorCode.NEED_PADDING);
    // 'demo/bob' may only ask for bob, but auth does not know the body: it accepts the HELLO,
    // and the daemon's HELLO handler (here the harness) refuses it NOT_PERMITTED.
    const bob = new ClientAuth({ credId: 'demo/bob', credKey: CRED, now: () => x.cclock.now });
    const notBob = x.server.handle(bob.hello(S, who, 82).bytes);
    t.match(notBob.decision, { action: 'accept', mode: AuthMode.CREDENTIAL, credId: 'demo/bob' });
    t.equal(x.server.sessions.size, 1, 'the handler made no session');
    const err = bob.verifyReply(S, notBob.reply!, {
      bytes: new Uint8Array(0),
      mode: AuthMode.CREDENTIAL,
      requestId: 82,
      seq: 0,
    });
    t.match(err, { type: MsgType.ERROR, body: { code: ErrorCode.NOT_PERMITTED } });
    t.equal(action(x.server.handle(bob.hello(S, { ...who, user: 'bob' }, 83).bytes)), 'accept');
    t.equal(x.server.sessions.size, 2, 'bob got a session');
    t.equal(
      code(
        x.server.handle(
          adminClient(x).request(
            S,
            MsgType.ADMIN,
            { op: 1, feature: 'f', user: '', host: '', leaseId: 0n },
            84,
          ).bytes,
        ),
      ),
      'accept',
    );
  },
);

t.test('TEST_CONN_ACK from the client is accepted under the session key', async (t) => {
  const x = withSession();
  const s = x.client.session!;
  const tcFor = (seq: number) =>
    signDatagram(
      {
        type: MsgType.TEST_CONN,
        flags: Flags.FROM_SERVER,
        auth: { mode: AuthMode.SESSION },
        requestId: 900 + seq,
        sessionId: s.sessionId,
        seq,
        timestamp: x.clock.now,
        body: { nonce: randomBytes(8) },
        tag: new Uint8Array(TAG_LENGTH),
      },
      x.server.sessions.get(s.sessionId)!.hmac!,
    );
  const ack = x.client.answerTestConn(tcFor(1), 1)!;
  t.ok(ack);
  t.match(x.server.handle(ack).decision, {
    action: 'accept',
    mode: AuthMode.SESSION,
    sessionId: s.sessionId,
    moved: false,
  });
  t.match(
    x.server.handle(ack, { address: CLIENT.address, port: 9 }).decision,
    { action: 'accept', moved: true },
    'same IP, other port: moved',
  );
  const bad = ack.slice();
  bad[10]! ^= 1;
  t.equal(action(x.server.handle(bad)), 'drop');
  // Never answered, so every refusal is a silent drop.
  t.same(x.server.handle(ack, { address: '192.0.2.99', port: 9 }).decision, {
    action: 'drop',
    reason: 'not-a-request',
  });
  const skewed = resign(ack, s.hmac, x.clock.now + 301_000);
  t.same(
    x.server.handle(skewed).decision,
    { action: 'drop', reason: 'not-a-request' },
    'skewed: dropped, not refused',
  );
  t.equal(action(x.server.handle(ack)), 'accept', 'no window: the caller matches the nonce');
});

t.test('constructor and helpers', async (t) => {
  const k = newKeyring();
  const base = {
    keyring: k,
    credentials: new Map(),
    admin: new Map(),
    sessions: { getSession: () => undefined },
    revoked: { isRevoked: () => false },
    now: () => 0,
  };
  t.ok(new ServerAuth(base));
  t.throws(
    () => new ServerAuth({ ...base, now: undefined as unknown as () => number }),
    /opts\.now/,
  );
  t.throws(() => new ServerAuth({ ...base, skewMs: -1 }), RangeError);
  t.throws(() => new ServerAuth({ ...base, keyring: undefined as unknown as Keyring }), TypeError);
  t.throws(() => new ServerAuth({ ...base, sessions: {} as never }), /opts\.sessions/);
  t.throws(() => new ServerAuth({ ...base, revoked: {} as never }), /opts\.revoked/);
  t.throws(() => new ServerAuth(base).setKeyring({} as Keyring), TypeError);
  t.equal(new ServerAuth({ ...base, skewMs: 1000 }).recentCredential.lifetimeMs, 2000);
  t.ok(credentialCovers('demo', 'demo', 'x'));
  t.notOk(credentialCovers('demo', 'other', 'x'));
  t.ok(credentialCovers('demo/x', 'demo', 'x'));
  t.notOk(credentialCovers('demo/x', 'demo', 'y'));
  t.notOk(credentialCovers('demo/x', 'other', 'x'));
  t.ok(typeAllowed(AuthMode.CREDENTIAL, MsgType.HELLO));
  t.notOk(typeAllowed(AuthMode.CREDENTIAL, MsgType.CHECKOUT));
  t.notOk(typeAllowed(AuthMode.SESSION, MsgType.HELLO));
  t.notOk(typeAllowed(AuthMode.ADMIN, MsgType.CHECKOUT));
  const b = new Uint8Array(100).map((_, i) => i);
  t.same(tagId(b), b.subarray(100 - TAG_LENGTH, 100 - TAG_LENGTH / 2), 'first half of the tag');
});
