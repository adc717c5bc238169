/**
 * Child process for the memory and flush benchmarks.
 *
 *   node --expose-gc dist/bench/memory.js populate SITE_JSON N REVOKED
 *     writes N live sessions (real tokens from makeToken, as HELLO issues them) and
 *     REVOKED revoked token ids (already expired, so the next flush drops them) into the
 *     site's state dir; prints one JSON line.
 *     Beside the state it writes each session's id and session key (sessions.bin), for
 *     `measure … active`.
 *   node --expose-gc dist/bench/memory.js measure SITE_JSON [active]
 *     starts a Daemon on that state (the restart path rebuilds every session with the
 *     daemon's own structures), collects garbage, and prints RSS and heap figures: sessions
 *     idle as restored. With `active`, every session then sends one real mode-3 HEARTBEAT
 *     (from a new port, as after a NAT rebinding) and the figures are taken again: each
 *     session now also holds its replay window and its kept HEARTBEAT_ACK, and the most
 *     recent 65 536 their keyed HMAC; the daemon's CPU per session while they talked is the
 *     cost of a restored session's first contact. The heartbeats come from a child,
 *   node dist/bench/memory.js talk SITE_JSON PORT
 *     which sends them (256 in flight) and prints how many were answered.
 *   node --expose-gc dist/bench/memory.js flush SITE_JSON TICK_MS
 *     starts a Daemon on that state with a TICK_MS housekeeping timer and records the
 *     event loop's longest stall while the daemon's own timer flushes the expired revoked
 *     ids (Store.flushExpired is wrapped, not changed, to see when the last one went);
 *     prints the figures, with the rows left afterwards (0 when the flush completed).
 */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { signDatagram } from '../lib/auth/sign.ts';
import { loadDaemonKeys } from '../lib/crypto/files.ts';
import { KeyedHmac } from '../lib/crypto/hmac.ts';
import { Daemon } from '../lib/server/daemon.ts';
import { SEQ_RESERVE } from '../lib/server/defaults.ts';
import { openStore, Store } from '../lib/store/index.ts';
import { makeToken, sessionKeyFor } from '../lib/token/index.ts';
import { AuthMode, MsgType } from '../lib/wire/index.ts';
import type { Site } from './site.ts';

const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});

function fullGc(): void {
  for (let i = 0; i < 4; i++) gc();
}

function mem() {
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers };
}

