/**
 * A seeded randomized schedule against a site of three floatlmd child processes over a real
 * 3-member etcd: checkouts and checkins by clients that list every server (in different
 * orders), 24 steps: kill -9 of a server (a replacement starts under a new id), SIGSTOP of a server
 * past the clients' failover window and SIGCONT. After every step: seats held site-wide ≤
 * the count, no lease in two clients, and every grant a client was told of is still held
 * in etcd unless its holder asked to check it in. The seed is printed (FLOATLM_SEED=N replays it).
 * Skips without etcd on PATH (fails under CI=true).
 */
import t, { type Test } from 'tap';
import type { Client, Lease } from '../../lib/client/client.ts';
import type { EtcdLedger } from '../../lib/store/etcd.ts';
import { type EtcdCluster, skipWithoutEtcd, startCluster } from '../helpers/etcd.ts';
import { rng } from '../helpers/rng.ts';
import { client, makeSite } from '../helpers/site.ts';
import { keepLogs, type SiteServer, siteObserver, siteServer } from '../helpers/site-servers.ts';

const skip = skipWithoutEtcd();
// 24 steps with failovers take a minute or two on a loaded 2-core machine; two schedules.
t.setTimeout(660_000);
let cluster: EtcdCluster;
const servers: SiteServer[] = [];
const clients: Client[] = [];
const observers: EtcdLedger[] = [];

t.before(async () => {
  if (!skip) cluster = await startCluster();
});
t.teardown(async () => {
  for (const c of clients) await c.destroy().catch(() => undefined);
  for (const s of servers) {
    s.child.kill('SIGCONT');
    s.child.kill('SIGKILL');
  }
  for (const o of observers) await o.close().catch(() => undefined);
  await cluster?.teardown();
});

