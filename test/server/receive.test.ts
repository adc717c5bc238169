/**
 * The receive path under attack (issue 11): each test replays what an attacker did against a
 * real floatlmd on 127.0.0.1 and checks that the promise of BRIEF.md holds. Attack datagrams
 * are copies of real client traffic, or signed with guessed keys, sent from other source
 * addresses (127.0.0.2…) where the attack needs one.
 */
import dgram from 'node:dgram';
import { readFileSync, writeFileSync } from 'node:fs';
import t from 'tap';
import { signDatagram } from '../../lib/auth/sign.ts';
import type { Client } from '../../lib/client/client.ts';
import {
  type AnyDatagram,
  AuthMode,
  decodeDatagram,
  MsgType,
  TAG_LENGTH,
} from '../../lib/wire/index.ts';
import { client, makeSite, startDaemon } from '../helpers/site.ts';

interface Sock {
  sock: dgram.Socket;
  got: Buffer[];
  send(b: Uint8Array): void;
  close(): void;
}

async function udp(port: number, from = '127.0.0.1'): Promise<Sock> {
  const sock = dgram.createSocket('udp4');
  const got: Buffer[] = [];
  sock.on('message', (m) => got.push(m));
  await new Promise<void>((r) => sock.bind(0, from, () => r()));
  return {
    sock,
    got,
    send: (b) => sock.send(b, port, '127.0.0.1'),
    close: () => sock.close(),
  };
}

/** Resolves once `cond()` holds; checks on every turn of the event loop, bounded in time. */
async function until(cond: () => boolean, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 5));
  }
  return true;
}

function inUse(d: { pool: { status(): { features: { name: string; inUse: number }[] } } }) {
  return d.pool.status().features.find((f) => f.name === 'demo')?.inUse ?? 0;
}

function sessionDatagram(
  c: Client,
  type: MsgType,
  body: unknown,
  o: { seq?: number; requestId?: number; key?: Uint8Array } = {},
): Uint8Array {
  const s = c.auth.session!;
  return signDatagram(
    {
      type,
      flags: 0,
      auth: { mode: AuthMode.SESSION },
      requestId: o.requestId ?? 0x7777,
      sessionId: s.sessionId,
      seq: o.seq ?? 900_000,
      timestamp: Date.now(),
      body,
      tag: new Uint8Array(TAG_LENGTH),
    } as AnyDatagram,
    o.key ?? s.hmac,
  );
}

t.test(
  '1. no fixed key: the 0xa5 key forges nothing; reread ends sessions whose key is gone',
  async (t) => {
    const site = makeSite(['FEATURE demo demo 1.0 permanent 2']);
    const d = await startDaemon(site);
    t.teardown(() => d.close());
    const port = d.address().port;
    const victim = await client(site, port);
    t.teardown(() => victim.close());
    const lease = await victim.checkout('demo');
    // The operator replaces the keyring secret (removing the one the victim's token uses).
    const keys = JSON.parse(readFileSync(site.keysFile, 'utf8'));
    keys.server.secrets = [
      { id: 9, secret: 'ab'.repeat(32), activates: new Date(Date.now() - 1000).toISOString() },
    ];
    writeFileSync(site.keysFile, JSON.stringify(keys), { mode: 0o600 });
    const attacker = await udp(port);
    t.teardown(() => attacker.close());
    const dead = new Uint8Array(32).fill(0xa5);
    const forged = sessionDatagram(
      victim,
      MsgType.CHECKIN,
      { leaseId: lease.leaseId, feature: 'demo' },
      { key: dead },
    );
    d.reread();
    t.equal(d.sessionCount, 0, 'the session under the removed key ended at the reread');
    const badMac0 = d.counters.badMac + d.counters.dropped;
    attacker.send(forged);
    t.ok(await until(() => d.counters.badMac + d.counters.dropped > badMac0), 'forgery dropped');
    t.equal(attacker.got.length, 0, 'and not answered');
  },
);

