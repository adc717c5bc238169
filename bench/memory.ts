/**
 * Child process for the memory and flush benchmarks.
 *
 *   node --expose-gc dist/bench/memory.js populate SITE_JSON N REVOKED
 *     writes N live sessions (real tokens from makeToken, as HELLO issues them) and
 *     REVOKED revoked token ids (already expired, so the next flush drops them) into the
 *     site's state dir; prints one JSON line.
 *   node --expose-gc dist/bench/memory.js measure SITE_JSON
 *     starts a Daemon on that state (the restart path rebuilds every session with the
 *     daemon's own structures: decoded token, keyed session HMAC, replay window, token
 *     store entry), collects garbage, and prints RSS and heap figures.
 *   node --expose-gc dist/bench/memory.js flush SITE_JSON TICK_MS
 *     starts a Daemon on that state with a TICK_MS housekeeping timer and records the
 *     event loop's longest stall while the daemon's own timer flushes the expired revoked
 *     ids (Store.flushExpired is wrapped, not changed, to see when the last one went);
 *     prints the figures, with the rows left afterwards (0 when the flush completed).
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { loadDaemonKeys } from '../lib/crypto/files.ts';
import { Daemon } from '../lib/server/daemon.ts';
import { openStore, Store } from '../lib/store/index.ts';
import { makeToken } from '../lib/token/index.ts';
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
  for (let i = 0; i < n; i++) {
    const user = `u${i}`;
    const token = makeToken(
      {
        addr: '127.0.0.1',
        port: 40_000 + (i % 20_000),
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
      port: 40_000 + (i % 20_000),
    });
    if (i % BATCH === BATCH - 1) store.commit();
  }
  store.commit();
  // Revoked ids whose tokens expired a minute ago: all of them are due for flushing.
  for (let i = 0; i < revoked; i++) {
    store.revoke((BigInt(i + 1) * 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn || 1n, now - 60_000);
    if (i % BATCH === BATCH - 1) store.commit();
  }
  store.commit();
  store.close();
  console.log(JSON.stringify({ sessions: n, revoked, ms: Math.round(performance.now() - t0) }));
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
  });
}

async function measure(site: Site): Promise<void> {
  fullGc();
  const before = mem();
  const t0 = performance.now();
  // The housekeeping timer would walk every session each second; keep it out of the figure.
  const d = await startDaemon(site, 3_600_000);
  const startMs = performance.now() - t0;
  // Let V8 settle (the memory reducer returns freed pages of the load snapshot).
  for (let i = 0; i < 3; i++) {
    fullGc();
    await new Promise((r) => setTimeout(r, 200));
  }
  const after = mem();
  console.log(
    JSON.stringify({ sessions: d.sessionCount, start_ms: Math.round(startMs), before, after }),
  );
  await d.close();
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
      ? measure(site)
      : cmd === 'flush'
        ? flush(site, Number(a ?? 10))
        : Promise.reject(new Error('usage: memory.js populate|measure|flush SITE_JSON …'));
run.then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`bench memory: ${(e as Error).stack ?? e}\n`);
    process.exit(1);
  },
);
