/**
 * Section `site` of `npm run bench`: the real `floatlmd` serving a site over a real 3-member
 * etcd on 127.0.0.1 (bench/etcd.ts, fsync on), against the same `floatlmd` on its embedded
 * SQLite state, both measured in one run by the C load generator (bench/throughput.ts: the
 * daemons and the echo server pinned to core 0, the generator to core 1; etcd's members are
 * not pinned, they share both cores):
 *
 * - heartbeats: an echo run, then rounds of one SQLite and one etcd heartbeat run (their
 *   order alternating from round to round) followed by an echo run; each heartbeat run is
 *   compared with the mean of the echo runs before and after its round, and the etcd run
 *   with the SQLite run of the same round. A heartbeat is local to the server on a site (no
 *   etcd write), so the target is the SQLite figure within 5 %.
 * - CHECKOUT+CHECKIN pairs, 32 in flight over 64 sessions, SQLite and etcd alternating: on
 *   etcd every grant and release is an etcd transaction, the grants and releases of one tick
 *   grouped into one.
 * - failover: a client holding a seat on server A of a 2-server site (both on etcd) with
 *   the library's default retry policy (`connect()` without `retry`), A killed with SIGKILL,
 *   then a heartbeat: from its first (unanswered) datagram, and from the kill, to B's
 *   verified reply (the client's 'failover' event) and to the heartbeat acknowledged; the
 *   same with a tuned policy. B serves throughout; each run has a new A.
 *
 * Every load run is bounded by the generator's duration; every wait has a deadline. Without
 * `etcd` on PATH nothing runs and every figure is null with the reason; a part that fails
 * is null with its error, the other parts still run.
 *
 *   npm run bench -- --only=site [--quick] [--json]
 */