t.test(
  '1b. after a restart without the key, a restored session is unknown in every mode',
  async (t) => {
    const site = makeSite(['FEATURE demo demo 1.0 permanent 2']);
    let d = await startDaemon(site);
    const victim = await client(site, d.address().port);
    t.teardown(() => victim.close());
    const lease = await victim.checkout('demo');
    const port = d.address().port;
    await d.close();
    const keys = JSON.parse(readFileSync(site.keysFile, 'utf8'));
    keys.server.secrets = [
      { id: 9, secret: 'cd'.repeat(32), activates: new Date(Date.now() - 1000).toISOString() },
    ];
    writeFileSync(site.keysFile, JSON.stringify(keys), { mode: 0o600 });
    d = await startDaemon(site, { port, graceMs: 0 });
    t.teardown(() => d.close());
    const attacker = await udp(port);
    t.teardown(() => attacker.close());
    const received0 = d.counters.received;
    attacker.send(
      sessionDatagram(
        victim,
        MsgType.CHECKIN,
        { leaseId: lease.leaseId, feature: 'demo' },
        {
          key: new Uint8Array(32).fill(0xa5),
        },
      ),
    );
    await until(() => d.counters.received > received0);
    t.equal(attacker.got.length, 0, 'no answer to the forged CHECKIN');
    t.equal(inUse(d) ?? 0, 1, 'the forgery released nothing');
  },
);

t.test(
  '2+3. replies only go where their verified request came from; refusals burn no seq',
  async (t) => {
    const site = makeSite(['FEATURE demo demo 1.0 permanent 2']);
    const d = await startDaemon(site);
    t.teardown(() => d.close());
    const port = d.address().port;
    const c = await client(site, port);
    t.teardown(() => c.close());
    const mine0 = await udp(port);
    t.teardown(() => mine0.close());
    // What an on-path attacker captures: the client's STATUS, CHECKOUT and HEARTBEAT.
    const sent = [
      sessionDatagram(c, MsgType.STATUS, { feature: '', page: 0 }, { seq: 10, requestId: 10 }),
      sessionDatagram(
        c,
        MsgType.CHECKOUT,
        { feature: 'demo', version: '', count: 1, options: 0 },
        { seq: 11, requestId: 11 },
      ),
      sessionDatagram(c, MsgType.HEARTBEAT, {}, { seq: 12, requestId: 12 }),
    ];
    for (const b of sent) mine0.send(b);
    t.ok(await until(() => mine0.got.length === 3), 'the originals were answered');
    const other = await udp(port, '127.0.0.2');
    t.teardown(() => other.close());
    const received0 = d.counters.received;
    for (const b of sent) other.send(b);
    t.ok(await until(() => d.counters.received >= received0 + sent.length), 'replays arrived');
    await new Promise((r) => setImmediate(r));
    t.equal(other.got.length, 0, 'not one reply, cached or fresh, went to the other address');
    t.equal(inUse(d), 1, 'and the replayed CHECKOUT granted nothing more');
    // Cache poisoning: a copy of the next heartbeat from elsewhere, before the original.
    const next = sessionDatagram(c, MsgType.HEARTBEAT, {}, { seq: 500, requestId: 4242 });
    const mine = await udp(port);
    t.teardown(() => mine.close());
    other.send(next);
    await until(() => d.counters.refused > 0 || d.counters.received > received0 + sent.length);
    t.equal(other.got.length, 0, 'the copy got nothing (its ERROR would be larger than it)');
    // The genuine datagram comes from the session's own address (port moves: same IP).
    mine.send(next);
    t.ok(await until(() => mine.got.length > 0), 'the original is answered');
    const reply = decodeDatagram(new Uint8Array(mine.got[0]!));
    t.equal(reply.type, MsgType.HEARTBEAT_ACK, 'with a HEARTBEAT_ACK, not a cached ERROR');
  },
);

