/**
 * The client library against real daemons: the retransmission schedule, typed errors, a
 * lease kept across a daemon restart (reclaimed in grace), failover between two daemons
 * sharing a keyring, and no unhandled rejections when nothing answers.
 */
import type { ChildProcess } from 'node:child_process';
import type { EventEmitter } from 'node:events';
import t from 'tap';
import { type ConnectOptions, connect } from '../../lib/client/client.ts';
import { nextDelay, retryPolicy, serverWindow } from '../../lib/client/retry.ts';
import { AdminOp, ErrorCode, MsgType } from '../../lib/wire/index.ts';
import { client, makeSite, spawnDaemon, startDaemon, udpRelay } from '../helpers/site.ts';

const LINES = [
  'FEATURE demo demo 1.0 permanent 2',
  'FEATURE solver demo 2.5 permanent 1 QUEUE=yes',
];

type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

/** A daemon in-process, a relay in front of it, and a client of the relay (closed at the end). */
async function relayed(t: Tap, o: Partial<ConnectOptions> = {}) {
  const site = makeSite(LINES);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const relay = await udpRelay(d.address().port);
  t.teardown(() => relay.close());
  const c = await client(site, relay.port, o);
  t.teardown(() => c.close());
  return { site, d, relay, c };
}

t.test('retry schedule: doubling, capped, jittered within bounds, total budget', (t) => {
  const p = retryPolicy({ initialMs: 500, maxIntervalMs: 8000, maxTotalMs: 30_000, jitter: 0.25 });
  const mid = () => 0.5;
  t.equal(nextDelay(p, 0, 0, mid), 500);
  t.equal(nextDelay(p, 1, 500, mid), 1000);
  t.equal(nextDelay(p, 4, 7500, mid), 8000, 'capped at maxIntervalMs');
  t.equal(nextDelay(p, 9, 29_000, mid), 1000, 'never past the total budget');
  t.equal(nextDelay(p, 9, 30_000, mid), undefined, 'budget spent');
  t.equal(
    nextDelay(p, 0, 0, () => 0),
    375,
    'jitter -25%',
  );
  const top = nextDelay(p, 0, 0, () => 0.999999)!;
  t.ok(top > 624.9 && top < 625, 'jitter +25% (open upper end)');
  t.throws(() => retryPolicy({ initialMs: 0 }), RangeError);
  t.throws(() => retryPolicy({ jitter: 1 }), RangeError);
  t.throws(() => retryPolicy({ failoverMs: 0 }), RangeError);
  t.end();
});

t.test('server windows: one server 15 s + 15 s; several, 1 s each, doubling per round', (t) => {
  const p = retryPolicy();
  t.equal(serverWindow(p, 1, 0, true, 30_000, 30_000), 15_000, 'mode 3: half the budget');
  t.equal(serverWindow(p, 1, 1, false, 30_000, 15_000), 15_000, 'then mode 2: the rest');
  t.equal(serverWindow(p, 1, 0, false, 30_000, 30_000), 30_000, 'mode 2 from the start: all');
  t.same(
    [0, 1, 2, 3, 4, 5].map((v) => serverWindow(p, 2, v, true, 30_000, 30_000)),
    [1000, 1000, 2000, 2000, 4000, 4000],
  );
  t.equal(serverWindow(p, 2, 6, true, 30_000, 2000), 2000, 'never past the budget');
  t.end();
});

t.test('no server: TimeoutError naming the servers, no unhandled rejection', async (t) => {
  const site = makeSite(LINES);
  const started = Date.now();
  await t.rejects(
    connect({
      servers: ['127.0.0.1:9'],
      credential: { id: 'demo', key: site.credKey },
      retry: { initialMs: 50, maxIntervalMs: 100, maxTotalMs: 400 },
    }),
    { name: 'TimeoutError', code: 'ETIMEDOUT', message: /127\.0\.0\.1:9/ },
  );
  t.ok(Date.now() - started < 5000, 'gives up on its budget');
});

