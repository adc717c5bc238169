/**
 * Abuse figures, measured on the real `floatlmd` command in a child process (pinned to core
 * 0 when it can be) through its public interface only: UDP datagrams built and signed with
 * the project's own client code (lib/auth/client.ts, lib/wire), and the process's CPU time
 * and RSS from /proc.
 *
 * - `badTag`: µs of server CPU per datagram whose tag is wrong, per auth mode (mode 2 with
 *   the real token of a live session, mode 3 with a live session id, modes 1 and 4 with a
 *   known credential and admin key id). Every datagram is distinct (fresh nonce or seq,
 *   random tag). They go in bursts, each followed by one valid mode-3 HEARTBEAT whose
 *   answer proves the burst has been read (one socket, read in order); the probes' own cost,
 *   measured alone beforehand, is subtracted. The daemon runs with `--rate-limit 0`, so every
 *   datagram reaches the tag check (spoofed sources would spread a real flood anyway). With
 *   the daemon's default flood pause (its batched socket rests 1 ms after a read that was
 *   mostly forged) and again with `--flood-pause 0`, beside the wait of each burst's probe.
 *   Datagrams the kernel dropped (full receive buffer) are not counted as handled.
 * - `flood`: the daemon's RSS before, during (peak) and after a flood of validly signed
 *   mode-1 PINGs (each with a fresh nonce) from one credential, with the daemon's default
 *   options; the flood is spread over 40 source addresses (127.0.0.10–49) so no per-address
 *   budget hides what one credential can do. Meanwhile other clients (16 users, each with
 *   its own credential `demo/userN`, from 127.0.0.2–9) send HELLOs, and the share that get a
 *   HELLO_OK that verifies is the figure; HELLOs under the flood's own vendor-wide credential
 *   from those addresses, and HELLOs after the flood, are reported beside it.
 *
 * The bench process itself moves to core 1 for these sections (the generator's core), so
 * that building and sending datagrams does not take the daemon's core.
 */

import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import dgram from 'node:dgram';
import { availableParallelism } from 'node:os';
import { ClientAuth } from '../lib/auth/client.ts';
import { randomBytes } from '../lib/crypto/hmac.ts';
import { batchUnavailable } from '../lib/server/udp.ts';
import { MsgType, TAG_LENGTH } from '../lib/wire/index.ts';
import { type BenchClient, call, openSessions, rid } from './clients.ts';
import {
  canPin,
  cpuSecondsFine,
  makeSite,
  Requester,
  rssBytes,
  spawnFloatlmd,
  spawnScript,
  udpDrops,
  waitExit,
} from './site.ts';

export interface BadTagRow {
  /** What was sent, e.g. "mode 3 HEARTBEAT". */
  kind: string;
  mode: 1 | 2 | 3 | 4;
  bytes: number;
  sent: number;
  /** Dropped by the kernel before the daemon read them. */
  dropped: number;
  /** Answers to datagrams with a bad tag (must be 0). */
  answered: number;
  server_cpu_us_per_datagram: number;
  /** Datagrams per second the daemon handled during the row. */
  rate: number;
}

export interface BadTagResult {
  pinned: boolean;
  burst: number;
  /** Server CPU of one probe (a valid mode-3 HEARTBEAT and its answer), subtracted. */
  probe_cpu_us: number;
  rows: BadTagRow[];
  /** The worst row of modes 1, 3 and 4, and of mode 2. */
  worst_us_modes_1_3_4: number;
  worst_us_mode_2: number;
  /**
   * The floor, same run, same core, same datagrams (the mode-1 PING row's): server CPU per
   * datagram of a node:dgram socket that reads each one and drops it. What floatlmd spends
   * on a bad tag is the row less this.
   */
  floor_us: number;
  /** The same floor over the daemon's batched socket (`sink-batch`); null: not built. */
  floor_batch_us: number | null;
  /** The socket floatlmd served on (`auto`: batch where the addon is built). */
  daemon_udp: 'batch' | 'dgram';
  /** Median wait of the valid request sent right after each burst (request to answer), ms. */
  probe_wait_ms_p50: number;
  /**
   * The same rows with the flood pause off (`--flood-pause 0`: the socket read as soon as a
   * datagram arrives); null when not measured (the daemon was on node:dgram, which never
   * pauses).
   */
  no_pause: {
    worst_us_modes_1_3_4: number;
    worst_us_mode_2: number;
    probe_wait_ms_p50: number;
  } | null;
}

