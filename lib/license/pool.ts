/**
 * Seat pools: who holds which seats of which feature, who waits in which queue, and the
 * rules that decide a checkout (version matching, expiry, duplicate grouping, per-user and
 * per-host maxima, FIFO queues). Pure state with an injected clock: no sockets, no timers,
 * no I/O. The daemon persists what `snapshot()` returns (or each grant as it happens) and
 * feeds it back with `restore()`.
 *
 * The one rule everything here serves: a grant never makes the seats in use of a feature
 * exceed its licensed count. A count can drop under held seats (reload, an INCREMENT line
 * expiring); the holders keep their seats and nothing new is granted until use is below
 * the count again. `assertInvariant()` checks this and the bookkeeping behind it.
 *
 * Reservations (RESERVE=, docs/license-format.md) narrow it: seats reserved for a user or
 * host and not used by them are not granted to anyone else. Which held seats count against
 * which reservation is a maximum flow (held seats → reservations they match), so a grant
 * is allowed when the seats in use outside reservations stay within the unreserved seats
 * (count − Σ reserved); as Σ reserved ≤ count, that also keeps use within the count.
 */
import { randomBytes } from '@noble/hashes/utils.js';
import { ErrorCode } from '../wire/index.ts';
import type { DupGroup, FeatureLine, FeatureOptions, Reservation } from './file.ts';
import { compareVersion, isVersion, versionKey } from './version.ts';

/** One checkout: a lease on `count` seats of one feature pool, held by one session. */
export interface Lease {
  leaseId: bigint;
  sessionId: bigint;
  user: string;
  host: string;
  feature: string;
  /** Version of the feature line that serves the lease (≥ the version requested). */
  version: string;
  vendor: string;
  count: number;
  /** ms UTC. */
  grantedAt: number;
  /** Duplicate group the lease belongs to; leases of one group share seats. */
  groupKey: string;
}

export interface CheckoutRequest {
  sessionId: bigint;
  user: string;
  host: string;
  feature: string;
  /** Minimum version wanted; '' = any. */
  version: string;
  /** Seats wanted, 1..65535 (others are denied BAD_REQUEST). */
  count: number;
  /** Join the queue when no seat is free. */
  wait: boolean;
  /** Use this lease id instead of a new one. */
  leaseId?: bigint;
  /** Only feature lines of this vendor. */
  vendor?: string;
}

export type DenialCode =
  | typeof ErrorCode.BAD_REQUEST
  | typeof ErrorCode.NO_SUCH_FEATURE
  | typeof ErrorCode.NO_SUCH_VERSION
  | typeof ErrorCode.FEATURE_EXPIRED
  | typeof ErrorCode.NO_SEATS
  | typeof ErrorCode.USER_MAX
  | typeof ErrorCode.HOST_MAX
  | typeof ErrorCode.QUEUE_FULL;

export type CheckoutResult =
  | {
      status: 'granted';
      lease: Lease;
      /** The seat was assigned while the session waited in the queue. */
      fromQueue: boolean;
      /** The lease shares a seat its duplicate group already held. */
      shared: boolean;
    }
  | {
      status: 'queued';
      /** 1 = next. */
      position: number;
      queueLength: number;
      /** True when this call added the entry; false for a poll. */
      added: boolean;
    }
  | { status: 'denied'; code: DenialCode };

export type CheckinResult =
  | {
      ok: true;
      lease: Lease;
      feature: string /** Seats freed (0 when the group still holds them). */;
      released: number;
    }
  | { ok: false; code: typeof ErrorCode.NOT_HOLDER };

export interface ReclaimRequest {
  leaseId: bigint;
  sessionId: bigint;
  user: string;
  host: string;
  feature: string;
  version: string;
  count: number;
  grantedAt: number;
}

export type ReclaimResult =
  | { ok: true; lease: Lease; groupKey: string }
  | {
      ok: false;
      code:
        | typeof ErrorCode.ALREADY_RECLAIMED
        | typeof ErrorCode.NO_SEATS
        | typeof ErrorCode.NO_SUCH_FEATURE
        | typeof ErrorCode.NO_SUCH_VERSION
        | typeof ErrorCode.FEATURE_EXPIRED
        | typeof ErrorCode.BAD_REQUEST;
    };

export interface QueueEntry {
  sessionId: bigint;
  user: string;
  host: string;
  feature: string;
  /** Minimum version wanted. */
  version: string;
  count: number;
  /** ms UTC when the entry joined the queue. */
  since: number;
  /** ms UTC of the last poll or touch. */
  lastPoll: number;
}

export interface FeatureStatus {
  name: string;
  version: string;
  vendor: string;
  /** ms UTC when the last line of the pool stops serving; 0 = never (as on the wire). */
  expires: number;
  /** Seats licensed now (unexpired lines). */
  count: number;
  inUse: number;
  /** Entries in the queue of this feature name. */
  queued: number;
  issued: number;
  denied: number;
  expired: boolean;
  /** No longer in the license (reload): holders keep their leases, nothing new is granted. */
  removed: boolean;
}
export interface HolderStatus {
  feature: string;
  version: string;
  vendor: string;
  user: string;
  host: string;
  since: number;
  count: number;
  leaseId: bigint;
  sessionId: bigint;
}
export interface QueueStatus {
  feature: string;
  version: string;
  user: string;
  host: string;
  since: number;
  /** 1 = next. */
  position: number;
  count: number;
  sessionId: bigint;
}
/** One reservation of a pool (summed over its unexpired lines). */
export interface ReservationStatus {
  feature: string;
  version: string;
  vendor: string;
  type: 'user' | 'host';
  name: string;
  /** Seats reserved. */
  count: number;
  /** Reserved seats the user or host holds now (≤ count). */
  inUse: number;
}
export interface PoolStatus {
  features: FeatureStatus[];
  holders: HolderStatus[];
  queue: QueueStatus[];
  /** Pools in the order of `features`, each pool's reservations in license order. */
  reservations: ReservationStatus[];
}

type Id = bigint | string;
/** A lease as persisted: ids may be strings (decimal), so the object is JSON-able. */
export interface LeaseSnapshot {
  leaseId: Id;
  sessionId: Id;
  user: string;
  host: string;
  feature: string;
  version: string;
  vendor?: string;
  count: number;
  grantedAt: number;
  groupKey?: string;
  /** Assigned from the queue and not yet picked up by the session's poll. */
  pending?: boolean;
}
export interface QueueSnapshot {
  sessionId: Id;
  user: string;
  host: string;
  feature: string;
  version: string;
  count: number;
  since: number;
  lastPoll?: number;
}
export interface PoolSnapshot {
  version?: 1;
  leases: LeaseSnapshot[];
  /** Oldest first in each feature's queue. */
  queue: QueueSnapshot[];
}

