/**
 * The daemon's shared state and the operations several handlers and timers perform on it:
 * the pools, the store, the session table, the outbox, the restart grace, and what happens
 * when a seat is granted, released or a session ends. Handlers (lib/server/handlers/) and
 * the pipeline receive a Core; only the Daemon (lifecycle) creates one.
 */
import type { ServerAuth } from '../auth/server.ts';
import type { Keyring } from '../crypto/index.ts';
import type { FeatureLine } from '../license/file.ts';
import type { LicensePool } from '../license/pool.ts';
import type { StateStore } from '../store/index.ts';
import { makeTicket, type TokenStore } from '../token/index.ts';
import { ServerState } from '../wire/index.ts';
import type { LoadedConfig } from './config.ts';
import type { ResolvedOptions } from './defaults.ts';
import type { Logger, ReportLog } from './log.ts';
import { type Ctx, granted, type Outbox } from './outbox.ts';
import type { Session } from './session.ts';
import type { SessionTable } from './sessions.ts';
import type { SiteState } from './site.ts';

export const SERVER_VERSION = '0.1.0';

/** Counters the operator can read (status, logs, benchmarks). */
export interface Counters {
  received: number;
  malformed: number;
  rateLimited: number;
  badMac: number;
  dropped: number;
  replayed: number;
  refused: number;
  retransmits: number;
  answered: number;
  errors: number;
  internal: number;
  reaped: number;
}

/** Fresh counters, all zero. */
export function newCounters(): Counters {
  return {
    received: 0,
    malformed: 0,
    rateLimited: 0,
    badMac: 0,
    dropped: 0,
    replayed: 0,
    refused: 0,
    retransmits: 0,
    answered: 0,
    errors: 0,
    internal: 0,
    reaped: 0,
  };
}

export type DaemonState = 'RUNNING' | 'CLOSING' | 'CLOSED';

/** What the lifecycle (the Daemon) lends the handlers: reread and close. */
export interface Lifecycle {
  reread(): { features: number; problems: string[] };
  close(): Promise<void>;
}

/** A lease as the pool hands it out, for ticket and store. */
interface GrantedLease {
  leaseId: bigint;
  feature: string;
  version: string;
  count: number;
  grantedAt: number;
  groupKey?: string;
}

export class Core {
  state: DaemonState = 'RUNNING';
  config!: LoadedConfig;
  keyring!: Keyring;
  auth!: ServerAuth;
  pool!: LicensePool;
  lifecycle!: Lifecycle;
  /** When the socket began to listen: uptime and grace count from here. */
  started = 0;
  graceUntil = 0;
  /** In a takeover grace nobody knows every holder, so it never ends early. */
  takeoverGrace = false;
  /**
   * Set while the state cannot be written (a failed commit, until a probe write succeeds):
   * requests that change state are refused BUSY, the rest is answered, PONG says DEGRADED.
   */
  degraded: string | undefined;
  /** Replay floors queued since the last commit: committed, they become the durable floors. */
  readonly floorWrites: { s: Session; floor: number }[] = [];
  /** Sessions added since the last successful commit (undone if it fails). */
  readonly fresh = new Set<Session>();
  /** Sessions reaped since the last successful commit (redone on the rebuilt state). */
  readonly reaped: { s: Session; why: string; event: 'reap' | 'close'; ended: boolean }[] = [];
  /** The grant and denial tallies as last written to the state (meta `tallies`). */
  talliesWritten = '';
  /** Leases loaded from disk that have not been reclaimed yet (grace ends early at zero). */
  readonly unclaimed = new Set<bigint>();
  /** Set when the daemon serves a site (lib/server/site.ts); undefined for one server. */
  site: SiteState | undefined;

  constructor(
    readonly opts: ResolvedOptions,
    readonly now: () => number,
    readonly log: Logger,
    readonly report: ReportLog,
    readonly store: StateStore,
    readonly tokens: TokenStore,
    readonly sessions: SessionTable,
    readonly outbox: Outbox,
    readonly counters: Counters,
  ) {}

