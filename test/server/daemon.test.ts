/**
 * floatlmd over real UDP on 127.0.0.1: every message, version matching and expiry, queue
 * order, duplicate grouping, per-user max, reaping dead clients, the reply cache, reread
 * under held seats, malformed datagrams and bad license lines.
 */
import dgram from 'node:dgram';
import t from 'tap';
import type { ClientAuth } from '../../lib/auth/client.ts';
import { DeniedError } from '../../lib/client/errors.ts';
import { batchUnavailable } from '../../lib/server/udp.ts';
import { AdminOp, ErrorCode, MsgType } from '../../lib/wire/index.ts';
import { client, makeSite, reportEvents, startDaemon } from '../helpers/site.ts';

const LINES = [
  'FEATURE demo demo 1.0 permanent 2',
  'FEATURE solver demo 2.5 permanent 1 QUEUE=yes',
  'FEATURE old demo 1.0 1-jan-2020 5',
  'FEATURE cad demo 3.0 permanent 4 DUP_GROUP=NONE MAX_PER_USER=2',
  'FEATURE shared demo 1.0 permanent 1',
];

/** Sends raw bytes from a fresh socket and collects what comes back for `ms`. */
async function rawExchange(port: number, datagrams: Uint8Array[], ms = 300): Promise<Buffer[]> {
  const sock = dgram.createSocket('udp4');
  const got: Buffer[] = [];
  sock.on('message', (m) => got.push(m));
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  for (const d of datagrams) {
    sock.send(d, port, '127.0.0.1');
    // Spaced like retransmissions, so the first reply has been committed and cached.
    await new Promise((r) => setTimeout(r, 40));
  }
  await new Promise((r) => setTimeout(r, ms));
  sock.close();
  return got;
}

const noBatch = batchUnavailable('127.0.0.1');
if (noBatch && process.env.CI === 'true') throw new Error(`CI=true: ${noBatch}`);

for (const udp of ['dgram', 'batch'] as const)
  t.test(
    `ping, hello, checkout, heartbeat, status, checkin (${udp} socket)`,
    { skip: udp === 'batch' && noBatch ? noBatch : false },
    async (t) => {
      const site = makeSite(LINES);
      const d = await startDaemon(site, { udp });
      t.teardown(() => d.close());
      t.equal(d.udp, udp, `served on the ${udp} socket`);
      const c = await client(site, d.address().port);
      t.teardown(() => c.close());
      const pong = await c.ping();
      t.equal(pong.serverVersion, '0.1.0');
      t.equal(pong.state, 'running');
      t.ok(Math.abs(pong.offsetMs) < 5000, 'clock offset is small on one machine');

      const lease = await c.checkout('demo', { version: '1.0' });
      t.equal(lease.feature, 'demo');
      t.equal(lease.count, 1);
      t.ok(lease.ticket.length > 40, 'a lease ticket comes back');

      const st = await c.status();
      const demo = st.features.find((f) => f.name === 'demo')!;
      t.equal(demo.count, 2);
      t.equal(demo.inUse, 1);
      t.equal(demo.issued, 1);
      t.equal(st.holders.length, 1);
      t.equal(st.holders[0]!.user, 'alice');
      t.equal(st.holders[0]!.host, 'ws1');
      t.equal(st.holders[0]!.leaseId, lease.leaseId);

      await lease.checkin();
      t.equal(lease.state, 'released');
      const after = await c.status('demo');
      t.equal(after.features[0]!.inUse, 0);
      t.equal(after.holders.length, 0);
      const events = reportEvents(site).map((e) => e.event);
      t.ok(
        events.includes('grant') && events.includes('release') && events.includes('session'),
        'report log has the events',
      );
    },
  );

for (const udp of ['dgram', 'batch'] as const)
  t.test(
    `a closed daemon still says which port it had (${udp} socket)`,
    { skip: udp === 'batch' && noBatch ? noBatch : false },
    async (t) => {
      const d = await startDaemon(makeSite(LINES), { udp });
      const port = d.address().port;
      await d.close();
      // The batched socket's native handle is freed by then: the port is not read from it.
      t.equal(d.address().port, port);
      t.equal(d.readPauses(), 0);
    },
  );

t.test('a flood pause beyond MAX_FLOOD_PAUSE_MS is refused', async (t) => {
  await t.rejects(startDaemon(makeSite(LINES), { floodPauseMs: 11 }), {
    name: 'RangeError',
    message: 'options.floodPauseMs must be an integer 0..10, got 11',
  });
});

