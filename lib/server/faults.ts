/**
 * A failing disk: when a group commit fails, the changes of that tick are undone in memory
 * (the pools are rebuilt from what the store holds, which is exactly what was acknowledged;
 * sessions made since the last commit are dropped; reaps are redone on the rebuilt pools),
 * and the daemon degrades: it answers what needs no write (PING, STATUS, heartbeats of known
 * sessions), refuses what does with BUSY and a retry hint, reports DEGRADED in PONG, and
 * probes the disk each tick until a write succeeds. One log line per fault, one on recovery.
 */
import { LicensePool } from '../license/pool.ts';
import { type Core, poolFeatures } from './core.ts';
import { poolSnapshot } from './restore.ts';
import { undoClaims } from './site-sessions.ts';

/** Undoes the failed tick in memory and degrades (idempotent while degraded). */
export function degrade(core: Core, e: Error, now: number): void {
  const first = core.degraded === undefined;
  core.degraded = e.message || String(e);
  if (first) {
    core.log.error(
      `state: a commit failed (${core.degraded}); serving what needs no write, refusing the rest BUSY until the state can be written again`,
    );
  }
  const { store } = core;
  store.discardPending();
  core.floorWrites.length = 0;
  if (core.site) undoClaims(core, core.site);
  const tallies = core.pool.tallies();
  const pool = new LicensePool(poolFeatures(core.opts, core.config.license.features), {
    now: core.now,
  });
  pool.heldElsewhere = core.pool.heldElsewhere;
  if (core.config.options) pool.setOptions(core.config.options);
  for (const s of core.fresh) core.sessions.remove(s);
  core.fresh.clear();
  const snap = store.load({ sessions: false });
  pool.restore(poolSnapshot(core, snap));
  pool.restoreTallies(tallies);
  core.pool = pool;
  for (const id of [...core.unclaimed])
    if (!snap.leases.some((l) => l.leaseId === id)) core.unclaimed.delete(id);
  // Reaps need no client's word: do them again on the rebuilt pools (pending until the
  // disk takes them). Their sessions come back into the table just for that.
  const reaped = core.reaped.splice(0);
  for (const r of reaped) {
    if (!core.sessions.get(r.s.id)) core.sessions.readd(r.s);
    core.reap(r.s, now, r.why, r.event, r.ended);
  }
  core.outbox.generation = (core.outbox.generation + 1) >>> 0;
}

/** While degraded: a probe write; on success the daemon serves fully again. */
export function tryRecover(core: Core, now: number): boolean {
  if (core.degraded === undefined) return true;
  if (!core.store.probe(now)) return false;
  core.log.info(`state: writable again after "${core.degraded}"; serving everything`);
  core.degraded = undefined;
  core.outbox.lastCommitOk = true;
  if (core.store.pending() > 0) core.outbox.commitAndSend();
  return core.degraded === undefined;
}
