/**
 * The daemon's HEARTBEAT fast path (mode 3, read straight from the bytes) against the
 * general path: same reply bytes, retransmissions answered byte-identically from the
 * session's kept reply, the mode-2 form of a request answered from it with the mode byte
 * re-signed, a new port and forged tags handled as before.
 */
import dgram from 'node:dgram';
import t from 'tap';
import { ClientAuth } from '../../lib/auth/client.ts';
import { signDatagram } from '../../lib/auth/sign.ts';
import { KeyedHmac, randomBytes } from '../../lib/crypto/hmac.ts';
import { heartbeatAckFor } from '../../lib/server/heartbeat-ack.ts';
import { encodeHeartbeatAck, HEARTBEAT_ACK_LENGTH } from '../../lib/server/session.ts';
import { type AnyDatagram, AuthMode, Flags, MsgType } from '../../lib/wire/index.ts';
import { makeSite, startDaemon } from '../helpers/site.ts';

const LINES = ['FEATURE demo demo 1.0 permanent 2'];

/** A raw client: one socket, its own ClientAuth, replies matched by request id. */
async function rawClient(site: { credKey: Uint8Array }, port: number) {
  const sock = dgram.createSocket('udp4');
  const inbox: Buffer[] = [];
  sock.on('message', (m) => inbox.push(m));
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const server = `127.0.0.1:${port}`;
  const auth = new ClientAuth({ credId: 'demo', credKey: site.credKey, now: Date.now });
  /** Sends `bytes` and waits `ms`; returns every datagram that came back meanwhile. */
  const exchange = async (bytes: Uint8Array, ms = 150, from = sock): Promise<Buffer[]> => {
    inbox.length = 0;
    from.send(bytes, port, '127.0.0.1');
    await new Promise((r) => setTimeout(r, ms));
    return inbox.splice(0);
  };
  const h = auth.hello(
    server,
    { vendor: 'demo', program: 'p', version: '1.0', user: 'bob', host: 'ws2' },
    1,
  );
  const [ok] = await exchange(h.bytes, 300);
  if (!ok || !auth.acceptHelloOk(ok, 1)) throw new Error('HELLO failed');
  return { sock, auth, server, exchange, close: () => sock.close() };
}

/** A daemon on a fresh site and a raw client with a session on it, closed after `t`. */
async function setup(t: { teardown(fn: () => unknown): void }) {
  const site = makeSite(LINES);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const port = d.address().port;
  const c = await rawClient(site, port);
  t.teardown(c.close);
  return { d, port, c };
}

