/**
 * `npm run bench`: every floatlm benchmark in one bounded run on 127.0.0.1, printed side by
 * side with the targets; `npm run bench -- --json` prints one JSON object instead.
 * Sections: throughput and latency (echo vs floatlmd, C load generator), memory per live
 * session, event-loop stall while flushing 1 000 000 revoked ids, restart recovery.
 * `--quick` shrinks every figure (a smoke run, not a measurement). While iterating:
 * `--only=throughput,memory,flush,reclaim` runs some sections (`heartbeat`: echo and
 * heartbeats only) (the targets of the others
 * read as not met), and `--prof=DIR` writes a `--cpu-prof` profile of the daemon under
 * load in DIR.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { reclaim } from './reclaim.ts';
import { makeSite, spawnScript, waitExit } from './site.ts';
import { type LoadResult, round, throughput } from './throughput.ts';

const json = process.argv.includes('--json');
const quick = process.argv.includes('--quick');
const arg = (name: string) =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const only = arg('only')?.split(',');
const prof = arg('prof');
const runs = (section: string) => !only || only.includes(section);

function say(s: string): void {
  if (!json) process.stdout.write(`${s}\n`);
  else process.stderr.write(`${s}\n`);
}

function cpuModel(): string {
  try {
    return /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Runs `memory.js` with `args` to completion; its last stdout line, parsed. */
async function memoryChild(args: string[]): Promise<Record<string, unknown>> {
  const { child, ready } = await spawnScript('memory.js', args, { nodeArgs: ['--expose-gc'] });
  await waitExit(child, 600_000);
  return JSON.parse(ready) as Record<string, unknown>;
}

interface MemFigure {
  sessions: number;
  populate_ms: number;
  restore_ms: number;
  rss_bytes: number;
  rss_delta_bytes: number;
  heap_delta_bytes: number;
  /** Idle sessions, as restored from the state. */
  rss_bytes_per_session: number;
  heap_bytes_per_session: number;
  /** After every session has sent one HEARTBEAT (from the daemon's start, like the above). */
  active_answered: number;
  active_ms: number;
  active_rss_bytes_per_session: number;
  active_heap_bytes_per_session: number;
}

type Mem = { rss: number; heapUsed: number; arrayBuffers: number };

async function memory(n: number): Promise<MemFigure> {
  const site = makeSite(['FEATURE bench demo 1.0 permanent 100 DUP_GROUP=NONE']);
  const s = JSON.stringify(site);
  const pop = await memoryChild(['populate', s, String(n), '0']);
  const m = (await memoryChild(['measure', s, 'active'])) as {
    sessions: number;
    start_ms: number;
    before: Mem;
    after: Mem;
    active: { answered: number; ms: number; mem: Mem };
  };
  const heap = (x: Mem) => x.heapUsed + x.arrayBuffers;
  const rss = m.after.rss - m.before.rss;
  const heapDelta = heap(m.after) - heap(m.before);
  return {
    sessions: m.sessions,
    populate_ms: pop.ms as number,
    restore_ms: m.start_ms,
    rss_bytes: m.after.rss,
    rss_delta_bytes: rss,
    heap_delta_bytes: heapDelta,
    rss_bytes_per_session: Math.round(rss / m.sessions),
    heap_bytes_per_session: Math.round(heapDelta / m.sessions),
    active_answered: m.active.answered,
    active_ms: m.active.ms,
    active_rss_bytes_per_session: Math.round((m.active.mem.rss - m.before.rss) / m.sessions),
    active_heap_bytes_per_session: Math.round((heap(m.active.mem) - heap(m.before)) / m.sessions),
  };
}

async function flush(n: number): Promise<Record<string, unknown>> {
  const site = makeSite(['FEATURE bench demo 1.0 permanent 100 DUP_GROUP=NONE']);
  const s = JSON.stringify(site);
  await memoryChild(['populate', s, '0', String(n)]);
  return { revoked: n, ...(await memoryChild(['flush', s, '10'])) };
}

