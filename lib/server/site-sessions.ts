/**
 * Who serves a site's sessions, as this server acts on it: taking a session over when it
 * talks here, attaching this server's sessions again after a new etcd lease (only those no
 * other server took), ending a session only while etcd says this server (or, for an orphan,
 * none) holds it, and undoing grants the site refused. The rules are in docs/site.md.
 */
import { type Core, hexId } from './core.ts';
import type { ResolvedOptions } from './defaults.ts';
import { poolSnapshot } from './restore.ts';
import type { Session } from './session.ts';
import { type SiteState, snapshotOf } from './site.ts';

/**
 * A verified datagram from `s`: if another server (or none) held the session, this server
 * takes it over (its liveness key moves here with the next commit).
 */
export function claim(core: Core, site: SiteState, s: Session): void {
  // Every verified datagram comes here: two empty sets cost nothing to look at.
  if (site.remote.size === 0 && site.orphans.size === 0) return;
  const remote = site.remote.delete(s.id);
  const orphan = site.orphans.delete(s.id);
  if (!remote && !orphan) return;
  // Until the commit has it, the liveness key has not moved: a failed commit undoes this.
  if (!site.claims.has(s.id)) site.claims.set(s.id, remote ? 'remote' : 'orphan');
  core.store.putSession(core.sessions.record(s, core.now()));
  core.log.debug(
    `site: session ${hexId(s.id)} (${s.user}@${s.host}) is now served here (${remote ? 'from another server' : 'its server left'})`,
  );
}

/** A failed commit: the sessions it would have taken over are where they were. */
export function undoClaims(core: Core, site: SiteState): void {
  const now = core.now();
  for (const [id, was] of site.claims) {
    if (!core.sessions.get(id)) continue;
    if (was === 'remote') site.remote.add(id);
    else site.orphans.set(id, now);
  }
  site.claims.clear();
}

/**
 * How long a session (or a seat) nobody hears from is kept: the test_conn time, as a single
 * server waits for a quiet holder (quiet, then every ping unanswered).
 */
export function unheardMs(o: ResolvedOptions): number {
  return o.quietMs + o.testConnTries * o.testConnIntervalMs;
}

/**
 * Reaps session `s` (forgets it when `why` is null) as this server serves it: at once on a
 * single server; on a site only if it is this server's (not another's, not an orphan), and
 * only once etcd agrees (endSiteSession).
 */
export function endServed(core: Core, s: Session, now: number, why: string | null): void {
  const site = core.site;
  if (!site) {
    if (why === null) core.forget(s);
    else core.reap(s, now, why);
  } else if (!site.remote.has(s.id) && !site.orphans.has(s.id)) {
    endSiteSession(core, site, s, why, 'self');
  }
}

/** Leases freed per tick at most by the lost-lease sweep. */
const LOST_PER_TICK = 1000;
/** Site-wide end transactions one server has in flight at most. */
const MAX_ENDING = 256;

/**
 * Per tick: sessions to attach again (after a new etcd lease), and on the site's first
 * server the seats of sessions the site no longer has.
 */
export function siteTick(core: Core, site: SiteState): void {
  if (site.lost.size > 0 && site.reapsOrphans()) freeLost(core, site);
  reattach(core, site);
}

/**
 * Frees leases whose session is gone from the site (ended, expired) for the test_conn
 * time: what a server that ended a session could not free (it died or closed mid-way, its
 * pools were behind etcd, a grant raced the end). Releases are compare-guarded in etcd.
 */
function freeLost(core: Core, site: SiteState): void {
  const now = core.now();
  const wait = unheardMs(core.opts);
  let n = 0;
  for (const [id, since] of site.lost) {
    if (now - since < wait) continue;
    site.lost.delete(id);
    const l = site.store.leases.get(id);
    if (!l || site.store.sessions.has(l.tokenId)) continue;
    core.pool.removeLease(id);
    core.store.deleteLease(id);
    core.log.info(
      `site: lease ${hexId(id)} (${l.feature}) freed: its session ${hexId(l.tokenId)} is gone from the site`,
    );
    if (++n >= LOST_PER_TICK) break;
  }
  if (n > 0) core.afterRelease(now);
}

/**
 * Sessions to attach again (after a new etcd lease). Only those no other server took over
 * meanwhile: a server woken from a long stop must not pull back sessions whose clients
 * moved on (their liveness keys name the server that serves them now).
 */
