import t from 'tap';
import {
  ClientAuth,
  sessionKeyFor,
  unwrapSessionKey,
  wrapSessionKey,
} from '../../lib/auth/client.ts';
import { signDatagram } from '../../lib/auth/sign.ts';
import { randomBytes } from '../../lib/crypto/hmac.ts';
import {
  type AnyDatagram,
  AuthMode,
  decodeDatagram,
  ErrorCode,
  Flags,
  MsgType,
  TAG_LENGTH,
} from '../../lib/wire/index.ts';
import { CRED, daemon, newKeyring, T0 } from './harness.ts';

const S = 'a:27400';
const S2 = 'b:27400';
const who = { vendor: 'demo', program: 'cad', version: '2.1', user: 'alice', host: 'ws7' };
const ping = { payload: new Uint8Array(0) };

function setup() {
  const clock = { now: T0 + 1000 };
  const keyring = newKeyring();
  const server = daemon(keyring, clock);
  const client = new ClientAuth({ credId: 'demo', credKey: CRED, now: () => clock.now });
  const h = client.hello(S, who, 1);
  const session = client.acceptHelloOk(server.handle(h.bytes).reply!, 1);
  if (!session) throw new Error('HELLO failed');
  return { clock, keyring, server, client };
}

function errorReply(
  client: ClientAuth,
  req: { requestId: number; mode: AuthMode },
  code: number,
): Uint8Array {
  const s = client.session!;
  return signDatagram(
    {
      type: MsgType.ERROR,
      flags: Flags.REPLY | Flags.FROM_SERVER,
      auth: req.mode === AuthMode.TOKEN ? { mode: 2, token: new Uint8Array(0) } : { mode: 3 },
      requestId: req.requestId,
      sessionId: s.sessionId,
      seq: 0,
      timestamp: T0,
      body: { code, retryAfterMs: 0, message: '' },
      tag: new Uint8Array(TAG_LENGTH),
    } as AnyDatagram,
    s.hmac,
  );
}

t.test('the client chooses the mode by itself', async (t) => {
  const clock = { now: T0 + 1000 };
  const server = daemon(newKeyring(), clock);
  const c = new ClientAuth({ credId: 'demo', credKey: CRED, now: () => clock.now });
  t.equal(c.chooseMode(S, MsgType.PING), AuthMode.CREDENTIAL, 'no token: mode 1');
  t.throws(() => c.request(S, MsgType.HEARTBEAT, {}, 1), /hello\(\) first/);
  t.throws(() => c.request(S, MsgType.HELLO, {} as never, 1), RangeError);
  t.throws(
    () => c.request(S, MsgType.ADMIN, { op: 2, feature: '', user: '', host: '', leaseId: 0n }, 1),
    /opts\.admin/,
  );
  const h = c.hello(S, who, 2);
  t.equal(
    c.acceptHelloOk(server.handle(h.bytes).reply!, 3),
    null,
    'HELLO_OK for another request id',
  );
  t.ok(c.acceptHelloOk(server.handle(c.hello(S, who, 4).bytes).reply!, 4));
  t.equal(c.chooseMode(S, MsgType.CHECKOUT), AuthMode.SESSION, 'issuing server knows it: mode 3');
  t.equal(c.chooseMode(S2, MsgType.CHECKOUT), AuthMode.TOKEN, 'another server: mode 2');
  c.forgetServer(S);
  t.equal(c.chooseMode(S, MsgType.CHECKOUT), AuthMode.TOKEN, 'after a restart: mode 2');
  clock.now = c.session!.expires;
  t.equal(c.chooseMode(S, MsgType.PING), AuthMode.CREDENTIAL, 'token expired: mode 1 again');
  const admin = new ClientAuth({
    credId: 'demo',
    credKey: CRED,
    admin: { id: 'admin', key: CRED },
    now: () => clock.now,
  });
  t.equal(admin.chooseMode(S, MsgType.STATUS), AuthMode.ADMIN);
  t.equal(admin.chooseMode(S, MsgType.ADMIN), AuthMode.ADMIN);
});