t.test('a wrong credential key gets no answer (the server drops bad MACs silently)', async (t) => {
  const site = makeSite(LINES);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  await t.rejects(
    connect({
      servers: [`127.0.0.1:${d.address().port}`],
      credential: { id: 'demo', key: new Uint8Array(32).fill(7) },
      retry: { initialMs: 50, maxIntervalMs: 100, maxTotalMs: 300 },
    }),
    { name: 'TimeoutError' },
  );
  t.ok(d.counters.badMac >= 1);
});

t.test('API misuse throws TypeError/RangeError naming the parameter', async (t) => {
  await t.rejects(connect({ servers: [], credential: { id: 'x', key: new Uint8Array(32) } }), {
    name: 'TypeError',
    message: /servers/,
  });
  await t.rejects(
    connect({ servers: ['host:99999'], credential: { id: 'x', key: new Uint8Array(32) } }),
    { name: 'RangeError', message: /port/ },
  );
  const site = makeSite(LINES);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const c = await client(site, d.address().port);
  t.teardown(() => c.close());
  await t.rejects(c.checkout(''), { name: 'TypeError', message: /feature/ });
  for (const count of [0, 1.5, 65_536])
    await t.rejects(c.checkout('demo', { count }), { name: 'RangeError', message: /count/ });
  await t.rejects(c.checkout('demo', { version: 2 as unknown as string }), {
    name: 'TypeError',
    message: /version/,
  });
  const base = { servers: ['127.0.0.1:9'], credential: { id: 'x', key: new Uint8Array(32) } };
  await t.rejects(connect({ ...base, credential: { id: 'x', key: new Uint8Array(31) } }), {
    name: 'TypeError',
    message: /credential\.key/,
  });
  await t.rejects(connect({ ...base, credential: { id: '', key: new Uint8Array(32) } }), {
    name: 'TypeError',
    message: /credential\.id/,
  });
  await t.rejects(connect({ ...base, pollMs: 0 }), { name: 'RangeError', message: /pollMs/ });
  await t.rejects(connect({ ...base, heartbeatMs: -1 }), {
    name: 'RangeError',
    message: /heartbeatMs/,
  });
});

t.test('retransmissions of a request are byte-identical datagrams', async (t) => {
  const site = makeSite(LINES);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const relay = await udpRelay(d.address().port);
  t.teardown(() => relay.close());
  const c = await client(site, relay.port, {
    retry: { initialMs: 20, maxIntervalMs: 40, maxTotalMs: 400 },
  });
  t.teardown(() => c.close());
  relay.dropReplies = true;
  relay.fromClient.length = 0;
  await t.rejects(c.ping(), { name: 'TimeoutError' });
  const pings = relay.fromClient.filter((b) => b[3] === MsgType.PING);
  const byMode = new Map<number, Set<string>>();
  for (const b of pings) {
    t.equal(b.readUInt32BE(8), pings[0]!.readUInt32BE(8), 'one request id throughout');
    const set = byMode.get(b[5]!) ?? new Set();
    set.add(b.toString('hex'));
    byMode.set(b[5]!, set);
  }
  t.ok(pings.length >= 4, `retransmitted (${pings.length} datagrams)`);
  for (const [mode, set] of byMode) t.equal(set.size, 1, `mode ${mode}: every copy identical`);
});

t.test('one heartbeat in flight: not stacked, and shared with heartbeat()', async (t) => {
  const { relay, c } = await relayed(t, { heartbeatMs: 50 });
  await c.checkout('demo');
  relay.dropReplies = true;
  relay.fromClient.length = 0;
  const beats = () => relay.fromClient.filter((b) => b[3] === MsgType.HEARTBEAT);
  while (beats().length < 1) await new Promise((r) => setTimeout(r, 5));
  const mine = c.heartbeat();
  // 4 sends of one heartbeat take ~700 ms of its 3 s budget: 14 intervals of 50 ms, and the
  // public call had every chance to send its own.
  while (beats().length < 4) await new Promise((r) => setTimeout(r, 5));
  relay.dropReplies = false;
  t.equal(await mine, 1, 'heartbeat() answered with the lease count');
  t.equal(new Set(beats().map((b) => b.readUInt32BE(8))).size, 1, 'one request id in flight');
});

