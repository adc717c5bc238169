/**
 * Pool status: the features with their counts and use, the holders, the queues and the
 * reservations, in a stable order, for STATUS replies and the operator's tools.
 */
import { expiredPool } from './capacity.ts';
import type { Ledger } from './ledger.ts';
import type { PoolPolicy } from './options.ts';
import type { Queues } from './queue.ts';
import { type Claim, claimsOf, countNow, reservedUse } from './reservations.ts';
import { compareVersion } from './version.ts';

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
  /** Source address; '' = unknown. */
  addr: string;
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
/** One reservation of a pool (a license one summed over its unexpired lines). */
export interface ReservationStatus {
  feature: string;
  version: string;
  vendor: string;
  /** user and host: the license's RESERVE= or the options file's; the others: options file. */
  type: Claim['type'];
  /** The user, host, group name or address range. */
  name: string;
  /** Seats reserved. */
  count: number;
  /** Reserved seats the matching holders hold now (≤ count). */
  inUse: number;
}
export interface PoolStatus {
  features: FeatureStatus[];
  holders: HolderStatus[];
  queue: QueueStatus[];
  /** Pools in the order of `features`, each pool's license reservations first, then the options'. */
  reservations: ReservationStatus[];
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Features (sorted by name, vendor, version), holders, queue entries and reservations. */
export function poolStatus(
  ledger: Ledger,
  queues: Queues,
  policy: PoolPolicy,
  now: number,
): PoolStatus {
  const pools = [...ledger.pools.values()].sort(
    (a, b) =>
      cmp(a.name, b.name) || cmp(a.vendor, b.vendor) || compareVersion(a.version, b.version),
  );
  const features: FeatureStatus[] = pools.map((p) => {
    const permanent = p.lines.some((l) => l.expires === null);
    const last = Math.max(0, ...p.lines.map((l) => l.expires ?? 0));
    return {
      name: p.name,
      version: p.version,
      vendor: p.vendor,
      expires: permanent ? 0 : last,
      count: countNow(p, now),
      inUse: p.inUse,
      queued: queues.of(p.name).length,
      issued: p.issued,
      denied: p.denied,
      expired: expiredPool(p, now),
      removed: p.lines.length === 0,
    };
  });
  const holders: HolderStatus[] = [];
  for (const p of pools) {
    for (const l of ledger.leases.values()) {
      if (l.pool !== p) continue;
      holders.push({
        feature: l.feature,
        version: l.version,
        vendor: l.vendor,
        user: l.user,
        host: l.host,
        addr: l.addr,
        since: l.grantedAt,
        count: l.count,
        leaseId: l.leaseId,
        sessionId: l.sessionId,
      });
    }
  }
  const queue: QueueStatus[] = [];
  for (const name of queues.features().sort()) {
    queues.of(name).forEach((e, i) => {
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
    const claims = claimsOf(p, now, policy);
    if (claims.length === 0) continue;
    const used = reservedUse(p, claims);
    claims.forEach((c, i) => {
      reservations.push({
        feature: p.name,
        version: p.version,
        vendor: p.vendor,
        type: c.type,
        name: c.name,
        count: c.count,
        inUse: used[i]!,
      });
    });
  }
  return { features, holders, queue, reservations };
}