const BURST = 500;

/**
 * Runs `fn` with this process (every thread) on core 1 when pinning is possible, so that
 * it does not compete with the daemon on core 0; restores the affinity after.
 */
async function onCore1<T>(pinned: boolean, fn: () => Promise<T>): Promise<T> {
  if (!pinned) return fn();
  const all = `0-${availableParallelism() - 1}`;
  spawnSync('taskset', ['-a', '-p', '-c', '1', String(process.pid)], { stdio: 'ignore' });
  try {
    return await fn();
  } finally {
    spawnSync('taskset', ['-a', '-p', '-c', all, String(process.pid)], { stdio: 'ignore' });
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

/** Replaces the tag with random bytes: well formed, known key, wrong tag. */
function spoil(bytes: Uint8Array): Uint8Array {
  randomFillSync(bytes.subarray(bytes.length - TAG_LENGTH));
  return bytes;
}

/**
 * Server CPU per bad-tag datagram in each auth mode; `n` datagrams a row.
 * @throws {Error} when the daemon fails or a probe is not answered
 */
export function badTag(n = 50_000): Promise<BadTagResult> {
  const pinned = canPin(availableParallelism());
  return onCore1(pinned, async () => {
    const r = await badTagRows(n, pinned, []);
    if (r.daemon_udp !== 'batch') return r;
    const off = await badTagRows(n, pinned, ['--flood-pause', '0']);
    return {
      ...r,
      no_pause: {
        worst_us_modes_1_3_4: off.worst_us_modes_1_3_4,
        worst_us_mode_2: off.worst_us_mode_2,
        probe_wait_ms_p50: off.probe_wait_ms_p50,
      },
    };
  });
}

async function badTagRows(n: number, pinned: boolean, args: string[]): Promise<BadTagResult> {
  const site = makeSite(['FEATURE bench demo 1.0 permanent 100 DUP_GROUP=NONE']);
  const d = await spawnFloatlmd(site, ['--rate-limit', '0', ...args], pinned ? { core: 0 } : {});
  const pid = d.child.pid!;
  const req = await Requester.open(d.port);
  let replies = 0;
  req.socket.on('message', () => {
    replies++;
  });
  try {
    const [c] = (await openSessions(req, d.port, site.credKey, 1)) as [BenchClient];
    const server = c.server;
    const probe = () => call(req, c, MsgType.HEARTBEAT, {});
    const anon = new ClientAuth({ credId: 'demo', credKey: site.credKey, now: Date.now });
    const admin = new ClientAuth({
      credId: 'demo',
      credKey: site.credKey,
      now: Date.now,
      admin: { id: 'admin', key: site.adminKey },
    });
    const kinds: { kind: string; mode: BadTagRow['mode']; make: () => Uint8Array }[] = [
      {
        kind: 'mode 1 PING',
        mode: 1,
        make: () =>
          anon.request(server, MsgType.PING, { payload: new Uint8Array(16) }, rid()).bytes,
      },
      {
        kind: 'mode 1 HELLO (padded)',
        mode: 1,
        make: () => {
          const fields = { vendor: 'demo', program: 'bench', version: '1.0', user: 'x', host: 'y' };
          // A fresh ClientAuth each: hello() remembers every pending nonce.
          const a = new ClientAuth({ credId: 'demo', credKey: site.credKey, now: Date.now });
          return a.hello(server, fields, rid()).bytes;
        },
      },
      {
        // A server label the client has not talked to: ClientAuth picks mode 2 (token).
        kind: 'mode 2 HEARTBEAT, live token',
        mode: 2,
        make: () => c.auth.request('token-path', MsgType.HEARTBEAT, {}, rid()).bytes,
      },
      {
        kind: 'mode 3 HEARTBEAT, live session',
        mode: 3,
        make: () => c.auth.request(server, MsgType.HEARTBEAT, {}, rid()).bytes,
      },
      {
        kind: 'mode 3 CHECKOUT, live session',
        mode: 3,
        make: () =>
          c.auth.request(
            server,
            MsgType.CHECKOUT,
            { feature: 'bench', version: '', count: 1, options: 0 },
            rid(),
          ).bytes,
      },
      {
        kind: 'mode 4 STATUS, known admin key id',
        mode: 4,
        make: () => admin.request(server, MsgType.STATUS, { page: 0, feature: '' }, rid()).bytes,
      },
    ];
    for (const k of kinds) {
      const m = k.make();
      if (m[5] !== k.mode) throw new Error(`${k.kind}: built in mode ${m[5]}`);
    }

    const bursts = Math.ceil(n / BURST);
    // Warm the daemon's paths (JIT) with a few bursts of every kind and probes.
    for (const k of kinds) {
      for (let i = 0; i < 20; i++) {
        for (let j = 0; j < BURST; j++) req.socket.send(spoil(k.make()), d.port, '127.0.0.1');
        await probe();
      }
    }
    // The probes alone: their cost is taken out of every row.
    const probeCpu = async () => {
      const c0 = cpuSecondsFine(pid);
      for (let i = 0; i < bursts; i++) await probe();
      return (cpuSecondsFine(pid) - c0) / bursts;
    };
    const probeS = ((await probeCpu()) + (await probeCpu())) / 2;

    const rows: BadTagRow[] = [];
    const waits: number[] = [];
    for (const k of kinds) {
      const all = Array.from({ length: n }, () => spoil(k.make()));
      const drops0 = udpDrops(d.port);
      const replies0 = replies;
      const t0 = performance.now();
      const c0 = cpuSecondsFine(pid);
      for (let b = 0; b < bursts; b++) {
        const end = Math.min(n, (b + 1) * BURST);
        for (let i = b * BURST; i < end; i++) req.socket.send(all[i]!, d.port, '127.0.0.1');
        const w0 = performance.now();
        await probe();
        waits.push(performance.now() - w0);
      }
      const cpu = cpuSecondsFine(pid) - c0;
      const wall = (performance.now() - t0) / 1000;
      const dropped = udpDrops(d.port) - drops0;
      const handled = n - (Number.isNaN(dropped) ? 0 : dropped);
      rows.push({
        kind: k.kind,
        mode: k.mode,
        bytes: all[0]!.length,
        sent: n,
        dropped,
        answered: replies - replies0 - bursts,
        server_cpu_us_per_datagram: round2(((cpu - bursts * probeS) * 1e6) / handled),
        rate: Math.round(handled / wall),
      });
    }
    // The floors are the same with or without the daemon's pause: measured once.
    const again = args.length > 0;
    const floor = again ? Number.NaN : await sinkFloor(kinds[0]!.make, n, pinned, 'sink');
    const batch = !batchUnavailable('127.0.0.1');
    const floorBatch =
      batch && !again ? await sinkFloor(kinds[0]!.make, n, pinned, 'sink-batch') : null;
    waits.sort((x, y) => x - y);
    const worst = (modes: number[]) =>
      Math.max(
        ...rows.filter((r) => modes.includes(r.mode)).map((r) => r.server_cpu_us_per_datagram),
      );
    return {
      pinned,
      burst: BURST,
      probe_cpu_us: round2(probeS * 1e6),
      rows,
      worst_us_modes_1_3_4: worst([1, 3, 4]),
      worst_us_mode_2: worst([2]),
      floor_us: floor,
      floor_batch_us: floorBatch,
      daemon_udp: batch ? 'batch' : 'dgram',
      probe_wait_ms_p50: round2(waits[waits.length >> 1] ?? Number.NaN),
      no_pause: null,
    };
  } finally {
    req.close();
    d.child.kill('SIGTERM');
    await waitExit(d.child);
  }
}

/**
 * Server CPU per datagram of `bench/server.js sink` (a socket that reads and drops), fed as
 * the bad-tag rows are: `n` datagrams from `make`, in bursts, each burst followed by a probe
 * whose cost is taken out.
 * @throws {Error} when the sink fails or a probe is not answered
 */
async function sinkFloor(
  make: () => Uint8Array,
  n: number,
  pinned: boolean,
  kind: 'sink' | 'sink-batch',
): Promise<number> {
  const sink = await spawnScript('server.js', [kind], pinned ? { core: 0 } : {});
  const port = Number(/port (\d+)/.exec(sink.ready)?.[1]);
  const req = await Requester.open(port);
  try {
    const pid = sink.child.pid!;
    const probe = () => {
      const r = rid();
      const b = new Uint8Array(12);
      new DataView(b.buffer).setUint32(8, r);
      return req.request(b, r);
    };
    const bursts = Math.ceil(n / BURST);
    const all = Array.from({ length: n }, () => spoil(make()));
    for (let i = 0; i < 20; i++) {
      for (let j = 0; j < BURST; j++) req.socket.send(all[j]!, port, '127.0.0.1');
      await probe();
    }
    const c0 = cpuSecondsFine(pid);
    for (let i = 0; i < bursts; i++) await probe();
    const probeS = (cpuSecondsFine(pid) - c0) / bursts;
    const drops0 = udpDrops(port);
    const c1 = cpuSecondsFine(pid);
    for (let b = 0; b < bursts; b++) {
      const end = Math.min(n, (b + 1) * BURST);
      for (let i = b * BURST; i < end; i++) req.socket.send(all[i]!, port, '127.0.0.1');
      await probe();
    }
    const cpu = cpuSecondsFine(pid) - c1;
    const dropped = udpDrops(port) - drops0;
    const handled = n - (Number.isNaN(dropped) ? 0 : dropped);
    return round2(((cpu - bursts * probeS) * 1e6) / handled);
  } finally {
    req.close();
    sink.child.kill('SIGTERM');
    await waitExit(sink.child);
  }
}

export interface FloodResult {
  pinned: boolean;
  flood: number;
  /** Achieved send rate of the flood, datagrams/s, and its duration. */
  flood_rate: number;
  flood_ms: number;
  sources: number;
  /** PONGs that came back to the flood; datagrams the kernel dropped (buffer full). */
  flood_answered: number;
  flood_dropped: number;
  rss_before_bytes: number;
  rss_peak_bytes: number;
  rss_end_bytes: number;
  /** RSS five seconds after the flood ended. */
  rss_after_bytes: number;
  /** HELLOs of other clients (their own credentials, other addresses) during the flood. */
  hello_other: { sent: number; ok: number; share: number };
  /** HELLOs under the flood's own credential from the other clients' addresses. */
  hello_same_credential: { sent: number; ok: number; share: number };
  /** HELLOs of other clients in the five seconds after the flood. */
  hello_after: { sent: number; ok: number; share: number };
}

/** A HELLO from a new client on `sock`; true when a HELLO_OK that verifies comes back. */
async function hello(
  sock: Requester,
  server: string,
  credId: string,
  credKey: Uint8Array,
  user: string,
): Promise<boolean> {
  const a = new ClientAuth({ credId, credKey, now: Date.now });
  const r = rid();
  const h = a.hello(
    server,
    { vendor: 'demo', program: 'bench', version: '1.0', user, host: user },
    r,
  );
  try {
    // A client's own schedule: retransmit every 250 ms, give up after a second.
    const reply = await sock.request(h.bytes, r, 250, 4);
    return a.acceptHelloOk(reply, r) !== null;
  } catch {
    return false;
  }
}

/**
 * RSS and first contact under a flood of `n` validly signed mode-1 PINGs from one
 * credential, sent at `rate` per second.
 * @throws {Error} when the daemon fails
 */
export function flood(n = 200_000, rate = 20_000): Promise<FloodResult> {
  const pinned = canPin(availableParallelism());
  return onCore1(pinned, () => floodOf(n, rate, pinned));
}

async function floodOf(n: number, rate: number, pinned: boolean): Promise<FloodResult> {
  const site = makeSite(['FEATURE bench demo 1.0 permanent 100 DUP_GROUP=NONE']);
  const d = await spawnFloatlmd(site, [], pinned ? { core: 0 } : {});
  const pid = d.child.pid!;
  const server = `127.0.0.1:${d.port}`;
  const SOURCES = 40;
  const floodSocks: dgram.Socket[] = [];
  const helloSocks: Requester[] = [];
  let answered = 0;
  try {
    for (let i = 0; i < SOURCES; i++) {
      const s = dgram.createSocket('udp4');
      await new Promise<void>((resolve) => s.bind(0, `127.0.0.${10 + i}`, resolve));
      s.on('message', () => {
        answered++;
      });
      floodSocks.push(s);
    }
    for (let i = 0; i < 8; i++) helloSocks.push(await Requester.open(d.port, `127.0.0.${2 + i}`));
    // One HELLO per client address first: the daemon's paths are warm, the figure is RSS.
    for (const [i, s] of helloSocks.entries()) {
      const c = site.userCreds[i]!;
      await hello(s, server, c.id, c.key, c.user);
    }
    await sleep(500);
    const rssBefore = rssBytes(pid);
    const drops0 = udpDrops(d.port);
    // Built beforehand, so the flood's rate is the send loop's; timestamps stay well
    // within the ±300 s skew.
    const flooder = new ClientAuth({ credId: 'demo', credKey: site.credKey, now: Date.now });
    const pings = Array.from(
      { length: n },
      () => flooder.request(server, MsgType.PING, { payload: randomBytes(16) }, rid()).bytes,
    );
    let rssPeak = rssBefore;
    const sampler = setInterval(() => {
      rssPeak = Math.max(rssPeak, rssBytes(pid));
    }, 100);
    sampler.unref();
    const tallies = {
      other: { sent: 0, ok: 0 },
      same: { sent: 0, ok: 0 },
      after: { sent: 0, ok: 0 },
    };
    const phase = { now: 'flood' as 'flood' | 'after' | 'done' };
    let k = 0;
    // Other clients: a HELLO every 50 ms, alternating credentials, until the end.
    const helloLoop = (async () => {
      const pending: Promise<void>[] = [];
      while (phase.now !== 'done') {
        const i = k++;
        const same = phase.now === 'flood' && i % 2 === 1;
        const mine = phase.now === 'after' ? tallies.after : same ? tallies.same : tallies.other;
        const c = site.userCreds[i % site.userCreds.length]!;
        const [credId, key, user] = same ? ['demo', site.credKey, `v${i}`] : [c.id, c.key, c.user];
        mine.sent++;
        pending.push(
          hello(helloSocks[i % helloSocks.length]!, server, credId, key, user).then((ok) => {
            if (ok) mine.ok++;
          }),
        );
        await sleep(50);
      }
      await Promise.all(pending);
    })();
    const t0 = performance.now();
    let sent = 0;
    while (sent < n) {
      const due = Math.min(n, Math.ceil(((performance.now() - t0) / 1000) * rate));
      for (; sent < due; sent++) {
        floodSocks[sent % SOURCES]!.send(pings[sent]!, d.port, '127.0.0.1');
      }
      await sleep(1);
    }
    const floodMs = performance.now() - t0;
    await sleep(200);
    const rssEnd = rssBytes(pid);
    const dropped = udpDrops(d.port) - drops0;
    phase.now = 'after';
    await sleep(5000);
    phase.now = 'done';
    await helloLoop;
    clearInterval(sampler);
    const rssAfter = rssBytes(pid);
    const share = (x: { sent: number; ok: number }) => ({
      ...x,
      share: x.sent > 0 ? Math.round((1000 * x.ok) / x.sent) / 1000 : Number.NaN,
    });
    return {
      pinned,
      flood: n,
      flood_rate: Math.round(n / (floodMs / 1000)),
      flood_ms: Math.round(floodMs),
      sources: SOURCES,
      flood_answered: answered,
      flood_dropped: dropped,
      rss_before_bytes: rssBefore,
      rss_peak_bytes: Math.max(rssPeak, rssEnd),
      rss_end_bytes: rssEnd,
      rss_after_bytes: rssAfter,
      hello_other: share(tallies.other),
      hello_same_credential: share(tallies.same),
      hello_after: share(tallies.after),
    };
  } finally {
    for (const s of floodSocks) s.close();
    for (const s of helloSocks) s.close();
    d.child.kill('SIGTERM');
    await waitExit(d.child);
  }
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