t.test(
  'events: queued, granted, lost and reclaimed fire on the client as documented',
  async (t) => {
    const site = makeSite(LINES);
    const d = await startDaemon(site);
    t.teardown(() => d.close());
    const port = d.address().port;
    const holder = await client(site, port, { heartbeatMs: 60_000 });
    t.teardown(() => holder.close());
    const waiter = await client(site, port, { user: 'bob', heartbeatMs: 60_000 });
    t.teardown(() => waiter.close());
    const events: unknown[][] = [];
    for (const name of ['queued', 'granted', 'lost', 'reclaimed'] as const)
      (waiter as EventEmitter).on(name, (...a: unknown[]) => events.push([name, ...a]));
    const first = await holder.checkout('solver');
    const queued = new Promise<void>((r) => waiter.once('queued', () => r()));
    const onQueued: number[][] = [];
    const pending = waiter.checkout('solver', {
      wait: true,
      onQueued: (pos, len) => onQueued.push([pos, len]),
    });
    await queued;
    t.same(events, [['queued', 'solver', 1, 1]], 'queued (feature, position, queueLength)');
    t.same(onQueued, [[1, 1]], 'onQueued (position, queueLength)');
    await first.checkin();
    const lease = await pending;
    t.equal(events.length, 2, 'queued fires once per position, then granted');
    t.same(events[1], ['granted', lease], 'granted (lease)');
    const lost = new Promise<string>((r) => lease.once('lost', r));
    await holder.admin(AdminOp.REMOVE, { feature: 'solver' });
    await waiter.heartbeat();
    const why = await lost;
    t.same(events[2], ['lost', lease, why], 'lost (lease, reason) on the client too');
    t.equal(lease.state, 'lost');
    t.same(waiter.leases, [], 'a lost lease is no longer listed');
  },
);

/** The only 'solver' seat held, and a second client (bob) behind a relay who will wait. */
async function holderAndWaiter(t: Tap, o: Partial<ConnectOptions> = {}) {
  const site = makeSite(LINES);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const holder = await client(site, d.address().port, { heartbeatMs: 60_000 });
  t.teardown(() => holder.close());
  await holder.checkout('solver');
  const relay = await udpRelay(d.address().port);
  t.teardown(() => relay.close());
  const waiter = await client(site, relay.port, { user: 'bob', heartbeatMs: 60_000, ...o });
  t.teardown(() => waiter.destroy());
  return { d, relay, waiter };
}

t.test('a wait aborted with the CHECKOUT in flight still leaves the queue', async (t) => {
  const { d, relay, waiter } = await holderAndWaiter(t);
  const ac = new AbortController();
  // The daemon gets the CHECKOUT and queues bob, but its answer is dropped: the abort lands
  // while the client still waits for it.
  const queuedAtServer = () => d.pool.status().features.find((f) => f.name === 'solver')!.queued;
  relay.dropReplies = true;
  const pending = waiter.checkout('solver', { wait: true, signal: ac.signal });
  while (relay.dropped === 0) await new Promise((r) => setTimeout(r, 5));
  t.equal(queuedAtServer(), 1, 'the server queued bob; the client was not told');
  relay.dropReplies = false;
  ac.abort();
  await t.rejects(pending, { name: 'AbortError' });
  t.equal(queuedAtServer(), 0, 'bob is no longer in the queue');
  const sent = relay.fromClient.filter((b) => b[3] === MsgType.CHECKOUT);
  t.equal(new Set(sent.map((b) => b.readUInt32BE(8))).size, 1, 'no second CHECKOUT was sent');
});