function gitRev(): Promise<string> {
  return new Promise((resolve) => {
    const c = spawn('git', ['rev-parse', '--short', 'HEAD'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let out = '';
    c.stdout.on('data', (b: Buffer) => {
      out += b.toString();
    });
    c.on('close', () => resolve(out.trim() || 'unknown'));
    c.on('error', () => resolve('unknown'));
  });
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const machine = {
    nproc: availableParallelism(),
    cpu: cpuModel(),
    node: process.version,
    commit: await gitRev(),
  };
  say(`floatlm bench — ${machine.nproc} CPU(s), ${machine.cpu}, Node ${machine.node}`);

  let tp: Awaited<ReturnType<typeof throughput>> | undefined;
  let hbCpuRatio = Number.NaN;
  let echoRate = Number.NaN;
  if (runs('throughput') || runs('heartbeat')) {
    say('\n1. throughput (server pinned to core 0, C generator to core 1, loopback) …');
    tp = await throughput({
      ...(quick ? { durationMs: 1000, warmupMs: 300 } : {}),
      ...(prof ? { daemonNodeArgs: ['--cpu-prof', `--cpu-prof-dir=${prof}`] } : {}),
      heartbeatOnly: !runs('throughput'),
    });
    echoRate = (tp.echo[0]!.rate + tp.echo[1]!.rate) / 2;
    const echoCpu = (tp.echo[0]!.server_cpu_us_per_req + tp.echo[1]!.server_cpu_us_per_req) / 2;
    hbCpuRatio = round(echoCpu / tp.heartbeat.server_cpu_us_per_req, 3);
    const row = (name: string, r: LoadResult, unit = 'req') =>
      say(
        `   ${name.padEnd(26)} ${String(Math.round(r.rate)).padStart(7)} ${unit}/s  p50 ${r.p50_us.toFixed(0).padStart(6)} µs  p99 ${r.p99_us.toFixed(0).padStart(6)} µs  server ${r.server_cpu_us_per_req.toFixed(1).padStart(6)} µs CPU/${unit} (${r.server_cpu_pct.toFixed(0)}% of a core)  generator ${r.generator_cpu_pct.toFixed(0)}% of a core  lost ${r.lost} errors ${r.errors}`,
      );
    row('bare echo (run 1)', tp.echo[0]!);
    row('floatlmd HEARTBEAT', tp.heartbeat);
    row('floatlmd CHECKOUT+CHECKIN', tp.pairs, 'pair');
    row('bare echo (run 2)', tp.echo[1]!);
    say(
      `   heartbeat / echo: ${tp.heartbeat_ratio_vs_echo} by rate, ${hbCpuRatio} by server CPU per request (target ≥ 0.6); ${tp.window} in flight over ${tp.sessions} sessions`,
    );
  }

  let m100k: MemFigure | undefined;
  let m1m: MemFigure | undefined;
  let marginal = Number.NaN;
  if (runs('memory')) {
    say(
      '\n2. memory per live session (restored by the daemon from its state; then one heartbeat each) …',
    );
    m100k = await memory(quick ? 10_000 : 100_000);
    m1m = await memory(quick ? 50_000 : 1_000_000);
    marginal = Math.round(
      (m1m.rss_delta_bytes - m100k.rss_delta_bytes) / (m1m.sessions - m100k.sessions),
    );
    for (const m of [m100k, m1m])
      say(
        `   ${String(m.sessions).padStart(8)} sessions: RSS ${(m.rss_bytes / 2 ** 20).toFixed(0)} MiB (+${(m.rss_delta_bytes / 2 ** 20).toFixed(0)} MiB), idle ${m.rss_bytes_per_session} B RSS/session, ${m.heap_bytes_per_session} B heap/session; restored in ${(m.restore_ms / 1000).toFixed(1)} s; after one heartbeat each (${m.active_answered} answered in ${(m.active_ms / 1000).toFixed(1)} s) ${m.active_rss_bytes_per_session} B RSS/session, ${m.active_heap_bytes_per_session} B heap/session`,
      );
    say(`   marginal between the two: ${marginal} B RSS/session (target ≤ 600 at 1 000 000)`);
  }

  let fl: Record<string, unknown> | undefined;
  if (runs('flush')) {
    say('\n3. flushing revoked tokens (daemon housekeeping timer at 10 ms) …');
    fl = await flush(quick ? 50_000 : 1_000_000);
    say(
      `   ${fl.revoked} expired revoked ids flushed in ${fl.flush_ms} ms (${fl.left} left); longest event-loop stall ${fl.max_stall_ms} ms, loop delay p99 ${fl.loop_delay_p99_ms} ms; longest store batch ${fl.longest_batch_ms} ms (target: no stall over 20 ms)`,
    );
  }

  let rc: Awaited<ReturnType<typeof reclaim>> | undefined;
  if (runs('reclaim')) {
    say('\n4. restart recovery …');
    rc = await reclaim(quick ? 1000 : 10_000);
    say(
      `   ${rc.reclaimed_ok}/${rc.clients} seats reclaimed ${rc.total_ms} ms after the restart (listening after ${rc.restart_to_listen_ms} ms, reclaims ${rc.reclaim_phase_ms} ms) (target < 5000 ms)`,
    );
  }

  const result = {
    schema: 'floatlm.bench/1',
    quick,
    ...(only ? { only } : {}),
    machine,
    throughput: tp ?? null,
    echo_rate: round(echoRate),
    heartbeat_rate: tp?.heartbeat.rate ?? null,
    heartbeat_p50_us: tp?.heartbeat.p50_us ?? null,
    heartbeat_p99_us: tp?.heartbeat.p99_us ?? null,
    pair_rate: tp?.pairs.rate ?? null,
    pair_p50_us: tp?.pairs.p50_us ?? null,
    pair_p99_us: tp?.pairs.p99_us ?? null,
    heartbeat_ratio_vs_echo: tp?.heartbeat_ratio_vs_echo ?? null,
    heartbeat_cpu_ratio_vs_echo: hbCpuRatio,
    memory: m1m ? { at_100k: m100k, at_1m: m1m, marginal_rss_bytes_per_session: marginal } : null,
    rss_bytes_per_session_1m: m1m?.rss_bytes_per_session ?? null,
    active_rss_bytes_per_session_1m: m1m?.active_rss_bytes_per_session ?? null,
    flush: fl ?? null,
    flush_max_stall_ms: fl?.max_stall_ms ?? null,
    reclaim: rc ?? null,
    reclaim_10k_ms: rc?.total_ms ?? null,
    targets: {
      heartbeat_ratio_vs_echo: { target: 0.6, met: !!tp && tp.heartbeat_ratio_vs_echo >= 0.6 },
      rss_bytes_per_session_1m: { target: 600, met: !!m1m && m1m.rss_bytes_per_session <= 600 },
      flush_max_stall_ms: { target: 20, met: !!fl && (fl.max_stall_ms as number) <= 20 },
      reclaim_10k_ms: {
        target: 5000,
        met: !!rc && rc.total_ms < 5000 && rc.reclaimed_ok === rc.clients,
      },
    },
    total_s: round((performance.now() - t0) / 1000),
  };
  if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else {
    say(
      `\ntargets: ${Object.entries(result.targets)
        .map(([k, v]) => `${k} ${v.met ? 'met' : 'MISSED'}`)
        .join(', ')}`,
    );
    say(`total ${result.total_s} s; \`npm run bench -- --json\` for every figure as JSON`);
  }
}

main().catch((e) => {
  process.stderr.write(`bench: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