export interface PoolOptions {
  /** ms UTC. */
  now: () => number;
  /** A fresh nonzero u64 lease id; default random. Ids already in use are drawn again. */
  newLeaseId?: () => bigint;
}

export interface RemoveFilter {
  feature?: string;
  user?: string;
  host?: string;
  leaseId?: bigint;
}

interface Group {
  leases: Set<bigint>;
  seats: number;
}

interface Pool {
  key: string;
  name: string;
  vendor: string;
  version: string;
  lines: FeatureLine[];
  options: FeatureOptions;
  groups: Map<string, Group>;
  inUse: number;
  /** Seats that may be in use: the count, or more while a dropped count drains. */
  ceiling: number;
  /**
   * Seats that may be in use outside reservations: the unreserved seats, or more while
   * use drains after a reload, a restore or a line expiring moved the reservations.
   */
  freeCeiling: number;
  /** Lines serving at the last refresh: a change means a line expired. */
  live: number;
  issued: number;
  denied: number;
}

interface LeaseRec extends Lease {
  pool: Pool;
  pending: boolean;
}

type ResolveCode =
  | typeof ErrorCode.NO_SUCH_FEATURE
  | typeof ErrorCode.NO_SUCH_VERSION
  | typeof ErrorCode.FEATURE_EXPIRED;

/** Pools that queued entries wait for, with the reservations (keys) those entries match. */
type Blocked = Map<Pool, Set<string>>;

type Attempt =
  | { pool: Pool; groupKey: string; extra: number; shared: boolean }
  | { code: DenialCode };

const U64_MAX = 0xffffffffffffffffn;
const DEFAULT_OPTIONS: FeatureOptions = {
  dupGroup: 'UHD',
  maxPerUser: null,
  maxPerHost: null,
  queue: true,
  queueMax: null,
  heartbeat: null,
};

function randomLeaseId(): bigint {
  const b = randomBytes(8);
  let v = 0n;
  for (const x of b) v = (v << 8n) | BigInt(x);
  return v;
}

/** Group key of a NONE lease whose id is not drawn yet; #grant replaces it. */
const NEW_LEASE_GROUP = 'L\0?';

function groupKeyOf(g: DupGroup, user: string, host: string, leaseId: bigint | undefined): string {
  switch (g) {
    case 'UHD':
    case 'UH':
      return `UH\0${user}\0${host}`;
    case 'U':
      return `U\0${user}`;
    case 'H':
      return `H\0${host}`;
    case 'NONE':
      return leaseId === undefined ? NEW_LEASE_GROUP : `L\0${leaseId}`;
  }
}

/** A pool's options: those of its first line not expired when parsed (all agree, see file.ts). */
function optionsOf(lines: readonly FeatureLine[]): FeatureOptions {
  return (lines.find((l) => !l.expired) ?? lines[0])?.options ?? DEFAULT_OPTIONS;
}

const reservationKey = (r: Reservation) => `${r.type}:${r.name}`;

function matches(r: Reservation, user: string, host: string): boolean {
  return r.type === 'user' ? r.name === user : r.name === host;
}

const sum = (ns: readonly number[]) => ns.reduce((a, b) => a + b, 0);

/**
 * The largest assignment of held seats to reservations: each demand is seats held by
 * groups matching the reservations `match` (indices), each reservation takes at most its
 * count. Edmonds–Karp on the bipartite graph (small: distinct match sets × reservations).
 * Returns the seats assigned to each reservation.
 */
export function reservedFlow(
  caps: readonly number[],
  demands: readonly { match: readonly number[]; seats: number }[],
): number[] {
  const k = caps.length;
  const d = demands.length;
  const out = new Array<number>(d).fill(0);
  const into = new Array<number>(k).fill(0);
  const f = demands.map(() => new Array<number>(k).fill(0));
  for (;;) {
    // prevD: -2 unvisited, -1 reached from the source, else the reservation it came from.
    const prevD = new Array<number>(d).fill(-2);
    const prevR = new Array<number>(k).fill(-1);
    const queue: number[] = [];
    for (let i = 0; i < d; i++) {
      if (out[i]! < demands[i]!.seats) {
        prevD[i] = -1;
        queue.push(i);
      }
    }
    let sink = -1;
    for (let q = 0; q < queue.length && sink < 0; q++) {
      const v = queue[q]!;
      if (v < d) {
        for (const j of demands[v]!.match) {
          if (prevR[j] !== -1) continue;
          prevR[j] = v;
          if (into[j]! < caps[j]!) {
            sink = j;
            break;
          }
          queue.push(d + j);
        }
      } else {
        const j = v - d;
        for (let i = 0; i < d; i++) {
          if (prevD[i] === -2 && f[i]![j]! > 0) {
            prevD[i] = j;
            queue.push(i);
          }
        }
      }
    }
    if (sink < 0) return into;
    let b = caps[sink]! - into[sink]!;
    for (let j = sink; ; ) {
      const i = prevR[j]!;
      const pj = prevD[i]!;
      if (pj === -1) {
        b = Math.min(b, demands[i]!.seats - out[i]!);
        break;
      }
      b = Math.min(b, f[i]![pj]!);
      j = pj;
    }
    into[sink]! += b;
    for (let j = sink; ; ) {
      const i = prevR[j]!;
      f[i]![j]! += b;
      const pj = prevD[i]!;
      if (pj === -1) {
        out[i]! += b;
        break;
      }
      f[i]![pj]! -= b;
      j = pj;
    }
  }
}

function poolKey(name: string, vendor: string, version: string): string {
  return `${name}\0${vendor}\0${versionKey(version)}`;
}

function publicLease(l: LeaseRec): Lease {
  return {
    leaseId: l.leaseId,
    sessionId: l.sessionId,
    user: l.user,
    host: l.host,
    feature: l.feature,
    version: l.version,
    vendor: l.vendor,
    count: l.count,
    grantedAt: l.grantedAt,
    groupKey: l.groupKey,
  };
}

