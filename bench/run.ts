/**
 * `npm run bench`: every floatlm benchmark in one bounded run on 127.0.0.1, printed side by
 * side with the targets; `npm run bench -- --json` prints one JSON object instead.
 * Sections: throughput and latency (echo vs floatlmd, C load generator), memory per live
 * session, event-loop stall while flushing 1 000 000 revoked ids, restart recovery, server
 * CPU per bad-tag datagram, RSS and first contact under a mode-1 flood, and client failover
 * (kill -9 of a server; the library's defaults), and a site: floatlmd over a 3-member etcd on
 * loopback against floatlmd on SQLite in the same run (pairs, heartbeats, failover).
 * `--quick` shrinks every figure (a smoke run, not a measurement). While iterating:
 * `--only=throughput,heartbeat,memory,flush,reclaim,badtag,flood,failover,site` runs some sections
 * (`heartbeat`: the echo/heartbeat rounds of `throughput` without CHECKOUT+CHECKIN pairs);
 * whatever a run did not measure, figure or target, prints "not run" (null in --json).
 * `--prof=DIR` writes a `--cpu-prof` profile of a separate daemon under heartbeat load in
 * DIR; the reported figures never come from a profiled process (the profiler costs the
 * daemon 15–20 % more CPU per heartbeat and would skew heartbeat/echo).
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { type BadTagResult, badTag, type FloodResult, flood } from './abuse.ts';
import { type FailoverResult, failover } from './failover.ts';
import { reclaim } from './reclaim.ts';
import { makeSite, spawnScript, waitExit } from './site.ts';
import { type SiteResult, siteBench } from './site-daemon.ts';
import { type LoadResult, median, round, type ThroughputResult, throughput } from './throughput.ts';

const json = process.argv.includes('--json');
const quick = process.argv.includes('--quick');
const arg = (name: string) =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const only = arg('only')?.split(',');
const prof = arg('prof');
const SECTIONS = [
  'throughput',
  'heartbeat',
  'memory',
  'flush',
  'reclaim',
  'badtag',
  'flood',
  'failover',
  'site',
];
const runs = (section: string) => !only || only.includes(section);
const NOT_RUN = 'not run';

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
  /** Daemon CPU per restored session's first contact (floor resync + heartbeat), µs. */
  first_contact_cpu_us: number;
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
    active: { answered: number; ms: number; cpu_us_per_session: number; mem: Mem };
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
    first_contact_cpu_us: m.active.cpu_us_per_session,
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
  const unknown = only?.filter((s) => !SECTIONS.includes(s)) ?? [];
  if (unknown.length > 0) {
    process.stderr.write(
      `bench: unknown section ${unknown.join(', ')} in --only (sections: ${SECTIONS.join(', ')})\n`,
    );
    process.exit(2);
  }
  const t0 = performance.now();
  const machine = {
    nproc: availableParallelism(),
    cpu: cpuModel(),
    node: process.version,
    commit: await gitRev(),
  };
  say(`floatlm bench — ${machine.nproc} CPU(s), ${machine.cpu}, Node ${machine.node}`);
  const skipped = (title: string) => say(`\n${title}: ${NOT_RUN}`);
  const fmt = (x: number | null | undefined, digits = 1) =>
    x === null || x === undefined || Number.isNaN(x) ? NOT_RUN : x.toFixed(digits);

  let tp: ThroughputResult | undefined;
  const title1 = '1. throughput (server pinned to core 0, C generator to core 1, loopback)';
  if (runs('throughput') || runs('heartbeat')) {
    say(`\n${title1} …`);
    tp = await throughput({
      ...(quick ? { durationMs: 500, warmupMs: 500, rounds: 3 } : {}),
      ...(prof ? { profileDir: prof } : {}),
      pairs: runs('throughput'),
    });
    const row = (name: string, r: LoadResult | null, unit = 'req') =>
      say(
        r
          ? `   ${name.padEnd(30)} ${String(Math.round(r.rate)).padStart(7)} ${unit}/s  p50 ${r.p50_us.toFixed(0).padStart(6)} µs  p99 ${r.p99_us.toFixed(0).padStart(6)} µs  server ${r.server_cpu_us_per_req.toFixed(1).padStart(6)} µs CPU/${unit} (${r.server_cpu_pct.toFixed(0)}% of core 0; others ${fmt(r.core0_others_pct, 0)}%, steal ${fmt(r.core0_steal_pct, 0)}%)  generator ${r.generator_cpu_pct.toFixed(0)}%  lost ${r.lost} errors ${r.errors}`
          : `   ${name.padEnd(30)} ${NOT_RUN}`,
      );
    const batchRow = (i: number) =>
      row(`batched-socket echo (run ${i + 1})`, tp!.echo_batch[i] ?? null);
    row('bare echo (run 1)', tp.echo[0]!);
    batchRow(0);
    tp.rounds.forEach((r, i) => {
      row(`floatlmd HEARTBEAT (round ${i + 1})`, r.heartbeat);
      row(`bare echo (run ${i + 2})`, tp!.echo[i + 1]!);
      batchRow(i + 1);
    });
    row('floatlmd CHECKOUT+CHECKIN', tp.pairs, 'pair');
    const [lo, hi] = tp.heartbeat_cpu_ratio_range;
    say(
      `   heartbeat / echo by server CPU per request: ${tp.heartbeat_cpu_ratio_vs_echo} (median of ${tp.rounds.length} rounds, range ${lo}–${hi}; ${tp.heartbeat_server_cpu_us_per_req} vs ${tp.echo_server_cpu_us_per_req} µs) (target ≥ 0.9); by rate ${tp.heartbeat_ratio_vs_echo} (target ≥ 0.6); ${tp.window} in flight over ${tp.sessions} sessions; the daemon on its ${tp.daemon_udp} socket, the echo on node:dgram`,
    );
    say(
      tp.heartbeat_cpu_ratio_vs_batch_echo === null
        ? `   heartbeat / echo on the same batched socket: ${NOT_RUN} (the addon is not built)`
        : `   heartbeat / echo on the same batched socket (like for like): ${tp.heartbeat_cpu_ratio_vs_batch_echo} (${tp.heartbeat_server_cpu_us_per_req} vs ${tp.echo_batch_server_cpu_us_per_req} µs): what a heartbeat adds to moving its datagrams`,
    );
    const busy = [...tp.echo, ...tp.rounds.map((r) => r.heartbeat)].map((r) => r.core0_others_pct);
    const othersPct = busy.some(Number.isNaN) ? Number.NaN : Math.round(median(busy));
    if (othersPct > 30)
      say(
        `   warning: other processes took ${othersPct}% of core 0 (median over the runs): per-request CPU is inflated, the daemon's far more than echo's (most likely its larger working set is evicted from the caches whenever it gets the core back), so heartbeat/echo reads low; rerun on a quiet machine`,
      );
    if (tp.profile_dir)
      say(`   profile of a separate daemon under heartbeat load written to ${tp.profile_dir}`);
  } else skipped(title1);

  let m100k: MemFigure | undefined;
  let m1m: MemFigure | undefined;
  let marginal = Number.NaN;
  const title2 =
    '2. memory per live session (restored by the daemon from its state; then one heartbeat each)';
  if (runs('memory')) {
    say(`\n${title2} …`);
    m100k = await memory(quick ? 10_000 : 100_000);
    m1m = await memory(quick ? 50_000 : 1_000_000);
    marginal = Math.round(
      (m1m.rss_delta_bytes - m100k.rss_delta_bytes) / (m1m.sessions - m100k.sessions),
    );
    for (const m of [m100k, m1m])
      say(
        `   ${String(m.sessions).padStart(8)} sessions: RSS ${(m.rss_bytes / 2 ** 20).toFixed(0)} MiB (+${(m.rss_delta_bytes / 2 ** 20).toFixed(0)} MiB), idle ${m.rss_bytes_per_session} B RSS/session, ${m.heap_bytes_per_session} B heap/session; restored in ${(m.restore_ms / 1000).toFixed(1)} s; after one heartbeat each (${m.active_answered} answered in ${(m.active_ms / 1000).toFixed(1)} s) ${m.active_rss_bytes_per_session} B RSS/session, ${m.active_heap_bytes_per_session} B heap/session`,
      );
    say(
      `   marginal between the two: ${marginal} B RSS/session; active at the larger: ${m1m.active_rss_bytes_per_session} B RSS/session (target ≤ 600 at 1 000 000)`,
    );
    say(
      `   first contact of a restored session (ERROR REPLAY with its floor, then the heartbeat): ${m1m.first_contact_cpu_us} µs daemon CPU each at ${m1m.sessions}, ${m100k.first_contact_cpu_us} µs at ${m100k.sessions} (target ≤ 20); wall ${((m1m.active_ms * 1000) / m1m.sessions).toFixed(1)} µs each with the JS talker`,
    );
  } else skipped(title2);

  let fl: Record<string, unknown> | undefined;
  const title3 = '3. flushing revoked tokens (daemon housekeeping timer at 10 ms)';
  if (runs('flush')) {
    say(`\n${title3} …`);
    fl = await flush(quick ? 50_000 : 1_000_000);
    say(
      `   ${fl.revoked} expired revoked ids flushed in ${fl.flush_ms} ms (${fl.left} left); longest event-loop stall ${fl.max_stall_ms} ms, loop delay p99 ${fl.loop_delay_p99_ms} ms; longest store batch ${fl.longest_batch_ms} ms (target: no stall over 20 ms)`,
    );
  } else skipped(title3);

  let rc: Awaited<ReturnType<typeof reclaim>> | undefined;
  const title4 = '4. restart recovery';
  if (runs('reclaim')) {
    say(`\n${title4} …`);
    rc = await reclaim(quick ? 1000 : 10_000);
    say(
      `   ${rc.reclaimed_ok}/${rc.clients} seats reclaimed ${rc.total_ms} ms after the restart (listening after ${rc.restart_to_listen_ms} ms, reclaims ${rc.reclaim_phase_ms} ms) (target < 5000 ms)`,
    );
  } else skipped(title4);

  let bt: BadTagResult | undefined;
  const title5 = '5. bad-tag datagrams (floatlmd child, --rate-limit 0, every datagram distinct)';
  if (runs('badtag')) {
    say(`\n${title5} …`);
    bt = await badTag(quick ? 5000 : 50_000);
    for (const r of bt.rows)
      say(
        `   ${r.kind.padEnd(34)} ${String(r.bytes).padStart(4)} B  ${r.server_cpu_us_per_datagram.toFixed(2).padStart(6)} µs server CPU/datagram  (${r.sent} sent at ${r.rate}/s, ${r.dropped} dropped by the kernel, ${r.answered} answered)`,
      );
    say(
      `   worst: modes 1/3/4 ${bt.worst_us_modes_1_3_4} µs (target ≤ 5), mode 2 ${bt.worst_us_mode_2} µs (target ≤ 10); probe ${bt.probe_cpu_us} µs a burst of ${bt.burst}, subtracted`,
    );
    const np = bt.no_pause;
    say(
      `   a valid request right after each burst waited ${bt.probe_wait_ms_p50} ms (median); with --flood-pause 0: ${np === null ? `${NOT_RUN} (the daemon is on node:dgram, which never pauses)` : `modes 1/3/4 ${np.worst_us_modes_1_3_4} µs, mode 2 ${np.worst_us_mode_2} µs, the request waited ${np.probe_wait_ms_p50} ms`}`,
    );
    const own = bt.floor_batch_us ?? bt.floor_us;
    const above = (v: number) => round(v - own, 2);
    say(
      `   floor: a node:dgram socket that reads and drops the same datagrams costs ${bt.floor_us} µs each (same run, same core); ${bt.floor_batch_us === null ? `on the batched socket: ${NOT_RUN} (the addon is not built)` : `the same on the batched socket ${bt.floor_batch_us} µs`} (both read every datagram as it comes); floatlmd (${bt.daemon_udp} socket) against its own socket's floor: modes 1/3/4 ${above(bt.worst_us_modes_1_3_4)} µs${np ? ` (${above(np.worst_us_modes_1_3_4)} without the pause)` : ''}, mode 2 ${above(bt.worst_us_mode_2)} µs${np ? ` (${above(np.worst_us_mode_2)})` : ''}`,
    );
  } else skipped(title5);

  let fd: FloodResult | undefined;
  const nFlood = quick ? 20_000 : 200_000;
  const title6 = `6. mode-1 PING flood from one credential (floatlmd child, default options)`;
  if (runs('flood')) {
    say(`\n${title6} …`);
    fd = await flood(nFlood);
    const mib = (b: number) => (b / 2 ** 20).toFixed(0);
    const pct = (x: { sent: number; ok: number; share: number }) =>
      `${x.ok}/${x.sent} (${(100 * x.share).toFixed(1)} %)`;
    say(
      `   ${fd.flood} PINGs in ${(fd.flood_ms / 1000).toFixed(1)} s (${fd.flood_rate}/s from ${fd.sources} addresses; ${fd.flood_answered} answered, ${fd.flood_dropped} dropped by the kernel)`,
    );
    say(
      `   daemon RSS ${mib(fd.rss_before_bytes)} MiB before, peak ${mib(fd.rss_peak_bytes)} MiB, ${mib(fd.rss_end_bytes)} MiB at the end, ${mib(fd.rss_after_bytes)} MiB 5 s later`,
    );
    say(
      `   other clients' HELLOs during the flood ${pct(fd.hello_other)} (target ≥ 99 %); under the flood's own credential ${pct(fd.hello_same_credential)}; in the 5 s after ${pct(fd.hello_after)}`,
    );
  } else skipped(title6);

  let fo: FailoverResult | undefined;
  const title7 = '7. client failover with the library defaults (kill -9 of the server)';
  if (runs('failover')) {
    say(`\n${title7} …`);
    fo = await failover(quick ? 1 : 5);
    say(
      `   first unanswered datagram → next answered: median ${Math.round(fo.failover_ms.median)} ms, max ${Math.round(fo.failover_ms.max)} ms (target ≤ ${fo.failover_ms.target} ms); ${fo.reclaimed} seats reclaimed on the next server within its grace`,
    );
    say(
      `   Ctrl-C with no server answering: median ${Math.round(fo.ctrl_c_ms.median)} ms, max ${Math.round(fo.ctrl_c_ms.max)} ms (target ≤ ${fo.ctrl_c_ms.target} ms)`,
    );
  } else skipped(title7);

  let st: SiteResult | undefined;
  const title8 =
    '8. site: floatlmd on a 3-member etcd (loopback, fsync on) vs floatlmd on SQLite, same run';
  if (runs('site')) {
    say(`\n${title8} …`);
    st = await siteBench(quick);
    const why = (part: keyof SiteResult['not_run']) => `${NOT_RUN} (${st!.not_run[part]})`;
    const us = (x: number) => `${(x / 1000).toFixed(1)} ms`;
    const p = st.pairs;
    if (p) {
      say(
        `   CHECKOUT+CHECKIN, ${p.window} in flight over ${p.sessions} sessions (median of ${p.runs.length} runs each): etcd ${p.etcd_rate} pairs/s p50 ${us(p.etcd_p50_us)} p99 ${us(p.etcd_p99_us)}; SQLite ${p.sqlite_rate} pairs/s p50 ${us(p.sqlite_p50_us)} p99 ${us(p.sqlite_p99_us)}; etcd / SQLite ${p.etcd_vs_sqlite_rate}`,
      );
      say(
        `   server CPU per pair: etcd ${us(p.etcd_server_cpu_us_per_pair)}, SQLite ${us(p.sqlite_server_cpu_us_per_pair)}; ${p.etcd_pairs_per_revision} pairs per etcd revision`,
      );
      const bad = p.runs.flatMap((r) => [r.sqlite, r.etcd]).filter((r) => r.lost + r.errors > 0);
      if (bad.length > 0)
        say(
          `   (${bad.map((r) => `lost ${r.lost} errors ${r.errors}`).join('; ')} in ${bad.length} pair run(s))`,
        );
    } else say(`   CHECKOUT+CHECKIN pairs on etcd and on SQLite: ${why('pairs')}`);
    const h = st.heartbeat;
    if (h) {
      say(
        `   HEARTBEAT, ${h.window} in flight (median of ${h.rounds.length} rounds): etcd ${h.etcd_rate}/s ${h.etcd_server_cpu_us_per_req} µs CPU, SQLite ${h.sqlite_rate}/s ${h.sqlite_server_cpu_us_per_req} µs CPU, echo ${h.echo_server_cpu_us_per_req} µs CPU`,
      );
      say(
        `   heartbeat / echo by server CPU: etcd ${h.etcd_cpu_ratio_vs_echo}, SQLite ${h.sqlite_cpu_ratio_vs_echo}; by rate: etcd ${h.etcd_rate_ratio_vs_echo}, SQLite ${h.sqlite_rate_ratio_vs_echo}`,
      );
      say(
        `   etcd / SQLite: by CPU per heartbeat ${h.etcd_vs_sqlite_cpu} (range ${h.etcd_vs_sqlite_cpu_range.join('–')}), by rate ${h.etcd_vs_sqlite_rate} (range ${h.etcd_vs_sqlite_rate_range.join('–')}) (target ≥ 0.95: within 5 %)`,
      );
      const hb = h.rounds.flatMap((r) => [r.sqlite, r.etcd]);
      const lost = hb.reduce((n, r) => n + r.lost + r.errors, 0);
      const others = Math.round(median(hb.map((r) => r.core0_others_pct)));
      say(
        `   (other processes took ${Number.isNaN(others) ? NOT_RUN : `${others}%`} of core 0, median over the daemons' runs; ${lost} heartbeats lost or refused)`,
      );
    } else say(`   heartbeat / echo on etcd vs on SQLite: ${why('heartbeat')}`);
    const f = st.failover;
    if (f)
      for (const r of [f.default, f.tuned])
        say(
          `   failover, retry policy ${r.policy} (${r.runs} runs): first unanswered datagram → B answers p50 ${r.to_failover_ms.p50} ms, max ${r.to_failover_ms.max} ms; → heartbeat acknowledged p50 ${r.to_ack_ms.p50} ms, max ${r.to_ack_ms.max} ms; kill → acknowledged max ${r.kill_to_ack_ms.max} ms; seat held at B ${r.held}${r.policy === 'default' ? ' (target ≤ 2000 ms)' : ''}`,
        );
    else say(`   failover, kill -9 of the holder's server on a 2-server site: ${why('failover')}`);
  } else skipped(title8);

  /** A target: met, missed, or null when this run did not measure it. */
  const target = (value: number | null | undefined, limit: number, ok: (v: number) => boolean) =>
    value === null || value === undefined || Number.isNaN(value)
      ? { target: limit, value: null, met: null }
      : { target: limit, value, met: ok(value) };
  const result = {
    schema: 'floatlm.bench/2',
    quick,
    ...(only ? { only } : {}),
    machine,
    throughput: tp ?? null,
    echo_rate: tp ? round(tp.echo.reduce((a, e) => a + e.rate, 0) / tp.echo.length) : null,
    heartbeat_rate: tp?.heartbeat.rate ?? null,
    heartbeat_p50_us: tp?.heartbeat.p50_us ?? null,
    heartbeat_p99_us: tp?.heartbeat.p99_us ?? null,
    heartbeat_server_cpu_us: tp?.heartbeat_server_cpu_us_per_req ?? null,
    echo_server_cpu_us: tp?.echo_server_cpu_us_per_req ?? null,
    pair_rate: tp?.pairs?.rate ?? null,
    pair_p50_us: tp?.pairs?.p50_us ?? null,
    pair_p99_us: tp?.pairs?.p99_us ?? null,
    heartbeat_ratio_vs_echo: tp?.heartbeat_ratio_vs_echo ?? null,
    heartbeat_cpu_ratio_vs_echo: tp?.heartbeat_cpu_ratio_vs_echo ?? null,
    heartbeat_cpu_ratio_vs_batch_echo: tp?.heartbeat_cpu_ratio_vs_batch_echo ?? null,
    daemon_udp: tp?.daemon_udp ?? null,
    memory: m1m ? { at_100k: m100k, at_1m: m1m, marginal_rss_bytes_per_session: marginal } : null,
    rss_bytes_per_session_1m: m1m?.rss_bytes_per_session ?? null,
    active_rss_bytes_per_session_1m: m1m?.active_rss_bytes_per_session ?? null,
    first_contact_cpu_us_1m: m1m?.first_contact_cpu_us ?? null,
    flush: fl ?? null,
    flush_max_stall_ms: (fl?.max_stall_ms as number | undefined) ?? null,
    reclaim: rc ?? null,
    reclaim_10k_ms: rc?.total_ms ?? null,
    badtag: bt ?? null,
    badtag_worst_us_modes_1_3_4: bt?.worst_us_modes_1_3_4 ?? null,
    badtag_worst_us_mode_2: bt?.worst_us_mode_2 ?? null,
    badtag_floor_us: bt?.floor_us ?? null,
    badtag_floor_batch_us: bt?.floor_batch_us ?? null,
    badtag_no_pause_worst_us_modes_1_3_4: bt?.no_pause?.worst_us_modes_1_3_4 ?? null,
    flood: fd ?? null,
    flood_rss_peak_bytes: fd?.rss_peak_bytes ?? null,
    flood_hello_share: fd?.hello_other.share ?? null,
    failover: fo ?? null,
    failover_ms: fo?.failover_ms.max ?? null,
    site: st ?? null,
    site_pair_rate: st?.pairs?.etcd_rate ?? null,
    site_pair_p50_us: st?.pairs?.etcd_p50_us ?? null,
    site_pair_p99_us: st?.pairs?.etcd_p99_us ?? null,
    site_pair_ratio_vs_sqlite: st?.pairs?.etcd_vs_sqlite_rate ?? null,
    site_heartbeat_cpu_vs_sqlite: st?.heartbeat?.etcd_vs_sqlite_cpu ?? null,
    site_heartbeat_rate_vs_sqlite: st?.heartbeat?.etcd_vs_sqlite_rate ?? null,
    site_failover_ms: st?.failover?.default.to_ack_ms.max ?? null,
    targets: {
      heartbeat_cpu_ratio_vs_echo: target(tp?.heartbeat_cpu_ratio_vs_echo, 0.9, (v) => v >= 0.9),
      heartbeat_ratio_vs_echo: target(tp?.heartbeat_ratio_vs_echo, 0.6, (v) => v >= 0.6),
      failover_ms: target(fo?.failover_ms.max, 2000, (v) => v <= 2000),
      ctrl_c_ms: target(fo?.ctrl_c_ms.max, 2000, (v) => v <= 2000),
      active_rss_bytes_per_session_1m: target(
        m1m?.active_rss_bytes_per_session,
        600,
        (v) => v <= 600,
      ),
      rss_bytes_per_session_1m: target(m1m?.rss_bytes_per_session, 600, (v) => v <= 600),
      first_contact_cpu_us_1m: target(m1m?.first_contact_cpu_us, 20, (v) => v <= 20),
      flush_max_stall_ms: target(fl?.max_stall_ms as number | undefined, 20, (v) => v <= 20),
      reclaim_10k_ms: target(
        rc?.total_ms,
        5000,
        (v) => v < 5000 && rc?.reclaimed_ok === rc?.clients,
      ),
      badtag_us_modes_1_3_4: target(bt?.worst_us_modes_1_3_4, 5, (v) => v <= 5),
      badtag_us_mode_2: target(bt?.worst_us_mode_2, 10, (v) => v <= 10),
      flood_hello_share: target(fd?.hello_other.share, 0.99, (v) => v >= 0.99),
      site_heartbeat_cpu_vs_sqlite: target(
        st?.heartbeat?.etcd_vs_sqlite_cpu,
        0.95,
        (v) => v >= 0.95,
      ),
      site_heartbeat_rate_vs_sqlite: target(
        st?.heartbeat?.etcd_vs_sqlite_rate,
        0.95,
        (v) => v >= 0.95,
      ),
      site_failover_ms: target(st?.failover?.default.to_ack_ms.max, 2000, (v) => v <= 2000),
    },
    total_s: round((performance.now() - t0) / 1000),
  };
  if (json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else {
    say(
      `\ntargets: ${Object.entries(result.targets)
        .map(([k, v]) => `${k} ${v.met === null ? NOT_RUN : v.met ? 'met' : 'MISSED'}`)
        .join(', ')}`,
    );
    say(`total ${result.total_s} s; \`npm run bench -- --json\` for every figure as JSON`);
  }
}

main().catch((e) => {
  process.stderr.write(`bench: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
