import t from 'tap';
import { ClientAuth } from '../../lib/auth/client.ts';
import { credentialCovers, ServerAuth, typeAllowed } from '../../lib/auth/server.ts';
import { signDatagram } from '../../lib/auth/sign.ts';
import { randomBytes } from '../../lib/crypto/hmac.ts';
import { keyringFromJSON } from '../../lib/crypto/keyring.ts';
import { getToken } from '../../lib/token/client.ts';
import { makeToken } from '../../lib/token/token.ts';
import {
  type AnyDatagram,
  AuthMode,
  DecodeError,
  decodeDatagram,
  ErrorCode,
  MsgType,
  TAG_LENGTH,
} from '../../lib/wire/index.ts';
import { ADMIN, CLIENT, CRED, daemon, newKeyring, T0 } from './harness.ts';

const S = 'server-1';
const who = { vendor: 'demo', program: 'cad', version: '2.1', user: 'alice', host: 'ws7' };
const ping = { payload: new Uint8Array(4) };
const checkout = { feature: 'solver', version: '1.0', count: 1, options: 0 };

function setup() {
  const keyring = newKeyring();
  const clock = { now: T0 + 3_600_000 };
  const server = daemon(keyring, clock);
  const cclock = { now: clock.now };
  const client = new ClientAuth({ credId: 'demo', credKey: CRED, now: () => cclock.now });
  return { keyring, clock, cclock, server, client };
}

/** Setup plus a completed HELLO. */
function withSession() {
  const x = setup();
  const h = x.client.hello(S, who, 1);
  const r = x.server.handle(h.bytes);
  if (!r.reply || !x.client.acceptHelloOk(r.reply, 1)) throw new Error('HELLO failed');
  return x;
}

const action = (r: { decision: { action: string } }) => r.decision.action;
const code = (r: { decision: { action: string; code?: number } }) =>
  r.decision.action === 'refuse' ? r.decision.code : r.decision.action;

t.test('mode 1 HELLO is accepted and its HELLO_OK verifies at the client', async (t) => {
  const { server, client } = setup();
  const h = client.hello(S, who, 1);
  const r = server.handle(h.bytes);
  t.equal(action(r), 'accept');
  t.match(r.decision, { mode: AuthMode.CREDENTIAL, credId: 'demo' });
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
    t.equal(code(x.server.handle(m1.hello(S, who, 2).bytes)), want, `mode 1, ${offset}`);
    t.equal(
      code(x.server.handle(x.client.request(S, MsgType.PING, ping, 3).bytes)),
      want,
      `mode 3, ${offset}`,
    );
    x.client.forgetServer(S);
    const m2 = x.client.request(S, MsgType.PING, ping, 4);
    t.equal(m2.mode, AuthMode.TOKEN);
    t.equal(code(x.server.handle(m2.bytes)), want, `mode 2, ${offset}`);
    x.client.verifyReply(
      S,
      x.server.handle(x.client.request(S, MsgType.PING, ping, 5).bytes).reply!,
      m2,
    );
    const admin = new ClientAuth({
      credId: 'demo',
      credKey: CRED,
      admin: { id: 'admin', key: ADMIN },
      now: () => x.cclock.now,
    });
    const a = admin.request(
      S,
      MsgType.ADMIN,
      { op: 2, feature: '', user: '', host: '', leaseId: 0n },
      6,
    );
    t.equal(code(x.server.handle(a.bytes)), want, `mode 4, ${offset}`);
  }
});