t.test(
  '4. exactly once without the cache: eviction and restart return the first outcome',
  async (t) => {
    const site = makeSite(['FEATURE demo demo 1.0 permanent 3']);
    let d = await startDaemon(site, { replyCacheSize: 4 });
    const port = d.address().port;
    const victim = await client(site, port);
    t.teardown(() => victim.close());
    const mine = await udp(port);
    t.teardown(() => mine.close());
    await victim.status();
    const checkout = sessionDatagram(
      victim,
      MsgType.CHECKOUT,
      { feature: 'demo', version: '', count: 1, options: 0 },
      { seq: 100, requestId: 1001 },
    );
    mine.send(checkout);
    t.ok(await until(() => mine.got.length === 1), 'granted (the reply "lost" to the client)');
    const first = decodeDatagram(new Uint8Array(mine.got[0]!));
    // Evict the 4-entry reply cache with other requests of the session.
    for (let i = 0; i < 20; i++) {
      mine.send(
        sessionDatagram(
          victim,
          MsgType.PING,
          { payload: new Uint8Array(0) },
          { seq: 200 + i, requestId: 2000 + i },
        ),
      );
    }
    await until(() => mine.got.length >= 21);
    // The re-send as a new datagram (same request id, next seq): the same outcome.
    mine.send(
      sessionDatagram(
        victim,
        MsgType.CHECKOUT,
        { feature: 'demo', version: '', count: 1, options: 0 },
        { seq: 300, requestId: 1001 },
      ),
    );
    t.ok(await until(() => mine.got.length >= 22), 'answered');
    const again = decodeDatagram(new Uint8Array(mine.got.at(-1)!));
    t.same(again.body, first.body, 'the same grant, not a second one');
    t.equal(inUse(d), 1, 'one seat held');
    // Restart: the captured CHECKOUT replayed within the skew has no effect.
    await d.close();
    d = await startDaemon(site, { port, graceMs: 0 });
    t.teardown(() => d.close());
    const before = mine.got.length;
    mine.send(checkout);
    const received0 = d.counters.received;
    await until(() => d.counters.received > received0);
    await until(() => mine.got.length > before, 2000);
    t.equal(inUse(d), 1, 'still one seat after restart');
  },
);

t.test('5. a mode-1 flood from one credential leaves first contact open', async (t) => {
  const site = makeSite(['FEATURE demo demo 1.0 permanent 2']);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const port = d.address().port;
  const flood = await udp(port, '127.0.0.3');
  t.teardown(() => flood.close());
  const rss0 = process.memoryUsage().rss;
  let nonce = 0;
  const ping = () => {
    const n = new Uint8Array(16);
    new DataView(n.buffer).setUint32(0, nonce++);
    return signDatagram(
      {
        type: MsgType.PING,
        flags: 0,
        auth: { mode: AuthMode.CREDENTIAL, credId: 'demo', nonce: n },
        requestId: 1,
        sessionId: 0n,
        seq: 0,
        timestamp: Date.now(),
        body: { payload: new Uint8Array(0) },
        tag: new Uint8Array(TAG_LENGTH),
      },
      site.credKey,
    );
  };
  const N = 30_000;
  const sending = (async () => {
    for (let i = 0; i < N; i++) {
      flood.send(ping());
      if (i % 200 === 199) await new Promise((r) => setImmediate(r));
    }
  })();
  let ok = 0;
  const tries = 10;
  for (let i = 0; i < tries; i++) {
    const c = await client(site, port, { user: `u${i}` });
    if (c.auth.session) ok++;
    await c.close();
  }
  await sending;
  t.equal(ok, tries, 'every other client got a session during the flood');
  const rssGrowth = process.memoryUsage().rss - rss0;
  t.ok(rssGrowth < 64 * 1024 * 1024, `bounded memory (${(rssGrowth / 1048576).toFixed(1)} MiB)`);
});