t.test('version matching, unknown features and expiry', async (t) => {
  const site = makeSite(LINES);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const c = await client(site, d.address().port);
  t.teardown(() => c.close());
  const l = await c.checkout('solver', { version: '2.0' });
  t.equal(l.feature, 'solver', 'version 2.0 is served by 2.5');
  await l.checkin();
  await t.rejects(c.checkout('solver', { version: '3.0' }), {
    name: 'DeniedError',
    reason: ErrorCode.NO_SUCH_VERSION,
  });
  await t.rejects(c.checkout('nosuch'), { name: 'DeniedError', reason: ErrorCode.NO_SUCH_FEATURE });
  await t.rejects(c.checkout('old'), { name: 'DeniedError', reason: ErrorCode.FEATURE_EXPIRED });
  t.ok(
    d.licenseProblems.some((p) => /site\.lic:\d+:\d+: .*expired/i.test(p)),
    'the expired line is reported file:line:column',
  );
  const st = await c.status('solver');
  t.equal(st.features[0]!.denied, 1, 'denials are counted');
});

t.test('queue: FIFO order, positions, granted in order as seats free', async (t) => {
  const site = makeSite(LINES);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const port = d.address().port;
  const a = await client(site, port, { user: 'a', host: 'h1' });
  const b = await client(site, port, { user: 'b', host: 'h2' });
  const c = await client(site, port, { user: 'c', host: 'h3' });
  t.teardown(() => Promise.all([a.close(), b.close(), c.close()]));
  const held = await a.checkout('solver');
  await t.rejects(
    b.checkout('solver'),
    { name: 'DeniedError', reason: ErrorCode.NO_SEATS },
    'without wait: denied',
  );
  const bPos: number[] = [];
  const cPos: number[] = [];
  const bWait = b.checkout('solver', { wait: true, onQueued: (p) => bPos.push(p) });
  await new Promise((r) => setTimeout(r, 150));
  const cWait = c.checkout('solver', { wait: true, onQueued: (p) => cPos.push(p) });
  await new Promise((r) => setTimeout(r, 150));
  const st = await a.status('solver');
  t.same(
    st.queued.map((q) => [q.user, q.position]),
    [
      ['b', 1],
      ['c', 2],
    ],
  );
  await held.checkin();
  const bl = await bWait;
  t.equal(bl.feature, 'solver', 'b, first in line, is granted');
  t.same(bPos, [1]);
  await new Promise((r) => setTimeout(r, 150));
  t.equal(cPos.at(-1), 1, 'c moved up to position 1');
  await bl.checkin();
  const cl = await cWait;
  t.equal(cl.feature, 'solver');
  const fin = await a.status('solver');
  t.equal(fin.features[0]!.inUse, 1);
  t.equal(fin.features[0]!.queued, 0);
});

t.test('aborting a wait leaves the queue', async (t) => {
  const site = makeSite(LINES);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const a = await client(site, d.address().port, { user: 'a' });
  const b = await client(site, d.address().port, { user: 'b' });
  t.teardown(() => Promise.all([a.close(), b.close()]));
  await a.checkout('solver');
  const ac = new AbortController();
  const w = b.checkout('solver', { wait: true, signal: ac.signal });
  await new Promise((r) => setTimeout(r, 150));
  ac.abort();
  await t.rejects(w, { name: 'AbortError' });
  const st = await a.status('solver');
  t.equal(st.queued.length, 0);
});

t.test("a client's close() is answered: its session's key outlives the answer", async (t) => {
  const site = makeSite(LINES);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const c = await client(site, d.address().port);
  await c.checkout('demo', { version: '1.0' });
  await c.heartbeat(); // mode 3 from now on: verified with the session's cached key
  const answered = d.counters.answered;
  await c.close();
  t.equal(d.counters.internal, 0, 'no internal error (the key was disposed before signing)');
  t.equal(d.counters.answered, answered + 2, 'CHECKIN_OK for its lease, then for the session');
  t.equal(d.sessionCount, 0, 'the session is gone');
  t.equal(d.pool.status().features[0]!.inUse, 0, 'its seat released');
});

