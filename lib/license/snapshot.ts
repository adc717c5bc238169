/**
 * Snapshots: the pool's leases and queue entries as plain JSON-able objects (ids as
 * decimal strings) for the daemon to persist, and the checks that turn a persisted
 * snapshot back into records the pool can restore (lib/license/pool.ts `restore`).
 */
import { canonicalAddr } from './address.ts';
import { type CredentialCap, type Ledger, U64_MAX } from './ledger.ts';
import type { QueueEntry, Queues } from './queue.ts';
import { isVersion } from './version.ts';

type Id = bigint | string;
/** A lease as persisted: ids may be strings (decimal), so the object is JSON-able. */
export interface LeaseSnapshot {
  leaseId: Id;
  sessionId: Id;
  user: string;
  host: string;
  /** Source address; absent or '' = unknown (not counted against MAX_PER_HOST). */
  addr?: string;
  /** Credential id of a capped session; absent or '' = none. */
  credential?: string;
  feature: string;
  version: string;
  vendor?: string;
  count: number;
  grantedAt: number;
  groupKey?: string;
  /** Assigned from the queue and not yet picked up by the session's poll. */
  pending?: boolean;
  /** ms UTC of the last checkout activity (options TIMEOUT); absent = restore time. */
  lastActive?: number;
}
export interface QueueSnapshot {
  sessionId: Id;
  user: string;
  host: string;
  addr?: string;
  credential?: CredentialCap;
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

/** A persisted lease, checked. */
export interface RestoredLease {
  leaseId: bigint;
  sessionId: bigint;
  user: string;
  host: string;
  addr: string;
  credential: string;
  feature: string;
  version: string;
  vendor: string | undefined;
  count: number;
  grantedAt: number;
  groupKey: string | undefined;
  pending: boolean;
  lastActive: number | undefined;
}

export function toId(v: unknown, name: string): bigint {
  let id: bigint;
  if (typeof v === 'bigint') id = v;
  else if (typeof v === 'string' && /^[0-9]{1,20}$/.test(v)) id = BigInt(v);
  else throw new TypeError(`${name} must be a bigint or a decimal string`);
  if (id > U64_MAX) throw new RangeError(`${name} must fit in a u64`);
  return id;
}

export function str(v: unknown, name: string): string {
  if (typeof v !== 'string') throw new TypeError(`${name} must be a string`);
  return v;
}

/**
 * A canonical address from a request or a snapshot ('' when absent).
 * @throws {TypeError|RangeError} naming the field when it is not '' or an IP address
 */
export function addrOf(v: unknown, name: string): string {
  if (v === undefined) return '';
  try {
    return canonicalAddr(str(v, name));
  } catch (e) {
    throw e instanceof RangeError ? new RangeError(`${name}: ${e.message}`) : e;
  }
}

/**
 * A credential cap from a request or a snapshot.
 * @throws {TypeError} naming the field when malformed
 */
export function capOf(v: unknown, name: string): CredentialCap | undefined {
  if (v === undefined) return undefined;
  const c = v as CredentialCap;
  if (typeof c !== 'object' || c === null || typeof c.id !== 'string' || c.id === '')
    throw new TypeError(`${name}.id must be a nonempty string`);
  if (!Number.isInteger(c.seats) || c.seats < 0)
    throw new TypeError(`${name}.seats must be a non-negative integer`);
  return { id: c.id, seats: c.seats };
}

function seats(v: unknown, name: string): number {
  if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > 0xffff)
    throw new RangeError(`${name} must be 1..65535`);
  return v as number;
}

/** Every lease and queue entry as plain JSON-able objects. */
export function snapshotOf(ledger: Ledger, queues: Queues): Required<PoolSnapshot> {
  const leases: LeaseSnapshot[] = [...ledger.leases.values()].map((l) => ({
    leaseId: l.leaseId.toString(),
    sessionId: l.sessionId.toString(),
    user: l.user,
    host: l.host,
    addr: l.addr,
    credential: l.credential,
    feature: l.feature,
    version: l.version,
    vendor: l.vendor,
    count: l.count,
    grantedAt: l.grantedAt,
    groupKey: l.groupKey,
    pending: l.pending,
    lastActive: l.lastActive,
  }));
  const queue: QueueSnapshot[] = [];
  for (const e of queues.entries()) {
    const { credential, ...rest } = e;
    queue.push({
      ...rest,
      sessionId: e.sessionId.toString(),
      ...(credential ? { credential: { ...credential } } : {}),
    });
  }
  return { version: 1, leases, queue };
}

/**
 * Checks a snapshot's shape.
 * @throws {TypeError} when it has no leases and queue arrays
 */
export function checkSnapshot(snapshot: PoolSnapshot): void {
  if (
    typeof snapshot !== 'object' ||
    snapshot === null ||
    !Array.isArray(snapshot.leases) ||
    !Array.isArray(snapshot.queue)
  ) {
    throw new TypeError('snapshot must have leases and queue arrays');
  }
}

/**
 * One persisted lease, checked.
 * @throws {TypeError|RangeError} naming the field when malformed
 */
export function readLease(s: LeaseSnapshot, i: number): RestoredLease {
  const f = `snapshot.leases[${i}]`;
  const leaseId = toId(s.leaseId, `${f}.leaseId`);
  const sessionId = toId(s.sessionId, `${f}.sessionId`);
  const feature = str(s.feature, `${f}.feature`);
  const version = str(s.version, `${f}.version`);
  if (!isVersion(version)) throw new RangeError(`${f}.version is not a version`);
  const count = seats(s.count, `${f}.count`);
  if (typeof s.grantedAt !== 'number') throw new TypeError(`${f}.grantedAt must be a number`);
  if (s.lastActive !== undefined && typeof s.lastActive !== 'number')
    throw new TypeError(`${f}.lastActive must be a number`);
  return {
    leaseId,
    sessionId,
    user: str(s.user, `${f}.user`),
    host: str(s.host, `${f}.host`),
    addr: addrOf(s.addr, `${f}.addr`),
    credential: s.credential === undefined ? '' : str(s.credential, `${f}.credential`),
    feature,
    version,
    vendor: s.vendor,
    count,
    grantedAt: s.grantedAt,
    groupKey: s.groupKey || undefined,
    pending: s.pending === true,
    lastActive: s.lastActive,
  };
}

/**
 * One persisted queue entry, checked.
 * @throws {TypeError|RangeError} naming the field when malformed
 */
export function readQueueEntry(s: QueueSnapshot, i: number): QueueEntry {
  const f = `snapshot.queue[${i}]`;
  const sessionId = toId(s.sessionId, `${f}.sessionId`);
  const feature = str(s.feature, `${f}.feature`);
  const count = seats(s.count, `${f}.count`);
  if (typeof s.since !== 'number') throw new TypeError(`${f}.since must be a number`);
  return {
    sessionId,
    user: str(s.user, `${f}.user`),
    host: str(s.host, `${f}.host`),
    addr: addrOf(s.addr, `${f}.addr`),
    credential: capOf(s.credential, `${f}.credential`),
    feature,
    version: str(s.version, `${f}.version`),
    count,
    since: s.since,
    lastPoll: s.lastPoll ?? s.since,
  };
}
