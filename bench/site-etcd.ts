/**
 * The site ledger's speed against a real 3-member etcd on loopback (fsync on, Debian's
 * etcd-server): grant+release pairs per second and their p50/p99 latency, one pair at a
 * time (the latency floor) and with many in flight (the ledger groups the grants and
 * releases of one tick into one etcd transaction), from one and from two servers, and how
 * many pairs one etcd commit carried. Standalone: `npx tsx bench/site-etcd.ts [--quick]
 * [--json]`; figures it could not measure print as "not run" with the reason. The daemon on
 * etcd (pairs, heartbeats against SQLite, failover) is section `site` of `npm run bench`
 * (bench/site-daemon.ts).
 */
import { Etcd3 } from 'etcd3';
import { type EtcdLedger, type GrantRequest, openEtcdLedger } from '../lib/store/etcd.ts';
import { etcdMissing, startCluster } from './etcd.ts';

export interface PairFigure {
  pairs: number;
  pairs_per_s: number;
  p50_ms: number;
  p99_ms: number;
  /** Grant+release pairs per etcd revision (write transaction): the grouping factor. */
  pairs_per_commit: number;
}

export type Figure = PairFigure | { not_run: string };

const quick = process.argv.includes('--quick');
const json = process.argv.includes('--json');

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const r2 = (v: number) => Math.round(v * 100) / 100;

let nextId = 1n;

function req(feature: string): GrantRequest {
  const id = nextId++;
  return {
    leaseId: id,
    tokenId: id,
    feature,
    version: '1',
    count: 1,
    groupKey: '',
    grantedAt: Date.now(),
    ticket: new Uint8Array(32),
    licensed: 1_000_000,
  };
}

async function revision(c: Etcd3): Promise<number> {
  return Number((await c.get('floatlm-bench/rev').exec()).header.revision);
}

/**
 * `inflight` loops per ledger, each doing grant then release, until `pairs` pairs in all
 * or `budgetMs` elapsed; every loop on its own feature when `distinct`.
 */
async function pairs(
  raw: Etcd3,
  ledgers: EtcdLedger[],
  inflight: number,
  total: number,
  budgetMs: number,
  distinct: boolean,
): Promise<PairFigure> {
  const lat: number[] = [];
  let done = 0;
  const end = Date.now() + budgetMs;
  const rev0 = await revision(raw);
  const t0 = process.hrtime.bigint();
  const loop = async (l: EtcdLedger, k: number) => {
    const feature = distinct ? `f${k}` : 'f';
    while (done < total && Date.now() < end) {
      done++;
      const s = process.hrtime.bigint();
      const r = req(feature);
      if ((await l.grant(r)) !== 'granted') throw new Error('bench feature full');
      await l.release(r.leaseId);
      lat.push(Number(process.hrtime.bigint() - s) / 1e6);
    }
  };
  await Promise.all(
    ledgers.flatMap((l, i) =>
      Array.from({ length: inflight }, (_, k) => loop(l, i * inflight + k)),
    ),
  );
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const commits = (await revision(raw)) - rev0 - 1;
  lat.sort((a, b) => a - b);
  return {
    pairs: lat.length,
    pairs_per_s: Math.round(lat.length / secs),
    p50_ms: r2(pct(lat, 50)),
    p99_ms: r2(pct(lat, 99)),
    pairs_per_commit: r2(lat.length / Math.max(1, commits)),
  };
}

/** Every figure of this section; "not run" ones say why. */
export async function siteEtcd(): Promise<Record<string, Figure>> {
  const out: Record<string, Figure> = {};
  const names = [
    'pairs_1_inflight',
    'pairs_16_inflight_1_server',
    'pairs_16_inflight_2_servers_same_feature',
    'pairs_16_inflight_2_servers_distinct_features',
  ];
  const missing = etcdMissing();
  if (missing) {
    for (const n of names) out[n] = { not_run: missing };
  } else {
    const cluster = await startCluster({ heartbeatMs: 100, electionMs: 1000 });
    const raw = new Etcd3({ hosts: cluster.endpoints });
    const a = await openEtcdLedger({ endpoints: cluster.endpoints, serverId: 'a', site: 'bench' });
    const b = await openEtcdLedger({ endpoints: cluster.endpoints, serverId: 'b', site: 'bench' });
    const n = quick ? 0.1 : 1;
    const budget = quick ? 3000 : 15_000;
    try {
      await pairs(raw, [a], 4, 200, 2000, false); // warm-up: connections, JIT
      out[names[0]!] = await pairs(raw, [a], 1, 500 * n, budget, false);
      out[names[1]!] = await pairs(raw, [a], 16, 5000 * n, budget, false);
      out[names[2]!] = await pairs(raw, [a, b], 16, 5000 * n, budget, false);
      out[names[3]!] = await pairs(raw, [a, b], 16, 5000 * n, budget, true);
    } catch (e) {
      for (const k of names) out[k] ??= { not_run: `failed: ${String(e)}` };
    } finally {
      await a.close();
      await b.close();
      raw.close();
      await cluster.teardown();
    }
  }
  return out;
}

function show(figs: Record<string, Figure>): void {
  process.stdout.write('site ledger over etcd (3 members, loopback, fsync on)\n');
  for (const [k, f] of Object.entries(figs)) {
    if ('not_run' in f) {
      process.stdout.write(`  ${k.padEnd(46)} not run (${f.not_run})\n`);
    } else {
      process.stdout.write(
        `  ${k.padEnd(46)} ${String(f.pairs_per_s).padStart(6)} pairs/s  p50 ${f.p50_ms} ms  ` +
          `p99 ${f.p99_ms} ms  ${f.pairs_per_commit} pairs/commit  (${f.pairs} pairs)\n`,
      );
    }
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const figs = await siteEtcd();
  if (json) process.stdout.write(`${JSON.stringify(figs)}\n`);
  else show(figs);
}
