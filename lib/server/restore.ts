/**
 * Restart recovery: sessions, leases and the queue reloaded from the store. Sessions keep
 * their durable replay floor (captured datagrams stay replays after the restart); leases
 * are "unclaimed" until their holder re-presents the ticket, during the restart grace.
 */
import type { CredentialCap, PoolSnapshot } from '../license/pool.ts';
import type { StoreSnapshot } from '../store/index.ts';
import type { Core } from './core.ts';

/**
 * The pool's view of the stored leases and queue, with what the session table knows of
 * each holder (names, source address, credential cap).
 */
type Who = { user: string; host: string; addr?: string; credentialCap?: CredentialCap };

/** A holder as a lease (credential: its id) or a queue entry (credential: the cap) records it. */
function holderAs(w: Who, as: 'lease'): Omit<Who, 'credentialCap'> & { credential?: string };
function holderAs(w: Who, as: 'queue'): Omit<Who, 'credentialCap'> & { credential?: CredentialCap };
function holderAs(w: Who, as: 'lease' | 'queue') {
  const { credentialCap, ...rest } = w;
  if (!credentialCap) return rest;
  return { ...rest, credential: as === 'lease' ? credentialCap.id : credentialCap };
}

export function poolSnapshot(core: Core, snap: StoreSnapshot): PoolSnapshot {
  const who = (id: bigint): Who => {
    const s = core.sessions.get(id);
    return s ? { user: s.user, host: s.host, ...core.holder(s) } : { user: '?', host: '?' };
  };
  return {
    leases: snap.leases.map((l) => ({
      leaseId: l.leaseId,
      sessionId: l.tokenId,
      feature: l.feature,
      version: l.version,
      count: l.count,
      grantedAt: l.grantedAt,
      ...holderAs(who(l.tokenId), 'lease'),
    })),
    queue: snap.queue.map((q) => ({
      sessionId: q.tokenId,
      feature: q.feature,
      version: q.version,
      count: q.count,
      since: q.since,
      ...holderAs(who(q.tokenId), 'queue'),
    })),
  };
}

export function restore(core: Core, now: number): void {
  const { store, sessions, pool, log, opts } = core;
  const snap = store.load({ sessions: false });
  // Rows repeat their host, vendor and address; one string each serves every session.
  const names = new Map<string, string>();
  const one = (x: string): string => {
    const known = names.get(x);
    if (known !== undefined) return known;
    names.set(x, x);
    return x;
  };
  let stored = 0;
  for (const s of store.eachSession()) {
    stored++;
    if (s.expires <= now) continue;
    // No decoding and no key derivation here: both wait until the session talks.
    sessions.add({
      id: s.tokenId,
      token: s.token,
      user: s.user,
      host: one(s.host),
      vendor: one(s.vendor),
      expires: s.expires,
      address: one(s.ip),
      port: s.port,
      lastSeen: now,
      floor: s.seqFloor ?? -1,
      credential: one(s.credential ?? ''),
    });
  }
  pool.restore(poolSnapshot(core, snap));
  for (const l of snap.leases) core.unclaimed.add(l.leaseId);
  const tallies = snap.meta.get('tallies');
  if (tallies) {
    try {
      pool.restoreTallies(JSON.parse(tallies));
      core.talliesWritten = tallies;
    } catch (e) {
      log.warn(`state: grant and denial counts not restored: ${(e as Error).message}`);
    }
  }
  // A takeover grace interrupted by a restart goes on: its holders may not have come back.
  const carried = Number(snap.meta.get('takeover_grace_until') ?? 0);
  core.takeoverGrace = opts.takeover || carried > now;
  if ((core.unclaimed.size > 0 || core.takeoverGrace) && opts.graceMs > 0) {
    core.graceUntil = Math.max(now + opts.graceMs, carried);
    log.info(
      `restart grace: ${Math.round((core.graceUntil - now) / 1000)} s for ${core.takeoverGrace ? 'every holder' : `${core.unclaimed.size} lease(s)`} to reclaim; new grants wait`,
    );
  } else if (carried > now) {
    core.graceUntil = carried;
  }
  if (core.takeoverGrace && core.graceUntil > now) {
    store.setMeta('takeover_grace_until', String(core.graceUntil));
    store.commit();
  }
  if (stored || snap.leases.length) {
    log.info(
      `state: restored ${sessions.size} session(s), ${snap.leases.length} lease(s), ${snap.queue.length} queued`,
    );
  }
}