t.test(
  'seq numbers increase per request; mode 2 becomes mode 3 once a reply verifies',
  async (t) => {
    const { server, client } = setup();
    const a = client.request(S, MsgType.PING, ping, 10);
    const b = client.request(S, MsgType.PING, ping, 11);
    t.equal(a.seq, 1);
    t.equal(b.seq, 2);
    t.equal(decodeDatagram(b.bytes).seq, 2);
    const m2 = client.request(S2, MsgType.PING, ping, 12);
    t.equal(m2.mode, AuthMode.TOKEN);
    t.equal(m2.seq, 3, 'one seq space across servers');
    const reply = server.handle(m2.bytes).reply!;
    const forged = reply.slice();
    forged[forged.length - 1]! ^= 1;
    t.equal(client.verifyReply(S2, forged, m2), null, 'a bad tag is dropped');
    t.notOk(client.knows(S2));
    t.ok(client.verifyReply(S2, reply, m2));
    t.ok(client.knows(S2));
    t.equal(client.chooseMode(S2, MsgType.PING), AuthMode.SESSION);
    t.equal(client.verifyReply(S2, reply, { ...m2, requestId: 99 }), null, 'other request id');
    t.equal(client.verifyReply(S2, reply, { ...m2, mode: AuthMode.SESSION }), null, 'other mode');
    t.equal(client.verifyReply(S2, reply.subarray(0, 10), m2), null, 'garbage');
  },
);

t.test(
  'verified errors steer the mode: UNKNOWN_SESSION forgets the server, TOKEN_* drop the session',
  async (t) => {
    const { client } = setup();
    const r = client.request(S, MsgType.PING, ping, 20);
    t.ok(client.verifyReply(S, errorReply(client, r, ErrorCode.UNKNOWN_SESSION), r));
    t.equal(client.chooseMode(S, MsgType.PING), AuthMode.TOKEN);
    const r2 = client.request(S, MsgType.PING, ping, 21);
    const unsigned = errorReply(client, r2, ErrorCode.TOKEN_REVOKED);
    unsigned[unsigned.length - 1]! ^= 1;
    t.equal(client.verifyReply(S, unsigned, r2), null, 'an unverified error changes nothing');
    t.ok(client.session);
    t.ok(client.verifyReply(S, errorReply(client, r2, ErrorCode.TOKEN_REVOKED), r2));
    t.equal(client.session, undefined);
    t.equal(client.chooseMode(S, MsgType.PING), AuthMode.CREDENTIAL);
  },
);

t.test('answerTestConn: verified, skew-checked, replay-windowed', async (t) => {
  const { clock, server, client } = setup();
  const s = client.session!;
  const hmac = server.sessions.get(s.sessionId)!.hmac;
  const tc = (seq: number, ts = clock.now, flags: number = Flags.FROM_SERVER) =>
    signDatagram(
      {
        type: MsgType.TEST_CONN,
        flags,
        auth: { mode: AuthMode.SESSION },
        requestId: 500 + seq,
        sessionId: s.sessionId,
        seq,
        timestamp: ts,
        body: { nonce: new Uint8Array(8).fill(seq) },
        tag: new Uint8Array(TAG_LENGTH),
      },
      hmac!,
    );
  const one = tc(1);
  const ack = client.answerTestConn(one, 3);
  t.ok(ack);
  const d = decodeDatagram(ack!);
  t.match(d, {
    type: MsgType.TEST_CONN_ACK,
    flags: Flags.REPLY,
    requestId: 501,
    seq: 1,
    sessionId: s.sessionId,
  });
  if (d.type === MsgType.TEST_CONN_ACK) {
    t.same(d.body.nonce, new Uint8Array(8).fill(1));
    t.equal(d.body.leases, 3);
  }
  t.equal(client.answerTestConn(one, 3), null, 'replayed TEST_CONN dropped');
  t.ok(client.answerTestConn(tc(2, clock.now + 300_000), 0), '+300 s accepted');
  t.equal(client.answerTestConn(tc(3, clock.now + 301_000), 0), null, '+301 s refused');
  t.equal(
    client.answerTestConn(tc(4, clock.now, Flags.FROM_SERVER | Flags.REPLY), 0),
    null,
    'REPLY flag',
  );
  const bad = tc(5);
  bad[20]! ^= 4;
  t.equal(client.answerTestConn(bad, 0), null, 'bad tag');
});

t.test('session key derivation and wrap are exported here', async (t) => {
  t.equal(typeof sessionKeyFor, 'function');
  const sk = randomBytes(32);
  const n = randomBytes(16);
  t.same(unwrapSessionKey(wrapSessionKey(sk, CRED, n, 5n), CRED, n, 5n), sk);
  t.throws(
    () => new ClientAuth({ credId: 'demo', credKey: new Uint8Array(5), now: () => 0 }),
    /credKey/,
  );
});