  /** ms of restart grace left; ends the grace (in one step) when it has run out. */
  graceLeft(now = this.now()): number {
    if (this.graceUntil === 0) return 0;
    if (now < this.graceUntil) return this.graceUntil - now;
    this.endGrace(now);
    return 0;
  }

  /** What PONG reports. */
  serverState(now: number): ServerState {
    if (this.state !== 'RUNNING') return ServerState.CLOSING;
    if (this.degraded) return ServerState.DEGRADED;
    return this.graceLeft(now) > 0 ? ServerState.GRACE : ServerState.RUNNING;
  }

  /**
   * Ends the grace: unclaimed leases are released before anything else is answered, so the
   * first RUNNING answer and the first new grant come after they are gone.
   */
  endGrace(now: number): void {
    this.graceUntil = 0;
    if (this.unclaimed.size === 0 && !this.takeoverGrace) return;
    this.takeoverGrace = false;
    this.log.info(`restart grace over; ${this.unclaimed.size} lease(s) not reclaimed are released`);
    for (const id of this.unclaimed) {
      const l = this.pool.removeLease(id);
      this.store.deleteLease(id);
      if (!l) continue;
      this.burn(id, l.sessionId, now);
      this.report.write('release', now, {
        lease: hexId(id),
        feature: l.feature,
        reason: 'not reclaimed',
      });
    }
    this.unclaimed.clear();
    this.afterRelease(now);
  }

  /** Grace ends early once every lease restored from disk is reclaimed or released. */
  maybeEndGrace(now: number): void {
    if (this.graceUntil > now && this.unclaimed.size === 0 && !this.takeoverGrace) {
      this.graceUntil = 0;
      this.log.info('restart grace ended early: every known holder has reclaimed');
    }
  }

  /**
   * Signs a lease ticket and writes the lease to the store (pending commit); with `ctx`, the
   * grant is that request's (its reply stands or falls with it at a site's commit).
   */
  leaseTicket(s: Session, lease: GrantedLease, now: number, ctx?: Ctx): Uint8Array {
    if (ctx) granted(ctx, lease.leaseId);
    const ticket = this.ticketFor(s, lease, now);
    this.store.putLease({
      leaseId: lease.leaseId,
      tokenId: s.id,
      feature: lease.feature,
      version: lease.version,
      count: lease.count,
      groupKey: lease.groupKey ?? '',
      grantedAt: lease.grantedAt,
      ticket: ticket.bytes,
    });
    return ticket.bytes;
  }

  /** A lease ticket for a lease `s` holds, signed now (nothing is written). */
  ticketFor(s: Session, lease: GrantedLease, now: number) {
    return makeTicket(
      {
        leaseId: lease.leaseId,
        tokenId: s.id,
        feature: lease.feature,
        version: lease.version,
        count: lease.count,
        grantedAt: lease.grantedAt,
      },
      this.keyring,
      now,
    );
  }

  /**
   * A lease that is gone (checked in, removed, reaped, or not reclaimed in grace) has its
   * ticket burned durably, so it can never be re-presented to rebuild the seat, here or
   * after a restart. Kept until its session's token would have expired anyway; `removed`
   * records that an admin took it (a reclaim is then refused REMOVED).
   */
  burn(leaseId: bigint, sessionId: bigint, now: number, removed = false): void {
    const expires = this.sessions.get(sessionId)?.expires ?? now + 2 * 86_400_000;
    this.store.markReclaimed(leaseId, expires, removed ? 1 : 0);
    this.unclaimed.delete(leaseId);
  }

  /** After seats free: queued clients whose turn came were assigned seats; persist them. */
  afterRelease(now: number): void {
    this.outbox.generation = (this.outbox.generation + 1) >>> 0;
    this.maybeEndGrace(now);
    for (const lease of this.pool.takeAssigned()) {
      const s = this.sessions.get(lease.sessionId);
      if (!s) continue;
      // Durable now, so the seat stays with the queued client across a crash; it picks the
      // grant up on its next CHECKOUT poll, which reports it (one grant event per lease).
      this.leaseTicket(s, lease, now);
      this.store.dequeue(s.id, lease.feature);
      this.report.write('grant', now, {
        session: hexId(s.id),
        user: s.user,
        host: s.host,
        feature: lease.feature,
        lease: hexId(lease.leaseId),
        queued: true,
      });
    }
  }

