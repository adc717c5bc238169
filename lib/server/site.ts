/**
 * A daemon that serves a site (several floatlmd over one etcd ledger, docs/site.md): opening
 * the site store, loading the whole site into the session table and the pools (no restart
 * grace: nothing needs reclaiming, every lease is known), and keeping them current from the
 * site store's events, so that a client that fails over to this server is answered at once.
 *
 * Who looks after a session: the server that last heard it holds its liveness key (on its
 * own etcd lease). A session another server holds is "remote" here: not pinged, not reaped,
 * not forgotten by this server; a datagram from it makes it this server's (one etcd put).
 * A session whose server's lease expired is an "orphan": if no server hears from it for
 * the test_conn time, the first server of the site (lowest id) reaps it.
 */
import { hostname } from 'node:os';
import type { LicensePool } from '../license/pool.ts';
import { versionKey } from '../license/version.ts';
import type { SiteLease } from '../store/etcd.ts';
import type { SeatRule, SiteStore } from '../store/site.ts';
import type { QueueRecord, SessionRecord, StoreSnapshot } from '../store/sqlite.ts';
import { type ServerRecord, SiteServerState, StatusRecord } from '../wire/index.ts';
import type { LoadedConfig } from './config.ts';
import type { Core } from './core.ts';
import type { ResolvedOptions } from './defaults.ts';
import { degrade } from './faults.ts';
import { poolSnapshot } from './restore.ts';

/** Servers that left the site that a status listing still names. */
const GONE_KEPT = 16;

/** What a site daemon knows beyond a single server's state. */
export class SiteState {
  /** Sessions another server of the site holds. */
  readonly remote = new Set<bigint>();
  /** Sessions no server holds (their server left the site), since when (ms). */
  readonly orphans = new Map<bigint, number>();
  /** This server's sessions to attach again once it holds an etcd lease again. */
  readonly reattach = new Set<bigint>();
  /** Servers that left the site, when (the last GONE_KEPT of them). */
  readonly gone = new Map<string, number>();
  /** Sessions this server is ending site-wide (the etcd transaction is in flight). */
  readonly ending = new Set<bigint>();
  /**
   * Sessions taken over here since the last commit, and what they were (undone with the
   * commit if it fails: their liveness key did not move).
   */
  readonly claims = new Map<bigint, 'remote' | 'orphan'>();
  /**
   * Leases whose session the site no longer has (ended, expired, or its end's seats not
   * freed: its server died mid-way), since when: the first server frees them.
   */
  readonly lost = new Map<bigint, number>();
  /** Whether a reattach round is in flight. */
  reattaching = false;

  constructor(readonly store: SiteStore) {}

  get serverId(): string {
    return this.store.serverId;
  }

  /** The site's servers as SERVER status records: live ones, then those that left. */
  serverRecords(now: number): ServerRecord[] {
    const out: ServerRecord[] = [];
    for (const [id, s] of [...this.store.servers].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const self = id === this.serverId;
      const state =
        self && !this.store.ledger.canGrant() ? SiteServerState.NO_ETCD : SiteServerState.UP;
      out.push({
        kind: StatusRecord.SERVER,
        name: id,
        state,
        since: Number(s.startedAt) || 0,
        self: self ? 1 : 0,
      });
    }
    if (!this.store.servers.has(this.serverId)) {
      // Our registration is gone (lease lost): we still answer, but cannot grant.
      out.unshift({
        kind: StatusRecord.SERVER,
        name: this.serverId,
        state: SiteServerState.NO_ETCD,
        since: now,
        self: 1,
      });
    }
    for (const [id, at] of this.gone) {
      if (this.store.servers.has(id)) continue;
      out.push({
        kind: StatusRecord.SERVER,
        name: id,
        state: SiteServerState.GONE,
        since: at,
        self: 0,
      });
    }
    return out;
  }

  /** Whether this server reaps the site's orphans: the first live server by id. */
  reapsOrphans(): boolean {
    let first: string | undefined;
    for (const id of this.store.servers.keys()) if (first === undefined || id < first) first = id;
    return first === undefined || first === this.serverId;
  }
}

/**
 * Connects to the site's etcd, registers this server and reads the whole site. etcd3 is
 * loaded only here: a single server never pays for it.
 * @throws {Error} a one-line message when etcd cannot be reached or the id is in use
 */
