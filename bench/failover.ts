/**
 * Client failover and shutdown with the library's defaults, against floatlmd child
 * processes on 127.0.0.1: a server A and a `--takeover` server B (own empty state), four
 * clients holding a seat each on A; A is killed with SIGKILL and every client sends a
 * heartbeat. Measures, per run, from that heartbeat's first (unanswered) datagram to the
 * next answered one (B's reply: the 'failover' event; target ≤ 2000 ms) and to the seat
 * reclaimed on B; then, with B killed too, how long an aborted waiting checkout followed by
 * close() takes once no server answers (what Ctrl-C costs; target ≤ 2000 ms).
 *
 *   npx tsx bench/failover.ts [--runs=N] [--json]
 *   npm run build && node dist/bench/failover.js [--runs=N] [--json]
 */
import type { ChildProcess } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { type Client, connect, type Lease } from '../lib/client/client.ts';
import type { DaemonOptions } from '../lib/server/daemon.ts';
import { makeSite, type Site, spawnScript } from './site.ts';

const json = process.argv.includes('--json');
const runsArg = process.argv.find((a) => a.startsWith('--runs='))?.slice(7);
const RUNS = Math.max(1, Math.min(20, Number(runsArg ?? 5) || 5));
const CLIENTS = 4;
const FAILOVER_TARGET_MS = 2000;
const CTRL_C_TARGET_MS = 2000;

/** Under tsx the sibling scripts are .ts files; compiled, .js ones in dist/bench. */
const TS = import.meta.url.endsWith('.ts');

async function daemon(
  site: Site,
  o: Partial<DaemonOptions>,
): Promise<{ child: ChildProcess; port: number }> {
  const opts: DaemonOptions = {
    licenseFile: site.licenseFile,
    keysFile: site.keysFile,
    stateDir: site.stateDir,
    // No heartbeat from the timer during a run: each run sends its own, at a known instant.
    heartbeatMs: 600_000,
    ...o,
  };
  const d = await spawnScript(TS ? 'server.ts' : 'server.js', ['daemon', JSON.stringify(opts)], {
    nodeArgs: TS ? ['--import', 'tsx'] : [],
  });
  return { child: d.child, port: Number(/port (\d+)/.exec(d.ready)?.[1]) };
}

function kill9(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

interface Run {
  /** First unanswered heartbeat datagram (to dead A) → B's verified reply, ms (client 0). */
  failover_ms: number;
  /** Same start → client 0's seat reclaimed on B. */
  reclaimed_ms: number;
  /** Clients (of 4) whose seat B reclaimed within its grace. */
  reclaimed: number;
  /** Abort of a waiting checkout after 'contact-lost', then close(), no server answering, ms. */
  ctrl_c_ms: number;
}

async function run(): Promise<Run> {
  const site = makeSite([`FEATURE bench demo 1.0 permanent ${CLIENTS} DUP_GROUP=NONE`]);
  const a = await daemon(site, {});
  const b = await daemon({ ...site, stateDir: `${site.stateDir}-b` }, { takeover: true });
  const clients: Client[] = [];
  try {
    for (let i = 0; i < CLIENTS; i++) {
      clients.push(
        await connect({
          servers: [`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`],
          credential: { id: 'demo', key: site.credKey },
          user: `u${i}`,
          host: 'bench',
        }),
      );
    }
    const leases: Lease[] = await Promise.all(clients.map((c) => c.checkout('bench')));
    await kill9(a.child);
    const first = clients[0]!;
    const t0 = performance.now();
    const failedOver = new Promise<number>((r) =>
      first.once('failover', () => r(performance.now() - t0)),
    );
    const beats = clients.map((c) => c.heartbeat());
    const failover_ms = await failedOver;
    await beats[0];
    const reclaimed_ms = performance.now() - t0;
    await Promise.allSettled(beats);
    const pong = await first.ping();
    const reclaimed = pong.state === 'grace' ? leases.filter((l) => l.state === 'held').length : 0;

    // Ctrl-C during a waiting checkout whose servers went away: once the client says it lost
    // contact, the user gives up (abort, then close(), as the CLI does).
    await kill9(b.child);
    const waiter = clients[1]!;
    const ac = new AbortController();
    const lost = new Promise<void>((r) => {
      waiter.once('contact-lost', () => r());
      setTimeout(r, 5000).unref();
    });
    const pending = waiter.checkout('bench', { wait: true, signal: ac.signal });
    await lost;
    const t1 = performance.now();
    ac.abort();
    await pending.catch(() => {});
    await waiter.close();
    const ctrl_c_ms = performance.now() - t1;
    return { failover_ms, reclaimed_ms, reclaimed, ctrl_c_ms };
  } finally {
    await Promise.all(clients.map((c) => c.destroy()));
    await Promise.all([kill9(a.child), kill9(b.child)]);
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)]!;
}

export interface FailoverResult {
  runs: number;
  failover_ms: { median: number; max: number; target: number };
  reclaimed_ms: { median: number; max: number };
  reclaimed: string;
  ctrl_c_ms: { median: number; max: number; target: number };
  met: boolean;
}

/** Runs the failover measurement `n` times (for `npm run bench`, section `failover`). */
export async function failover(n: number): Promise<FailoverResult> {
  const runs: Run[] = [];
  for (let i = 0; i < n; i++) runs.push(await run());
  const f = runs.map((r) => r.failover_ms);
  const rc = runs.map((r) => r.reclaimed_ms);
  const cc = runs.map((r) => r.ctrl_c_ms);
  return {
    runs: n,
    failover_ms: { median: median(f), max: Math.max(...f), target: FAILOVER_TARGET_MS },
    reclaimed_ms: { median: median(rc), max: Math.max(...rc) },
    reclaimed: `${runs.reduce((n, r) => n + r.reclaimed, 0)}/${RUNS * CLIENTS}`,
    ctrl_c_ms: { median: median(cc), max: Math.max(...cc), target: CTRL_C_TARGET_MS },
    met: Math.max(...f) <= FAILOVER_TARGET_MS && Math.max(...cc) <= CTRL_C_TARGET_MS,
  };
}

async function main(): Promise<void> {
  const out = await failover(RUNS);
  if (json) {
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return;
  }
  const ms = (x: number) => `${x.toFixed(0)} ms`;
  process.stdout.write(
    [
      `client failover, library defaults, ${out.runs} runs of ${CLIENTS} clients, kill -9 of the server:`,
      `   first unanswered datagram → next answered (B): median ${ms(out.failover_ms.median)}, max ${ms(out.failover_ms.max)} (target ≤ ${FAILOVER_TARGET_MS} ms)`,
      `   → seat reclaimed on B: median ${ms(out.reclaimed_ms.median)}, max ${ms(out.reclaimed_ms.max)}; ${out.reclaimed} seats reclaimed within the takeover grace`,
      `   Ctrl-C (abort a waiting checkout, then close()) with no server answering: median ${ms(out.ctrl_c_ms.median)}, max ${ms(out.ctrl_c_ms.max)} (target ≤ ${CTRL_C_TARGET_MS} ms)`,
      `   targets ${out.met ? 'met' : 'NOT met'}`,
      '',
    ].join('\n'),
  );
}

// Run directly (not imported by bench/run.ts): measure and print.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