function reattach(core: Core, site: SiteState): void {
  if (site.reattach.size === 0 || site.reattaching || !site.store.probe(core.now())) return;
  const ids = [...site.reattach];
  site.reattach.clear();
  site.reattaching = true;
  const one = async (id: bigint) => {
    const s = core.sessions.get(id);
    if (!s) return;
    try {
      const r = await site.store.ledger.attachSessionIfFree(
        id,
        core.sessions.record(s, core.now()),
      );
      if (r === 'attached' || r === site.serverId) return;
      // Ended site-wide (the watch removes it) or served elsewhere now.
      if (r !== 'revoked') {
        site.orphans.delete(id);
        site.remote.add(id);
      }
      core.log.debug(
        `site: session ${hexId(id)} not attached again: ${r === 'revoked' ? 'ended site-wide' : `server ${r} serves it`}`,
      );
    } catch (e) {
      if (core.sessions.get(id)) site.reattach.add(id);
      core.log.warn(`site: attaching session ${hexId(id)} again: ${(e as Error).message}`);
    }
  };
  void Promise.all(ids.map(one)).finally(() => {
    site.reattaching = false;
  });
}

/**
 * Reaps session `s` (or with `why` null forgets it, holding nothing) once etcd agrees that
 * `holder` still holds it: this server ('self'), or none ('none', an orphan). Another server
 * may have taken it over while this one was not looking (stopped, cut off, its watch
 * behind): then the session is that server's, and nothing is released. Its seats are freed
 * here only after etcd has ended the session, so no server can serve it again.
 */
export function endSiteSession(
  core: Core,
  site: SiteState,
  s: Session,
  why: string | null,
  holder: 'self' | 'none',
): void {
  // Bounded: a server that finds thousands due at once ends them over several sweeps.
  if (site.ending.has(s.id) || site.ending.size >= MAX_ENDING) return;
  site.ending.add(s.id);
  const o = why === null ? { holder } : { holder, revokeUntil: s.expires };
  site.store.ledger.endSession(s.id, o).then(
    (r) => {
      site.ending.delete(s.id);
      // Closing: what this server does not free now, the site's first server frees as lost.
      if (core.state !== 'RUNNING') return;
      if (r === 'ended') {
        const mine = new Set(core.pool.leasesOf(s.id).map((l) => l.leaseId));
        if (why === null) core.forget(s, true);
        else core.reap(s, core.now(), why, 'reap', true);
        // Seats etcd has for it that this server's pools did not know of yet.
        for (const l of site.store.leasesOfSession(s.id)) {
          if (mine.has(l.leaseId)) continue;
          core.pool.removeLease(l.leaseId);
          core.store.deleteLease(l.leaseId);
        }
        if (core.store.pending() > 0) core.outbox.schedule();
        return;
      }
      // Served elsewhere now (or, asked as an orphan, here): the watch confirms it.
      s.pings = 0;
      if (r !== '' && r !== site.serverId) {
        site.orphans.delete(s.id);
        site.remote.add(s.id);
      } else if (r === '' && holder === 'self') {
        // Nobody holds it (its liveness key went with our etcd lease, or a claim here was
        // lost): an orphan, reaped by the site's first server unless it talks again.
        site.reattach.delete(s.id);
        if (!site.orphans.has(s.id)) site.orphans.set(s.id, core.now());
      }
      core.log.debug(
        `site: session ${hexId(s.id)} not ${why === null ? 'forgotten' : 'reaped'}: ${r ? `server ${r} holds it` : 'no server holds it now'}`,
      );
    },
    (e: Error) => {
      site.ending.delete(s.id);
      core.log.warn(`site: ending session ${hexId(s.id)}: ${e.message} (tried again later)`);
    },
  );
}

/** Grants the site refused at the commit: out of the pools again; a queued client keeps its place. */
export function refused(
  core: Core,
  site: SiteState,
  ids: ReadonlySet<bigint>,
  why = 'the site is full',
): void {
  for (const id of ids) {
    const l = core.pool.removeLease(id);
    if (!l) continue;
    const q = site.store.queued(l.sessionId, l.feature);
    if (q) core.pool.restore(poolSnapshot(core, snapshotOf([], [q])));
    core.log.debug(`site: grant of ${hexId(id)} (${l.feature}) not made: ${why}`);
  }
  core.outbox.generation = (core.outbox.generation + 1) >>> 0;
}