t.test('each captured datagram replayed is dropped', async (t) => {
  const x = withSession();
  const captured: Uint8Array[] = [];
  const fresh = new ClientAuth({ credId: 'demo', credKey: CRED, now: () => x.cclock.now });
  captured.push(fresh.hello(S, who, 10).bytes);
  captured.push(x.client.request(S, MsgType.CHECKOUT, checkout, 11).bytes);
  x.client.forgetServer(S);
  captured.push(x.client.request(S, MsgType.HEARTBEAT, {}, 12).bytes);
  const admin = new ClientAuth({
    credId: 'demo',
    credKey: CRED,
    admin: { id: 'admin', key: ADMIN },
    now: () => x.cclock.now,
  });
  captured.push(admin.request(S, MsgType.STATUS, { page: 0, feature: '' }, 13).bytes);
  const noSession = new ClientAuth({ credId: 'demo', credKey: CRED, now: () => x.cclock.now });
  captured.push(noSession.request(S, MsgType.PING, ping, 14).bytes);
  for (const [i, b] of captured.entries()) {
    t.equal(action(x.server.handle(b)), 'accept', `first ${i}`);
    const again = x.server.handle(b);
    t.same(again.decision, { action: 'drop', reason: 'replay' }, `replay ${i}`);
    x.clock.now += 250_000;
    t.same(x.server.handle(b).decision, { action: 'drop', reason: 'replay' }, `replay ${i}, later`);
    x.clock.now -= 250_000;
  }
});

t.test('every single-bit flip of a datagram is refused, in every mode', async (t) => {
  const x = withSession();
  const admin = new ClientAuth({
    credId: 'demo',
    credKey: CRED,
    admin: { id: 'admin', key: ADMIN },
    now: () => x.cclock.now,
  });
  const samples: [string, Uint8Array][] = [
    ['mode 3', x.client.request(S, MsgType.CHECKOUT, checkout, 20).bytes],
    ['mode 4', admin.request(S, MsgType.PING, ping, 21).bytes],
    [
      'mode 1',
      new ClientAuth({ credId: 'demo', credKey: CRED, now: () => x.cclock.now }).hello(S, who, 22)
        .bytes,
    ],
  ];
  x.client.forgetServer(S);
  samples.push(['mode 2', x.client.request(S, MsgType.CHECKOUT, checkout, 23).bytes]);
  for (const [name, bytes] of samples) {
    let accepted = 0;
    for (let i = 0; i < bytes.length * 8; i++) {
      const b = bytes.slice();
      b[i >> 3]! ^= 1 << (i & 7);
      let d: AnyDatagram;
      try {
        d = decodeDatagram(b);
      } catch (e) {
        if (!(e instanceof DecodeError)) throw e;
        continue;
      }
      const r = x.server.auth.authenticate(b, d, CLIENT);
      if (r.action !== 'drop') accepted++;
    }
    t.equal(accepted, 0, `${name}: every flip dropped`);
    t.equal(
      action(x.server.handle(bytes)),
      'accept',
      `${name}: the original still verifies (no state was touched)`,
    );
  }
});

t.test(
  'the MAC is checked before any state: a forged datagram touches no cache or window',
  async (t) => {
    const x = withSession();
    const good = x.client.request(S, MsgType.PING, ping, 30).bytes;
    const forged = good.slice();
    forged[forged.length - 1]! ^= 1;
    const before = x.server.auth.nonces.size;
    t.same(x.server.handle(forged).decision, { action: 'drop', reason: 'bad-mac' });
    t.equal(action(x.server.handle(good)), 'accept', 'same seq still fresh');
    const h = new ClientAuth({ credId: 'demo', credKey: CRED, now: () => x.cclock.now }).hello(
      S,
      who,
      31,
    ).bytes;
    const hf = h.slice();
    hf[40]! ^= 1; // inside the nonce
    t.equal(action(x.server.handle(hf)), 'drop');
    t.equal(x.server.auth.nonces.size, before, 'nonce cache untouched');
  },
);