t.test('a lease survives a daemon restart: reclaimed during grace, others wait', async (t) => {
  const site = makeSite(LINES);
  let d = await startDaemon(site, { graceMs: 10_000 });
  const port = d.address().port;
  const c = await client(site, port, { heartbeatMs: 100 });
  t.teardown(() => c.close());
  const lease = await c.checkout('solver');
  const reclaimed = new Promise<void>((r) => lease.once('reclaimed', () => r()));
  await d.close();
  d = await startDaemon(site, { port, graceMs: 10_000 });
  t.teardown(() => d.close());
  t.ok(d.graceLeft() > 0, 'restarted in grace');
  await reclaimed;
  t.equal(lease.state, 'held');
  t.equal(d.graceLeft(), 0, 'grace ended early: every known holder reclaimed');
  const other = await client(site, port, { user: 'bob' });
  t.teardown(() => other.close());
  await t.rejects(
    other.checkout('solver'),
    { name: 'DeniedError', reason: ErrorCode.NO_SEATS },
    'the seat is still held',
  );
  await lease.checkin();
  const l2 = await other.checkout('solver');
  t.equal(l2.feature, 'solver');
});

t.test('during grace new checkouts are refused with IN_GRACE and the time left', async (t) => {
  const site = makeSite(LINES);
  let d = await startDaemon(site, { graceMs: 30_000 });
  const port = d.address().port;
  const c = await client(site, port, { heartbeatMs: 60_000 });
  const lease = await c.checkout('demo');
  t.ok(lease);
  await c.destroy();
  await d.close();
  d = await startDaemon(site, { port, graceMs: 30_000 });
  t.teardown(() => d.close());
  const other = await client(site, port, { user: 'bob' });
  t.teardown(() => other.close());
  const err = await other.checkout('demo').catch((e) => e);
  t.equal(err.name, 'DeniedError');
  t.equal(err.reason, ErrorCode.IN_GRACE);
  t.ok(
    err.retryAfterMs > 20_000 && err.retryAfterMs <= 30_000,
    `time left reported (${err.retryAfterMs} ms)`,
  );
  const pong = await other.ping();
  t.equal(pong.state, 'grace');
});

t.test(
  'failover: a second daemon sharing the keyring takes the session and the seat',
  async (t) => {
    const site = makeSite(LINES);
    const d1 = await startDaemon(site);
    // Same keys and license, its own (empty) state dir: a standby server.
    const d2 = await startDaemon({ ...site, stateDir: `${site.stateDir}-b` }, { graceMs: 0 });
    t.teardown(() => d2.close());
    const c = await client(site, [d1.address().port, d2.address().port], { heartbeatMs: 100 });
    t.teardown(() => c.close());
    const lease = await c.checkout('solver');
    const failedOver = new Promise<string>((r) => c.once('failover', r));
    const reclaimed = new Promise<void>((r) => lease.once('reclaimed', () => r()));
    await d1.close();
    const to = await failedOver;
    t.equal(to, `127.0.0.1:${d2.address().port}`);
    await reclaimed;
    const st = await c.status('solver');
    t.equal(st.server, to);
    t.equal(st.features[0]!.inUse, 1, 'the new server counts the reclaimed seat');
    t.equal(st.holders[0]!.leaseId, lease.leaseId, 'same lease id');
    await lease.checkin();
    const after = await c.status('solver');
    t.equal(after.features[0]!.inUse, 0);
  },
);

t.test('two restarts in a row: the lease is reclaimed each time and still counted', async (t) => {
  const site = makeSite(LINES);
  let d = await startDaemon(site, { graceMs: 10_000 });
  const port = d.address().port;
  const c = await client(site, port, { heartbeatMs: 60_000 });
  t.teardown(() => c.close());
  const lease = await c.checkout('solver');
  for (let i = 0; i < 2; i++) {
    await d.close();
    d = await startDaemon(site, { port, graceMs: 10_000 });
    t.ok(d.graceLeft() > 0, `restart ${i + 1}: in grace`);
    t.equal(await c.heartbeat(), 0, `restart ${i + 1}: the ack counts no reclaimed lease yet`);
    t.equal(
      d.pool.status().features.find((f) => f.name === 'solver')!.inUse,
      1,
      `restart ${i + 1}: the seat is counted once`,
    );
    t.equal(await c.heartbeat(), 1, `restart ${i + 1}: reclaimed (the next ack counts it)`);
    t.equal(d.graceLeft(), 0, `restart ${i + 1}: grace ended early`);
    t.equal(lease.state, 'held');
  }
  t.teardown(() => d.close());
  t.equal(d.pool.status().features.find((f) => f.name === 'solver')!.inUse, 1);
});