async function populate(site: Site, n: number, revoked: number): Promise<void> {
  const t0 = performance.now();
  const now = Date.now();
  const { keyring } = loadDaemonKeys(site.keysFile);
  const store = openStore(site.stateDir, { durability: 'normal' });
  const BATCH = 20_000;
  const keys = Buffer.alloc(40 * n);
  // Every session at one client port that was free a moment ago, so that `measure active`
  // can talk from that port: from another one, each session would move (a durable update
  // each, which is not what this measures).
  const port = await freePort();
  for (let i = 0; i < n; i++) {
    const user = `u${i}`;
    const token = makeToken(
      {
        addr: '127.0.0.1',
        port,
        host: 'ws1',
        vendor: 'demo',
        program: 'bench',
        version: '1.0',
        user,
        lifetimeS: 86_400,
      },
      keyring,
      now,
    );
    store.putSession({
      tokenId: token.tokenId,
      token: token.bytes,
      user,
      host: 'ws1',
      vendor: 'demo',
      created: now,
      expires: token.expires * 1000,
      ip: '127.0.0.1',
      port,
      // As HELLO writes it: the first replay floor, reserved ahead.
      seqFloor: SEQ_RESERVE,
      credential: 'demo',
    });
    keys.writeBigUInt64BE(token.tokenId, 40 * i);
    keys.set(sessionKeyFor(token, keyring.current(now)), 40 * i + 8);
    if (i % BATCH === BATCH - 1) store.commit();
  }
  store.commit();
  writeFileSync(join(site.dir, 'sessions.bin'), keys);
  writeFileSync(join(site.dir, 'client-port'), String(port));
  // Revoked ids whose tokens expired a minute ago: all of them are due for flushing.
  for (let i = 0; i < revoked; i++) {
    store.revoke((BigInt(i + 1) * 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn || 1n, now - 60_000);
    if (i % BATCH === BATCH - 1) store.commit();
  }
  store.commit();
  store.close();
  console.log(JSON.stringify({ sessions: n, revoked, ms: Math.round(performance.now() - t0) }));
}

/** A UDP port on 127.0.0.1 that nobody holds right now. */
async function freePort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A daemon on the site's state, on 127.0.0.1, without grace or report log. */
function startDaemon(site: Site, tickMs: number): Promise<Daemon> {
  return Daemon.start({
    licenseFile: site.licenseFile,
    keysFile: site.keysFile,
    stateDir: site.stateDir,
    host: '127.0.0.1',
    port: 0,
    reportLog: false,
    graceMs: 0,
    tickMs,
    // Every session talks from 127.0.0.1 in the active figure: no per-source limit.
    rateLimit: { rate: 0, burst: 1 },
  });
}

async function measure(site: Site, active: boolean): Promise<void> {
  fullGc();
  const before = mem();
  const t0 = performance.now();
  // The housekeeping timer would walk every session each second; keep it out of the figure.
  const d = await startDaemon(site, 3_600_000);
  const startMs = performance.now() - t0;
  await settle();
  const after = mem();
  let talked: Record<string, unknown> | undefined;
  if (active) {
    const t1 = performance.now();
    const cpu0 = process.cpuUsage();
    // The talking runs in another process (on the other core, if any): the figure is the
    // daemon's, and its first answer to each session (key derivation) is the slow part.
    const answered = await talker(site, d.address().port);
    const talkMs = performance.now() - t1;
    // This process is the daemon's: its CPU while the sessions talked is what their first
    // contact cost it (each is two datagrams: the floor resync, then the heartbeat).
    const cpu = process.cpuUsage(cpu0);
    await settle();
    talked = {
      answered,
      ms: Math.round(talkMs),
      cpu_us_per_session: Math.round(((cpu.user + cpu.system) / Math.max(1, answered)) * 10) / 10,
      mem: mem(),
    };
  }
  console.log(
    JSON.stringify({
      sessions: d.sessionCount,
      start_ms: Math.round(startMs),
      before,
      after,
      ...(talked ? { active: talked } : {}),
    }),
  );
  await d.close();
}

/** Lets V8 settle (the memory reducer returns freed pages of the load). */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    fullGc();
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Runs `memory.js talk` against `port`; resolves with how many heartbeats were answered. */
function talker(site: Site, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const c = spawn(
      process.execPath,
      [process.argv[1]!, 'talk', JSON.stringify(site), String(port)],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    c.stdout.on('data', (b: Buffer) => {
      out += b.toString();
    });
    c.on('error', reject);
    c.on('exit', (code) =>
      code === 0
        ? resolve(Number(JSON.parse(out).answered))
        : reject(new Error(`talk exited ${code}`)),
    );
  });
}

/**
 * One signed mode-3 HEARTBEAT per session in sessions.bin, 256 in flight from one socket;
 * resolves with how many were answered.
 */
async function talkOnce(site: Site, port: number): Promise<number> {
  const keys = readFileSync(join(site.dir, 'sessions.bin'));
  const n = keys.length / 40;
  const sock = dgram.createSocket('udp4');
  const want = Number(readFileSync(join(site.dir, 'client-port'), 'utf8'));
  await new Promise<void>((resolve, reject) => {
    sock.once('error', (e) => (want ? reject(e) : resolve()));
    sock.bind(want, '127.0.0.1', () => resolve());
  }).catch(
    // Taken since: talk from another port (every session moves; slower, same memory).
    () => new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r())),
  );
  sock.setRecvBufferSize(4 << 20);
  let answered = 0;
  let next = 0;
  let inFlight = 0;
  let done: () => void = () => {};
  const finished = new Promise<void>((r) => {
    done = r;
  });
  const send = () => {
    while (inFlight < 256 && next < n) {
      const i = next++;
      const key = new KeyedHmac(keys.subarray(40 * i + 8, 40 * i + 40));
      const bytes = signDatagram(
        {
          type: MsgType.HEARTBEAT,
          flags: 0,
          auth: { mode: AuthMode.SESSION },
          requestId: i + 1,
          sessionId: keys.readBigUInt64BE(40 * i),
          seq: 1,
          timestamp: Date.now(),
          body: {},
          tag: new Uint8Array(32),
        },
        key,
      );
      inFlight++;
      sock.send(bytes, port, '127.0.0.1');
    }
    if (inFlight === 0 && next >= n) done();
  };
  let idle: NodeJS.Timeout | undefined;
  const watchdog = () => {
    clearTimeout(idle);
    // A datagram lost on loopback is not retried: after 1 s of silence, send more.
    idle = setTimeout(() => {
      inFlight = 0;
      send();
      watchdog();
    }, 1000);
  };
  sock.on('message', () => {
    answered++;
    inFlight--;
    watchdog();
    send();
  });
  watchdog();
  send();
  await finished;
  clearTimeout(idle);
  sock.close();
  return answered;
}

