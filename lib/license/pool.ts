/**
 * The license pool: the API the daemon calls for every seat decision (checkout, checkin,
 * reclaim, queues, reload, options, idle timeouts, snapshot and restore). Pure state with
 * an injected clock: no sockets, no timers, no I/O. The daemon persists what `snapshot()`
 * returns (or each grant as it happens) and feeds it back with `restore()`.
 *
 * The one rule everything here serves: a grant never makes the seats in use of a feature
 * exceed its licensed count. A count can drop under held seats (reload, an INCREMENT line
 * expiring); the holders keep their seats and nothing new is granted until use is below
 * the count again. `assertInvariant()` checks this and the bookkeeping behind it.
 *
 * This file orchestrates; each concern has its module: the ledger of leases (ledger.ts),
 * admission (admission.ts: versions, limits, options), reservations (reservations.ts),
 * capacity (capacity.ts), the queues (queue.ts), snapshots (snapshot.ts), status
 * (status.ts) and the invariant (invariant.ts). The options file's policy (options.ts)
 * only ever narrows what the license allows.
 */
import { randomBytes } from '@noble/hashes/utils.js';
import { ErrorCode } from '../wire/index.ts';
import {
  access,
  attempt,
  type DenialCode,
  type Placement,
  queueLimit,
  type Requester,
  resolve,
} from './admission.ts';
import { type Blocked, claimKeysOf, fits, reachable, refresh } from './capacity.ts';
import type { FeatureLine } from './file.ts';
import { checkInvariant } from './invariant.ts';
import {
  type CredentialCap,
  groupKeyOf,
  type Lease,
  type LeaseRec,
  Ledger,
  NEW_LEASE_GROUP,
  newPool,
  optionsOf,
  poolKey,
  publicLease,
  U64_MAX,
} from './ledger.ts';
import {
  EMPTY_POLICY,
  hasTimeouts,
  idleTimeoutMs,
  type ParsedOptions,
  type PoolPolicy,
} from './options.ts';
import { type QueueEntry, Queues } from './queue.ts';
import {
  addrOf,
  capOf,
  checkSnapshot,
  type PoolSnapshot,
  readLease,
  readQueueEntry,
  snapshotOf,
  str,
} from './snapshot.ts';
import { type PoolStatus, poolStatus } from './status.ts';
import { isVersion, versionKey } from './version.ts';

export type { DenialCode } from './admission.ts';
export type { CredentialCap, Lease } from './ledger.ts';
export type { QueueEntry } from './queue.ts';
export { reservedFlow } from './reservations.ts';
export type { LeaseSnapshot, PoolSnapshot, QueueSnapshot } from './snapshot.ts';
export type {
  FeatureStatus,
  HolderStatus,
  PoolStatus,
  QueueStatus,
  ReservationStatus,
} from './status.ts';

export interface CheckoutRequest {
  sessionId: bigint;
  user: string;
  host: string;
  /**
   * The client's source IP address (the datagram's, never a declared name); counted with
   * the declared host against MAX_PER_HOST and matched by the options' INTERNET rules.
   * Absent or '' = unknown (only the declared host counts). The daemon should always pass it.
   */
  addr?: string;
  /** The seat cap of the credential the session opened with (keys file), if it has one. */
  credentialCap?: CredentialCap;
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
      feature: string;
      /** Seats freed (0 when the group still holds them). */
      released: number;
    }
  | { ok: false; code: typeof ErrorCode.NOT_HOLDER };