t.test('an admin remove is not undone by the holder re-presenting its ticket', async (t) => {
  const site = makeSite(LINES);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const c = await client(site, d.address().port, { heartbeatMs: 60_000 });
  t.teardown(() => c.close());
  const lease = await c.checkout('solver');
  const lost = new Promise<string>((r) => lease.once('lost', r));
  const r = await c.admin(AdminOp.REMOVE, { feature: 'solver' });
  t.equal(r.affected, 1);
  t.equal(await c.heartbeat(), 0, 'the server no longer counts it');
  t.match(await lost, /REMOVED/, 'the holder is told an admin removed its seat');
  t.equal(d.pool.status().features.find((f) => f.name === 'solver')!.inUse, 0);
});

t.test('close() ends the session on the server', async (t) => {
  const site = makeSite(LINES);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const c = await client(site, d.address().port);
  await c.checkout('demo');
  t.equal(d.sessionCount, 1);
  await c.close();
  t.equal(d.sessionCount, 0, 'no session left to count against the user');
  t.equal(d.pool.status().features.find((f) => f.name === 'demo')!.inUse, 0);
});

t.test(
  'a checkin answered BUSY (the server cannot write for a moment) goes again, same request, and frees the seat',
  async (t) => {
    const { d, relay, c } = await relayed(t, { heartbeatMs: 60_000 });
    const lease = await c.checkout('demo');
    const inUse = () => d.pool.status().features.find((f) => f.name === 'demo')!.inUse;
    t.equal(inUse(), 1);
    d.store.injectFault(
      Object.assign(new Error('SQLITE_FULL: simulated'), { code: 'SQLITE_FULL' }),
    );
    const checkins: { at: number; rid: number }[] = [];
    relay.onRequest = (b) => {
      if (b[3] !== MsgType.CHECKIN) return;
      checkins.push({ at: performance.now(), rid: b.readUInt32BE(8) });
      // The disk is back when the retry after the BUSY hint (1 s) arrives; retransmissions
      // of the first come within 400 ms. Cleared before the relay forwards it.
      if (checkins.at(-1)!.at - checkins[0]!.at >= 700) d.store.injectFault(undefined);
    };
    await lease.checkin();
    t.ok(
      checkins.some((c) => c.at - checkins[0]!.at >= 700),
      'sent again after the BUSY hint, and then processed',
    );
    t.same(
      [...new Set(checkins.map((c) => c.rid))],
      [checkins[0]!.rid],
      'always the same request (the first was not processed)',
    );
    t.equal(lease.state, 'released');
    t.equal(inUse(), 0, 'the seat is free on the server');
  },
);

t.test(
  'a checkin the server stays too busy for leaves the lease held and heartbeated',
  async (t) => {
    const { d, relay, c } = await relayed(t, { heartbeatMs: 60_000 });
    const lease = await c.checkout('demo');
    d.store.injectFault(
      Object.assign(new Error('SQLITE_IOERR: simulated'), { code: 'SQLITE_IOERR' }),
    );
    // Sendings of the CHECKIN: a new one when it comes ≥ 700 ms after the last datagram
    // (after the 1 s hint; retransmissions come within 400 ms).
    let sendings = 0;
    let last = -Infinity;
    relay.onRequest = (b) => {
      if (b[3] !== MsgType.CHECKIN) return;
      const now = performance.now();
      if (now - last >= 700) sendings++;
      last = now;
    };
    const err = await lease.checkin().catch((e: unknown) => e);
    t.match(err, { name: 'DeniedError', code: 'BUSY' });
    t.equal(sendings, 6, 'the first sending and five retries, one per hint');
    t.equal(lease.state, 'held', 'not given back: the server still counts it');
    d.store.injectFault(undefined);
    t.equal(await c.heartbeat(), 1, 'still heartbeated');
    await lease.checkin();
    t.equal(lease.state, 'released');
    t.equal(d.pool.status().features.find((f) => f.name === 'demo')!.inUse, 0);
  },
);