t.test('encodeHeartbeatAck writes exactly what the generic encoder and signer write', async (t) => {
  const key = new KeyedHmac(randomBytes(32));
  const enc = (
    rid: number,
    sid: bigint,
    seq: number,
    mode: number,
    ts: number,
    leases: number,
    queued: number,
    hb: number,
  ) => encodeHeartbeatAck(rid, sid, seq, mode, ts, leases, queued, hb, key);
  for (const [rid, sid, seq, mode, leases, queued, hb, ts] of [
    [
      0xdeadbeef,
      0x80010203040506ffn,
      0xfffffffe,
      AuthMode.SESSION,
      0,
      0,
      10_000,
      1_700_000_000_123,
    ],
    [0, 0n, 0, AuthMode.TOKEN, 65_535, 65_535, 0xffff_ffff, 2 ** 53 - 1],
    [1, 2n ** 64n - 1n, 1, AuthMode.SESSION, 1, 2, 0, 0],
  ] as const) {
    const mine = enc(rid, sid, seq, mode, ts, leases, queued, hb);
    const generic = signDatagram(
      {
        type: MsgType.HEARTBEAT_ACK,
        flags: Flags.REPLY | Flags.FROM_SERVER,
        auth: { mode },
        requestId: rid,
        sessionId: sid,
        seq,
        timestamp: ts,
        body: { leases, queued, heartbeatMs: hb },
        tag: new Uint8Array(32),
      } as unknown as AnyDatagram,
      key,
    );
    t.equal(mine.length, HEARTBEAT_ACK_LENGTH);
    t.same(mine, generic, `mode ${mode} leases ${leases} queued ${queued} at ${ts}`);
    // The hot path's form, from the request's header bytes: the same bytes.
    const request = signDatagram(
      {
        type: MsgType.HEARTBEAT,
        flags: 0,
        auth: { mode: AuthMode.SESSION },
        requestId: rid,
        sessionId: sid,
        seq,
        timestamp: 1,
        body: {},
        tag: new Uint8Array(32),
      } as AnyDatagram,
      key,
    );
    t.same(
      new Uint8Array(heartbeatAckFor(request, mode, ts, leases, queued, hb, key)),
      generic,
      'heartbeatAckFor',
    );
  }
  t.throws(() => enc(1, 1n, 1, 3, 1, 65_536, 0, 0), RangeError);
  t.throws(() => enc(1, 1n, 1, 3, 1, 0, -1, 0), RangeError);
  t.throws(() => enc(1, 1n, 1, 3, 1, 0, 0, 2 ** 32), RangeError);
  t.throws(() => enc(1, 1n, 1, 3, 2 ** 53, 0, 0, 0), RangeError);
  t.throws(() => enc(2 ** 32, 1n, 1, 3, 1, 0, 0, 0), RangeError);
  t.throws(() => enc(1, 2n ** 64n, 1, 3, 1, 0, 0, 0), RangeError);
  t.throws(() => enc(1, 1n, -1, 3, 1, 0, 0, 0), RangeError);
  t.throws(() => enc(1, 1n, 1, 5, 1, 0, 0, 0), RangeError);
});

t.test(
  'mode-3 heartbeats: answered, retransmissions byte-identical, upgrades re-signed',
  async (t) => {
    const { d, c } = await setup(t);

    const hb1 = c.auth.request(c.server, MsgType.HEARTBEAT, {}, 101);
    t.equal(hb1.mode, AuthMode.SESSION);
    const answered = d.counters.answered;
    const [r1] = await c.exchange(hb1.bytes);
    const ack = c.auth.verifyReply(c.server, r1!, hb1);
    t.ok(ack, 'the reply verifies');
    t.equal(ack?.type, MsgType.HEARTBEAT_ACK);
    t.same(ack?.body, { leases: 0, queued: 0, heartbeatMs: 10_000 });
    t.equal(ack?.seq, hb1.seq, 'the reply repeats the seq');
    t.equal(d.counters.answered, answered + 1);

    // Byte-identical retransmissions: the same reply bytes, not processed again.
    const retransmits = d.counters.retransmits;
    const [r1b] = await c.exchange(hb1.bytes);
    const [r1c] = await c.exchange(hb1.bytes);
    t.ok(r1b?.equals(r1!) && r1c?.equals(r1!), 'byte-identical replies');
    t.equal(d.counters.retransmits, retransmits + 2);
    t.equal(d.counters.answered, answered + 1, 'answered once');

    // The mode-2 form (same request id, next seq, token): the kept reply, mode byte 2.
    c.auth.forgetServer(c.server);
    const up = c.auth.request(c.server, MsgType.HEARTBEAT, {}, 101);
    t.equal(up.mode, AuthMode.TOKEN);
    const [r2] = await c.exchange(up.bytes);
    const upAck = c.auth.verifyReply(c.server, r2!, up);
    t.ok(upAck, 'the re-signed reply verifies in mode 2');
    t.equal(upAck?.auth.mode, AuthMode.TOKEN);
    t.equal(upAck?.seq, hb1.seq, 'it keeps the seq of the form that was processed');
    t.same(r2!.subarray(6, 40), r1!.subarray(6, 40), 'nothing else changed');
    t.equal(d.counters.answered, answered + 1, 'still answered once');

    // A later heartbeat replaces the kept reply; a replay of the earlier one is dropped.
    const hb2 = c.auth.request(c.server, MsgType.HEARTBEAT, {}, 102);
    t.equal(hb2.mode, AuthMode.SESSION, 'the server is known again after the mode-2 answer');
    const [r3] = await c.exchange(hb2.bytes);
    t.ok(c.auth.verifyReply(c.server, r3!, hb2));
    const replayed = d.counters.replayed;
    const old = await c.exchange(hb1.bytes);
    t.equal(old.length, 0, 'an older heartbeat replayed: no answer');
    t.equal(d.counters.replayed, replayed + 1);
  },
);

