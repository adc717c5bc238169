/**
 * The ledger of a license pool: one record per feature pool (name, vendor, version), its
 * duplicate groups and seats in use, and every lease indexed by id, by session and by
 * credential. Bookkeeping only: whether a lease may be added is decided by admission and
 * capacity (lib/license/admission.ts, capacity.ts); the ledger adds and removes exactly.
 */
import type { DupGroup, FeatureLine, FeatureOptions } from './file.ts';
import { versionKey } from './version.ts';

/** One checkout: a lease on `count` seats of one feature pool, held by one session. */
export interface Lease {
  leaseId: bigint;
  sessionId: bigint;
  user: string;
  host: string;
  /** Canonical source address of the session when granted; '' = unknown. */
  addr: string;
  /** Credential the session opened with, when the checkout named a cap; '' = none. */
  credential: string;
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

/** A seat cap shared by every session opened with one credential (keys file). */
export interface CredentialCap {
  id: string;
  /** Seats, over every feature, the credential's sessions may hold together. */
  seats: number;
}

export interface Group {
  leases: Map<bigint, LeaseRec>;
  seats: number;
}

export interface Pool {
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
   * use drains after a reload, a restore, new options or a line expiring moved them.
   */
  freeCeiling: number;
  /** Lines serving at the last refresh: a change means a line expired. */
  live: number;
  issued: number;
  denied: number;
}

export interface LeaseRec extends Lease {
  pool: Pool;
  pending: boolean;
  /** ms UTC of the holder's last checkout activity on the feature (options TIMEOUT). */
  lastActive: number;
}

export const U64_MAX = 0xffffffffffffffffn;

const DEFAULT_OPTIONS: FeatureOptions = {
  dupGroup: 'UHD',
  maxPerUser: null,
  maxPerHost: null,
  queue: true,
  queueMax: null,
  heartbeat: null,
};

/** Group key of a NONE lease whose id is not drawn yet; the grant replaces it. */
export const NEW_LEASE_GROUP = 'L\0?';

/** The duplicate group a checkout by user on host joins. */
export function groupKeyOf(
  g: DupGroup,
  user: string,
  host: string,
  leaseId: bigint | undefined,
): string {
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
export function optionsOf(lines: readonly FeatureLine[]): FeatureOptions {
  return (lines.find((l) => !l.expired) ?? lines[0])?.options ?? DEFAULT_OPTIONS;
}

export function poolKey(name: string, vendor: string, version: string): string {
  return `${name}\0${vendor}\0${versionKey(version)}`;
}

export function newPool(name: string, vendor: string, version: string, lines: FeatureLine[]): Pool {
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

export function publicLease(l: LeaseRec): Lease {
  return {
    leaseId: l.leaseId,
    sessionId: l.sessionId,
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
  };
}

function addTo<K, V>(index: Map<K, Set<V>>, k: K, v: V): void {
  const s = index.get(k);
  if (s) s.add(v);
  else index.set(k, new Set([v]));
}

function removeFrom<K, V>(index: Map<K, Set<V>>, k: K, v: V): void {
  const s = index.get(k);
  if (!s) return;
  s.delete(v);
  if (s.size === 0) index.delete(k);
}

/** Every pool and lease. See the module comment. */
export class Ledger {
  readonly pools = new Map<string, Pool>();
  readonly leases = new Map<bigint, LeaseRec>();
  readonly bySession = new Map<bigint, Set<LeaseRec>>();
  readonly byCredential = new Map<string, Set<LeaseRec>>();

  /** Files a lease in its pool's group; returns the seats it added to the pool. */
  add(l: LeaseRec): number {
    const p = l.pool;
    const g = p.groups.get(l.groupKey) ?? { leases: new Map<bigint, LeaseRec>(), seats: 0 };
    g.leases.set(l.leaseId, l);
    const seats = Math.max(g.seats, l.count);
    const added = seats - g.seats;
    p.inUse += added;
    g.seats = seats;
    p.groups.set(l.groupKey, g);
    this.leases.set(l.leaseId, l);
    addTo(this.bySession, l.sessionId, l);
    if (l.credential !== '') addTo(this.byCredential, l.credential, l);
    return added;
  }

  /** Removes a lease from every index; returns the seats freed. */
  remove(l: LeaseRec): number {
    const p = l.pool;
    const g = p.groups.get(l.groupKey)!;
    g.leases.delete(l.leaseId);
    let seats = 0;
    for (const o of g.leases.values()) seats = Math.max(seats, o.count);
    const freed = g.seats - seats;
    g.seats = seats;
    p.inUse -= freed;
    if (g.leases.size === 0) p.groups.delete(l.groupKey);
    this.leases.delete(l.leaseId);
    removeFrom(this.bySession, l.sessionId, l);
    if (l.credential !== '') removeFrom(this.byCredential, l.credential, l);
    return freed;
  }

  /** The lease of a session assigned from the queue for a feature and not yet picked up. */
  pendingOf(sessionId: bigint, feature: string): LeaseRec | undefined {
    for (const l of this.bySession.get(sessionId) ?? []) {
      if (l.pending && l.feature === feature) return l;
    }
    return undefined;
  }

  /** The pools of a feature name (every vendor and version). */
  poolsNamed(name: string): Pool[] {
    const out: Pool[] = [];
    for (const p of this.pools.values()) if (p.name === name) out.push(p);
    return out;
  }
}
