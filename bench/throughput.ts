/**
 * Throughput and latency: a bare `node:dgram` echo server and floatlmd, each in a child
 * process pinned to core 0, driven by the same C load generator (bench/c/loadgen.c, pinned
 * to core 1) with many requests in flight: authenticated HEARTBEATs (mode 3, each with a
 * fresh seq and request id, signed by the generator), and CHECKOUT+CHECKIN pairs.
 *
 * Why heartbeat/echo is measured the way it is. Each server's CPU per request drifts with
 * what else runs on this shared 2-core box, and not alike: with other processes taking
 * ~80 % of core 0, a heartbeat cost 25–35 µs of server CPU against 12 µs on a quiet core,
 * while an echo went only from 8 to 9–11 µs. The earlier bench took one echo run and one
 * heartbeat run (full run: the mean of an echo before and one ~10 s after, with the
 * CHECKOUT+CHECKIN run between; `--only=heartbeat`: the first echo alone, printed twice),
 * each run a single sample whose conditions nobody saw, so the two modes' ratios could not
 * agree; a `--prof` daemon also paid the profiler (15–20 % more CPU per heartbeat).
 *
 * Both servers start once, are warmed up by an unmeasured run each, and stay up; then echo
 * and heartbeat runs alternate, E H E H … E (with an echo on the daemon's batched socket, B,
 * after each E when the addon is built), and each heartbeat run is compared with the
 * mean of the echo runs just before and after it, seconds apart, so drift in the shared
 * machine's speed hits both sides of each ratio alike. The figure is the median of those
 * ratios, printed with their range. Server CPU is the server process's own CPU clock (every
 * thread), read by the generator at the two instants that bound the requests it counts.
 * The same sequence runs for `--only=heartbeat` and the full run; the CHECKOUT+CHECKIN run
 * (full run only) comes after it, so it cannot change the heartbeat figures. A profiled
 * daemon (`--prof`) is a separate process whose figures are never reported. Every run also
 * reports how much of core 0 other processes took, so a contended figure is visible.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { batchUnavailable } from '../lib/server/udp.ts';
import { toHex } from '../lib/wire/index.ts';
import { openSessions } from './clients.ts';
import {
  BENCH_DIR,
  canPin,
  makeSite,
  Requester,
  type Site,
  spawnScript,
  waitExit,
} from './site.ts';

/** bench/c/loadgen.c, found from dist/bench/ or bench/. */
const ROOT = join(BENCH_DIR, '..', '..');

export interface LoadResult {
  mode: string;
  window: number;
  sessions: number;
  seconds: number;
  completed: number;
  rate: number;
  p50_us: number;
  p99_us: number;
  lost: number;
  errors: number;
  unexpected: number;
  generator_cpu_s: number;
  generator_cpu_pct: number;
  /** Server CPU (user + system, every thread) over the measured interval, s. */
  server_cpu_s: number;
  /** Times the server's main thread blocked waiting for datagrams, and was preempted. */
  server_blocked: number;
  server_preempted: number;
  /** Busy (not counting steal) and stolen seconds of cores 0 and 1 over the interval. */
  core_busy_s: [number, number];
  core_steal_s: [number, number];
  /** Server CPU per completed request, µs. */
  server_cpu_us_per_req: number;
  /** Server CPU use during the run, % of one core. */
  server_cpu_pct: number;
  /** Other processes' use of the server's core (0), and the hypervisor's steal, % of it. */
  core0_others_pct: number;
  core0_steal_pct: number;
}

/** Heartbeat against the echo runs around it. */
export interface Round {
  heartbeat: LoadResult;
  /** Mean echo CPU per request of the runs before and after / heartbeat's. */
  cpu_ratio: number;
  /** Heartbeat rate / mean echo rate of the runs before and after. */
  rate_ratio: number;
  /** Mean CPU per request of the batched echo runs before and after / heartbeat's. */
  cpu_ratio_vs_batch_echo: number | null;
}