t.test('duplicate grouping and per-user maximum', async (t) => {
  const site = makeSite(LINES);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const port = d.address().port;
  const a1 = await client(site, port, { user: 'alice', host: 'ws1' });
  const a2 = await client(site, port, { user: 'alice', host: 'ws1' });
  const a3 = await client(site, port, { user: 'alice', host: 'ws2' });
  t.teardown(() => Promise.all([a1.close(), a2.close(), a3.close()]));
  // Default grouping (user+host+feature): a second client of alice@ws1 shares the seat.
  const l1 = await a1.checkout('shared');
  const l2 = await a2.checkout('shared');
  t.not(l1.leaseId, l2.leaseId, 'each checkout has its own lease');
  let st = await a1.status('shared');
  t.equal(st.features[0]!.inUse, 1, 'one seat for user+host');
  await t.rejects(
    a3.checkout('shared'),
    { name: 'DeniedError', reason: ErrorCode.NO_SEATS },
    'another host needs its own seat',
  );
  await l1.checkin();
  st = await a1.status('shared');
  t.equal(st.features[0]!.inUse, 1, 'the seat stays while a lease of the group is held');
  await l2.checkin();
  st = await a1.status('shared');
  t.equal(st.features[0]!.inUse, 0);
  // DUP_GROUP=NONE and MAX_PER_USER=2.
  await a1.checkout('cad');
  await a2.checkout('cad');
  st = await a1.status('cad');
  t.equal(st.features[0]!.inUse, 2, 'NONE: every checkout takes a seat');
  await t.rejects(a3.checkout('cad'), { name: 'DeniedError', reason: ErrorCode.USER_MAX });
});

t.test(
  'a retransmitted request is answered from the cache, byte-identical, never granted twice',
  async (t) => {
    const site = makeSite(LINES);
    const d = await startDaemon(site);
    t.teardown(() => d.close());
    const port = d.address().port;
    const c = await client(site, port);
    t.teardown(() => c.close());
    // Borrow the connected client's session to sign a CHECKOUT by hand, then send it twice.
    const auth = c.auth as ClientAuth;
    const req = auth.request(
      `127.0.0.1:${port}`,
      MsgType.CHECKOUT,
      { feature: 'demo', version: '', count: 1, options: 0 },
      4242,
    );
    const replies = await rawExchange(port, [req.bytes, req.bytes, req.bytes]);
    t.equal(replies.length, 3, 'every copy is answered');
    t.ok(
      replies[0]!.equals(replies[1]!) && replies[1]!.equals(replies[2]!),
      'byte-identical replies',
    );
    const st = await c.status('demo');
    t.equal(st.features[0]!.inUse, 1);
    t.equal(st.features[0]!.issued, 1, 'granted once');
    t.ok(d.counters.retransmits >= 2);
  },
);

t.test('malformed and forged datagrams are dropped and counted; service goes on', async (t) => {
  const site = makeSite(LINES);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const port = d.address().port;
  const c = await client(site, port);
  t.teardown(() => c.close());
  const auth = c.auth as ClientAuth;
  const good = auth.request(
    `127.0.0.1:${port}`,
    MsgType.PING,
    { payload: new Uint8Array(64) },
    77,
  ).bytes;
  const flipped = Uint8Array.from(good);
  flipped[flipped.length - 1]! ^= 1;
  const truncated = good.subarray(0, good.length - 5);
  const junk = new Uint8Array(100).fill(0x41);
  const replies = await rawExchange(port, [flipped, truncated, junk, new Uint8Array(0)]);
  t.equal(replies.length, 0, 'nothing answers a bad datagram');
  t.ok(d.counters.badMac >= 1, 'bad MAC counted');
  t.ok(d.counters.malformed >= 3, 'malformed counted');
  const pong = await c.ping();
  t.equal(pong.state, 'running', 'still serving');
});

t.test('a dead client is reaped and its seat goes to the next in queue', async (t) => {
  const site = makeSite(LINES);
  const d = await startDaemon(site, {
    heartbeatMs: 200,
    quietMs: 200,
    testConnIntervalMs: 100,
    testConnTries: 2,
    tickMs: 50,
  });
  t.teardown(() => d.close());
  const port = d.address().port;
  // A "dead" client: gets a seat over a raw socket, then never answers test_conn.
  const dead = await client(site, port, { user: 'dead', host: 'gone', heartbeatMs: 60_000 });
  const lease = await dead.checkout('solver');
  t.ok(lease.leaseId);
  await dead.destroy();
  const b = await client(site, port, { user: 'b', heartbeatMs: 100 });
  t.teardown(() => b.close());
  const granted = await b.checkout('solver', { wait: true });
  t.equal(granted.feature, 'solver', 'the queued client gets the reaped seat');
  t.ok(d.counters.reaped >= 1);
  const reap = reportEvents(site).find((e) => e.event === 'reap');
  t.equal(reap?.user, 'dead');
});