async function flush(site: Site, tickMs: number): Promise<void> {
  // Instrument (not change) the store's flush, to know when the last expired row went and
  // how long each batch took; the daemon calls it from its own housekeeping timer.
  let flushDone = 0;
  let batches = 0;
  let deleted = 0;
  let longestBatch = 0;
  let slowBatches = 0;
  const original = Store.prototype.flushExpired;
  Store.prototype.flushExpired = function (
    this: Store,
    ...args: Parameters<Store['flushExpired']>
  ) {
    const t = performance.now();
    const r = original.apply(this, args);
    const took = performance.now() - t;
    longestBatch = Math.max(longestBatch, took);
    if (took > 10) slowBatches++;
    deleted += r.deleted;
    if (r.deleted > 0) batches++;
    if (!r.more && !flushDone && deleted > 0) flushDone = performance.now();
    return r;
  };
  const h = monitorEventLoopDelay({ resolution: 1 });
  let maxGap = 0;
  let last = performance.now();
  const probe = setInterval(() => {
    const t = performance.now();
    maxGap = Math.max(maxGap, t - last);
    last = t;
  }, 1);
  const t0 = performance.now();
  const d = await startDaemon(site, tickMs);
  const startMs = performance.now() - t0;
  // Measure only while the daemon's timer flushes, not its start (restore is not a flush).
  h.enable();
  h.reset();
  maxGap = 0;
  last = performance.now();
  const f0 = performance.now();
  const deadline = f0 + 120_000;
  while (!flushDone && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  // One more tick: the commit of the last batch happens in the same tick, after the flush.
  await new Promise((r) => setTimeout(r, 2 * tickMs));
  h.disable();
  clearInterval(probe);
  await d.close();
  Store.prototype.flushExpired = original;
  const ro = openStore(site.stateDir, { readonly: true });
  const left = ro.load().revokedCount;
  ro.close();
  console.log(
    JSON.stringify({
      deleted,
      left,
      batches,
      start_ms: Math.round(startMs),
      flush_ms: flushDone ? Math.round(flushDone - f0) : null,
      tick_ms: tickMs,
      longest_batch_ms: Math.round(longestBatch * 10) / 10,
      batches_over_10ms: slowBatches,
      max_stall_ms: Math.round(maxGap * 10) / 10,
      loop_delay_max_ms: Math.round(h.max / 1e4) / 100,
      loop_delay_p99_ms: Math.round(h.percentile(99) / 1e4) / 100,
    }),
  );
}

const [cmd, siteJson, a, b] = process.argv.slice(2);
const site = JSON.parse(siteJson ?? '{}') as Site;
const run =
  cmd === 'populate'
    ? populate(site, Number(a), Number(b ?? 0))
    : cmd === 'measure'
      ? measure(site, a === 'active')
      : cmd === 'flush'
        ? flush(site, Number(a ?? 10))
        : cmd === 'talk'
          ? talkOnce(site, Number(a)).then((answered) => console.log(JSON.stringify({ answered })))
          : Promise.reject(new Error('usage: memory.js populate|measure|flush|talk SITE_JSON …'));
run.then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`bench memory: ${(e as Error).stack ?? e}\n`);
    process.exit(1);
  },
);