export interface ThroughputResult {
  pinned: boolean;
  window: number;
  sessions: number;
  /** Every measured echo run, in order (one more than the heartbeat runs). */
  echo: LoadResult[];
  /** The same over the daemon's batched socket (lib/server/udp.ts); empty when not built. */
  echo_batch: LoadResult[];
  /** The socket the daemon used (`batch` or `dgram`). */
  daemon_udp: string;
  rounds: Round[];
  /** Medians over the rounds, and the range of the CPU ratio. */
  heartbeat_cpu_ratio_vs_echo: number;
  heartbeat_cpu_ratio_range: [number, number];
  heartbeat_ratio_vs_echo: number;
  echo_server_cpu_us_per_req: number;
  heartbeat_server_cpu_us_per_req: number;
  /** Like for like: heartbeat against an echo over the same batched socket; null: not run. */
  heartbeat_cpu_ratio_vs_batch_echo: number | null;
  echo_batch_server_cpu_us_per_req: number | null;
  /** The round with the median CPU ratio: its rate and latency stand for heartbeats. */
  heartbeat: LoadResult;
  pairs: LoadResult | null;
  /** Pairs are two round trips: (2 × pairs/s) / echo requests/s; null when not run. */
  pair_datagram_ratio_vs_echo: number | null;
  /** Where the profile went, when one was asked for. */
  profile_dir: string | null;
}

/**
 * Compiles the load generator with gcc into `dir`.
 * @throws {Error} when gcc fails or is missing
 */
export function buildLoadgen(dir: string): string {
  const out = join(dir, 'loadgen');
  const r = spawnSync(
    'gcc',
    [
      '-O2',
      '-o',
      out,
      join(ROOT, 'bench/c/loadgen.c'),
      join(ROOT, 'clients/c/floatlm.c'),
      `-I${join(ROOT, 'clients/c')}`,
    ],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`gcc failed: ${r.error?.message ?? r.stderr}`);
  return out;
}

let seqBase = 0;

/** A server under load: its process (for its CPU clock) and its UDP port on 127.0.0.1. */
export interface Target {
  child: ChildProcess;
  port: number;
}

/**
 * One run of the load generator against `target` (`hb` HEARTBEATs or `pair`
 * CHECKOUT+CHECKIN pairs); the figures with the server's CPU per request and its core's
 * contention filled in.
 * @throws {Error} when the generator fails or cannot read the server's CPU clock
 */