t.test('a client that answers test_conn keeps its seat while quiet', async (t) => {
  const site = makeSite(LINES);
  const d = await startDaemon(site, {
    heartbeatMs: 100,
    quietMs: 100,
    testConnIntervalMs: 50,
    testConnTries: 2,
    tickMs: 50,
  });
  t.teardown(() => d.close());
  const c = await client(site, d.address().port, { heartbeatMs: 60_000 });
  t.teardown(() => c.close());
  const l = await c.checkout('demo');
  await new Promise((r) => setTimeout(r, 800));
  t.equal(l.state, 'held');
  t.equal(d.counters.reaped, 0, 'answered pings: not reaped');
  const st = await c.status('demo');
  t.equal(st.features[0]!.inUse, 1);
});

t.test('reread keeps held seats; a file with a tampered line is refused whole', async (t) => {
  const site = makeSite(LINES);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const c = await client(site, d.address().port);
  t.teardown(() => c.close());
  const l = await c.checkout('demo');
  // New license: demo goes to 5 seats, plus a line whose count is changed after signing.
  site.writeLicense(['FEATURE demo demo 1.0 permanent 5', 'FEATURE extra demo 1.0 permanent 1']);
  const { readFileSync, writeFileSync } = await import('node:fs');
  const good = readFileSync(site.licenseFile, 'utf8');
  writeFileSync(
    site.licenseFile,
    good.replace('FEATURE extra demo 1.0 permanent 1', 'FEATURE extra demo 1.0 permanent 9'),
  );
  const err = await c.admin(AdminOp.REREAD).catch((e: unknown) => e);
  t.type(err, DeniedError, 'the reread is refused');
  t.match(
    (err as Error).message,
    /reread refused: 1 problem\(s\).*site\.lic:\d+:\d+: .*signature/i,
  );
  let st = await c.status();
  t.equal(st.features.find((f) => f.name === 'demo')?.count, 2, 'the old license still serves');
  t.notOk(
    st.features.find((f) => f.name === 'extra'),
    'nothing of the refused file is served',
  );
  // The same file without the tampering is taken, and the held seat survives it.
  writeFileSync(site.licenseFile, good);
  const r = await c.admin(AdminOp.REREAD);
  t.match(r.message, /reread: 2 feature line\(s\), 0 problem/);
  st = await c.status();
  const demo = st.features.find((f) => f.name === 'demo')!;
  t.equal(demo.count, 5);
  t.equal(demo.inUse, 1, 'the held seat survived the reread');
  t.equal(l.state, 'held');
  t.ok(
    st.features.find((f) => f.name === 'extra'),
    'the good line is served',
  );
});

t.test('reservations: a reserved seat is kept for its user, and status shows it', async (t) => {
  const site = makeSite([
    'FEATURE lab demo 1.0 permanent 3 RESERVE="USER:carol:1,HOST:ws9:1"',
    'FEATURE demo demo 1.0 permanent 1',
  ]);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const port = d.address().port;
  const bob = await client(site, port, { user: 'bob', host: 'ws2' });
  const dan = await client(site, port, { user: 'dan', host: 'ws3' });
  const carol = await client(site, port, { user: 'carol', host: 'ws4' });
  const eve = await client(site, port, { user: 'eve', host: 'ws9' });
  t.teardown(() => Promise.all([bob.close(), dan.close(), carol.close(), eve.close()]));

  let st = await bob.status();
  t.same(
    st.reservations.map((r) => ({ ...r })),
    [
      { kind: 4, feature: 'lab', type: 1, name: 'carol', count: 1, inUse: 0 },
      { kind: 4, feature: 'lab', type: 2, name: 'ws9', count: 1, inUse: 0 },
    ],
    'RESERVATION records, none used yet',
  );
  await bob.checkout('lab');
  await t.rejects(
    dan.checkout('lab'),
    { name: 'DeniedError', reason: ErrorCode.NO_SEATS },
    'the two free seats are reserved: refused to another user',
  );
  const lc = await carol.checkout('lab');
  t.equal(lc.count, 1, 'granted to the reserved user');
  st = await bob.status('lab');
  t.equal(st.features[0]!.inUse, 2);
  t.same(
    st.reservations.map((r) => [r.name, r.count, r.inUse]),
    [
      ['carol', 1, 1],
      ['ws9', 1, 0],
    ],
  );
  await eve.checkout('lab');
  st = await bob.status('lab');
  t.same(
    st.reservations.map((r) => r.inUse),
    [1, 1],
    'a user on the reserved host holds the host reservation',
  );
  t.equal(st.features[0]!.inUse, 3);
  // Seats freed by the reserved user stay reserved.
  await lc.checkin();
  await t.rejects(dan.checkout('lab'), { name: 'DeniedError', reason: ErrorCode.NO_SEATS });
  st = await bob.status('demo');
  t.same(st.reservations, [], 'filtered by feature');
});