export interface ReclaimRequest {
  leaseId: bigint;
  sessionId: bigint;
  user: string;
  host: string;
  /** The reclaiming client's source address (recorded on the lease, as in checkout). */
  addr?: string;
  /** The session's credential cap (recorded on the lease; a reclaim is not refused by it). */
  credentialCap?: CredentialCap;
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

export interface PoolOptions {
  /** ms UTC. */
  now: () => number;
  /** A fresh nonzero u64 lease id; default random. Ids already in use are drawn again. */
  newLeaseId?: () => bigint;
  /** The options file's policy (parseOptions); default none. See setOptions. */
  policy?: PoolPolicy;
}

export interface RemoveFilter {
  feature?: string;
  user?: string;
  host?: string;
  leaseId?: bigint;
}

/** Everything a new lease record needs: one object, so no argument can slip a place. */
interface Grant {
  placement: Placement;
  sessionId: bigint;
  who: { user: string; host: string; addr: string; credential: string };
  count: number;
  grantedAt: number;
  /** Use this id; default a fresh one. */
  leaseId?: bigint | undefined;
  /** Assigned from the queue, not yet picked up by the session's poll. */
  pending: boolean;
  /** Count it in the pool's `issued` (not for reclaims and restores). */
  issue: boolean;
  /** Skip the capacity check (restore: the seats were held before). */
  force: boolean;
}

function randomLeaseId(): bigint {
  const b = randomBytes(8);
  let v = 0n;
  for (const x of b) v = (v << 8n) | BigInt(x);
  return v;
}

function checkSessionId(v: unknown, name = 'sessionId'): bigint {
  if (typeof v !== 'bigint' || v < 0n || v > U64_MAX)
    throw new TypeError(`${name} must be a u64 bigint`);
  return v;
}

function checkPolicy(p: unknown): PoolPolicy {
  const q = p as PoolPolicy;
  if (
    typeof q !== 'object' ||
    q === null ||
    !Array.isArray(q.include) ||
    !Array.isArray(q.exclude) ||
    !Array.isArray(q.reserve) ||
    !Array.isArray(q.max) ||
    !(q.timeout instanceof Map) ||
    !(q.maxQueue instanceof Map)
  ) {
    throw new TypeError('policy must be a PoolPolicy from parseOptions');
  }
  return q;
}

/** The seat pools of every feature of a license. See the module comment. */
export class LicensePool {
  readonly #now: () => number;
  readonly #newLeaseId: () => bigint;
  readonly #ledger = new Ledger();
  readonly #queues = new Queues();
  #policy: PoolPolicy = EMPTY_POLICY;
  #assigned: Lease[] = [];
  #dropped: QueueEntry[] = [];
  /**
   * A queued session whose seat another server assigns (a site): when a seat frees, such an
   * entry blocks those behind it as if it lacked seats (nobody overtakes it), and is not
   * granted here.
   */
  heldElsewhere: ((sessionId: bigint) => boolean) | undefined;

  /**
   * @param features the served lines of a parsed license (expired lines included)
   * @throws {TypeError} when features is not an array, options.now is not a function or
   *   options.policy is not a PoolPolicy
   */
  constructor(features: readonly FeatureLine[], options: PoolOptions) {
    if (typeof options?.now !== 'function') throw new TypeError('options.now must be a function');
    if (options.newLeaseId !== undefined && typeof options.newLeaseId !== 'function') {
      throw new TypeError('options.newLeaseId must be a function');
    }
    this.#now = options.now;
    this.#newLeaseId = options.newLeaseId ?? randomLeaseId;
    if (options.policy !== undefined) this.#policy = checkPolicy(options.policy);
    this.#load(features);
  }

  // ---------------------------------------------------------------- checkout