t.test('DeniedError names its reason; a lease carries the granted version', async (t) => {
  const { site, d, c } = await relayed(t, { heartbeatMs: 60_000 });
  const lease = await c.checkout('solver');
  t.equal(lease.version, '2.5', 'the version granted, not the empty one asked for');
  const other = await client(site, d.address().port, { user: 'bob', heartbeatMs: 60_000 });
  t.teardown(() => other.close());
  const err = await other.checkout('solver').catch((e: unknown) => e);
  t.match(err, { name: 'DeniedError', reason: ErrorCode.NO_SEATS, reasonName: 'NO_SEATS' });
  t.match(err, { code: 'NO_SEATS', message: /NO_SEATS/ });
});

t.test('contact-lost names the silent server; contact-restored follows its answer', async (t) => {
  const { relay, c } = await relayed(t, { heartbeatMs: 60_000 });
  await c.checkout('demo');
  const events: string[] = [];
  c.on('contact-lost', (s: string) => events.push(`lost ${s}`));
  c.on('contact-restored', (s: string) => events.push(`restored ${s}`));
  const lost = new Promise<void>((r) => c.once('contact-lost', () => r()));
  relay.dropReplies = true;
  const beat = c.heartbeat();
  await lost;
  relay.dropReplies = false;
  await beat;
  const name = `127.0.0.1:${relay.port}`;
  t.same(events, [`lost ${name}`, `restored ${name}`]);
});

t.test('close() with the server gone gives up within its own short budget', async (t) => {
  // The library's default schedule: 30 s per request, 500 ms first interval.
  const { relay, c } = await relayed(t, { retry: {}, heartbeatMs: 60_000 });
  await c.checkout('demo');
  relay.dropReplies = true;
  relay.fromClient.length = 0;
  await c.close();
  const checkins = relay.fromClient.filter((b) => b[3] === MsgType.CHECKIN);
  // A 30 s budget would send 7 copies of the CHECKIN and then 7 of the session's end; within
  // the close budget (1 s) there is room for the first send and a retransmission or two of
  // each (a loaded machine fires timers late, never more of them): far fewer than 14.
  t.ok(checkins.length >= 1 && checkins.length <= 6, `${checkins.length} CHECKIN datagrams`);
});

t.test('an aborted wait with the server gone does not wait out the budget', async (t) => {
  const { relay, waiter } = await holderAndWaiter(t, { retry: {} });
  const ac = new AbortController();
  const queued = new Promise<void>((r) => waiter.once('queued', () => r()));
  const pending = waiter.checkout('solver', { wait: true, signal: ac.signal });
  await queued;
  relay.dropReplies = true;
  relay.fromClient.length = 0;
  ac.abort();
  await t.rejects(pending, { name: 'AbortError' });
  const leave = relay.fromClient.filter((b) => b[3] === MsgType.CHECKIN);
  // The 0.5 s leave budget holds the first send and a retransmission or two (a loaded
  // machine fires timers late): far fewer than the 7 a 30 s budget would send.
  t.ok(leave.length >= 1 && leave.length <= 4, `${leave.length} CHECKIN datagrams to leave`);
});

/** Two floatlmd child processes: A, and B started with --takeover (its own empty state). */
async function twoDaemons(
  t: Tap,
  lines: string[],
  bArgs: string[] = [],
): Promise<{
  site: ReturnType<typeof makeSite>;
  a: Awaited<ReturnType<typeof spawnDaemon>>;
  b: Awaited<ReturnType<typeof spawnDaemon>>;
}> {
  const site = makeSite(lines);
  const a = await spawnDaemon(site, ['--heartbeat', '1']);
  t.teardown(() => a.child.kill('SIGKILL'));
  const b = await spawnDaemon({ ...site, stateDir: `${site.stateDir}-b` }, [
    '--takeover',
    '--heartbeat',
    '1',
    ...bArgs,
  ]);
  t.teardown(() => b.child.kill('SIGKILL'));
  return { site, a, b };
}