function toId(v: unknown, name: string): bigint {
  let id: bigint;
  if (typeof v === 'bigint') id = v;
  else if (typeof v === 'string' && /^[0-9]{1,20}$/.test(v)) id = BigInt(v);
  else throw new TypeError(`${name} must be a bigint or a decimal string`);
  if (id > U64_MAX) throw new RangeError(`${name} must fit in a u64`);
  return id;
}

function str(v: unknown, name: string): string {
  if (typeof v !== 'string') throw new TypeError(`${name} must be a string`);
  return v;
}

function checkSessionId(v: unknown, name = 'sessionId'): bigint {
  if (typeof v !== 'bigint' || v < 0n || v > U64_MAX)
    throw new TypeError(`${name} must be a u64 bigint`);
  return v;
}

/** The seat pools of every feature of a license. See the module comment. */
export class LicensePool {
  readonly #now: () => number;
  readonly #newLeaseId: () => bigint;
  #pools = new Map<string, Pool>();
  #leases = new Map<bigint, LeaseRec>();
  #bySession = new Map<bigint, Set<bigint>>();
  /** Queues by feature name, oldest first. */
  #queues = new Map<string, QueueEntry[]>();
  #assigned: Lease[] = [];
  #dropped: QueueEntry[] = [];

  /**
   * @param features the served lines of a parsed license (expired lines included)
   * @throws {TypeError} when features is not an array or options.now is not a function
   */
  constructor(features: readonly FeatureLine[], options: PoolOptions) {
    if (typeof options?.now !== 'function') throw new TypeError('options.now must be a function');
    if (options.newLeaseId !== undefined && typeof options.newLeaseId !== 'function') {
      throw new TypeError('options.newLeaseId must be a function');
    }
    this.#now = options.now;
    this.#newLeaseId = options.newLeaseId ?? randomLeaseId;
    this.#load(features);
  }

  // ---------------------------------------------------------------- checkout

  /**
   * Decides a checkout. A request for version v is served by the lowest version ≥ v that
   * can grant; a session already queued for the feature gets its position (a poll) or the
   * seat assigned to it meanwhile.
   * @throws {TypeError} when a field has the wrong type
   * @throws {RangeError} when req.leaseId is 0, too large or already in use
   */
  checkout(req: CheckoutRequest): CheckoutResult {
    const sessionId = checkSessionId(req?.sessionId, 'req.sessionId');
    const user = str(req.user, 'req.user');
    const host = str(req.host, 'req.host');
    const feature = str(req.feature, 'req.feature');
    const version = str(req.version, 'req.version');
    if (typeof req.count !== 'number' || !Number.isInteger(req.count)) {
      throw new TypeError('req.count must be an integer');
    }
    if (typeof req.wait !== 'boolean') throw new TypeError('req.wait must be a boolean');
    if (req.vendor !== undefined) str(req.vendor, 'req.vendor');
    if (req.leaseId !== undefined) this.#checkNewLeaseId(req.leaseId, 'req.leaseId');
    if (req.count < 1 || req.count > 0xffff || (version !== '' && !isVersion(version))) {
      return { status: 'denied', code: ErrorCode.BAD_REQUEST };
    }
    const now = this.#now();
    const blocked = this.#pump(feature);
    const pending = this.#pendingOf(sessionId, feature);
    if (pending) {
      pending.pending = false;
      return { status: 'granted', lease: publicLease(pending), fromQueue: true, shared: false };
    }
    const queue = this.#queues.get(feature) ?? [];
    const at = queue.findIndex((e) => e.sessionId === sessionId);
    if (at >= 0) {
      queue[at]!.lastPoll = now;
      return { status: 'queued', position: at + 1, queueLength: queue.length, added: false };
    }
    const res = this.#resolve(feature, version, req.vendor);
    if ('code' in res) {
      if (res.countOn) res.countOn.denied++;
      return { status: 'denied', code: res.code };
    }
    const a = this.#attempt(res.candidates, user, host, req.count, blocked, req.leaseId);
    if (!('code' in a)) {
      const lease = this.#grant(a, sessionId, user, host, req.count, now, req.leaseId, false);
      return { status: 'granted', lease: publicLease(lease), fromQueue: false, shared: a.shared };
    }
    const first = res.candidates[0]!;
    if (a.code === ErrorCode.NO_SEATS && req.wait) {
      const allowing = res.candidates.filter(
        (p) => p.options.queue && this.#reachable(p, user, host, now) >= req.count,
      );
      if (allowing.length > 0) {
        const limits = allowing.map((p) => p.options.queueMax);
        const max = limits.includes(null) ? Infinity : Math.max(...(limits as number[]));
        if (queue.length >= max) {
          first.denied++;
          return { status: 'denied', code: ErrorCode.QUEUE_FULL };
        }
        queue.push({
          sessionId,
          user,
          host,
          feature,
          version,
          count: req.count,
          since: now,
          lastPoll: now,
        });
        this.#queues.set(feature, queue);
        return { status: 'queued', position: queue.length, queueLength: queue.length, added: true };
      }
    }
    first.denied++;
    return { status: 'denied', code: a.code };
  }

  /**
   * Leases assigned to queued sessions since the last call (each also stays pending until
   * that session's next checkout poll picks it up). The daemon persists them.
   */
  takeAssigned(): Lease[] {
    const out = this.#assigned;
    this.#assigned = [];
    return out;
  }

  /**
   * Queue entries dropped since the last call because their feature vanished or expired
   * (reload, time); each session's next poll is answered with the reason.
   */
  takeDropped(): QueueEntry[] {
    const out = this.#dropped;
    this.#dropped = [];
    return out;
  }

  /**
   * Gives a lease back.
   * @throws {TypeError} when an id is not a u64 bigint
   */
  checkin(sessionId: bigint, leaseId: bigint): CheckinResult {
    checkSessionId(sessionId);
    checkSessionId(leaseId, 'leaseId');
    const l = this.#leases.get(leaseId);
    if (!l || l.sessionId !== sessionId) return { ok: false, code: ErrorCode.NOT_HOLDER };
    const released = this.#drop(l);
    this.#pump(l.feature);
    return { ok: true, lease: publicLease(l), feature: l.feature, released };
  }

  /**
   * Leaves the queue of a feature; true when the session was in it.
   * @throws {TypeError} when sessionId is not a u64 bigint or feature not a string
   */
  leaveQueue(sessionId: bigint, feature: string): boolean {
    checkSessionId(sessionId);
    str(feature, 'feature');
    const q = this.#queues.get(feature);
    const at = q ? q.findIndex((e) => e.sessionId === sessionId) : -1;
    if (!q || at < 0) return false;
    q.splice(at, 1);
    if (q.length === 0) this.#queues.delete(feature);
    this.#pump(feature);
    return true;
  }