  /**
   * Decides a checkout. A request for version v is served by the lowest version ≥ v that
   * can grant; a session already queued for the feature gets its position (a poll) or the
   * seat assigned to it meanwhile. Every call is checkout activity of the session on the
   * feature (options TIMEOUT), whatever its outcome.
   * @throws {TypeError} when a field has the wrong type
   * @throws {RangeError} when req.leaseId is 0, too large or already in use, or req.addr
   *   is not an IP address
   */
  checkout(req: CheckoutRequest): CheckoutResult {
    const sessionId = checkSessionId(req?.sessionId, 'req.sessionId');
    const user = str(req.user, 'req.user');
    const host = str(req.host, 'req.host');
    const addr = addrOf(req.addr, 'req.addr');
    const credential = capOf(req.credentialCap, 'req.credentialCap');
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
    this.#active(sessionId, feature, now);
    const blocked = this.#pump(feature);
    const pending = this.#ledger.pendingOf(sessionId, feature);
    if (pending) {
      pending.pending = false;
      return { status: 'granted', lease: publicLease(pending), fromQueue: true, shared: false };
    }
    const entry = this.#queues.entry(sessionId, feature);
    if (entry) {
      entry.lastPoll = now;
      return {
        status: 'queued',
        position: this.#queues.position(sessionId, feature),
        queueLength: this.#queues.of(feature).length,
        added: false,
      };
    }
    const res = resolve(this.#ledger, feature, version, req.vendor, now);
    if ('code' in res) {
      if (res.countOn) res.countOn.denied++;
      return { status: 'denied', code: res.code };
    }
    const first = res.candidates[0]!;
    const who: Requester = { user, host, addr, credential };
    const refused = access(this.#policy, feature, who);
    if (refused !== undefined) {
      first.denied++;
      return { status: 'denied', code: refused };
    }
    const a = attempt(
      this.#ledger,
      this.#policy,
      res.candidates,
      who,
      req.count,
      blocked,
      now,
      req.leaseId,
    );
    if (!('code' in a)) {
      const lease = this.#grant({
        placement: a,
        sessionId,
        who: { user, host, addr, credential: credential?.id ?? '' },
        count: req.count,
        grantedAt: now,
        leaseId: req.leaseId,
        pending: false,
        issue: true,
        force: false,
      });
      return { status: 'granted', lease: publicLease(lease), fromQueue: false, shared: a.shared };
    }
    if (a.code === ErrorCode.NO_SEATS && req.wait) {
      const allowing = res.candidates.filter(
        (p) => p.options.queue && reachable(p, who, now, this.#policy) >= req.count,
      );
      if (allowing.length > 0) {
        const length = this.#queues.of(feature).length;
        if (length >= queueLimit(this.#policy, feature, allowing)) {
          first.denied++;
          return { status: 'denied', code: ErrorCode.QUEUE_FULL };
        }
        this.#queues.push({
          sessionId,
          user,
          host,
          addr,
          credential,
          feature,
          version,
          count: req.count,
          since: now,
          lastPoll: now,
        });
        return { status: 'queued', position: length + 1, queueLength: length + 1, added: true };
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
   * (reload, time) or the options now exclude them; each session's next poll is answered
   * with the reason.
   */
  takeDropped(): QueueEntry[] {
    const out = this.#dropped;
    this.#dropped = [];
    return out;
  }

  /**
   * Gives a lease back (checkout activity on the feature for the session's other leases).
   * @throws {TypeError} when an id is not a u64 bigint
   */
  checkin(sessionId: bigint, leaseId: bigint): CheckinResult {
    checkSessionId(sessionId);
    checkSessionId(leaseId, 'leaseId');
    const l = this.#ledger.leases.get(leaseId);
    if (!l || l.sessionId !== sessionId) return { ok: false, code: ErrorCode.NOT_HOLDER };
    const released = this.#drop(l);
    this.#active(sessionId, l.feature, this.#now());
    for (const name of this.#affected(l)) this.#pump(name);
    return { ok: true, lease: publicLease(l), feature: l.feature, released };
  }

  /**
   * Leaves the queue of a feature; true when the session was in it.
   * @throws {TypeError} when sessionId is not a u64 bigint or feature not a string
   */
  leaveQueue(sessionId: bigint, feature: string): boolean {
    checkSessionId(sessionId);
    str(feature, 'feature');
    if (!this.#queues.remove(sessionId, feature)) return false;
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
    for (const l of [...(this.#ledger.bySession.get(sessionId) ?? [])]) {
      this.#drop(l);
      leases.push(publicLease(l));
      for (const name of this.#affected(l)) touched.add(name);
    }
    const queued = this.#queues.featuresOf(sessionId);
    for (const name of queued) {
      this.#queues.remove(sessionId, name);
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
    return this.#release(
      [...this.#ledger.leases.values()].filter(
        (l) =>
          (feature === undefined || l.feature === feature) &&
          (user === undefined || l.user === user) &&
          (host === undefined || l.host === host) &&
          (leaseId === undefined || l.leaseId === leaseId),
      ),
    );
  }

  /**
   * Releases one lease whoever holds it (e.g. not reclaimed before the end of restart grace).
   * @throws {TypeError} when leaseId is not a u64 bigint
   */
  removeLease(leaseId: bigint): Lease | undefined {
    checkSessionId(leaseId, 'leaseId');
    const l = this.#ledger.leases.get(leaseId);
    return l ? this.#release([l])[0] : undefined;
  }

  /**
   * Releases the seats idle longer than their feature's options TIMEOUT (or TIMEOUTALL):
   * leases whose holder has made no checkout activity on the feature (CHECKOUT, CHECKIN
   * or RECLAIM by that session naming it) for that long, heartbeats notwithstanding.
   * Freed seats go to queued sessions (takeAssigned). The daemon calls this on its tick.
   * @param now ms UTC; default the pool's clock
   * @throws {TypeError} when now is given and not a finite number
   */
  expireIdle(now: number = this.#now()): Lease[] {
    if (typeof now !== 'number' || !Number.isFinite(now))
      throw new TypeError('now must be a finite number');
    if (!hasTimeouts(this.#policy)) return [];
    const idle: LeaseRec[] = [];
    for (const l of this.#ledger.leases.values()) {
      const ms = idleTimeoutMs(this.#policy, l.feature);
      if (ms !== null && now - l.lastActive >= ms) idle.push(l);
    }
    return this.#release(idle);
  }

  /**
   * Takes back a lease presented in a ticket after a restart or failover, same lease id.
   * Never exceeds the count nor takes seats reserved for others (NO_SEATS: the leases of
   * one past state always fit back, in any order); ignores queues, per-user/host maxima,
   * credential caps and the options' INCLUDE/EXCLUDE and MAX, which applied when the
   * lease was first granted. Checkout activity of the session on the feature.
   * @throws {TypeError} when a field has the wrong type
   * @throws {RangeError} when req.addr is not an IP address
   */
  reclaim(req: ReclaimRequest): ReclaimResult {
    const sessionId = checkSessionId(req?.sessionId, 'req.sessionId');
    const leaseId = checkSessionId(req.leaseId, 'req.leaseId');
    const user = str(req.user, 'req.user');
    const host = str(req.host, 'req.host');
    const addr = addrOf(req.addr, 'req.addr');
    const credential = capOf(req.credentialCap, 'req.credentialCap')?.id ?? '';
    const feature = str(req.feature, 'req.feature');
    const version = str(req.version, 'req.version');
    if (typeof req.count !== 'number' || !Number.isInteger(req.count))
      throw new TypeError('req.count must be an integer');
    if (typeof req.grantedAt !== 'number' || !Number.isFinite(req.grantedAt)) {
      throw new TypeError('req.grantedAt must be a finite number');
    }
    if (this.#ledger.leases.has(leaseId)) return { ok: false, code: ErrorCode.ALREADY_RECLAIMED };
    if (leaseId === 0n || req.count < 1 || req.count > 0xffff || !isVersion(version)) {
      return { ok: false, code: ErrorCode.BAD_REQUEST };
    }
    const now = this.#now();
    const res = resolve(this.#ledger, feature, version, undefined, now);
    if ('code' in res) return { ok: false, code: res.code };
    this.#active(sessionId, feature, now);
    const who = { user, host, addr };
    // The exact version first: the lease was granted from it.
    const exact = res.candidates.filter((p) => versionKey(p.version) === versionKey(version));
    for (const p of [...exact, ...res.candidates.filter((c) => !exact.includes(c))]) {
      const groupKey = groupKeyOf(p.options.dupGroup, user, host, leaseId);
      const g = p.groups.get(groupKey);
      const extra = g ? Math.max(0, req.count - g.seats) : req.count;
      if (extra > 0 && !fits(p, groupKey, extra, who, now, this.#policy)) continue;
      const l = this.#grant({
        placement: { pool: p, groupKey, extra, shared: extra === 0 },
        sessionId,
        who: { ...who, credential },
        count: req.count,
        grantedAt: req.grantedAt,
        leaseId,
        pending: false,
        issue: false,
        force: false,
      });
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
    for (const name of this.#queues.features()) this.#pump(name);
    return { dropped: this.takeDropped() };
  }

  /**
   * Applies an options file's policy (parseOptions), replacing the previous one, or none
   * with null. All or nothing: a parse with problems is refused whole and nothing changes.
   * Held seats are kept even where the new policy would not grant them (an EXCLUDE, a
   * lower MAX, a new RESERVE): it governs new grants; `remove` takes seats back. Queued
   * entries the policy now excludes are dropped and returned; seats a policy no longer
   * reserves go to queued sessions (takeAssigned).
   * @throws {TypeError} when options is not a ParsedOptions, a PoolPolicy or null
   * @throws {RangeError} when the parse has problems (the message lists them)
   */
  setOptions(options: ParsedOptions | PoolPolicy | null): { dropped: QueueEntry[] } {
    let policy: PoolPolicy;
    if (options === null) policy = EMPTY_POLICY;
    else if (typeof options === 'object' && 'problems' in options) {
      if (!Array.isArray(options.problems))
        throw new TypeError('options.problems must be an array');
      if (options.problems.length > 0) {
        throw new RangeError(options.problems.map((p) => p.text).join('\n'));
      }
      policy = checkPolicy(options.policy);
    } else policy = checkPolicy(options);
    this.#policy = policy;
    const now = this.#now();
    for (const p of this.#ledger.pools.values()) refresh(p, now, policy, true);
    for (const name of this.#queues.features()) this.#pump(name);
    return { dropped: this.takeDropped() };
  }

  /**
   * Grants and denials counted so far, per pool (`feature\0vendor\0version`), for the state
   * store: they are the site's history, not the licensed count, and survive restarts.
   */
  tallies(): Record<string, { grants: number; denials: number }> {
    const out: Record<string, { grants: number; denials: number }> = {};
    for (const [k, p] of this.#ledger.pools) {
      if (p.issued || p.denied) out[k] = { grants: p.issued, denials: p.denied };
    }
    return out;
  }

  /**
   * Restores tallies saved by `tallies()` (pools no longer licensed are ignored).
   * @throws {TypeError} when t is not an object of {grants, denials} counts
   */
  restoreTallies(t: Record<string, { grants: number; denials: number }>): void {
    if (typeof t !== 'object' || t === null) throw new TypeError('tallies must be an object');
    for (const [k, v] of Object.entries(t)) {
      const p = this.#ledger.pools.get(k);
      if (!p) continue;
      if (!Number.isSafeInteger(v?.grants) || !Number.isSafeInteger(v?.denials)) {
        throw new TypeError(`tallies[${JSON.stringify(k)}] must hold integer grants and denials`);
      }
      p.issued = v.grants;
      p.denied = v.denials;
    }
  }

  /** The policy in force (EMPTY_POLICY when no options file is applied). */
  get policy(): PoolPolicy {
    return this.#policy;
  }

  // ---------------------------------------------------------------- queries

  /** Whether any session holds lease `leaseId`. */
  holdsLease(leaseId: bigint): boolean {
    return this.#ledger.leases.has(leaseId);
  }

  /** The leases a session holds (pending ones included). */
  leasesOf(sessionId: bigint): Lease[] {
    return [...(this.#ledger.bySession.get(sessionId) ?? [])].map(publicLease);
  }

  /**
   * How many leases the session holds, not counting those in `skip` (the daemon's unclaimed
   * set): the HEARTBEAT_ACK's count, without building the lease list per heartbeat.
   */
  leaseCount(sessionId: bigint, skip?: ReadonlySet<bigint>): number {
    const own = this.#ledger.bySession.get(sessionId);
    if (!own) return 0;
    if (!skip || skip.size === 0) return own.size;
    let n = 0;
    for (const l of own) if (!skip.has(l.leaseId)) n++;
    return n;
  }

  /** How many queues the session waits in (its own entries only are looked at). */
  queuedOf(sessionId: bigint): number {
    return this.#queues.countOf(sessionId);
  }

  /** Marks the session's queue entries as polled now (heartbeats keep them alive). */
  touch(sessionId: bigint): void {
    this.#queues.touch(sessionId, this.#now());
  }

  /**
   * Drops queue entries not polled or touched since `before` (ms) and returns them.
   * @throws {TypeError} when before is not a finite number
   */
  dropStaleQueue(before: number): QueueEntry[] {
    if (typeof before !== 'number' || !Number.isFinite(before))
      throw new TypeError('before must be a finite number');
    const out: QueueEntry[] = [];
    for (const name of this.#queues.features()) {
      const gone = this.#queues.filter(name, (e) => e.lastPoll >= before);
      if (gone.length === 0) continue;
      out.push(...gone);
      this.#pump(name);
    }
    return out;
  }

  /** Features (sorted by name, vendor, version), holders, queue entries and reservations. */
  status(): PoolStatus {
    return poolStatus(this.#ledger, this.#queues, this.#policy, this.#now());
  }

  // ---------------------------------------------------------------- persistence

  /** Every lease and queue entry as plain JSON-able objects (ids as decimal strings). */
  snapshot(): Required<PoolSnapshot> {
    return snapshotOf(this.#ledger, this.#queues);
  }

  /**
   * Adds persisted leases and queue entries (after a restart). Leases are held again even
   * above a count that dropped meanwhile (as in reload); a lease of a feature no longer
   * licensed is kept until released. Lease ids already present are skipped. Queue entries
   * join the end of their feature's queue in the order given. Nothing is granted here.
   * @throws {TypeError|RangeError} naming the field when the snapshot is malformed
   */
  restore(snapshot: PoolSnapshot): { leases: number; queue: number } {
    checkSnapshot(snapshot);
    const now = this.#now();
    let nl = 0;
    snapshot.leases.forEach((s, i) => {
      const r = readLease(s, i);
      if (r.leaseId === 0n || this.#ledger.leases.has(r.leaseId)) return;
      let pool = [...this.#ledger.pools.values()].find(
        (p) =>
          p.name === r.feature &&
          versionKey(p.version) === versionKey(r.version) &&
          (r.vendor === undefined || p.vendor === r.vendor),
      );
      if (!pool) {
        pool = newPool(r.feature, r.vendor ?? '', r.version, []);
        this.#ledger.pools.set(pool.key, pool);
      }
      const groupKey = r.groupKey ?? groupKeyOf(pool.options.dupGroup, r.user, r.host, r.leaseId);
      const g = pool.groups.get(groupKey);
      const extra = g ? Math.max(0, r.count - g.seats) : r.count;
      const l = this.#grant({
        placement: { pool, groupKey, extra, shared: extra === 0 },
        sessionId: r.sessionId,
        who: { user: r.user, host: r.host, addr: r.addr, credential: r.credential },
        count: r.count,
        grantedAt: r.grantedAt,
        leaseId: r.leaseId,
        pending: r.pending,
        issue: false,
        force: true,
      });
      l.lastActive = r.lastActive ?? now;
      pool.ceiling = Math.max(pool.ceiling, pool.inUse);
      refresh(pool, now, this.#policy, true);
      nl++;
    });
    let nq = 0;
    snapshot.queue.forEach((s, i) => {
      if (this.#queues.push(readQueueEntry(s, i))) nq++;
    });
    return { leases: nl, queue: nq };
  }

  /**
   * Checks the bookkeeping and the seat rule.
   * @throws {Error} describing the first violation
   */
  assertInvariant(): void {
    checkInvariant(this.#ledger, this.#queues, this.#policy, this.#now());
  }

  // ---------------------------------------------------------------- internals

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
    const pools = this.#ledger.pools;
    for (const [k, p] of pools) {
      if (byKey.has(k)) continue;
      p.lines = [];
      if (p.groups.size === 0) pools.delete(k);
    }
    const now = this.#now();
    for (const [k, lines] of byKey) {
      const first = lines[0]!;
      const p = pools.get(k);
      if (!p) pools.set(k, newPool(first.name, first.vendor, first.version, lines));
      else {
        p.lines = lines;
        p.options = optionsOf(lines);
        p.version = first.version;
      }
    }
    for (const p of pools.values()) refresh(p, now, this.#policy, true);
  }

  #checkNewLeaseId(id: unknown, name: string): void {
    if (typeof id !== 'bigint' || id <= 0n || id > U64_MAX)
      throw new RangeError(`${name} must be a nonzero u64 bigint`);
    if (this.#ledger.leases.has(id)) throw new RangeError(`${name} ${id} is already in use`);
  }

  #freshLeaseId(): bigint {
    for (let i = 0; ; i++) {
      const c = this.#newLeaseId();
      if (typeof c === 'bigint' && c > 0n && c <= U64_MAX && !this.#ledger.leases.has(c)) return c;
      if (i > 100)
        throw new RangeError('options.newLeaseId keeps returning ids in use or out of range');
    }
  }

  #grant(g: Grant): LeaseRec {
    const id = g.leaseId ?? this.#freshLeaseId();
    const { pool: p, extra } = g.placement;
    const groupKey = g.placement.groupKey === NEW_LEASE_GROUP ? `L\0${id}` : g.placement.groupKey;
    const now = this.#now();
    if (!g.force && extra > 0 && !fits(p, groupKey, extra, g.who, now, this.#policy)) {
      throw new Error(`license pool: refusing to over-grant ${p.name} ${p.version}`);
    }
    const l: LeaseRec = {
      leaseId: id,
      sessionId: g.sessionId,
      user: g.who.user,
      host: g.who.host,
      addr: g.who.addr,
      credential: g.who.credential,
      feature: p.name,
      version: p.version,
      vendor: p.vendor,
      count: g.count,
      grantedAt: g.grantedAt,
      groupKey,
      pool: p,
      pending: g.pending,
      lastActive: now,
    };
    this.#ledger.add(l);
    if (g.issue) p.issued++;
    refresh(p, now, this.#policy);
    return l;
  }

  /** Removes a lease; returns the seats freed. */
  #drop(l: LeaseRec): number {
    const freed = this.#ledger.remove(l);
    const p = l.pool;
    // Leaving a shared seat can take its reservation away from the seats left (a
    // sharer's own reservation no longer applies): those holders keep them.
    refresh(p, this.#now(), this.#policy, true);
    if (p.lines.length === 0 && p.groups.size === 0) this.#ledger.pools.delete(p.key);
    return freed;
  }

  /** Drops leases, then offers the seats to the queues of their features. */
  #release(leases: readonly LeaseRec[]): Lease[] {
    const touched = new Set<string>();
    const out: Lease[] = [];
    for (const l of leases) {
      this.#drop(l);
      out.push(publicLease(l));
      for (const name of this.#affected(l)) touched.add(name);
    }
    for (const name of touched) this.#pump(name);
    return out;
  }

  /**
   * The queues a dropped lease's seats may unblock: its feature's, and those where entries
   * of its credential wait (a credential cap spans features).
   */
  #affected(l: LeaseRec): string[] {
    if (l.credential === '') return [l.feature];
    return [l.feature, ...this.#queues.featuresOfCredential(l.credential)];
  }

  /** Checkout activity of a session on a feature: its leases of it are not idle. */
  #active(sessionId: bigint, feature: string, now: number): void {
    for (const l of this.#ledger.bySession.get(sessionId) ?? [])
      if (l.feature === feature) l.lastActive = now;
  }

  /**
   * Grants queued entries of a feature name in order. An entry that lacks seats blocks
   * the pools it could use for everyone behind it (nobody overtakes); an entry held back
   * by its own limits blocks nobody; an entry whose feature is gone or expired, or that
   * the options now exclude, is dropped (its next poll is answered with the reason).
   * Returns the blocked pools.
   */
  #pump(name: string): Blocked {
    const blocked: Blocked = new Map();
    if (this.#queues.of(name).length === 0) return blocked;
    const now = this.#now();
    const granted = new Set<bigint>();
    const gone = this.#queues.filter(name, (e) => {
      const res = resolve(this.#ledger, name, e.version, undefined, now);
      if ('code' in res || access(this.#policy, name, e) !== undefined) return false;
      const a = attempt(this.#ledger, this.#policy, res.candidates, e, e.count, blocked, now);
      const away = !('code' in a) && this.heldElsewhere?.(e.sessionId) === true;
      if ('code' in a || away) {
        if (away || ('code' in a && a.code === ErrorCode.NO_SEATS)) {
          for (const p of res.candidates) {
            const keys = blocked.get(p) ?? new Set<string>();
            for (const k of claimKeysOf(p, e, now, this.#policy)) keys.add(k);
            blocked.set(p, keys);
          }
        }
        return true;
      }
      const l = this.#grant({
        placement: a,
        sessionId: e.sessionId,
        who: { user: e.user, host: e.host, addr: e.addr, credential: e.credential?.id ?? '' },
        count: e.count,
        grantedAt: now,
        pending: true,
        issue: true,
        force: false,
      });
      this.#assigned.push(publicLease(l));
      granted.add(e.sessionId);
      return false;
    });
    for (const e of gone) if (!granted.has(e.sessionId)) this.#dropped.push(e);
    return blocked;
  }
}