function killed(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

t.test(
  'kill -9: every holder reclaims on the next server of its list, within its grace',
  async (t) => {
    const { site, a, b } = await twoDaemons(t, [
      'FEATURE demo demo 1.0 permanent 4 DUP_GROUP=NONE',
    ]);
    const ra = await udpRelay(a.port);
    const rb = await udpRelay(b.port);
    t.teardown(() => Promise.all([ra.close(), rb.close()]));
    // The library's defaults (retry, heartbeat as the server asks: 1 s here). One at a time,
    // after a first exchange has warmed A up: on a loaded machine four cold HELLOs at once
    // can take A past the 1 s failover window, and the seats would be asked of B, in its grace.
    const warm = await client(site, [ra.port]);
    await warm.ping();
    await warm.destroy();
    const clients: Awaited<ReturnType<typeof client>>[] = [];
    t.teardown(() => Promise.all(clients.map((c) => c.destroy())));
    const leases = [];
    for (const user of ['u1', 'u2', 'u3', 'u4']) {
      const c = await client(site, [ra.port, rb.port], { user, retry: {} });
      clients.push(c);
      leases.push(await c.checkout('demo'));
    }
    const lost: string[] = [];
    for (const l of leases) l.on('lost', (why: string) => lost.push(why));
    const reclaimed = Promise.all(
      leases.map((l) => new Promise<void>((r) => l.once('reclaimed', () => r()))),
    );
    await killed(a.child);
    ra.fromClient.length = 0;
    await reclaimed;
    t.same(lost, [], 'no lease lost');
    t.ok(
      leases.every((l) => l.state === 'held'),
      'every client still holds its seat',
    );
    t.equal(
      ra.fromClient.filter((m) => m[3] === MsgType.RECLAIM).length,
      0,
      'no RECLAIM went to the dead server',
    );
    t.ok(rb.fromClient.filter((m) => m[3] === MsgType.RECLAIM).length >= 4, 'RECLAIMs reached B');
    for (const c of clients) t.equal(c.server, `127.0.0.1:${rb.port}`, 'each now uses B');
    const st = await clients[0]!.status('demo');
    t.equal(st.features[0]!.inUse, 4, 'B counts the 4 seats');
    t.same(
      st.holders.map((h) => h.leaseId).sort(),
      leases.map((l) => l.leaseId).sort(),
      'the same lease ids',
    );
    const pong = await clients[0]!.ping();
    t.equal(pong.state, 'grace', 'all reclaimed while B was still in its takeover grace');
  },
);

t.test('a reclaim refused by the next server tells the application at once', async (t) => {
  const { site, a, b } = await twoDaemons(
    t,
    ['FEATURE demo demo 1.0 permanent 1 DUP_GROUP=NONE'],
    ['--grace', '0'],
  );
  const c1 = await client(site, [a.port, b.port], { heartbeatMs: 60_000 });
  t.teardown(() => c1.destroy());
  const lease = await c1.checkout('demo');
  const lost = new Promise<string>((r) => lease.once('lost', r));
  await killed(a.child);
  // Without grace, a newcomer on B takes the only seat before the holder comes back.
  const c2 = await client(site, b.port, { user: 'bob', heartbeatMs: 60_000 });
  t.teardown(() => c2.close());
  await c2.checkout('demo');
  t.equal(await c1.heartbeat(), 0, 'B counts no lease of the holder');
  t.match(await lost, /NO_SEATS/, 'the refused reclaim is reported as a lost lease');
  t.equal(lease.state, 'lost');
  t.same(c1.leases, [], 'the client no longer believes it holds the seat');
});