export async function openSite(opts: ResolvedOptions, seats: SeatRule): Promise<SiteStore> {
  const { openEtcdLedger } = await import('../store/etcd.ts');
  const { openSiteStore } = await import('../store/site.ts');
  const serverId = opts.serverId || `${hostname()}:${opts.port}`;
  // The ledger's timers are unref'ed (they must not keep a closed daemon alive): while
  // nothing else is listening yet, this keeps the process up until etcd answers or fails.
  const alive = setInterval(() => undefined, 60_000);
  try {
    const ledger = await openEtcdLedger({
      endpoints: opts.etcd,
      site: opts.site,
      serverId,
      leaseTtlSec: opts.etcdLeaseTtlS,
      now: opts.now,
    });
    try {
      return await openSiteStore(ledger, { now: opts.now, seats });
    } catch (e) {
      await ledger.close({ revoke: true });
      throw e;
    }
  } finally {
    clearInterval(alive);
  }
}

/**
 * The seat rule of a license: each feature pool (name, version) is counted site-wide on its
 * own counter, against the seats its lines license (unexpired lines only).
 */
export function seatRule(config: () => LoadedConfig, now: () => number): SeatRule {
  return (l) => {
    const t = now();
    let licensed = 0;
    for (const f of config().license.features) {
      if (f.name !== l.feature || versionKey(f.version) !== versionKey(l.version)) continue;
      if (f.expires !== null && f.expires <= t) continue;
      licensed += f.count;
    }
    return { counter: `${l.feature}@${l.version}`, licensed };
  };
}

export function snapshotOf(leases: SiteLease[], queue: QueueRecord[]): StoreSnapshot {
  return { sessions: [], leases, queue, revokedCount: 0, reclaimedCount: 0, meta: new Map() };
}

function fieldsOf(r: SessionRecord, now: number, floor: number) {
  return {
    id: r.tokenId,
    token: r.token,
    user: r.user,
    host: r.host,
    vendor: r.vendor,
    expires: r.expires,
    address: r.ip,
    port: r.port,
    lastSeen: now,
    floor,
    credential: r.credential ?? '',
  };
}

/**
 * Loads the site into the session table and pools (instead of a restart's restore: no
 * grace, nothing unclaimed) and subscribes the daemon to the site's changes.
 */