t.test(
  "6. a bad-tag flood from the session's own address does not starve its heartbeats",
  async (t) => {
    const site = makeSite(['FEATURE demo demo 1.0 permanent 2']);
    const d = await startDaemon(site, { rateLimit: { rate: 100, burst: 100 } });
    t.teardown(() => d.close());
    const port = d.address().port;
    const c = await client(site, port);
    t.teardown(() => c.close());
    await c.checkout('demo');
    const flood = await udp(port);
    t.teardown(() => flood.close());
    const bad = sessionDatagram(c, MsgType.HEARTBEAT, {}, { key: new Uint8Array(32).fill(7) });
    let answered = 0;
    const beats = 20;
    for (let i = 0; i < beats; i++) {
      for (let j = 0; j < 500; j++) flood.send(bad);
      try {
        await c.heartbeat();
        answered++;
      } catch {
        // counted as unanswered
      }
    }
    t.ok(d.counters.badMac > 0, `the flood arrived (${d.counters.badMac} bad tags)`);
    t.ok(answered >= 0.95 * beats, `${answered}/${beats} heartbeats answered`);
    if (d.udp === 'batch') {
      // The batched socket rested after reads that were mostly forged, and the heartbeats
      // queued behind them were still answered.
      t.ok(d.readPauses() > 0, `reading paused under the flood (${d.readPauses()} times)`);
      const scrape = await d.metrics.text();
      t.match(scrape, new RegExp(`^floatlm_udp_read_pauses_total ${d.readPauses()}$`, 'm'));
    }
  },
);

t.test(
  '8. grace ends in one step: no RUNNING answer before unclaimed leases are gone',
  async (t) => {
    const site = makeSite(['FEATURE demo demo 1.0 permanent 1']);
    let d = await startDaemon(site);
    const port = d.address().port;
    const holder = await client(site, port);
    await holder.checkout('demo');
    await d.close();
    let offset = 0;
    d = await startDaemon(site, {
      port,
      graceMs: 5000,
      now: () => Date.now() + offset,
      tickMs: 3_600_000,
    });
    t.teardown(() => d.close());
    t.equal(d.state, 'GRACE');
    offset = 6000; // the grace is over; the housekeeping timer has not run
    const other = await client(site, port, { user: 'bob' });
    t.teardown(() => other.close());
    const pong = await other.ping();
    t.equal(pong.state, 'running');
    t.equal(inUse(d), 0, 'the unclaimed lease was released before that answer');
    const l = await other.checkout('demo');
    t.equal(l.state, 'held', 'and the seat is free for a new grant');
    holder.close().catch(() => {});
  },
);

t.test('refused first contacts are logged, a line per source a minute', async (t) => {
  const site = makeSite(['FEATURE demo demo 1.0 permanent 1']);
  const lines: string[] = [];
  const put = (s: string) => {
    lines.push(s);
  };
  const d = await startDaemon(site, {
    logger: { error: put, warn: put, info: () => {}, debug: () => {} },
  });
  t.teardown(() => d.close());
  const port = d.address().port;
  const a = await udp(port, '127.0.0.4');
  const b = await udp(port, '127.0.0.5');
  t.teardown(() => {
    a.close();
    b.close();
  });
  for (let i = 1; i <= 5; i++) a.send(helloDatagram(site.credKey, i, 'alice', 'nosuch'));
  for (let i = 1; i <= 5; i++) b.send(helloDatagram(new Uint8Array(32).fill(1), i));
  t.ok(await until(() => d.counters.received >= 10), 'all arrived');
  t.equal(a.got.length + b.got.length, 0, 'nothing answered');
  const fromA = lines.filter((l) => l.includes('127.0.0.4'));
  const fromB = lines.filter((l) => l.includes('127.0.0.5'));
  t.equal(fromA.length, 1, 'one line for the first source');
  t.match(fromA[0], /refused: unknown credential id "nosuch"/);
  t.equal(fromB.length, 1, 'one line for the second');
  t.match(fromB[0], /refused: bad tag for credential "demo" \(wrong key\?\)/);
});

/** A padded HELLO signed with `credKey` under credential id `credId`, nonce all `n`. */
function helloDatagram(
  credKey: Uint8Array,
  n: number,
  user = 'alice',
  credId = 'demo',
): Uint8Array {
  return signDatagram(
    {
      type: MsgType.HELLO,
      flags: 0,
      auth: { mode: AuthMode.CREDENTIAL, credId, nonce: new Uint8Array(16).fill(n) },
      requestId: n,
      sessionId: 0n,
      seq: 0,
      timestamp: Date.now(),
      body: {
        vendor: 'demo',
        user,
        host: 'ws1',
        program: 'p',
        version: '1',
        padding: new Uint8Array(500),
      },
      tag: new Uint8Array(TAG_LENGTH),
    } as AnyDatagram,
    credKey,
  );
}

