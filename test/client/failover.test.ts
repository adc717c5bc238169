/**
 * Client failover with the library's default retry policy, against real daemons on
 * 127.0.0.1 (protocol.md section 11): how soon a heartbeat is acknowledged by the next
 * server of the list once the current one stops answering (SIGSTOP; a socket that answers
 * nothing), with the replay-floor resync and the reclaim on the way; no RECLAIM when the
 * next server already counts the leases; and moving away from a server that says DEGRADED
 * or answers BUSY when another server of the list serves.
 */
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import t from 'tap';
import type { Client } from '../../lib/client/client.ts';
import { DEFAULT_RETRY } from '../../lib/client/retry.ts';
import type { Daemon } from '../../lib/server/daemon.ts';
import { AuthMode, MsgType } from '../../lib/wire/index.ts';
import { client, makeSite, spawnDaemon, startDaemon, udpRelay } from '../helpers/site.ts';

type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

/** From the first unanswered datagram to the heartbeat acknowledged by another server, ms. */
const TARGET_MS = 2000;

/** A UDP port on 127.0.0.1 free right now (bound to 0, then closed). */
async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const { port } = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Waits until process `pid` is stopped (state T in /proc), at most 5 s. */
async function stopped(pid: number): Promise<boolean> {
  for (let i = 0; i < 500; i++) {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (/^\d+ \(.*\) [Tt] /.test(stat)) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return false;
}

function inUse(d: Daemon): number {
  return d.pool.status().features.find((f) => f.name === 'demo')?.inUse ?? 0;
}

/**
 * Times one heartbeat of `c`, whose current server is behind relay `toDead`, which answers
 * nothing from now on: from the first HEARTBEAT datagram the relay sees to the 'failover'
 * event, and to heartbeat() resolved (acknowledged, and any reclaim it triggers done).
 */
async function timedBeat(c: Client, toDead: { onRequest: ((b: Buffer) => void) | undefined }) {
  let first: number | undefined;
  let sentToDead = 0;
  toDead.onRequest = (b) => {
    if (b[3] !== MsgType.HEARTBEAT) return;
    first ??= performance.now();
    sentToDead++;
  };
  let failedOver: number | undefined;
  c.once('failover', () => {
    failedOver = performance.now();
  });
  const leases = await c.heartbeat();
  const acked = performance.now();
  toDead.onRequest = undefined;
  if (first === undefined || failedOver === undefined) throw new Error('no failover happened');
  return { failoverMs: failedOver - first, ackMs: acked - first, sentToDead, leases };
}

t.test('defaults: the current server frozen or killed, the next one acks within 2 s', async (t) => {
  t.equal(DEFAULT_RETRY.failoverMs, 1000, 'the default failover window');
  const times: number[] = [];
  for (let run = 0; run < 4; run++) {
    const how = run % 2 === 0 ? 'SIGSTOP' : 'SIGKILL';
    const site = makeSite(['FEATURE demo demo 1.0 permanent 2 DUP_GROUP=NONE']);
    // No heartbeat from the timer during the run: the test sends its own.
    const a = await spawnDaemon(site, ['--heartbeat', '600']);
    t.teardown(() => a.child.kill('SIGKILL'));
    const b = await spawnDaemon({ ...site, stateDir: `${site.stateDir}-b` }, [
      '--takeover',
      '--heartbeat',
      '600',
    ]);
    t.teardown(() => b.child.kill('SIGKILL'));
    const ra = await udpRelay(a.port);
    t.teardown(() => ra.close());
    const c = await client(site, [ra.port, b.port], { retry: {} });
    t.teardown(() => c.destroy());
    const lease = await c.checkout('demo');
    if (how === 'SIGSTOP') {
      a.child.kill('SIGSTOP');
      t.ok(await stopped(a.child.pid!), 'A is stopped');
    } else {
      const exited = new Promise((r) => a.child.once('exit', r));
      a.child.kill('SIGKILL');
      await exited;
    }
    const r = await timedBeat(c, ra);
    times.push(r.ackMs);
    t.comment(
      `run ${run + 1} (${how}): failover ${r.failoverMs.toFixed(0)} ms, heartbeat acked and seat reclaimed ${r.ackMs.toFixed(0)} ms, ${r.sentToDead} datagrams to A`,
    );
    t.ok(
      r.ackMs < TARGET_MS,
      `acknowledged by B ${r.ackMs.toFixed(0)} ms after the first unanswered datagram`,
    );
    t.ok(
      r.sentToDead >= 1 && r.sentToDead <= 2,
      `A got the first send and at most one retransmission (${r.sentToDead})`,
    );
    t.equal(c.server, `127.0.0.1:${b.port}`, 'B is the current server');
    t.equal(lease.state, 'held', 'the seat is held on B');
    await c.destroy();
    a.child.kill('SIGKILL');
    b.child.kill('SIGKILL');
  }
  t.comment(`max ${Math.max(...times).toFixed(0)} ms`);
});

t.test(
  'defaults: the next server knows the session (replay floor) and the lease (grace): the whole chain within 2 s',
  async (t) => {
    const site = makeSite(['FEATURE demo demo 1.0 permanent 2 DUP_GROUP=NONE']);
    const a = await startDaemon(site, { heartbeatMs: 600_000 });
    const ra = await udpRelay(a.address().port);
    const pB = await freeUdpPort();
    const rb = await udpRelay(pB);
    t.teardown(() => Promise.all([ra.close(), rb.close()]));
    const c = await client(site, [ra.port, rb.port], { retry: {} });
    t.teardown(() => c.destroy());
    const lease = await c.checkout('demo');
    // A goes (its socket closes; its relay stays: a bound socket that answers nothing) and
    // its state is served at another address, as by a server that shares it: that server
    // knows the session, with a replay floor above the client's seqs, and the lease, not
    // yet reclaimed.
    await a.close();
    const b = await startDaemon(site, { port: pB, heartbeatMs: 600_000, graceMs: 30_000 });
    t.teardown(() => b.close());
    t.ok(b.graceLeft() > 0, 'B serves the state in its restart grace');
    rb.fromClient.length = 0;
    const r = await timedBeat(c, ra);
    t.comment(
      `failover ${r.failoverMs.toFixed(0)} ms, heartbeat acked after the floor resync and the reclaim ${r.ackMs.toFixed(0)} ms`,
    );
    t.ok(r.ackMs < TARGET_MS, `the whole chain took ${r.ackMs.toFixed(0)} ms`);
    const beats = rb.fromClient.filter((m) => m[3] === MsgType.HEARTBEAT);
    const rid = beats[0]!.readUInt32BE(8);
    t.ok(
      beats.length >= 2 && beats.every((m) => m.readUInt32BE(8) === rid),
      'B was sent the heartbeat twice under one request id: below its replay floor, then above',
    );
    t.ok(
      rb.fromClient.some((m) => m[3] === MsgType.RECLAIM),
      'the unclaimed lease was re-presented',
    );
    t.equal(lease.state, 'held');
    t.equal(b.graceLeft(), 0, 'B counts the reclaimed lease: grace ended early');
    t.equal(inUse(b), 1);
  },
);

/** Two in-process daemons of one site (own state each, B without grace), a relay before each. */
async function relayedPair(t: Tap, lines: string[]) {
  const site = makeSite(lines);
  const a = await startDaemon(site, { heartbeatMs: 600_000 });
  t.teardown(() => a.close());
  const b = await startDaemon(
    { ...site, stateDir: `${site.stateDir}-b` },
    { heartbeatMs: 600_000, graceMs: 0 },
  );
  t.teardown(() => b.close());
  const ra = await udpRelay(a.address().port);
  const rb = await udpRelay(b.address().port);
  t.teardown(() => Promise.all([ra.close(), rb.close()]));
  return { site, a, b, ra, rb };
}

t.test(
  'a failover to a server that counts every lease of the session re-presents no ticket',
  async (t) => {
    const { site, b, ra, rb } = await relayedPair(t, [
      'FEATURE demo demo 1.0 permanent 3 DUP_GROUP=NONE',
    ]);
    const c = await client(site, [ra.port, rb.port], { retry: {} });
    t.teardown(() => c.destroy());
    const lease = await c.checkout('demo');
    let reclaimed = 0;
    c.on('reclaimed', () => reclaimed++);
    const lost: string[] = [];
    c.on('lost', (_l, why) => lost.push(why));
    // A goes silent: B never saw the session (mode 2 restores it there), counts none of its
    // leases, and gets the ticket.
    ra.dropReplies = true;
    t.equal(await c.heartbeat(), 0, 'B counted no lease of ours at first');
    t.equal(c.server, `127.0.0.1:${rb.port}`);
    t.equal(reclaimed, 1, 'the ticket was re-presented to B');
    t.equal(inUse(b), 1, 'B holds the seat');
    // Now B goes silent and A answers again: A knows the session (mode 3) and still holds
    // the lease, as a server of a site sharing the ledger would.
    ra.dropReplies = false;
    rb.dropReplies = true;
    ra.fromClient.length = 0;
    const failedOver = new Promise<string>((r) => c.once('failover', r));
    t.equal(await c.heartbeat(), 1, 'A counts the lease');
    t.equal(await failedOver, `127.0.0.1:${ra.port}`);
    // A RECLAIM sent after that ACK would reach A before this ping does.
    await c.ping();
    const toA = ra.fromClient;
    t.ok(
      toA.some((m) => m[3] === MsgType.HEARTBEAT && m[5] === AuthMode.SESSION),
      'the heartbeat went to A in mode 3',
    );
    t.equal(toA.filter((m) => m[3] === MsgType.RECLAIM).length, 0, 'no RECLAIM to A');
    t.equal(reclaimed, 1, 'no reclaim on this failover');
    // A failover on another request than a heartbeat: a CHECKOUT answered by B, which knows
    // the session and the first lease: one HEARTBEAT asks what it counts, and no RECLAIM.
    rb.dropReplies = false;
    ra.dropReplies = true;
    rb.fromClient.length = 0;
    const second = await c.checkout('demo');
    t.equal(c.server, `127.0.0.1:${rb.port}`, 'the checkout was answered by B');
    await c.heartbeat();
    t.ok(
      rb.fromClient.some((m) => m[3] === MsgType.HEARTBEAT),
      'B was asked how many leases it counts',
    );
    t.equal(rb.fromClient.filter((m) => m[3] === MsgType.RECLAIM).length, 0, 'no RECLAIM to B');
    t.equal(inUse(b), 2, 'B holds both seats');
    t.same(lost, [], 'no lease lost');
    t.ok(lease.state === 'held' && second.state === 'held');
  },
);

t.test('a BUSY answer sends the request to the next server at once, same request id', async (t) => {
  const { site, a, b, ra, rb } = await relayedPair(t, [
    'FEATURE demo demo 1.0 permanent 2 DUP_GROUP=NONE',
  ]);
  const c = await client(site, [ra.port, rb.port], { retry: {} });
  t.teardown(() => c.destroy());
  const first = await c.checkout('demo');
  // A's disk fails; another client of A only makes it try to write, and degrade.
  const other = await client(site, a.address().port, { user: 'bob' });
  t.teardown(() => other.destroy());
  a.store.injectFault(Object.assign(new Error('SQLITE_FULL: simulated'), { code: 'SQLITE_FULL' }));
  await t.rejects(other.checkout('demo'), /BUSY|ETIMEDOUT/);
  t.equal(a.state, 'DEGRADED', 'A degraded');
  const failovers: string[] = [];
  c.on('failover', (s) => failovers.push(s));
  ra.fromClient.length = 0;
  rb.fromClient.length = 0;
  const second = await c.checkout('demo');
  t.same(failovers, [`127.0.0.1:${rb.port}`], 'moved to B');
  const toA = ra.fromClient.filter((m) => m[3] === MsgType.CHECKOUT);
  const toB = rb.fromClient.filter((m) => m[3] === MsgType.CHECKOUT);
  t.equal(toA.length, 1, 'A answered BUSY at once: no retransmission to A');
  const rid = toA[0]!.readUInt32BE(8);
  t.equal(toB[0]!.readUInt32BE(8), rid, 'B got the same request (not processed by A)');
  t.equal(second.state, 'held', 'granted by B');
  t.equal(first.state, 'held', 'the first seat was re-presented to B, which never had it');
  t.equal(inUse(b), 2);
  t.equal(inUse(a), 1, 'A granted nothing more');
  t.ok(
    toB.length >= 2 && toB.every((m) => m.readUInt32BE(8) === rid),
    'B got it in mode 2 (answered NEED_PADDING), then in mode 3, always as the same request',
  );
  t.same([...new Set(toB.map((m) => m[5]))], [2, 3], 'mode 2 first, then mode 3');
  // Heartbeats stay with B, whatever A says.
  ra.fromClient.length = 0;
  t.equal(await c.heartbeat(), 2);
  t.equal(ra.fromClient.length, 0, 'nothing more to A');
  a.store.injectFault(undefined);
});

t.test(
  'a DEGRADED server is left for a running one; a new client connects to that one',
  async (t) => {
    const { site, a, b, ra, rb } = await relayedPair(t, [
      'FEATURE demo demo 1.0 permanent 3 DUP_GROUP=NONE',
    ]);
    const c = await client(site, [ra.port, rb.port], { retry: {} });
    t.teardown(() => c.destroy());
    const lease = await c.checkout('demo');
    // Another client of A only makes A try to write, and fail.
    const other = await client(site, a.address().port, { user: 'bob' });
    t.teardown(() => other.destroy());
    a.store.injectFault(
      Object.assign(new Error('SQLITE_IOERR: simulated'), { code: 'SQLITE_IOERR' }),
    );
    await t.rejects(other.checkout('demo'), /BUSY|ETIMEDOUT/);
    t.equal(a.state, 'DEGRADED');
    t.equal((await c.ping()).state, 'degraded', 'PONG says DEGRADED');
    t.equal(c.server, `127.0.0.1:${ra.port}`, 'still with A: nothing asked of it yet');
    const failedOver = new Promise<string>((r) => c.once('failover', r));
    await c.heartbeat();
    t.equal(await failedOver, `127.0.0.1:${rb.port}`, 'the next heartbeat went to B');
    t.equal(lease.state, 'held', 'the seat re-presented to B');
    t.equal(inUse(b), 1);
    t.equal((await c.ping()).state, 'running');
    // First contact while A is degraded: A refuses the HELLO BUSY, B opens the session.
    rb.fromClient.length = 0;
    const late = await client(site, [ra.port, rb.port], { user: 'carol', retry: {} });
    t.teardown(() => late.destroy());
    t.equal(late.server, `127.0.0.1:${rb.port}`);
    t.equal((await late.checkout('demo')).state, 'held');
    t.equal(inUse(b), 2);
    a.store.injectFault(undefined);
  },
);