export function attachSite(core: Core, store: SiteStore, now: number): SiteState {
  const site = new SiteState(store);
  core.site = site;
  const me = store.serverId;
  for (const r of store.eachSession()) {
    if (r.expires <= now) continue;
    core.sessions.add(fieldsOf(r, now, r.seqFloor ?? -1));
    const owner = store.alive.get(r.tokenId);
    if (owner === undefined || owner === me) site.orphans.set(r.tokenId, now);
    else site.remote.add(r.tokenId);
  }
  for (const l of store.leases.values())
    if (!store.sessions.has(l.tokenId)) site.lost.set(l.leaseId, now);
  const snap = store.load({ sessions: false });
  // A seat freed for a queued session another server holds is that server's to assign.
  core.pool.heldElsewhere = (id) => site.remote.has(id);
  core.pool.restore(poolSnapshot(core, snap));
  const n = `${core.sessions.size} session(s), ${snap.leases.length} lease(s), ${snap.queue.length} queued`;
  core.log.info(`site ${store.ledger.site}: this server is ${me}; the site holds ${n}`);

  const guard =
    <A extends unknown[]>(what: string, f: (...a: A) => void) =>
    (...a: A) => {
      if (core.state !== 'RUNNING') return;
      try {
        f(...a);
      } catch (e) {
        core.counters.internal++;
        core.log.error(`site: ${what}: ${(e as Error).message}`);
      }
    };
  const changed = () => {
    core.outbox.generation = (core.outbox.generation + 1) >>> 0;
  };
  const holds = (pool: LicensePool, l: { leaseId: bigint; tokenId: bigint }) =>
    pool.leasesOf(l.tokenId).some((x) => x.leaseId === l.leaseId);
  const local = (id: bigint) => !site.remote.has(id) && !site.orphans.has(id);

  store.on(
    'alive',
    guard('alive', (id: bigint, owner: string) => {
      site.orphans.delete(id);
      site.reattach.delete(id);
      if (owner === me) site.remote.delete(id);
      else site.remote.add(id);
    }),
  );
  store.on(
    'alive-gone',
    guard('alive-gone', (id: bigint) => {
      if (!core.sessions.get(id)) return;
      if (site.remote.delete(id)) site.orphans.set(id, core.now());
      // Ours, and our etcd lease went: attach it again once we hold one.
      else if (!site.orphans.has(id)) site.reattach.add(id);
    }),
  );
  store.on(
    'session',
    guard('session', (r: SessionRecord) => {
      for (const l of store.leasesOfSession(r.tokenId)) site.lost.delete(l.leaseId);
      if (core.sessions.get(r.tokenId) || r.expires <= core.now()) return;
      core.sessions.add(fieldsOf(r, core.now(), store.floors.get(r.tokenId) ?? -1));
      const owner = store.alive.get(r.tokenId);
      if (owner === me) return;
      if (owner === undefined) site.orphans.set(r.tokenId, core.now());
      else site.remote.add(r.tokenId);
    }),
  );
  store.on(
    'session-gone',
    guard('session-gone', (id: bigint) => {
      for (const l of store.leasesOfSession(id)) site.lost.set(l.leaseId, core.now());
      const s = core.sessions.get(id);
      site.remote.delete(id);
      site.orphans.delete(id);
      site.reattach.delete(id);
      if (s) core.sessions.remove(s);
    }),
  );
  store.on(
    'floor',
    guard('floor', (id: bigint, floor: number) => {
      const s = core.sessions.get(id);
      if (!s || local(id) || floor <= s.floor) return;
      // Another server's floor: a fresh window above it the next time it talks here.
      const r = core.sessions.record(s, core.now());
      core.sessions.remove(s);
      core.sessions.add(fieldsOf(r, s.lastSeen, floor));
    }),
  );
  store.on(
    'lease',
    guard('lease', (l: SiteLease) => {
      if (!store.sessions.has(l.tokenId)) site.lost.set(l.leaseId, core.now());
      // Our own grants are in our pools before etcd has them.
      if (l.server === me || holds(core.pool, l)) return;
      core.pool.restore(poolSnapshot(core, snapshotOf([l], [])));
      changed();
    }),
  );
  store.on(
    'lease-gone',
    guard('lease-gone', (l: SiteLease) => {
      site.lost.delete(l.leaseId);
      if (!holds(core.pool, l)) return;
      core.pool.removeLease(l.leaseId);
      core.unclaimed.delete(l.leaseId);
      core.afterRelease(core.now());
      if (core.store.pending() > 0) core.outbox.schedule();
      changed();
    }),
  );
  store.on(
    'queued',
    guard('queued', (q: QueueRecord) => {
      if (local(q.tokenId)) return;
      core.pool.restore(poolSnapshot(core, snapshotOf([], [q])));
      changed();
    }),
  );
  store.on(
    'dequeued',
    guard('dequeued', (q: QueueRecord) => {
      if (local(q.tokenId)) return;
      if (core.pool.leaveQueue(q.tokenId, q.feature)) changed();
    }),
  );
  store.on('servers', changed);
  store.on(
    'server-gone',
    guard('server-gone', (id: string) => {
      site.gone.delete(id);
      site.gone.set(id, core.now());
      if (site.gone.size > GONE_KEPT) site.gone.delete(site.gone.keys().next().value!);
      core.log.warn(`site: server ${id} left the site (its etcd lease ended)`);
    }),
  );
  store.on('warning', (m: string) => core.log.warn(m));

  const ledger = store.ledger;
  ledger.on(
    'grantable',
    guard('grantable', (ok: boolean) => {
      if (ok || core.degraded) return;
      degrade(
        core,
        new Error(
          `etcd: no majority has renewed this server's lease within its ${ledger.leaseTtlSec} s TTL; not granting`,
        ),
        core.now(),
      );
    }),
  );
  ledger.on(
    'lease-acquired',
    guard('lease-acquired', () => {
      for (const s of core.sessions.values()) if (local(s.id)) site.reattach.add(s.id);
      core.log.info(`site: a new etcd lease; ${site.reattach.size} session(s) attached again`);
    }),
  );
  return site;
}
