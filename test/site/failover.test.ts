/**
 * A site of two floatlmd child processes over a real 3-member etcd on 127.0.0.1, attacked as
 * an operator's bad day would: kill -9 of the server a client holds a seat on (the client
 * moves, its seat still held, new checkouts served throughout, nobody holds more than the
 * count), SIGSTOP of a server past the client's timeout (then SIGCONT: still within the
 * count), and loss of the etcd majority (granting stops, the log says so, PONG is DEGRADED,
 * nothing acknowledged is lost; granting resumes when the majority is back).
 * Skips without etcd on PATH (fails under CI=true).
 */
import type { ChildProcess } from 'node:child_process';
import t from 'tap';
import type { Client, Lease } from '../../lib/client/client.ts';
import type { EtcdLedger } from '../../lib/store/etcd.ts';
import { type EtcdCluster, skipWithoutEtcd, startCluster } from '../helpers/etcd.ts';
import { client, makeSite, type Site } from '../helpers/site.ts';
import { siteObserver, siteServer } from '../helpers/site-servers.ts';

const skip = skipWithoutEtcd();
let cluster: EtcdCluster;
const children: ChildProcess[] = [];
const clients: Client[] = [];
const ledgers: EtcdLedger[] = [];

t.before(async () => {
  if (!skip) cluster = await startCluster();
});
t.teardown(async () => {
  for (const c of clients) await c.close().catch(() => undefined);
  for (const ch of children) {
    if (ch.exitCode === null && ch.signalCode === null) {
      ch.kill('SIGCONT');
      ch.kill('SIGKILL');
    }
  }
  for (const l of ledgers) await l.close().catch(() => undefined);
  await cluster?.teardown();
});

async function server(site: Site, name: string, siteName: string) {
  const s = await siteServer(cluster, site, name, siteName);
  children.push(s.child);
  return s;
}

/** An observer of the site's ledger: reads the counter as etcd has it. */
async function observer(siteName: string): Promise<EtcdLedger> {
  const l = await siteObserver(cluster, siteName);
  ledgers.push(l);
  return l;
}

function once<T extends unknown[]>(c: Client, event: 'failover' | 'lost', ms: number) {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms);
    c.once(event, (...a: unknown[]) => {
      clearTimeout(timer);
      resolve(a as T);
    });
  });
}

t.test(
  "kill -9 of the holder's server: the client moves, its seat is still held",
  { skip },
  async (t) => {
    const site = makeSite(['FEATURE cad demo 1.0 permanent 3']);
    const a = await server(site, 'a', 'kill');
    const b = await server(site, 'b', 'kill');
    const obs = await observer('kill');
    const holder = await client(site, [a.port, b.port], {
      user: 'holder',
      host: 'h0',
      retry: { initialMs: 100, maxIntervalMs: 400, maxTotalMs: 10_000, failoverMs: 600 },
    });
    clients.push(holder);
    const lease: Lease = await holder.checkout('cad');
    const lost: string[] = [];
    lease.on('lost', (why: string) => lost.push(why));
    t.equal(await obs.held('cad@1.0'), 1, 'etcd holds the seat');

    a.child.kill('SIGKILL');
    const start = Date.now();
    const [to] = await once<[string]>(holder, 'failover', 15_000);
    t.equal(to, `127.0.0.1:${b.port}`, 'the client moved to the other server');
    t.ok(Date.now() - start < 15_000, 'within the client budget');

    // New checkouts are served by the survivor right away: no grace on a site.
    const other = await client(site, [b.port], { user: 'other', host: 'h1' });
    clients.push(other);
    await other.checkout('cad');
    t.equal(await obs.held('cad@1.0'), 2, 'the moved seat and the new one, nothing else');
    t.same(lost, [], 'the holder never lost its seat');
    // Two more: the count is 3, the holder's seat counts.
    const third = await client(site, [b.port], { user: 'third', host: 'h2' });
    clients.push(third);
    await third.checkout('cad');
    const fourth = await client(site, [b.port], { user: 'fourth', host: 'h3' });
    clients.push(fourth);
    await t.rejects(
      fourth.checkout('cad'),
      /NO_SEATS/,
      'a fourth is denied: the moved seat counts',
    );
    t.equal(await obs.held('cad@1.0'), 3, 'held = count');
    await lease.checkin();
    t.equal(await obs.held('cad@1.0'), 2, 'the holder checked its seat in at the survivor');
  },
);

