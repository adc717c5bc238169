/**
 * Who serves a site's sessions, as this server acts on it: taking a session over when it
 * talks here, attaching this server's sessions again after a new etcd lease (only those no
 * other server took), ending a session only while etcd says this server (or, for an orphan,
 * none) holds it, and undoing grants the site refused. The rules are in docs/site.md.
 */
import { type Core, hexId } from './core.ts';
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
  core.store.putSession(core.sessions.record(s, core.now()));
  core.log.debug(
    `site: session ${hexId(s.id)} (${s.user}@${s.host}) is now served here (${remote ? 'from another server' : 'its server left'})`,
  );
}

/**
 * Per tick: sessions to attach again (after a new etcd lease). Only those no other server
 * took over meanwhile: a server woken from a long stop must not pull back sessions whose
 * clients moved on (their liveness keys name the server that serves them now).
 */
export function siteTick(core: Core, site: SiteState): void {
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
  if (site.ending.has(s.id)) return;
  site.ending.add(s.id);
  const o = why === null ? { holder } : { holder, revokeUntil: s.expires };
  site.store.ledger.endSession(s.id, o).then(
    (r) => {
      site.ending.delete(s.id);
      if (core.state !== 'RUNNING') return;
      if (r === 'ended') {
        if (why === null) core.forget(s, true);
        else core.reap(s, core.now(), why, 'reap', true);
        if (core.store.pending() > 0) core.outbox.schedule();
        return;
      }
      // Served elsewhere now (or, asked as an orphan, here): the watch confirms it.
      s.pings = 0;
      if (r !== '' && r !== site.serverId) {
        site.orphans.delete(s.id);
        site.remote.add(s.id);
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