t.test('4b. a HELLO replayed after a restart opens no second session', async (t) => {
  const site = makeSite(['FEATURE demo demo 1.0 permanent 1']);
  let d = await startDaemon(site);
  const port = d.address().port;
  const mine = await udp(port);
  t.teardown(() => mine.close());
  const hello = helloDatagram(site.credKey, 7);
  mine.send(hello);
  t.ok(await until(() => mine.got.length === 1), 'HELLO_OK');
  const first = decodeDatagram(new Uint8Array(mine.got[0]!));
  t.equal(first.type, MsgType.HELLO_OK);
  t.equal(d.sessionCount, 1);
  await d.close();
  d = await startDaemon(site, { port, graceMs: 0 });
  t.teardown(() => d.close());
  const other = await udp(port, '127.0.0.6');
  t.teardown(() => other.close());
  const received0 = d.counters.received;
  other.send(hello); // a capture, from elsewhere
  mine.send(hello); // and from the original address
  t.ok(await until(() => d.counters.received >= received0 + 2));
  t.ok(await until(() => mine.got.length === 2), 'the original address gets the kept HELLO_OK');
  t.same(mine.got[1], mine.got[0], 'byte for byte the first one');
  t.equal(other.got.length, 0, 'the copy from elsewhere gets nothing');
  t.equal(d.sessionCount, 1, 'still the one session');
});

t.test(
  '3b. TEST_CONN_ACK copies are never answered; server ids never meet client ids',
  async (t) => {
    const site = makeSite(['FEATURE demo demo 1.0 permanent 1']);
    const d = await startDaemon(site, {
      quietMs: 50,
      testConnIntervalMs: 50,
      tickMs: 20,
      heartbeatMs: 60_000,
    });
    t.teardown(() => d.close());
    const port = d.address().port;
    const c = await client(site, port, { heartbeatMs: 60_000 } as never);
    t.teardown(() => c.close());
    await c.checkout('demo');
    const s = c.auth.session!;
    const other = await udp(port, '127.0.0.7');
    t.teardown(() => other.close());
    // A forged-looking but genuine-key TEST_CONN_ACK copy from another host: dropped silently.
    const ack = signDatagram(
      {
        type: MsgType.TEST_CONN_ACK,
        flags: 1,
        auth: { mode: AuthMode.SESSION },
        requestId: Math.floor(Date.now() / 1000),
        sessionId: s.sessionId,
        seq: Math.floor(Date.now() / 1000),
        timestamp: Date.now(),
        body: { nonce: new Uint8Array(8), leases: 1 },
        tag: new Uint8Array(TAG_LENGTH),
      } as AnyDatagram,
      s.hmac,
    );
    const r0 = d.counters.received;
    other.send(ack);
    t.ok(await until(() => d.counters.received > r0));
    // The client itself is pinged (quiet) and answers; its session stays.
    await new Promise((r) => setTimeout(r, 400));
    t.equal(other.got.length, 0, 'no ERROR to a TEST_CONN_ACK, not even to a copy');
    t.equal(d.sessionCount, 1, 'the real client answered its pings and kept its session');
    // A mode-3 PING whose request id is the server's TEST_CONN id: a PONG, not a kept ERROR.
    const mine = await udp(port);
    t.teardown(() => mine.close());
    const rid = Math.floor(Date.now() / 1000);
    mine.send(
      sessionDatagram(
        c,
        MsgType.PING,
        { payload: new Uint8Array(0) },
        { seq: 700_000, requestId: rid },
      ),
    );
    t.ok(await until(() => mine.got.length === 1));
    t.equal(decodeDatagram(new Uint8Array(mine.got[0]!)).type, MsgType.PONG);
  },
);
