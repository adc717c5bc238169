/**
 * The client library against real daemons: the retransmission schedule, typed errors, a
 * lease kept across a daemon restart (reclaimed in grace), failover between two daemons
 * sharing a keyring, and no unhandled rejections when nothing answers.
 */
import t from 'tap';
import { connect } from '../../lib/client/client.ts';
import { nextDelay, retryPolicy } from '../../lib/client/retry.ts';
import { AdminOp, ErrorCode, MsgType } from '../../lib/wire/index.ts';
import { client, makeSite, startDaemon, udpRelay } from '../helpers/site.ts';

const LINES = [
  'FEATURE demo demo 1.0 permanent 2',
  'FEATURE solver demo 2.5 permanent 1 QUEUE=yes',
];

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

t.test('a heartbeat unanswered past its interval is not stacked with more', async (t) => {
  const site = makeSite(LINES);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const relay = await udpRelay(d.address().port);
  t.teardown(() => relay.close());
  const c = await client(site, relay.port, { heartbeatMs: 50 });
  t.teardown(() => c.close());
  await c.checkout('demo');
  relay.dropReplies = true;
  relay.fromClient.length = 0;
  const beats = () => relay.fromClient.filter((b) => b[3] === MsgType.HEARTBEAT);
  // 4 sends of one heartbeat take ~700 ms of its 3 s budget: 14 intervals of 50 ms.
  while (beats().length < 4) await new Promise((r) => setTimeout(r, 10));
  t.equal(new Set(beats().map((b) => b.readUInt32BE(8))).size, 1, 'one heartbeat in flight');
  relay.dropReplies = false;
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
    for (const name of ['queued', 'granted', 'lost', 'reclaimed'])
      waiter.on(name, (...a: unknown[]) => events.push([name, ...a]));
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

t.test('a wait aborted with the CHECKOUT in flight still leaves the queue', async (t) => {
  const site = makeSite(LINES);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const holder = await client(site, d.address().port, { heartbeatMs: 60_000 });
  t.teardown(() => holder.close());
  await holder.checkout('solver');
  const relay = await udpRelay(d.address().port);
  t.teardown(() => relay.close());
  const waiter = await client(site, relay.port, { user: 'bob', heartbeatMs: 60_000 });
  t.teardown(() => waiter.close());
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
  t.match(await lost, /ALREADY_RECLAIMED/, 'the holder is told its seat is gone');
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
