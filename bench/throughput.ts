/**
 * Throughput and latency: a bare `node:dgram` echo server and floatlmd, each in a child
 * process pinned to core 0, driven by the same C load generator (bench/c/loadgen.c, pinned
 * to core 1) with many requests in flight: authenticated HEARTBEATs (mode 3, each with a
 * fresh seq and request id, signed by the generator), and CHECKOUT+CHECKIN pairs.
 */
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { toHex } from '../lib/wire/index.ts';
import { openSessions } from './clients.ts';
import {
  BENCH_DIR,
  canPin,
  cpuSeconds,
  makeSite,
  Requester,
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
  /** Server CPU (user + system) per completed request, µs. */
  server_cpu_us_per_req: number;
  /** Server CPU use during the run, % of one core. */
  server_cpu_pct: number;
}

export interface ThroughputResult {
  pinned: boolean;
  window: number;
  sessions: number;
  echo: LoadResult[];
  heartbeat: LoadResult;
  pairs: LoadResult;
  heartbeat_ratio_vs_echo: number;
  /** Pairs are two round trips: (2 × pairs/s) / echo requests/s. */
  pair_datagram_ratio_vs_echo: number;
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

async function runLoad(
  loadgen: string,
  o: {
    mode: 'hb' | 'pair';
    port: number;
    serverPid: number;
    window: number;
    durationMs: number;
    warmupMs: number;
    sessionsFile: string;
    pinned: boolean;
  },
): Promise<LoadResult> {
  const args = [
    o.mode,
    String(o.port),
    String(o.window),
    String(o.durationMs),
    String(o.warmupMs),
    '1000000',
    o.sessionsFile,
    'bench',
    String(seqBase),
  ];
  seqBase += 2_000_000; // 2 × MAX_REQUESTS: see FIRST_SEQ in loadgen.c
  const child = o.pinned
    ? spawn('taskset', ['-c', '1', loadgen, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
    : spawn(loadgen, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => {
    out += b.toString();
  });
  // Server CPU over the measured part only: sample once the warm-up is over.
  let cpu0 = Number.NaN;
  let t0 = 0;
  const sampler = setTimeout(() => {
    cpu0 = cpuSeconds(o.serverPid);
    t0 = performance.now();
  }, o.warmupMs);
  const code = await waitExit(child, o.durationMs + o.warmupMs + 15_000);
  clearTimeout(sampler);
  const cpu = cpuSeconds(o.serverPid) - cpu0;
  const wall = (performance.now() - t0) / 1000;
  if (code !== 0) throw new Error(`loadgen exited ${code}`);
  const r = JSON.parse(out.trim().split('\n').pop() ?? '{}') as LoadResult;
  r.server_cpu_us_per_req = r.completed > 0 ? (cpu * 1e6) / r.completed : Number.NaN;
  r.server_cpu_pct = wall > 0 ? (100 * cpu) / wall : Number.NaN;
  return r;
}

/**
 * Runs echo, floatlmd heartbeats, floatlmd checkout+checkin pairs, and echo again (timings
 * drift on shared machines; the ratio uses the mean of both echo runs).
 * @throws {Error} when a child or the generator fails
 */
export async function throughput(
  o: {
    window?: number;
    sessions?: number;
    durationMs?: number;
    warmupMs?: number;
    /** Extra node arguments for the daemon child (e.g. `--cpu-prof`). */
    daemonNodeArgs?: string[];
    /** Echo once and heartbeats only (profiling a change): no pairs, no second echo. */
    heartbeatOnly?: boolean;
  } = {},
): Promise<ThroughputResult> {
  const window = o.window ?? 32;
  const nSessions = o.sessions ?? 64;
  const durationMs = o.durationMs ?? 4000;
  const warmupMs = o.warmupMs ?? 1000;
  const pinned = canPin(availableParallelism());
  const site = makeSite([`FEATURE bench demo 1.0 permanent 100000 DUP_GROUP=NONE`]);
  const loadgen = buildLoadgen(site.dir);
  const core = pinned ? { core: 0 } : {};

  const echo = async (sessionsFile: string) => {
    const e = await spawnScript('server.js', ['echo'], core);
    const port = Number(/port (\d+)/.exec(e.ready)?.[1]);
    try {
      return await runLoad(loadgen, {
        mode: 'hb',
        port,
        serverPid: e.child.pid!,
        window,
        durationMs,
        warmupMs,
        sessionsFile,
        pinned,
      });
    } finally {
      e.child.kill('SIGTERM');
      await waitExit(e.child);
    }
  };

  const d = await spawnScript(
    'server.js',
    [
      'daemon',
      JSON.stringify({
        licenseFile: site.licenseFile,
        keysFile: site.keysFile,
        stateDir: site.stateDir,
        maxSessionsPerHost: 1_000_000,
      }),
    ],
    { ...core, nodeArgs: o.daemonNodeArgs ?? [] },
  );
  const port = Number(/port (\d+)/.exec(d.ready)?.[1]);
  const sessionsFile = join(site.dir, 'sessions.txt');
  try {
    const req = await Requester.open(port);
    const clients = await openSessions(req, port, site.credKey, nSessions);
    req.close();
    writeFileSync(
      sessionsFile,
      clients
        .map(
          (c) =>
            `${c.session.sessionId.toString(16).padStart(16, '0')} ${toHex(c.session.sessionKey)}\n`,
        )
        .join(''),
    );
    const echo1 = await echo(sessionsFile);
    const run = (mode: 'hb' | 'pair') =>
      runLoad(loadgen, {
        mode,
        port,
        serverPid: d.child.pid!,
        window,
        durationMs,
        warmupMs,
        sessionsFile,
        pinned,
      });
    const heartbeat = await run('hb');
    const pairs = o.heartbeatOnly ? heartbeat : await run('pair');
    const echo2 = o.heartbeatOnly ? echo1 : await echo(sessionsFile);
    const echoRate = (echo1.rate + echo2.rate) / 2;
    return {
      pinned,
      window,
      sessions: nSessions,
      echo: [echo1, echo2],
      heartbeat,
      pairs,
      heartbeat_ratio_vs_echo: round(heartbeat.rate / echoRate, 3),
      pair_datagram_ratio_vs_echo: round((2 * pairs.rate) / echoRate, 3),
    };
  } finally {
    d.child.kill('SIGTERM');
    await waitExit(d.child);
  }
}

export function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