/** One seeded schedule on a site of its own; its servers are killed when it ends. */
async function schedule(t: Test, seed: number): Promise<void> {
  t.comment(`seed ${seed} (rerun with FLOATLM_SEED=${seed})`);
  const rand = rng(seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const count = 3;
  const name = `sched-${seed}`;
  const site = makeSite([`FEATURE cad demo 1.0 permanent ${count}`]);
  let next = 0;
  const start = async () => {
    const s = await siteServer(cluster, site, `s${next++}`, name);
    servers.push(s);
    return s;
  };
  const live: SiteServer[] = [await start(), await start(), await start()];
  const obs = await siteObserver(cluster, name);
  observers.push(obs);
  const retry = { initialMs: 100, maxIntervalMs: 400, maxTotalMs: 8_000, failoverMs: 600 };
  const ports = live.map((s) => s.port);
  // Every client lists the three first servers; replacements are not in anyone's list,
  // so at least one listed server must stay up: never kill or stop the last one.
  const cs = await Promise.all(
    Array.from({ length: 5 }, (_, i) =>
      client(site, [...ports.slice(i % 3), ...ports.slice(0, i % 3)], {
        user: `u${i}`,
        host: `h${i}`,
        retry,
      }),
    ),
  );
  clients.push(...cs);
  const held = new Map<Client, Lease[]>();
  const lost: string[] = [];
  const inDoubt = new Set<Lease>();
  const listed = new Set(live);
  let stopped: SiteServer | undefined;
  for (let step = 0; step < 24; step++) {
    const msg = `seed ${seed} step ${step}`;
    const began = Date.now();
    const x = rand();
    const up = [...listed].filter(
      (s) => s !== stopped && s.child.exitCode === null && s.child.signalCode === null,
    );
    if (x < 0.12 && up.length > 1 && !stopped) {
      const victim = pick(up);
      victim.child.kill('SIGKILL');
      listed.delete(victim);
      t.comment(`${msg}: kill -9 ${victim.port}`);
      await start();
    } else if (x < 0.22 && up.length > 1 && !stopped) {
      stopped = pick(up);
      stopped.child.kill('SIGSTOP');
      t.comment(`${msg}: SIGSTOP ${stopped.port}`);
    } else if (x < 0.3 && stopped) {
      stopped.child.kill('SIGCONT');
      t.comment(`${msg}: SIGCONT ${stopped.port}`);
      stopped = undefined;
    } else {
      const ops: Promise<unknown>[] = [];
      for (let k = 1 + Math.floor(rand() * 3); k > 0; k--) {
        const c = pick(cs);
        const mine = held.get(c) ?? [];
        if (mine.length > 0 && rand() < 0.45) {
          const l = mine.splice(Math.floor(rand() * mine.length), 1)[0]!;
          ops.push(
            l.checkin().catch((e: Error) => {
              // Unanswered: the client does not know whether it was checked in. It still
              // holds it as far as it knows (and checks it in again later); the site may
              // have released it, as asked.
              inDoubt.add(l);
              mine.push(l);
              t.comment(`${msg}: checkin failed: ${e.message}`);
            }),
          );
        } else {
          ops.push(
            c.checkout('cad').then(
              (l) => {
                l.on('lost', (why: string) => lost.push(`${msg}: lease ${l.leaseId} lost: ${why}`));
                held.set(c, [...(held.get(c) ?? []), l]);
              },
              (e: Error) => {
                if (!/NO_SEATS|denied|BUSY|no answer|timed out/i.test(String(e))) throw e;
              },
            ),
          );
        }
      }
      await Promise.all(ops);
    }
    if (Date.now() - began > 3000) t.comment(`${msg}: took ${Date.now() - began} ms`);
    const acknowledged = [...held.values()].flat().filter((l) => l.state === 'held');
    const ids = acknowledged.map((l) => l.leaseId);
    const siteHeld = await obs.held('cad@1.0');
    if (new Set(ids).size !== ids.length) t.fail(`${msg}: a lease in two clients`);
    if (siteHeld > count) t.fail(`${msg}: site holds ${siteHeld} > ${count}`);
    for (const l of acknowledged) {
      if (inDoubt.has(l)) continue;
      if (!(await obs.getLease(l.leaseId)))
        t.fail(`${msg}: acknowledged lease ${l.leaseId} is gone from etcd`);
    }
  }
  stopped?.child.kill('SIGCONT');
  // Every client checks in what it holds and goes: within the test_conn time (1 s pings
  // here, three of them after 2 s quiet; orphans and lost seats as long again) the site
  // holds nothing. A seat stuck in etcd would stay.
  const closing = Date.now();
  await Promise.all(cs.map((c) => c.close()));
  t.comment(`seed ${seed}: clients closed in ${Date.now() - closing} ms`);
  const drained = Date.now() + 60_000;
  let left = await obs.held('cad@1.0');
  while (left > 0 && Date.now() < drained) {
    await new Promise((r) => setTimeout(r, 250));
    left = await obs.held('cad@1.0');
  }
  t.comment(`seed ${seed}: site empty ${Date.now() - closing} ms after the clients began closing`);
  t.equal(left, 0, `seed ${seed}: once every client has gone, the site holds no seat`);
  if (!t.passing() || process.env.FLOATLM_KEEP_LOGS) keepLogs(servers, `schedule-${seed}`);
  t.same(lost, [], `seed ${seed}: no client lost a seat it was granted`);
  t.pass(
    `seed ${seed}: held ≤ ${count}, no lease in two clients, every acknowledged grant held, after every step`,
  );
  for (const s of servers.splice(0)) {
    s.child.kill('SIGCONT');
    s.child.kill('SIGKILL');
  }
}

t.test(
  'seeded schedule with kill -9 and SIGSTOP: the invariant after every step (seed 3411246977, which once caught a woken server freeing a seat its holder still had)',
  { skip, timeout: 300_000 },
  (t) => schedule(t, 3411246977),
);

t.test(
  'seeded schedule with kill -9 and SIGSTOP: the invariant after every step (a new seed each run)',
  { skip, timeout: 300_000 },
  (t) => schedule(t, Number(process.env.FLOATLM_SEED ?? Math.floor(Math.random() * 0xffff_ffff))),
);