t.test('unknown credential, admin key or session: dropped silently', async (t) => {
  const x = withSession();
  const other = new ClientAuth({ credId: 'nobody', credKey: CRED, now: () => x.cclock.now });
  t.same(x.server.handle(other.hello(S, who, 40).bytes).decision, {
    action: 'drop',
    reason: 'unknown-credential',
  });
  const adm = new ClientAuth({
    credId: 'demo',
    credKey: CRED,
    admin: { id: 'root', key: ADMIN },
    now: () => x.cclock.now,
  });
  t.same(x.server.handle(adm.request(S, MsgType.PING, ping, 41).bytes).decision, {
    action: 'drop',
    reason: 'unknown-admin-key',
  });
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
    t.match(r.decision, { action: 'accept', mode: AuthMode.TOKEN, restored: true, moved: false });
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
    t.same(fresh.handle(m3.bytes).decision, { action: 'drop', reason: 'replay' });
    t.same(
      fresh.handle(m2.bytes).decision,
      { action: 'drop', reason: 'replay' },
      'mode-2 replay too',
    );
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

t.test('mode 2 with a token of another session id in the header is refused', async (t) => {
  const x = withSession();
  const tok = makeToken(
    { ...who, addr: CLIENT.address, port: CLIENT.port, lifetimeS: 60 },
    x.keyring,
    x.clock.now,
  );
  const { sessionKeyFor } = await import('../../lib/token/token.ts');
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
    const exp = x.server.sessions.get(id)!.expires;
    x.clock.now = exp - 1;
    x.cclock.now = x.clock.now;
    t.equal(action(x.server.handle(x.client.request(S, MsgType.PING, ping, 72).bytes)), 'accept');
    x.clock.now = exp;
    t.equal(
      code(x.server.handle(x.client.request(S, MsgType.PING, ping, 73).bytes)),
      ErrorCode.TOKEN_EXPIRED,
    );
  },
);

t.test(
  'wrong mode, padding, credential scope and a full nonce cache are refused, signed',
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
    t.ok(
      new ClientAuth({ credId: 'demo', credKey: CRED, now: () => x.cclock.now }),
      'client exists',
    );
    // An unpadded HELLO.
    const { datagram } = getToken({ ...who, credId: 'demo', requestId: 81, now: x.clock.now });
    datagram.body.padding = new Uint8Array(0);
    t.equal(code(x.server.handle(signDatagram(datagram, CRED))), ErrorCode.NEED_PADDING);
    // 'demo/bob' may only ask for bob.
    const bob = new ClientAuth({ credId: 'demo/bob', credKey: CRED, now: () => x.cclock.now });
    t.equal(code(x.server.handle(bob.hello(S, who, 82).bytes)), ErrorCode.NOT_PERMITTED);
    t.equal(action(x.server.handle(bob.hello(S, { ...who, user: 'bob' }, 83).bytes)), 'accept');
    const admin = new ClientAuth({
      credId: 'demo',
      credKey: CRED,
      admin: { id: 'admin', key: ADMIN },
      now: () => x.cclock.now,
    });
    t.equal(
      code(
        x.server.handle(
          admin.request(
            S,
            MsgType.ADMIN,
            { op: 1, feature: 'f', user: '', host: '', leaseId: 0n },
            84,
          ).bytes,
        ),
      ),
      'accept',
    );
    // Full nonce cache: BUSY with a retry time, signed with the credential key.
    const small = daemon(x.keyring, x.clock, { maxNonces: 1 });
    const c = new ClientAuth({ credId: 'demo', credKey: CRED, now: () => x.cclock.now });
    t.equal(action(small.handle(c.hello(S, who, 85).bytes)), 'accept');
    const busy = small.handle(c.hello(S, who, 86).bytes);
    t.match(busy.decision, { action: 'refuse', code: ErrorCode.BUSY, retryAfterMs: 1000 });
  },
);

t.test('TEST_CONN_ACK from the client is accepted under the session key', async (t) => {
  const x = withSession();
  const s = x.client.session!;
  const tc = signDatagram(
    {
      type: MsgType.TEST_CONN,
      flags: 2,
      auth: { mode: AuthMode.SESSION },
      requestId: 900,
      sessionId: s.sessionId,
      seq: 1,
      timestamp: x.clock.now,
      body: { nonce: randomBytes(8) },
      tag: new Uint8Array(TAG_LENGTH),
    },
    x.server.sessions.get(s.sessionId)!.hmac,
  );
  const ack = x.client.answerTestConn(tc, 1)!;
  t.ok(ack);
  t.match(x.server.handle(ack).decision, {
    action: 'accept',
    mode: AuthMode.SESSION,
    sessionId: s.sessionId,
  });
  const bad = ack.slice();
  bad[10]! ^= 1;
  t.equal(action(x.server.handle(bad)), 'drop');
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
  t.throws(() => new ServerAuth({ ...base, windowSize: 100 }), RangeError);
  t.ok(credentialCovers('demo', 'demo', 'x'));
  t.notOk(credentialCovers('demo', 'other', 'x'));
  t.ok(credentialCovers('demo/x', 'demo', 'x'));
  t.notOk(credentialCovers('demo/x', 'demo', 'y'));
  t.ok(typeAllowed(AuthMode.CREDENTIAL, MsgType.HELLO));
  t.notOk(typeAllowed(AuthMode.SESSION, MsgType.HELLO));
  t.notOk(typeAllowed(AuthMode.ADMIN, MsgType.CHECKOUT));
});

t.test('acceptsAtOnce: true exactly when authenticate accepts from the same address', async (t) => {
  const x = withSession();
  const [id, s] = [...x.server.sessions][0]!;
  const quick = (bytes: Uint8Array, from = CLIENT) => {
    const d = decodeDatagram(bytes);
    return x.server.auth.acceptsAtOnce(s, bytes, d.type, d.seq, d.timestamp, from);
  };
  const hb = x.client.request(S, MsgType.HEARTBEAT, {}, 10);
  t.equal(decodeDatagram(hb.bytes).sessionId, id);
  const top = s.window.highest;
  t.ok(quick(hb.bytes), 'a fresh heartbeat from the session address');
  t.equal(s.window.highest, hb.seq, 'the window took its seq');
  t.notOk(quick(hb.bytes), 'the same seq again: a replay');
  t.ok(top < hb.seq);

  // Each refusal leaves the window as it was, and authenticate does not accept either.
  const unchanged = (bytes: Uint8Array, why: string, from = CLIENT) => {
    const before = s.window.highest;
    t.notOk(quick(bytes, from), why);
    t.equal(s.window.highest, before, `${why}: window unchanged`);
    t.not(action(x.server.handle(bytes, from)), 'accept', `${why}: authenticate refuses too`);
  };
  const forged = new Uint8Array(x.client.request(S, MsgType.HEARTBEAT, {}, 11).bytes);
  forged[40]! ^= 1;
  unchanged(forged, 'bad tag');
  x.cclock.now = x.clock.now + 301_000;
  unchanged(x.client.request(S, MsgType.HEARTBEAT, {}, 12).bytes, 'skew 301 s');
  x.cclock.now = x.clock.now + 300_000;
  t.ok(quick(x.client.request(S, MsgType.HEARTBEAT, {}, 13).bytes), 'skew 300 s: accepted');
  x.cclock.now = x.clock.now;
  const elsewhere = x.client.request(S, MsgType.HEARTBEAT, {}, 14).bytes;
  t.notOk(quick(elsewhere, { address: CLIENT.address, port: CLIENT.port + 1 }), 'another port');
  t.notOk(quick(elsewhere, { address: '192.0.2.8', port: CLIENT.port }), 'another host');
  t.ok(quick(elsewhere), 'the same datagram from the session address: nothing was used up');
  const expiresSoon = { ...s, expires: x.clock.now };
  const late = x.client.request(S, MsgType.HEARTBEAT, {}, 15).bytes;
  const dl = decodeDatagram(late);
  t.notOk(
    x.server.auth.acceptsAtOnce(expiresSoon, late, dl.type, dl.seq, dl.timestamp, CLIENT),
    'at the expiry instant',
  );
  t.notOk(
    x.server.auth.acceptsAtOnce(s, late, MsgType.HELLO, dl.seq, dl.timestamp, CLIENT),
    'a type mode 3 does not allow',
  );
  t.ok(quick(late), 'then accepted as it is');
});