t.test(
  'SIGSTOP past the client timeout, then SIGCONT: the site stays within the count',
  { skip },
  async (t) => {
    const site = makeSite(['FEATURE cad demo 1.0 permanent 2']);
    const a = await server(site, 'a', 'stop');
    const b = await server(site, 'b', 'stop');
    const obs = await observer('stop');
    const holder = await client(site, [a.port, b.port], {
      user: 'holder',
      host: 'h0',
      retry: { initialMs: 100, maxIntervalMs: 400, maxTotalMs: 10_000, failoverMs: 600 },
    });
    clients.push(holder);
    const lease = await holder.checkout('cad');
    const lost: string[] = [];
    lease.on('lost', (why: string) => lost.push(why));
    a.child.kill('SIGSTOP');
    await once(holder, 'failover', 15_000);
    // Past the frozen server's etcd lease: it may not grant anything when it wakes.
    const c2 = await client(site, [b.port], { user: 'u2', host: 'h2' });
    clients.push(c2);
    await c2.checkout('cad');
    const c3 = await client(site, [a.port, b.port], {
      user: 'u3',
      host: 'h3',
      retry: { initialMs: 100, maxIntervalMs: 400, maxTotalMs: 10_000, failoverMs: 600 },
    });
    clients.push(c3);
    a.child.kill('SIGCONT');
    await t.rejects(
      c3.checkout('cad'),
      /NO_SEATS|BUSY/,
      'the woken server grants nothing beyond the count',
    );
    t.equal(await obs.held('cad@1.0'), 2, 'site-wide held = count');
    t.same(lost, [], 'the holder kept its seat');
    // The woken server hears the site again: it shows both holders and answers RUNNING.
    // Woken without an etcd lease it may refuse BUSY until its watch has caught up (a
    // session it must restore is a write): wait for its PONG, a bounded number of times.
    let p: Awaited<ReturnType<Client['ping']>> | undefined;
    for (let i = 0; i < 50 && !p; i++) {
      p = await c3.ping(`127.0.0.1:${a.port}`).catch((e: Error) => {
        if (!/BUSY/.test(String(e))) throw e;
        return new Promise<undefined>((r) => setTimeout(() => r(undefined), 200));
      });
    }
    t.ok(
      p && (p.state === 'running' || p.state === 'degraded'),
      `woken server answers (${p?.state})`,
    );
  },
);

t.test(
  'loss of the etcd majority: granting stops, nothing acknowledged is lost',
  { skip },
  async (t) => {
    const site = makeSite(['FEATURE cad demo 1.0 permanent 5']);
    const a = await server(site, 'a', 'quorum');
    const holder = await client(site, [a.port], { user: 'holder', host: 'h0' });
    clients.push(holder);
    const lease = await holder.checkout('cad');
    const lost: string[] = [];
    lease.on('lost', (why: string) => lost.push(why));
    // A second client, in session before the loss (a HELLO is a write too).
    const c2 = await client(site, [a.port], {
      user: 'u2',
      host: 'h2',
      retry: { initialMs: 100, maxIntervalMs: 400, maxTotalMs: 2000 },
    });
    clients.push(c2);
    await c2.ping();
    await cluster.kill(1);
    await cluster.kill(2);
    // Within the server's etcd lease TTL (2 s) it stops granting and says so.
    const end = Date.now() + 15_000;
    let state = '';
    while (Date.now() < end) {
      state = (await c2.ping()).state;
      if (state === 'degraded') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    t.equal(state, 'degraded', 'PONG says DEGRADED');
    t.match(a.stderr(), /etcd: no majority|commit failed/, 'the log says so');
    await t.rejects(c2.checkout('cad'), /BUSY|timed out|Timeout/i, 'no grant without a majority');
    cluster.restart(1);
    cluster.restart(2);
    await cluster.waitHealthy();
    const back = Date.now() + 20_000;
    let granted = false;
    while (!granted && Date.now() < back) {
      try {
        await c2.checkout('cad');
        granted = true;
      } catch {
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    t.ok(granted, 'granting resumes with the majority back');
    const obs = await observer('quorum');
    t.equal(
      await obs.held('cad@1.0'),
      2,
      'the seat acknowledged before the loss is still held, plus the new one',
    );
    t.same(lost, [], 'the holder kept its seat');
  },
);

t.test(
  'a session no server hears from loses its seat after the test_conn time',
  { skip },
  async (t) => {
    const site = makeSite(['FEATURE cad demo 1.0 permanent 2']);
    const a = await server(site, 'a', 'orphan');
    const b = await server(site, 'b', 'orphan');
    const obs = await observer('orphan');
    const gone = await client(site, [a.port], { user: 'gone', host: 'h0' });
    await gone.checkout('cad');
    const stays = await client(site, [b.port], { user: 'stays', host: 'h1' });
    clients.push(stays);
    await stays.checkout('cad');
    t.equal(await obs.held('cad@1.0'), 2);
    // Its server and its client both go: nobody will ever hear from that session again.
    a.child.kill('SIGKILL');
    gone.destroy();
    const start = Date.now();
    // a's etcd lease (2 s), then quiet (2 × 1 s heartbeat) and 3 unanswered test_conn at 1 s.
    while ((await obs.held('cad@1.0')) !== 1) {
      if (Date.now() - start > 30_000) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    t.equal(await obs.held('cad@1.0'), 1, "the orphan's seat was released by the survivor");
    t.ok(Date.now() - start >= 4000, "not before its server's lease and the test_conn time");
    t.match(b.stderr(), /reaped session .*its server left the site/, 'the survivor says why');
    t.equal((await stays.status()).holders.length, 1, 'the live holder keeps its seat');
  },
);

t.test('one etcd member killed: the site goes on granting', { skip }, async (t) => {
  const site = makeSite(['FEATURE cad demo 1.0 permanent 5']);
  const a = await server(site, 'a', 'member');
  const c = await client(site, [a.port], { user: 'u', host: 'h' });
  clients.push(c);
  await c.checkout('cad');
  const leader = (await cluster.leaderIndex()) ?? 0;
  await cluster.kill(leader);
  try {
    const l = await c.checkout('cad');
    t.ok(l.leaseId > 0n, 'granted with the leader gone');
    await l.checkin();
    const obs = await observer('member');
    t.equal(await obs.held('cad@1.0'), 1, 'the first seat, nothing lost');
  } finally {
    cluster.restart(leader);
    await cluster.waitHealthy();
  }
});