t.test('admin remove and shutdown', async (t) => {
  const site = makeSite(LINES);
  let closed = false;
  const d = await startDaemon(site, { onClosed: () => (closed = true) });
  t.teardown(() => d.close());
  const c = await client(site, d.address().port);
  t.teardown(() => c.close());
  await c.checkout('demo');
  const r = await c.admin(AdminOp.REMOVE, { user: 'alice' });
  t.equal(r.affected, 1);
  const st = await c.status('demo');
  t.equal(st.features[0]!.inUse, 0);
  const down = await c.admin(AdminOp.SHUTDOWN);
  t.equal(down.message, 'shutting down');
  await new Promise((r) => setTimeout(r, 200));
  t.ok(closed, 'daemon closed');
  t.equal(d.state, 'CLOSED');
});

t.test('grant and denial counts survive a restart', async (t) => {
  const site = makeSite(['FEATURE demo demo 1.0 permanent 1']);
  let d = await startDaemon(site);
  const port = d.address().port;
  const a = await client(site, port);
  const b = await client(site, port, { user: 'bob', host: 'ws2' });
  await a.checkout('demo');
  await t.rejects(b.checkout('demo'), DeniedError);
  await a.close();
  await b.close();
  await d.close();
  d = await startDaemon(site, { port });
  t.teardown(() => d.close());
  const f = d.pool.status().features.find((x) => x.name === 'demo')!;
  t.equal(f.issued, 1, 'one grant, remembered');
  t.equal(f.denied, 1, 'one denial, remembered');
});

t.test(
  'a reread refused for a keys file readable by others says why, on the wire and in the log',
  async (t) => {
    const site = makeSite(['FEATURE demo demo 1.0 permanent 1']);
    const lines: string[] = [];
    const d = await startDaemon(site, {
      logger: { error: (s) => lines.push(s), warn: () => {}, info: () => {}, debug: () => {} },
    });
    t.teardown(() => d.close());
    const c = await client(site, d.address().port);
    t.teardown(() => c.close());
    const { chmodSync } = await import('node:fs');
    chmodSync(site.keysFile, 0o644);
    const err = await c.admin(AdminOp.REREAD).catch((e: unknown) => e);
    t.type(err, DeniedError);
    t.match((err as Error).message, /reread refused: .*mode 0?644 .*chmod 600/);
    t.ok(
      lines.some((l) => /reread refused: .*mode 0?644/.test(l)),
      'and the daemon logs it',
    );
    chmodSync(site.keysFile, 0o600);
    t.match((await c.admin(AdminOp.REREAD)).message, /reread: 1 feature/);
  },
);

t.test(
  'reread applies the rule start applies: a token lifetime beyond the new grace is refused',
  async (t) => {
    const site = makeSite(['FEATURE demo demo 1.0 permanent 1']);
    const d = await startDaemon(site, { tokenLifetimeS: 86_400 });
    t.teardown(() => d.close());
    const { readFileSync, writeFileSync } = await import('node:fs');
    const keys = JSON.parse(readFileSync(site.keysFile, 'utf8'));
    keys.server.grace = 3600;
    writeFileSync(site.keysFile, JSON.stringify(keys), { mode: 0o600 });
    t.throws(() => d.reread(), /token lifetime 86400 s exceeds the keyring grace 3600 s/);
    const c = await client(site, d.address().port);
    t.teardown(() => c.close());
    t.equal((await c.checkout('demo')).state, 'held', 'the keys already served stay in force');
  },
);

t.test(
  'the restart grace counts from when the daemon listens, not from when it started',
  async (t) => {
    const site = makeSite(['FEATURE demo demo 1.0 permanent 1']);
    let d = await startDaemon(site);
    const port = d.address().port;
    const c = await client(site, port);
    await c.checkout('demo');
    await d.close();
    await c.destroy();
    // A clock that jumps 10 s while the state is being restored (as a big state would take).
    let now = Date.now();
    const info = (line: string) => {
      if (/^restart grace/.test(line)) now += 10_000;
    };
    d = await startDaemon(site, {
      port,
      graceMs: 60_000,
      now: () => now,
      tickMs: 3_600_000,
      logger: { error: () => {}, warn: () => {}, info, debug: () => {} },
    });
    t.teardown(() => d.close());
    t.equal(d.graceLeft(), 60_000, 'the whole grace is left once the daemon listens');
  },
);