export async function runLoad(
  loadgen: string,
  o: {
    mode: 'hb' | 'pair';
    target: Target;
    window: number;
    durationMs: number;
    warmupMs: number;
    sessionsFile: string;
    pinned: boolean;
  },
): Promise<LoadResult> {
  const args = [
    o.mode,
    String(o.target.port),
    String(o.window),
    String(o.durationMs),
    String(o.warmupMs),
    '1000000',
    o.sessionsFile,
    'bench',
    String(seqBase),
    String(o.target.child.pid),
  ];
  seqBase += 2_000_000; // 2 × MAX_REQUESTS: see FIRST_SEQ in loadgen.c
  const child = o.pinned
    ? spawn('taskset', ['-c', '1', loadgen, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
    : spawn(loadgen, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => {
    out += b.toString();
  });
  const code = await waitExit(child, o.durationMs + o.warmupMs + 15_000);
  if (code !== 0) throw new Error(`loadgen exited ${code}`);
  const r = JSON.parse(out.trim().split('\n').pop() ?? '{}') as LoadResult;
  if (!(r.server_cpu_s >= 0)) throw new Error('loadgen could not read the server CPU clock');
  const pct = (s: number) => round((100 * s) / r.seconds, 1);
  r.server_cpu_us_per_req = r.completed > 0 ? round((r.server_cpu_s * 1e6) / r.completed, 2) : NaN;
  r.server_cpu_pct = pct(r.server_cpu_s);
  // The server is pinned to core 0: what else that core did is the others' share.
  r.core0_others_pct = o.pinned ? Math.max(0, pct(r.core_busy_s[0] - r.server_cpu_s)) : NaN;
  r.core0_steal_pct = o.pinned ? pct(r.core_steal_s[0]) : NaN;
  return r;
}

/** The median of a non-empty list. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** The bare `node:dgram` echo server (bench/server.ts) as a child process. */
export async function startEcho(
  core: { core?: number },
  kind: 'echo' | 'echo-batch' = 'echo',
): Promise<Target> {
  const e = await spawnScript('server.js', [kind], core);
  return { child: e.child, port: Number(/port (\d+)/.exec(e.ready)?.[1]) };
}

async function startDaemon(site: Site, core: { core?: number }, nodeArgs: string[]) {
  const opts = {
    licenseFile: site.licenseFile,
    keysFile: site.keysFile,
    stateDir: site.stateDir,
    maxSessionsPerHost: 1_000_000,
  };
  const d = await spawnScript('server.js', ['daemon', JSON.stringify(opts)], { ...core, nodeArgs });
  return {
    child: d.child,
    port: Number(/port (\d+)/.exec(d.ready)?.[1]),
    udp: /udp (\w+)/.exec(d.ready)?.[1] ?? '?',
  };
}

/** SIGTERM, then waits for the exit (SIGKILL after 10 s). */
export async function stop(t: Target | undefined): Promise<void> {
  if (!t) return;
  t.child.kill('SIGTERM');
  await waitExit(t.child);
}

/** Opens `n` sessions on the daemon at `port` and writes them in loadgen's format. */
export async function sessionsFor(
  site: Site,
  port: number,
  n: number,
  file: string,
): Promise<void> {
  const req = await Requester.open(port);
  try {
    const clients = await openSessions(req, port, site.credKey, n);
    writeFileSync(
      file,
      clients
        .map(
          (c) =>
            `${c.session.sessionId.toString(16).padStart(16, '0')} ${toHex(c.session.sessionKey)}\n`,
        )
        .join(''),
    );
  } finally {
    req.close();
  }
}

/**
 * Warm-up, then `rounds` heartbeat runs each between two echo runs, then (with `pairs`)
 * CHECKOUT+CHECKIN pairs; with `profileDir`, one more heartbeat run against a second,
 * profiled daemon (its figures are not kept).
 * @throws {Error} when a child or the generator fails
 */
export async function throughput(
  o: {
    window?: number;
    sessions?: number;
    durationMs?: number;
    warmupMs?: number;
    rounds?: number;
    pairs?: boolean;
    profileDir?: string;
  } = {},
): Promise<ThroughputResult> {
  const window = o.window ?? 32;
  const nSessions = o.sessions ?? 64;
  const durationMs = o.durationMs ?? 1500;
  const warmupMs = o.warmupMs ?? 1000;
  const rounds = o.rounds ?? 5;
  const pinned = canPin(availableParallelism());
  const site = makeSite([`FEATURE bench demo 1.0 permanent 100000 DUP_GROUP=NONE`]);
  const loadgen = buildLoadgen(site.dir);
  const core = pinned ? { core: 0 } : {};
  const sessionsFile = join(site.dir, 'sessions.txt');
  let daemon: (Target & { udp: string }) | undefined;
  let echo: Target | undefined;
  let batchEcho: Target | undefined;
  const run = (mode: 'hb' | 'pair', target: Target, ms = durationMs, warm = 200) =>
    runLoad(loadgen, {
      mode,
      target,
      window,
      durationMs: ms,
      warmupMs: warm,
      sessionsFile,
      pinned,
    });
  try {
    daemon = await startDaemon(site, core, []);
    echo = await startEcho(core);
    if (!batchUnavailable('127.0.0.1')) batchEcho = await startEcho(core, 'echo-batch');
    await sessionsFor(site, daemon.port, nSessions, sessionsFile);
    // Unmeasured: JIT tiers, heap sizing, the sessions' move to the generator's port.
    await run('hb', echo, warmupMs, 0);
    if (batchEcho) await run('hb', batchEcho, warmupMs, 0);
    await run('hb', daemon, warmupMs, 0);
    // E B H E B H … E B: each heartbeat run between echo runs of both kinds.
    const echoes = [await run('hb', echo)];
    const batched = batchEcho ? [await run('hb', batchEcho)] : [];
    const rs: Round[] = [];
    const cpu = (a: LoadResult, b: LoadResult) =>
      (a.server_cpu_us_per_req + b.server_cpu_us_per_req) / 2;
    for (let i = 0; i < rounds; i++) {
      const heartbeat = await run('hb', daemon);
      const after = await run('hb', echo);
      const before = echoes[echoes.length - 1]!;
      echoes.push(after);
      let vsBatch: number | null = null;
      if (batchEcho) {
        const b = await run('hb', batchEcho);
        vsBatch = round(cpu(batched[batched.length - 1]!, b) / heartbeat.server_cpu_us_per_req, 3);
        batched.push(b);
      }
      const echoRate = (before.rate + after.rate) / 2;
      rs.push({
        heartbeat,
        cpu_ratio: round(cpu(before, after) / heartbeat.server_cpu_us_per_req, 3),
        rate_ratio: round(heartbeat.rate / echoRate, 3),
        cpu_ratio_vs_batch_echo: vsBatch,
      });
    }
    const pairs = o.pairs ? await run('pair', daemon) : null;
    const cpuRatios = rs.map((r) => r.cpu_ratio);
    const mid = median(cpuRatios);
    const typical = rs.reduce((a, b) =>
      Math.abs(b.cpu_ratio - mid) < Math.abs(a.cpu_ratio - mid) ? b : a,
    );
    const echoRate = median(echoes.map((e) => e.rate));
    let profileDir: string | null = null;
    if (o.profileDir) {
      await stop(daemon);
      daemon = undefined;
      profileDir = o.profileDir;
      const profSite = makeSite([`FEATURE bench demo 1.0 permanent 100000 DUP_GROUP=NONE`]);
      const prof = await startDaemon(profSite, core, [
        '--cpu-prof',
        `--cpu-prof-dir=${profileDir}`,
      ]);
      daemon = prof;
      await sessionsFor(profSite, prof.port, nSessions, sessionsFile);
      await run('hb', prof, durationMs, warmupMs);
    }
    return {
      pinned,
      window,
      sessions: nSessions,
      echo: echoes,
      echo_batch: batched,
      daemon_udp: daemon.udp,
      rounds: rs,
      heartbeat_cpu_ratio_vs_echo: round(mid, 3),
      heartbeat_cpu_ratio_range: [Math.min(...cpuRatios), Math.max(...cpuRatios)],
      heartbeat_ratio_vs_echo: round(median(rs.map((r) => r.rate_ratio)), 3),
      echo_server_cpu_us_per_req: round(median(echoes.map((e) => e.server_cpu_us_per_req)), 2),
      heartbeat_server_cpu_us_per_req: round(
        median(rs.map((r) => r.heartbeat.server_cpu_us_per_req)),
        2,
      ),
      heartbeat_cpu_ratio_vs_batch_echo: batchEcho
        ? round(median(rs.map((r) => r.cpu_ratio_vs_batch_echo!)), 3)
        : null,
      echo_batch_server_cpu_us_per_req: batchEcho
        ? round(median(batched.map((e) => e.server_cpu_us_per_req)), 2)
        : null,
      heartbeat: typical.heartbeat,
      pairs,
      pair_datagram_ratio_vs_echo: pairs ? round((2 * pairs.rate) / echoRate, 3) : null,
      profile_dir: profileDir,
    };
  } finally {
    await stop(echo);
    await stop(batchEcho);
    await stop(daemon);
  }
}

export function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