import type { ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { type Client, connect } from '../lib/client/client.ts';
import type { RetryPolicy } from '../lib/client/retry.ts';
import { type EtcdCluster, etcdMissing, startCluster } from './etcd.ts';
import { canPin, makeSite, type Site, spawnFloatlmd, waitExit } from './site.ts';
import {
  buildLoadgen,
  type LoadResult,
  median,
  round,
  runLoad,
  sessionsFor,
  startEcho,
  stop,
  type Target,
} from './throughput.ts';

/** What the rows say when etcd is missing. */
export const NO_ETCD = 'etcd-server not installed';

/** One round of heartbeat runs: SQLite and etcd between the same two echo runs. */
export interface SiteHeartbeatRound {
  /** Which ran first in this round. */
  order: 'sqlite,etcd' | 'etcd,sqlite';
  sqlite: LoadResult;
  etcd: LoadResult;
  /** Mean echo CPU per request of the runs around the round / the daemon's. */
  sqlite_cpu_ratio_vs_echo: number;
  etcd_cpu_ratio_vs_echo: number;
  /** Daemon rate / mean echo rate of the runs around the round. */
  sqlite_rate_ratio_vs_echo: number;
  etcd_rate_ratio_vs_echo: number;
  /** SQLite CPU per heartbeat / etcd's (≥ 0.95: within 5 %). */
  etcd_vs_sqlite_cpu: number;
  /** etcd heartbeats/s / SQLite's. */
  etcd_vs_sqlite_rate: number;
}

export interface SiteHeartbeat {
  window: number;
  sessions: number;
  echo: LoadResult[];
  rounds: SiteHeartbeatRound[];
  /** Medians over the rounds. */
  sqlite_cpu_ratio_vs_echo: number;
  etcd_cpu_ratio_vs_echo: number;
  sqlite_rate_ratio_vs_echo: number;
  etcd_rate_ratio_vs_echo: number;
  etcd_vs_sqlite_cpu: number;
  etcd_vs_sqlite_cpu_range: [number, number];
  etcd_vs_sqlite_rate: number;
  etcd_vs_sqlite_rate_range: [number, number];
  sqlite_rate: number;
  etcd_rate: number;
  sqlite_server_cpu_us_per_req: number;
  etcd_server_cpu_us_per_req: number;
  echo_server_cpu_us_per_req: number;
}

export interface SitePairs {
  window: number;
  sessions: number;
  runs: {
    sqlite: LoadResult;
    etcd: LoadResult;
    /** etcd revisions (write transactions, every writer) per second of the etcd run. */
    etcd_revisions_per_s: number;
  }[];
  /** Medians over the runs. */
  sqlite_rate: number;
  sqlite_p50_us: number;
  sqlite_p99_us: number;
  etcd_rate: number;
  etcd_p50_us: number;
  etcd_p99_us: number;
  /** etcd pairs/s / SQLite's, median over the runs (each etcd run against its partner). */
  etcd_vs_sqlite_rate: number;
  /** Server CPU per pair, µs (medians). */
  sqlite_server_cpu_us_per_pair: number;
  etcd_server_cpu_us_per_pair: number;
  /** Pairs per etcd revision: how many pairs one etcd write carried (2 = one a pair). */
  etcd_pairs_per_revision: number;
}

/** p50 and max over the runs, ms. */
export interface Spread {
  p50: number;
  max: number;
}

export interface SiteFailoverPolicy {
  /** `default`, or the tuned policy's fields. */
  policy: string;
  runs: number;
  /** First unanswered heartbeat datagram (to dead A) → B's verified reply ('failover'). */
  to_failover_ms: Spread;
  /** Same start → the heartbeat acknowledged (heartbeat() resolved). */
  to_ack_ms: Spread;
  /** SIGKILL of A → the heartbeat acknowledged by B. */
  kill_to_ack_ms: Spread;
  /** Runs in which the failover went to B, B acknowledged the lease, and it stayed held. */
  held: string;
}

export interface SiteFailover {
  default: SiteFailoverPolicy;
  tuned: SiteFailoverPolicy;
}

export interface SiteResult {
  /** etcd members and the Raft timing they ran with. */
  etcd: { members: number; heartbeat_ms: number; election_ms: number } | null;
  heartbeat: SiteHeartbeat | null;
  pairs: SitePairs | null;
  failover: SiteFailover | null;
  /** Why a part is null: NO_ETCD, or the error that stopped it. */
  not_run: { heartbeat?: string; pairs?: string; failover?: string };
}

/** The tuned policy the failover tests use (test/site/failover.test.ts). */
const TUNED: Partial<RetryPolicy> = {
  initialMs: 100,
  maxIntervalMs: 400,
  maxTotalMs: 10_000,
  failoverMs: 600,
};

const RAFT = { heartbeatMs: 100, electionMs: 1000 };
const WINDOW = 32;
const SESSIONS = 64;

/** The options every floatlmd of this section runs with, beyond spawnFloatlmd's. */
function siteArgs(cluster: EtcdCluster, site: string, id: string, state: string): string[] {
  return [
    '--etcd',
    cluster.endpoints.join(','),
    '--site',
    site,
    '--server-id',
    id,
    '--state',
    state,
  ];
}

function spread(xs: number[]): Spread {
  return { p50: round(median(xs), 0), max: round(Math.max(...xs), 0) };
}

const range = (xs: number[]): [number, number] => [Math.min(...xs), Math.max(...xs)];

/**
 * Heartbeat rounds and pair runs against a SQLite and an etcd floatlmd started side by side
 * on core 0 (one idles while the other is measured).
 */
async function load(cluster: EtcdCluster, quick: boolean, out: SiteResult): Promise<void> {
  const pinned = canPin(availableParallelism());
  const core = pinned ? { core: 0 } : {};
  const site = makeSite(['FEATURE bench demo 1.0 permanent 100000 DUP_GROUP=NONE']);
  const loadgen = buildLoadgen(site.dir);
  const durationMs = quick ? 500 : 1500;
  const warmupMs = quick ? 500 : 1000;
  const rounds = quick ? 3 : 5;
  const pairRuns = quick ? 1 : 2;
  const files = {
    sqlite: join(site.dir, 'sessions-sqlite.txt'),
    etcd: join(site.dir, 'sessions-etcd.txt'),
  };
  let sqlite: Target | undefined;
  let etcd: Target | undefined;
  let echo: Target | undefined;
  const run = (mode: 'hb' | 'pair', target: Target, file: string, ms = durationMs, warm = 200) =>
    runLoad(loadgen, {
      mode,
      target,
      window: WINDOW,
      durationMs: ms,
      warmupMs: warm,
      sessionsFile: file,
      pinned,
    });
  try {
    const common = ['--rate-limit', '0'];
    sqlite = await spawnFloatlmd(
      site,
      [...common, '--state', join(site.dir, 'state-sqlite')],
      core,
    );
    etcd = await spawnFloatlmd(
      site,
      [...common, ...siteArgs(cluster, 'bench', 'x', join(site.dir, 'state-etcd'))],
      core,
    );
    echo = await startEcho(core);
    await sessionsFor(site, sqlite.port, SESSIONS, files.sqlite);
    await sessionsFor(site, etcd.port, SESSIONS, files.etcd);
    const S = sqlite;
    const X = etcd;
    const E = echo;
    // Unmeasured: JIT tiers, heap sizing, the sessions' move to the generator's port.
    await run('hb', E, files.sqlite, warmupMs, 0);
    await run('hb', S, files.sqlite, warmupMs, 0);
    await run('hb', X, files.etcd, warmupMs, 0);

    try {
      const echoes = [await run('hb', E, files.sqlite)];
      const rs: SiteHeartbeatRound[] = [];
      for (let i = 0; i < rounds; i++) {
        const sqliteFirst = i % 2 === 0;
        const first = sqliteFirst
          ? await run('hb', S, files.sqlite)
          : await run('hb', X, files.etcd);
        const second = sqliteFirst
          ? await run('hb', X, files.etcd)
          : await run('hb', S, files.sqlite);
        const [s, x] = sqliteFirst ? [first, second] : [second, first];
        const after = await run('hb', E, files.sqlite);
        const before = echoes[echoes.length - 1]!;
        echoes.push(after);
        const echoCpu = (before.server_cpu_us_per_req + after.server_cpu_us_per_req) / 2;
        const echoRate = (before.rate + after.rate) / 2;
        rs.push({
          order: sqliteFirst ? 'sqlite,etcd' : 'etcd,sqlite',
          sqlite: s,
          etcd: x,
          sqlite_cpu_ratio_vs_echo: round(echoCpu / s.server_cpu_us_per_req, 3),
          etcd_cpu_ratio_vs_echo: round(echoCpu / x.server_cpu_us_per_req, 3),
          sqlite_rate_ratio_vs_echo: round(s.rate / echoRate, 3),
          etcd_rate_ratio_vs_echo: round(x.rate / echoRate, 3),
          etcd_vs_sqlite_cpu: round(s.server_cpu_us_per_req / x.server_cpu_us_per_req, 3),
          etcd_vs_sqlite_rate: round(x.rate / s.rate, 3),
        });
      }
      const med = (f: (r: SiteHeartbeatRound) => number, digits = 3) =>
        round(median(rs.map(f)), digits);
      out.heartbeat = {
        window: WINDOW,
        sessions: SESSIONS,
        echo: echoes,
        rounds: rs,
        sqlite_cpu_ratio_vs_echo: med((r) => r.sqlite_cpu_ratio_vs_echo),
        etcd_cpu_ratio_vs_echo: med((r) => r.etcd_cpu_ratio_vs_echo),
        sqlite_rate_ratio_vs_echo: med((r) => r.sqlite_rate_ratio_vs_echo),
        etcd_rate_ratio_vs_echo: med((r) => r.etcd_rate_ratio_vs_echo),
        etcd_vs_sqlite_cpu: med((r) => r.etcd_vs_sqlite_cpu),
        etcd_vs_sqlite_cpu_range: range(rs.map((r) => r.etcd_vs_sqlite_cpu)),
        etcd_vs_sqlite_rate: med((r) => r.etcd_vs_sqlite_rate),
        etcd_vs_sqlite_rate_range: range(rs.map((r) => r.etcd_vs_sqlite_rate)),
        sqlite_rate: med((r) => r.sqlite.rate, 0),
        etcd_rate: med((r) => r.etcd.rate, 0),
        sqlite_server_cpu_us_per_req: med((r) => r.sqlite.server_cpu_us_per_req, 2),
        etcd_server_cpu_us_per_req: med((r) => r.etcd.server_cpu_us_per_req, 2),
        echo_server_cpu_us_per_req: round(median(echoes.map((e) => e.server_cpu_us_per_req)), 2),
      };
    } catch (e) {
      out.not_run.heartbeat = `failed: ${(e as Error).message}`;
    }

    const raw = new Etcd3({ hosts: cluster.endpoints });
    try {
      const revision = async () =>
        Number((await raw.get('floatlm-bench/rev').exec()).header.revision);
      /** An etcd pair run, with the etcd revisions per second over the generator's life. */
      const etcdPairs = async () => {
        const r0 = await revision();
        const t0 = performance.now();
        const x = await run('pair', X, files.etcd);
        const secs = (performance.now() - t0) / 1000;
        return { x, revs: round(((await revision()) - r0) / secs, 1) };
      };
      // Unmeasured: the grant path's JIT tiers, etcd's first transactions.
      await run('pair', S, files.sqlite, warmupMs, 0);
      await run('pair', X, files.etcd, warmupMs, 0);
      const runs: SitePairs['runs'] = [];
      for (let i = 0; i < pairRuns; i++) {
        if (i % 2 === 0) {
          const sqlite = await run('pair', S, files.sqlite);
          const { x, revs } = await etcdPairs();
          runs.push({ sqlite, etcd: x, etcd_revisions_per_s: revs });
        } else {
          const { x, revs } = await etcdPairs();
          runs.push({
            sqlite: await run('pair', S, files.sqlite),
            etcd: x,
            etcd_revisions_per_s: revs,
          });
        }
      }
      const med = (f: (r: SitePairs['runs'][number]) => number, digits = 0) =>
        round(median(runs.map(f)), digits);
      out.pairs = {
        window: WINDOW,
        sessions: SESSIONS,
        runs,
        sqlite_rate: med((r) => r.sqlite.rate),
        sqlite_p50_us: med((r) => r.sqlite.p50_us),
        sqlite_p99_us: med((r) => r.sqlite.p99_us),
        etcd_rate: med((r) => r.etcd.rate),
        etcd_p50_us: med((r) => r.etcd.p50_us),
        etcd_p99_us: med((r) => r.etcd.p99_us),
        etcd_vs_sqlite_rate: med((r) => r.etcd.rate / r.sqlite.rate, 3),
        sqlite_server_cpu_us_per_pair: med((r) => r.sqlite.server_cpu_us_per_req),
        etcd_server_cpu_us_per_pair: med((r) => r.etcd.server_cpu_us_per_req),
        etcd_pairs_per_revision: med((r) => r.etcd.rate / r.etcd_revisions_per_s, 2),
      };
    } catch (e) {
      out.not_run.pairs = `failed: ${(e as Error).message}`;
    } finally {
      raw.close();
    }
  } finally {
    await stop(echo);
    await stop(etcd);
    await stop(sqlite);
  }
}

function kill9(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

/** Resolves with the value of `p`, or rejects naming `what` after `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
      timer.unref();
    }),
  ]).finally(() => clearTimeout(timer));
}

interface FailoverRun {
  to_failover_ms: number;
  to_ack_ms: number;
  kill_to_ack_ms: number;
  held: boolean;
}

/**
 * One failover: a new server A joins the site beside B, a client holding a seat on A (A
 * first in its list), A killed, one heartbeat.
 * @throws {Error} when a server does not start or the client gets no answer in time
 */
async function failoverRun(
  cluster: EtcdCluster,
  site: Site,
  b: { port: number },
  n: number,
  retry: Partial<RetryPolicy> | undefined,
): Promise<FailoverRun> {
  const a = await spawnFloatlmd(site, [
    // No heartbeat from the client's timer during a run: the run sends its own.
    '--heartbeat',
    '3600',
    ...siteArgs(cluster, 'failover', `a${n}`, join(site.dir, `state-a${n}`)),
  ]);
  let client: Client | undefined;
  try {
    client = await connect({
      servers: [`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`],
      credential: { id: 'demo', key: site.credKey },
      user: `u${n}`,
      host: 'bench',
      ...(retry ? { retry } : {}),
    });
    const lease = await client.checkout('bench');
    const c = client;
    const failedOver = new Promise<{ ms: number; to: string }>((r) =>
      c.once('failover', (to: string) => r({ ms: performance.now(), to })),
    );
    const killed = performance.now();
    await kill9(a.child);
    const t0 = performance.now();
    const acknowledged = await within(c.heartbeat(), 60_000, 'heartbeat after the kill');
    const t1 = performance.now();
    const moved = await within(failedOver, 1000, "the client's failover event");
    const held = moved.to === `127.0.0.1:${b.port}` && acknowledged === 1 && lease.state === 'held';
    await lease.checkin().catch(() => undefined);
    return {
      to_failover_ms: moved.ms - t0,
      to_ack_ms: t1 - t0,
      kill_to_ack_ms: t1 - killed,
      held,
    };
  } finally {
    await client?.close().catch(() => undefined);
    await kill9(a.child);
  }
}

async function failovers(cluster: EtcdCluster, quick: boolean): Promise<SiteFailover> {
  const site = makeSite(['FEATURE bench demo 1.0 permanent 100 DUP_GROUP=NONE']);
  const runs = quick ? 2 : 5;
  const b = await spawnFloatlmd(site, [
    '--heartbeat',
    '3600',
    ...siteArgs(cluster, 'failover', 'b', join(site.dir, 'state-b')),
  ]);
  let n = 0;
  const policy = async (name: string, retry: Partial<RetryPolicy> | undefined) => {
    const rs: FailoverRun[] = [];
    for (let i = 0; i < runs; i++) rs.push(await failoverRun(cluster, site, b, n++, retry));
    return {
      policy: name,
      runs,
      to_failover_ms: spread(rs.map((r) => r.to_failover_ms)),
      to_ack_ms: spread(rs.map((r) => r.to_ack_ms)),
      kill_to_ack_ms: spread(rs.map((r) => r.kill_to_ack_ms)),
      held: `${rs.filter((r) => r.held).length}/${runs}`,
    };
  };
  try {
    const tunedName = Object.entries(TUNED)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    return { default: await policy('default', undefined), tuned: await policy(tunedName, TUNED) };
  } finally {
    b.child.kill('SIGTERM');
    await waitExit(b.child);
  }
}

/**
 * Every part of the section against one fresh 3-member etcd cluster; without etcd on PATH,
 * every part null with NO_ETCD.
 */
export async function siteBench(quick: boolean): Promise<SiteResult> {
  const out: SiteResult = { etcd: null, heartbeat: null, pairs: null, failover: null, not_run: {} };
  if (etcdMissing()) {
    out.not_run = { heartbeat: NO_ETCD, pairs: NO_ETCD, failover: NO_ETCD };
    return out;
  }
  let cluster: EtcdCluster;
  try {
    cluster = await startCluster(RAFT);
  } catch (e) {
    const why = `etcd did not start: ${(e as Error).message.split('\n')[0]}`;
    out.not_run = { heartbeat: why, pairs: why, failover: why };
    return out;
  }
  out.etcd = {
    members: cluster.size,
    heartbeat_ms: RAFT.heartbeatMs,
    election_ms: RAFT.electionMs,
  };
  try {
    try {
      await load(cluster, quick, out);
    } catch (e) {
      const why = `failed: ${(e as Error).message}`;
      if (!out.heartbeat) out.not_run.heartbeat ??= why;
      if (!out.pairs) out.not_run.pairs ??= why;
    }
    try {
      out.failover = await failovers(cluster, quick);
    } catch (e) {
      out.not_run.failover = `failed: ${(e as Error).message}`;
    }
  } finally {
    await cluster.teardown();
  }
  return out;
}