  /**
   * Releases every lease and queue entry of a session (a dead client, a revoked token).
   * @throws {TypeError} when sessionId is not a u64 bigint
   */
  releaseSession(sessionId: bigint): { leases: Lease[]; queued: string[] } {
    checkSessionId(sessionId);
    const leases: Lease[] = [];
    const touched = new Set<string>();
    for (const id of [...(this.#bySession.get(sessionId) ?? [])]) {
      const l = this.#leases.get(id)!;
      this.#drop(l);
      leases.push(publicLease(l));
      touched.add(l.feature);
    }
    const queued: string[] = [];
    for (const [name, q] of this.#queues) {
      const at = q.findIndex((e) => e.sessionId === sessionId);
      if (at < 0) continue;
      q.splice(at, 1);
      if (q.length === 0) this.#queues.delete(name);
      queued.push(name);
      touched.add(name);
    }
    for (const name of touched) this.#pump(name);
    return { leases, queued };
  }

  /**
   * Admin remove (lmremove): releases every lease matching all the criteria given. An
   * empty filter matches nothing.
   * @throws {TypeError} when a criterion has the wrong type
   */
  remove(filter: RemoveFilter): Lease[] {
    if (typeof filter !== 'object' || filter === null)
      throw new TypeError('filter must be an object');
    for (const k of ['feature', 'user', 'host'] as const) {
      if (filter[k] !== undefined) str(filter[k], `filter.${k}`);
    }
    if (filter.leaseId !== undefined) checkSessionId(filter.leaseId, 'filter.leaseId');
    const { feature, user, host, leaseId } = filter;
    if (feature === undefined && user === undefined && host === undefined && leaseId === undefined)
      return [];
    const out: Lease[] = [];
    const touched = new Set<string>();
    for (const l of [...this.#leases.values()]) {
      if (feature !== undefined && l.feature !== feature) continue;
      if (user !== undefined && l.user !== user) continue;
      if (host !== undefined && l.host !== host) continue;
      if (leaseId !== undefined && l.leaseId !== leaseId) continue;
      this.#drop(l);
      out.push(publicLease(l));
      touched.add(l.feature);
    }
    for (const name of touched) this.#pump(name);
    return out;
  }

  /**
   * Releases one lease whoever holds it (e.g. not reclaimed before the end of restart grace).
   * @throws {TypeError} when leaseId is not a u64 bigint
   */
  removeLease(leaseId: bigint): Lease | undefined {
    checkSessionId(leaseId, 'leaseId');
    const l = this.#leases.get(leaseId);
    if (!l) return undefined;
    this.#drop(l);
    this.#pump(l.feature);
    return publicLease(l);
  }

  /**
   * Takes back a lease presented in a ticket after a restart or failover, same lease id.
   * Never exceeds the count nor takes seats reserved for others (NO_SEATS: the leases of
   * one past state always fit back, in any order); ignores queues and per-user/host
   * maxima, which applied when the lease was first granted.
   * @throws {TypeError} when a field has the wrong type
   */
  reclaim(req: ReclaimRequest): ReclaimResult {
    const sessionId = checkSessionId(req?.sessionId, 'req.sessionId');
    const leaseId = checkSessionId(req.leaseId, 'req.leaseId');
    const user = str(req.user, 'req.user');
    const host = str(req.host, 'req.host');
    const feature = str(req.feature, 'req.feature');
    const version = str(req.version, 'req.version');
    if (typeof req.count !== 'number' || !Number.isInteger(req.count))
      throw new TypeError('req.count must be an integer');
    if (typeof req.grantedAt !== 'number' || !Number.isFinite(req.grantedAt)) {
      throw new TypeError('req.grantedAt must be a finite number');
    }
    if (this.#leases.has(leaseId)) return { ok: false, code: ErrorCode.ALREADY_RECLAIMED };
    if (leaseId === 0n || req.count < 1 || req.count > 0xffff || !isVersion(version)) {
      return { ok: false, code: ErrorCode.BAD_REQUEST };
    }
    const res = this.#resolve(feature, version, undefined);
    if ('code' in res) return { ok: false, code: res.code };
    const now = this.#now();
    // The exact version first: the lease was granted from it.
    const exact = res.candidates.filter((p) => versionKey(p.version) === versionKey(version));
    for (const p of [...exact, ...res.candidates.filter((c) => !exact.includes(c))]) {
      const groupKey = groupKeyOf(p.options.dupGroup, user, host, leaseId);
      const g = p.groups.get(groupKey);
      const extra = g ? Math.max(0, req.count - g.seats) : req.count;
      if (extra > 0 && !this.#fits(p, groupKey, extra, user, host, now)) continue;
      const l = this.#grant(
        { pool: p, groupKey, extra, shared: extra === 0 },
        sessionId,
        user,
        host,
        req.count,
        req.grantedAt,
        leaseId,
        false,
        false,
      );
      return { ok: true, lease: publicLease(l), groupKey };
    }
    return { ok: false, code: ErrorCode.NO_SEATS };
  }

  /**
   * Replaces the license lines (a reread) keeping every held seat: a pool whose count
   * dropped keeps its holders and grants nothing until use is below the count; a pool no
   * longer licensed keeps its holders until they release (then it disappears). Queue
   * entries for feature names no longer licensed (or now expired) are dropped and returned.
   * Seats that became free are assigned to queued sessions: call takeAssigned() afterwards.
   * @throws {TypeError} when features is not an array
   */
  reload(features: readonly FeatureLine[]): { dropped: QueueEntry[] } {
    this.#load(features);
    for (const name of [...this.#queues.keys()]) this.#pump(name);
    return { dropped: this.takeDropped() };
  }

  // ---------------------------------------------------------------- queries

  /** The leases a session holds (pending ones included). */
  leasesOf(sessionId: bigint): Lease[] {
    return [...(this.#bySession.get(sessionId) ?? [])].map((id) =>
      publicLease(this.#leases.get(id)!),
    );
  }

  /** How many queues the session waits in. */
  queuedOf(sessionId: bigint): number {
    let n = 0;
    for (const q of this.#queues.values()) if (q.some((e) => e.sessionId === sessionId)) n++;
    return n;
  }

  /** Marks the session's queue entries as polled now (heartbeats keep them alive). */
  touch(sessionId: bigint): void {
    const now = this.#now();
    for (const q of this.#queues.values())
      for (const e of q) if (e.sessionId === sessionId) e.lastPoll = now;
  }

  /**
   * Drops queue entries not polled or touched since `before` (ms) and returns them.
   * @throws {TypeError} when before is not a finite number
   */
  dropStaleQueue(before: number): QueueEntry[] {
    if (typeof before !== 'number' || !Number.isFinite(before))
      throw new TypeError('before must be a finite number');
    const out: QueueEntry[] = [];
    for (const [name, q] of [...this.#queues]) {
      const keep = q.filter((e) => e.lastPoll >= before);
      if (keep.length === q.length) continue;
      out.push(...q.filter((e) => e.lastPoll < before));
      if (keep.length) this.#queues.set(name, keep);
      else this.#queues.delete(name);
      this.#pump(name);
    }
    return out;
  }

  /** Features (sorted by name, vendor, version), holders, queue entries and reservations. */
  status(): PoolStatus {
    const now = this.#now();
    const pools = [...this.#pools.values()].sort(
      (a, b) =>
        (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) ||
        (a.vendor < b.vendor ? -1 : a.vendor > b.vendor ? 1 : 0) ||
        compareVersion(a.version, b.version),
    );
    const features: FeatureStatus[] = pools.map((p) => {
      const permanent = p.lines.some((l) => l.expires === null);
      const last = Math.max(0, ...p.lines.map((l) => l.expires ?? 0));
      return {
        name: p.name,
        version: p.version,
        vendor: p.vendor,
        expires: permanent ? 0 : last,
        count: this.#countNow(p, now),
        inUse: p.inUse,
        queued: this.#queues.get(p.name)?.length ?? 0,
        issued: p.issued,
        denied: p.denied,
        expired: this.#expired(p, now),
        removed: p.lines.length === 0,
      };
    });
    const holders: HolderStatus[] = [];
    for (const p of pools) {
      for (const l of this.#leases.values()) {
        if (l.pool !== p) continue;
        holders.push({
          feature: l.feature,
          version: l.version,
          vendor: l.vendor,
          user: l.user,
          host: l.host,
          since: l.grantedAt,
          count: l.count,
          leaseId: l.leaseId,
          sessionId: l.sessionId,
        });
      }
    }
    const queue: QueueStatus[] = [];
    for (const name of [...this.#queues.keys()].sort()) {
      this.#queues.get(name)!.forEach((e, i) => {
        queue.push({
          feature: name,
          version: e.version,
          user: e.user,
          host: e.host,
          since: e.since,
          position: i + 1,
          count: e.count,
          sessionId: e.sessionId,
        });
      });
    }
    const reservations: ReservationStatus[] = [];
    for (const p of pools) {
      const res = this.#reservationsNow(p, now);
      if (res.length === 0) continue;
      const used = this.#reservedUse(p, res);
      res.forEach((r, i) => {
        reservations.push({
          feature: p.name,
          version: p.version,
          vendor: p.vendor,
          type: r.type,
          name: r.name,
          count: r.count,
          inUse: used[i]!,
        });
      });
    }
    return { features, holders, queue, reservations };
  }

  // ---------------------------------------------------------------- persistence

  /** Every lease and queue entry as plain JSON-able objects (ids as decimal strings). */
  snapshot(): Required<PoolSnapshot> {
    const leases: LeaseSnapshot[] = [...this.#leases.values()].map((l) => ({
      leaseId: l.leaseId.toString(),
      sessionId: l.sessionId.toString(),
      user: l.user,
      host: l.host,
      feature: l.feature,
      version: l.version,
      vendor: l.vendor,
      count: l.count,
      grantedAt: l.grantedAt,
      groupKey: l.groupKey,
      pending: l.pending,
    }));
    const queue: QueueSnapshot[] = [];
    for (const q of this.#queues.values()) {
      for (const e of q) queue.push({ ...e, sessionId: e.sessionId.toString() });
    }
    return { version: 1, leases, queue };
  }

  /**
   * Adds persisted leases and queue entries (after a restart). Leases are held again even
   * above a count that dropped meanwhile (as in reload); a lease of a feature no longer
   * licensed is kept until released. Lease ids already present are skipped. Queue entries
   * join the end of their feature's queue in the order given. Nothing is granted here.
   * @throws {TypeError|RangeError} naming the field when the snapshot is malformed
   */
  restore(snapshot: PoolSnapshot): { leases: number; queue: number } {
    if (
      typeof snapshot !== 'object' ||
      snapshot === null ||
      !Array.isArray(snapshot.leases) ||
      !Array.isArray(snapshot.queue)
    ) {
      throw new TypeError('snapshot must have leases and queue arrays');
    }
    let nl = 0;
    snapshot.leases.forEach((s, i) => {
      const leaseId = toId(s.leaseId, `snapshot.leases[${i}].leaseId`);
      const sessionId = toId(s.sessionId, `snapshot.leases[${i}].sessionId`);
      const feature = str(s.feature, `snapshot.leases[${i}].feature`);
      const version = str(s.version, `snapshot.leases[${i}].version`);
      if (!isVersion(version))
        throw new RangeError(`snapshot.leases[${i}].version is not a version`);
      if (!Number.isInteger(s.count) || s.count < 1 || s.count > 0xffff)
        throw new RangeError(`snapshot.leases[${i}].count must be 1..65535`);
      if (typeof s.grantedAt !== 'number')
        throw new TypeError(`snapshot.leases[${i}].grantedAt must be a number`);
      if (leaseId === 0n || this.#leases.has(leaseId)) return;
      const vendor = s.vendor;
      let pool = [...this.#pools.values()].find(
        (p) =>
          p.name === feature &&
          versionKey(p.version) === versionKey(version) &&
          (vendor === undefined || p.vendor === vendor),
      );
      if (!pool) {
        pool = this.#newPool(feature, vendor ?? '', version, []);
        this.#pools.set(pool.key, pool);
      }
      const user = str(s.user, `snapshot.leases[${i}].user`);
      const host = str(s.host, `snapshot.leases[${i}].host`);
      const groupKey = s.groupKey || groupKeyOf(pool.options.dupGroup, user, host, leaseId);
      const g = pool.groups.get(groupKey);
      const extra = g ? Math.max(0, s.count - g.seats) : s.count;
      this.#grant(
        { pool, groupKey, extra, shared: extra === 0 },
        sessionId,
        user,
        host,
        s.count,
        s.grantedAt,
        leaseId,
        s.pending === true,
        false,
        true,
      );
      pool.ceiling = Math.max(pool.ceiling, pool.inUse);
      this.#refresh(pool, this.#now(), true);
      nl++;
    });
    let nq = 0;
    snapshot.queue.forEach((s, i) => {
      const sessionId = toId(s.sessionId, `snapshot.queue[${i}].sessionId`);
      const feature = str(s.feature, `snapshot.queue[${i}].feature`);
      if (!Number.isInteger(s.count) || s.count < 1 || s.count > 0xffff)
        throw new RangeError(`snapshot.queue[${i}].count must be 1..65535`);
      if (typeof s.since !== 'number')
        throw new TypeError(`snapshot.queue[${i}].since must be a number`);
      const q = this.#queues.get(feature) ?? [];
      if (q.some((e) => e.sessionId === sessionId)) return;
      q.push({
        sessionId,
        user: str(s.user, `snapshot.queue[${i}].user`),
        host: str(s.host, `snapshot.queue[${i}].host`),
        feature,
        version: str(s.version, `snapshot.queue[${i}].version`),
        count: s.count,
        since: s.since,
        lastPoll: s.lastPoll ?? s.since,
      });
      this.#queues.set(feature, q);
      nq++;
    });
    return { leases: nl, queue: nq };
  }

  /**
   * Checks the bookkeeping and the seat rule.
   * @throws {Error} describing the first violation
   */
  assertInvariant(): void {
    const now = this.#now();
    const fail = (m: string): never => {
      throw new Error(`license pool invariant: ${m}`);
    };
    let leaseCount = 0;
    for (const p of this.#pools.values()) {
      // Time may have lowered the count (a line expired) since the last change.
      this.#refresh(p, now);
      let inUse = 0;
      for (const [gk, g] of p.groups) {
        if (g.leases.size === 0) fail(`empty group ${gk} in ${p.name}`);
        let max = 0;
        for (const id of g.leases) {
          const l = this.#leases.get(id);
          if (!l || l.pool !== p || l.groupKey !== gk) fail(`lease ${id} misfiled in ${p.name}`);
          max = Math.max(max, l!.count);
          leaseCount++;
        }
        if (g.seats !== max)
          fail(`group ${gk} of ${p.name} has ${g.seats} seats, leases need ${max}`);
        inUse += g.seats;
      }
      if (inUse !== p.inUse)
        fail(`${p.name} ${p.version} counts ${p.inUse} in use, groups hold ${inUse}`);
      const count = this.#countNow(p, now);
      if (p.inUse > Math.max(count, p.ceiling))
        fail(`${p.name} ${p.version}: ${p.inUse} in use > count ${count}`);
      const res = this.#reservationsNow(p, now);
      const used = this.#reservedUse(p, res);
      res.forEach((r, i) => {
        if (used[i]! > r.count)
          fail(`${p.name} ${p.version}: reservation ${reservationKey(r)} over`);
      });
      const reserved = sum(res.map((r) => r.count));
      if (reserved > count) fail(`${p.name} ${p.version}: ${reserved} reserved > count ${count}`);
      const free = p.inUse - sum(used);
      if (free > Math.max(count - reserved, p.freeCeiling))
        fail(
          `${p.name} ${p.version}: ${free} seats in use outside reservations > ${count - reserved} unreserved`,
        );
    }
    if (leaseCount !== this.#leases.size)
      fail(`${this.#leases.size} leases, ${leaseCount} in groups`);
    let indexed = 0;
    for (const [sid, ids] of this.#bySession) {
      if (ids.size === 0) fail(`empty session index ${sid}`);
      for (const id of ids)
        if (this.#leases.get(id)?.sessionId !== sid) fail(`session index of ${sid} lists ${id}`);
      indexed += ids.size;
    }
    if (indexed !== this.#leases.size) fail('session index out of step');
    for (const [name, q] of this.#queues) {
      if (q.length === 0) fail(`empty queue ${name}`);
      const seen = new Set<bigint>();
      for (const e of q) {
        if (seen.has(e.sessionId)) fail(`session ${e.sessionId} twice in queue ${name}`);
        seen.add(e.sessionId);
        if (this.#pendingOf(e.sessionId, name))
          fail(`session ${e.sessionId} queued and assigned for ${name}`);
      }
    }
  }

  // ---------------------------------------------------------------- internals

  #newPool(name: string, vendor: string, version: string, lines: FeatureLine[]): Pool {
    return {
      key: poolKey(name, vendor, version),
      name,
      vendor,
      version,
      lines,
      options: optionsOf(lines),
      groups: new Map(),
      inUse: 0,
      ceiling: 0,
      freeCeiling: 0,
      live: 0,
      issued: 0,
      denied: 0,
    };
  }

  #load(features: readonly FeatureLine[]): void {
    if (!Array.isArray(features)) throw new TypeError('features must be an array of FeatureLine');
    const byKey = new Map<string, FeatureLine[]>();
    for (const f of features) {
      if (typeof f?.name !== 'string' || !isVersion(f.version) || !Number.isInteger(f.count)) {
        throw new TypeError('features must be an array of FeatureLine');
      }
      const k = poolKey(f.name, f.vendor, f.version);
      byKey.set(k, [...(byKey.get(k) ?? []), f]);
    }
    for (const [k, p] of this.#pools) {
      if (byKey.has(k)) continue;
      p.lines = [];
      if (p.groups.size === 0) this.#pools.delete(k);
    }
    const now = this.#now();
    for (const [k, lines] of byKey) {
      const first = lines[0]!;
      let p = this.#pools.get(k);
      if (!p) {
        p = this.#newPool(first.name, first.vendor, first.version, lines);
        this.#pools.set(k, p);
      } else {
        p.lines = lines;
        p.options = optionsOf(lines);
        p.version = first.version;
      }
    }
    for (const p of this.#pools.values()) this.#refresh(p, now, true);
  }

  #countNow(p: Pool, now: number): number {
    let n = 0;
    for (const l of p.lines) if (l.expires === null || now < l.expires) n += l.count;
    return n;
  }

  #expired(p: Pool, now: number): boolean {
    return p.lines.length > 0 && p.lines.every((l) => l.expires !== null && now >= l.expires);
  }

  /**
   * Lets the ceilings follow the count and the unreserved seats, above them only while held
   * seats drain. `moved` (reload, restore, a lease left a shared seat), or a line expired
   * since the last refresh: the seats held now outside reservations are allowed, as held
   * seats are above a dropped count.
   */
  #refresh(p: Pool, now: number, moved = false): void {
    const count = this.#countNow(p, now);
    p.ceiling = Math.max(count, Math.min(p.ceiling, p.inUse));
    const live = p.lines.filter((l) => l.expires === null || now < l.expires).length;
    const res = this.#reservationsNow(p, now);
    const free = count - sum(res.map((r) => r.count));
    const used = res.length === 0 ? 0 : sum(this.#reservedUse(p, res));
    const held = p.inUse - used;
    p.freeCeiling =
      moved || live !== p.live
        ? Math.max(free, held)
        : Math.max(free, Math.min(p.freeCeiling, held));
    p.live = live;
  }

  /** The pool's reservations now: the unexpired lines' entries, summed per user/host. */
  #reservationsNow(p: Pool, now: number): Reservation[] {
    let out: Reservation[] | undefined;
    for (const l of p.lines) {
      if (!l.reservations?.length || (l.expires !== null && now >= l.expires)) continue;
      out ??= [];
      for (const r of l.reservations) {
        const k = reservationKey(r);
        const same = out.find((o) => reservationKey(o) === k);
        if (same) same.count += r.count;
        else out.push({ ...r });
      }
    }
    return out ?? [];
  }

  /**
   * Seats held against each reservation (a maximum flow, see the module comment), as if
   * the group `change.groupKey` held `change.seats` with the requester among its users.
   */
  #reservedUse(
    p: Pool,
    res: readonly Reservation[],
    change?: { groupKey: string; seats: number; user: string; host: string },
  ): number[] {
    if (res.length === 0) return [];
    const demands = new Map<string, { match: number[]; seats: number }>();
    const add = (m: Set<number>, seats: number) => {
      if (m.size === 0 || seats === 0) return;
      const match = [...m].sort((a, b) => a - b);
      const key = match.join(',');
      const d = demands.get(key);
      if (d) d.seats += seats;
      else demands.set(key, { match, seats });
    };
    const mark = (m: Set<number>, user: string, host: string) => {
      res.forEach((r, i) => {
        if (matches(r, user, host)) m.add(i);
      });
    };
    let changed = false;
    for (const [gk, g] of p.groups) {
      const m = new Set<number>();
      for (const id of g.leases) {
        const l = this.#leases.get(id)!;
        mark(m, l.user, l.host);
      }
      let seats = g.seats;
      if (change && gk === change.groupKey) {
        mark(m, change.user, change.host);
        seats = change.seats;
        changed = true;
      }
      add(m, seats);
    }
    if (change && !changed) {
      const m = new Set<number>();
      mark(m, change.user, change.host);
      add(m, change.seats);
    }
    return reservedFlow(
      res.map((r) => r.count),
      [...demands.values()],
    );
  }

  /** The most seats `user` on `host` could ever hold at once: count − others' reservations. */
  #reachable(p: Pool, user: string, host: string, now: number): number {
    const others = this.#reservationsNow(p, now).filter((r) => !matches(r, user, host));
    return this.#countNow(p, now) - sum(others.map((r) => r.count));
  }

  /**
   * Whether `extra` more seats for the group `groupKey` (user on host) fit: within the
   * count, and the seats in use outside reservations within the unreserved seats. When
   * queued entries wait for the pool (`blocked`), only seats reserved for the requester
   * that no waiting entry could use fit: nobody overtakes.
   */
  #fits(
    p: Pool,
    groupKey: string,
    extra: number,
    user: string,
    host: string,
    now: number,
    blocked?: Set<string>,
  ): boolean {
    const count = this.#countNow(p, now);
    if (p.inUse + extra > count) return false;
    const res = this.#reservationsNow(p, now);
    if (res.length === 0) return blocked === undefined;
    if (blocked && res.some((r) => blocked.has(reservationKey(r)) && matches(r, user, host)))
      return false;
    const seats = (p.groups.get(groupKey)?.seats ?? 0) + extra;
    const after = p.inUse + extra - sum(this.#reservedUse(p, res, { groupKey, seats, user, host }));
    if (after > count - sum(res.map((r) => r.count))) return false;
    return blocked === undefined || after <= p.inUse - sum(this.#reservedUse(p, res));
  }

  /** The pools that may serve name ≥ version, lowest version first, or why none can. */
  #resolve(
    name: string,
    version: string,
    vendor: string | undefined,
  ): { candidates: Pool[] } | { code: ResolveCode; countOn?: Pool } {
    const now = this.#now();
    const named = [...this.#pools.values()].filter(
      (p) => p.name === name && p.lines.length > 0 && (vendor === undefined || p.vendor === vendor),
    );
    if (named.length === 0) return { code: ErrorCode.NO_SUCH_FEATURE };
    named.sort((a, b) => compareVersion(a.version, b.version));
    const sufficient =
      version === '' ? named : named.filter((p) => compareVersion(p.version, version) >= 0);
    if (sufficient.length === 0)
      return { code: ErrorCode.NO_SUCH_VERSION, countOn: named[named.length - 1]! };
    const live = sufficient.filter((p) => !this.#expired(p, now));
    if (live.length === 0) return { code: ErrorCode.FEATURE_EXPIRED, countOn: sufficient[0]! };
    return { candidates: live };
  }

  /** Seats attributed to whoever matches `who` in p, optionally as if lease were added. */
  #seatsOf(
    p: Pool,
    who: (l: LeaseRec) => boolean,
    add?: { groupKey: string; count: number },
  ): number {
    let n = 0;
    let addDone = false;
    for (const [gk, g] of p.groups) {
      let mine = false;
      for (const id of g.leases) if (who(this.#leases.get(id)!)) mine = true;
      if (add && gk === add.groupKey) {
        n += Math.max(g.seats, add.count);
        addDone = true;
      } else if (mine) n += g.seats;
    }
    if (add && !addDone) n += add.count;
    return n;
  }

  /**
   * Finds the lowest candidate that can grant. NO_SEATS when some candidate only lacks
   * seats (queueing may help); otherwise the first per-user/per-host code.
   */
  #attempt(
    candidates: Pool[],
    user: string,
    host: string,
    count: number,
    blocked: Blocked,
    leaseId?: bigint,
  ): Attempt {
    const now = this.#now();
    let limit: DenialCode | undefined;
    let seats = false;
    for (const p of candidates) {
      const groupKey = groupKeyOf(p.options.dupGroup, user, host, leaseId);
      const nonce = p.options.dupGroup === 'NONE';
      const g = nonce ? undefined : p.groups.get(groupKey);
      const extra = g ? Math.max(0, count - g.seats) : count;
      if (extra > 0) {
        const checks: [number | null, (l: LeaseRec) => boolean, DenialCode][] = [
          [p.options.maxPerUser, (l) => l.user === user, ErrorCode.USER_MAX],
          [p.options.maxPerHost, (l) => l.host === host, ErrorCode.HOST_MAX],
        ];
        let over: DenialCode | undefined;
        for (const [max, who, code] of checks) {
          if (max === null) continue;
          const before = this.#seatsOf(p, who);
          const after = nonce ? before + count : this.#seatsOf(p, who, { groupKey, count });
          if (after > max && after > before) {
            over = code;
            break;
          }
        }
        if (over !== undefined) {
          limit ??= over;
          continue;
        }
        if (!this.#fits(p, groupKey, extra, user, host, now, blocked.get(p))) {
          seats = true;
          continue;
        }
      }
      return { pool: p, groupKey, extra, shared: extra === 0 && g !== undefined };
    }
    return { code: seats || limit === undefined ? ErrorCode.NO_SEATS : limit };
  }

  #checkNewLeaseId(id: unknown, name: string): void {
    if (typeof id !== 'bigint' || id <= 0n || id > U64_MAX)
      throw new RangeError(`${name} must be a nonzero u64 bigint`);
    if (this.#leases.has(id)) throw new RangeError(`${name} ${id} is already in use`);
  }

  #grant(
    a: { pool: Pool; groupKey: string; extra: number; shared: boolean },
    sessionId: bigint,
    user: string,
    host: string,
    count: number,
    grantedAt: number,
    leaseId: bigint | undefined,
    pending: boolean,
    issue = true,
    force = false,
  ): LeaseRec {
    let id = leaseId;
    if (id === undefined) {
      for (let i = 0; ; i++) {
        const c = this.#newLeaseId();
        if (typeof c === 'bigint' && c > 0n && c <= U64_MAX && !this.#leases.has(c)) {
          id = c;
          break;
        }
        if (i > 100)
          throw new RangeError('options.newLeaseId keeps returning ids in use or out of range');
      }
    }
    const p = a.pool;
    const groupKey = a.groupKey === NEW_LEASE_GROUP ? `L\0${id}` : a.groupKey;
    if (!force && a.extra > 0 && !this.#fits(p, groupKey, a.extra, user, host, this.#now())) {
      throw new Error(`license pool: refusing to over-grant ${p.name} ${p.version}`);
    }
    const l: LeaseRec = {
      leaseId: id,
      sessionId,
      user,
      host,
      feature: p.name,
      version: p.version,
      vendor: p.vendor,
      count,
      grantedAt,
      groupKey,
      pool: p,
      pending,
    };
    const g = p.groups.get(groupKey) ?? { leases: new Set<bigint>(), seats: 0 };
    g.leases.add(id);
    const seats = Math.max(g.seats, count);
    p.inUse += seats - g.seats;
    g.seats = seats;
    p.groups.set(groupKey, g);
    this.#leases.set(id, l);
    const s = this.#bySession.get(sessionId) ?? new Set<bigint>();
    s.add(id);
    this.#bySession.set(sessionId, s);
    if (issue) p.issued++;
    this.#refresh(p, this.#now());
    return l;
  }

  /** Removes a lease from every index; returns the seats freed. */
  #drop(l: LeaseRec): number {
    const p = l.pool;
    const g = p.groups.get(l.groupKey)!;
    g.leases.delete(l.leaseId);
    let seats = 0;
    for (const id of g.leases) seats = Math.max(seats, this.#leases.get(id)!.count);
    const freed = g.seats - seats;
    g.seats = seats;
    p.inUse -= freed;
    if (g.leases.size === 0) p.groups.delete(l.groupKey);
    this.#leases.delete(l.leaseId);
    const s = this.#bySession.get(l.sessionId)!;
    s.delete(l.leaseId);
    if (s.size === 0) this.#bySession.delete(l.sessionId);
    // Leaving a shared seat can take its reservation away from the seats left (a
    // sharer's own reservation no longer applies): those holders keep them.
    this.#refresh(p, this.#now(), true);
    if (p.lines.length === 0 && p.groups.size === 0) this.#pools.delete(p.key);
    return freed;
  }

  #pendingOf(sessionId: bigint, feature: string): LeaseRec | undefined {
    for (const id of this.#bySession.get(sessionId) ?? []) {
      const l = this.#leases.get(id)!;
      if (l.pending && l.feature === feature) return l;
    }
    return undefined;
  }

  /**
   * Grants queued entries of a feature name in order. An entry that lacks seats blocks
   * the pools it could use for everyone behind it (nobody overtakes); an entry held back
   * by its own user/host maximum blocks nobody; an entry whose feature is gone or expired
   * is dropped (its next poll is answered with the reason). Returns the blocked pools.
   */
  #pump(name: string): Blocked {
    const blocked: Blocked = new Map();
    const q = this.#queues.get(name);
    if (!q) return blocked;
    const now = this.#now();
    const keep: QueueEntry[] = [];
    for (const e of q) {
      const res = this.#resolve(name, e.version, undefined);
      if ('code' in res) {
        this.#dropped.push(e);
        continue;
      }
      const a = this.#attempt(res.candidates, e.user, e.host, e.count, blocked);
      if ('code' in a) {
        if (a.code === ErrorCode.NO_SEATS) {
          for (const p of res.candidates) {
            const keys = blocked.get(p) ?? new Set<string>();
            for (const r of this.#reservationsNow(p, now))
              if (matches(r, e.user, e.host)) keys.add(reservationKey(r));
            blocked.set(p, keys);
          }
        }
        keep.push(e);
        continue;
      }
      const l = this.#grant(a, e.sessionId, e.user, e.host, e.count, now, undefined, true);
      this.#assigned.push(publicLease(l));
    }
    if (keep.length) this.#queues.set(name, keep);
    else this.#queues.delete(name);
    return blocked;
  }
}