t.test('the fast path defers to the general one: new port, forged tag, held leases', async (t) => {
  const { d, c } = await setup(t);

  // Forged: the right session id, a wrong tag. Dropped and counted once.
  const hb = c.auth.request(c.server, MsgType.HEARTBEAT, {}, 7);
  const forged = new Uint8Array(hb.bytes);
  forged[forged.length - 1]! ^= 1;
  const bad = d.counters.badMac;
  t.same(await c.exchange(forged), [], 'no answer to a forged heartbeat');
  t.equal(d.counters.badMac, bad + 1, 'counted once');
  // The genuine one (same seq) is still accepted: the forgery took nothing.
  const [ok] = await c.exchange(hb.bytes);
  t.ok(c.auth.verifyReply(c.server, ok!, hb), 'the genuine datagram is answered');

  // Same IP, another port: answered there, and the session moves.
  const other = dgram.createSocket('udp4');
  const got: Buffer[] = [];
  other.on('message', (m) => got.push(m));
  await new Promise<void>((r) => other.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => other.close());
  const moved = c.auth.request(c.server, MsgType.HEARTBEAT, {}, 8);
  await c.exchange(moved.bytes, 150, other);
  t.equal(got.length, 1, 'answered at the new port');
  t.ok(c.auth.verifyReply(c.server, got[0]!, moved));
  // From the old port again: answered there too (same IP).
  const back = c.auth.request(c.server, MsgType.HEARTBEAT, {}, 9);
  const [r] = await c.exchange(back.bytes);
  t.ok(c.auth.verifyReply(c.server, r!, back));

  // A held lease counts (the general path's CHECKOUT, then a fast heartbeat).
  const co = c.auth.request(
    c.server,
    MsgType.CHECKOUT,
    { feature: 'demo', version: '', count: 1, options: 0 },
    10,
  );
  const [coReply] = await c.exchange(co.bytes, 300);
  const granted = c.auth.verifyReply(c.server, coReply!, co);
  t.equal(granted?.type, MsgType.CHECKOUT_REPLY);
  const hb3 = c.auth.request(c.server, MsgType.HEARTBEAT, {}, 11);
  const [r3] = await c.exchange(hb3.bytes);
  const ack = c.auth.verifyReply(c.server, r3!, hb3);
  t.equal(ack?.type === MsgType.HEARTBEAT_ACK && ack.body.leases, 1, 'the lease is counted');
});

t.test('a heartbeat right behind a state change waits for its commit', async (t) => {
  const { port, c } = await setup(t);
  const co = c.auth.request(
    c.server,
    MsgType.CHECKOUT,
    { feature: 'demo', version: '', count: 1, options: 0 },
    20,
  );
  const hb = c.auth.request(c.server, MsgType.HEARTBEAT, {}, 21);
  // Both in one burst: the heartbeat may be read while the grant's commit is pending.
  const got: Buffer[] = [];
  c.sock.on('message', (m) => got.push(m));
  c.sock.send(co.bytes, port, '127.0.0.1');
  c.sock.send(hb.bytes, port, '127.0.0.1');
  await new Promise((r) => setTimeout(r, 300));
  t.same(
    got.map((m) => m.readUInt32BE(8)),
    [20, 21],
    'the heartbeat never overtakes the grant',
  );
  const ack = c.auth.verifyReply(c.server, got[1]!, hb);
  t.equal(ack?.type === MsgType.HEARTBEAT_ACK && ack.body.leases, 1, 'and counts it');
});