  /** Writes the grant and denial tallies to the state when they changed (once per tick). */
  saveTallies(): void {
    const t = JSON.stringify(this.pool.tallies());
    if (t === this.talliesWritten || (t === '{}' && this.talliesWritten === '')) return;
    this.store.setMeta('tallies', t);
    this.talliesWritten = t;
  }

  /**
   * Ends a session: seats released, queue left, token revoked durably. `ended`: the store
   * has already revoked it and dropped its record (a site ends a session in etcd first,
   * on the condition that this server still holds it; docs/site.md).
   */
  reap(
    s: Session,
    now: number,
    why: string,
    event: 'reap' | 'close' = 'reap',
    ended = false,
  ): number {
    this.reaped.push({ s, why, event, ended });
    const released = this.pool.releaseSession(s.id);
    for (const l of released.leases) {
      this.store.deleteLease(l.leaseId);
      this.burn(l.leaseId, s.id, now);
    }
    for (const f of released.queued ?? []) this.store.dequeue(s.id, f);
    this.tokens.invalidateToken(s.id, Math.ceil(s.expires / 1000));
    if (!ended) {
      this.store.revoke(s.id, s.expires);
      this.store.deleteSession(s.id);
    }
    this.sessions.remove(s);
    if (event === 'reap') this.counters.reaped++;
    this.report.write(event, now, {
      session: hexId(s.id),
      user: s.user,
      host: s.host,
      leases: released.leases.length,
      why,
    });
    const line = `${event === 'reap' ? 'reaped' : 'closed'} session ${hexId(s.id)} (${s.user}@${s.host}): ${why}; ${released.leases.length} lease(s) released`;
    if (event === 'reap') this.log.info(line);
    else this.log.debug(line);
    if (released.leases.length) this.afterRelease(now);
    return released.leases.length;
  }

  /**
   * Drops an idle session from memory and disk without revoking its token (`ended`: the
   * store has dropped it already).
   */
  forget(s: Session, ended = false): void {
    if (!ended) this.store.deleteSession(s.id);
    this.sessions.remove(s);
  }

  /**
   * What the pool needs to know of a session beyond its declared names: its source address
   * (MAX_PER_HOST and INTERNET rules count it) and its credential's seat cap, if any.
   */
  holder(s: Session): { addr: string; credentialCap?: { id: string; seats: number } } {
    const seats = s.credential ? this.config.keys.caps?.get(s.credential)?.seats : undefined;
    return seats === undefined
      ? { addr: s.address }
      : { addr: s.address, credentialCap: { id: s.credential, seats } };
  }

  /** Same IP, new port, tag verified: the session (and where test_conn goes) moves. */
  move(s: Session, address: string, port: number): void {
    if (s.address === address && s.port === port) return;
    this.sessions.move(s, address, port);
    this.store.touchSessionAddr(s.id, address, port);
  }
}

/** A u64 id as the 16 hex digits the CLI shows. */
export function hexId(id: bigint): string {
  return id.toString(16).padStart(16, '0');
}

/**
 * The feature lines as this daemon's pools count them. On a site every lease takes its own
 * seats (DUP_GROUP NONE): etcd counts the site's seats per lease, and a pool that shared a
 * seat within a duplicate group would grant locally what etcd then refuses, again on every
 * retry (docs/site.md, Limitations).
 */
export function poolFeatures(
  opts: Pick<ResolvedOptions, 'etcd'>,
  features: readonly FeatureLine[],
): readonly FeatureLine[] {
  if (opts.etcd.length === 0) return features;
  return features.map((f) =>
    f.options.dupGroup === 'NONE' ? f : { ...f, options: { ...f.options, dupGroup: 'NONE' } },
  );
}
