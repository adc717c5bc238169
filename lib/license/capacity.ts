/**
 * Capacity: whether more seats fit in a pool. Within the count, seats in use outside
 * reservations within the unreserved seats, and nobody overtaking a queued entry; plus the
 * ceilings that let held seats drain when a count or a reservation moved under them
 * (reload, restore, new options, a line expiring) without granting anything new.
 */
import type { Pool } from './ledger.ts';
import type { PoolPolicy, Who } from './options.ts';
import { type Claim, claimsOf, countNow, reservedUse, sum } from './reservations.ts';

/** Pools that queued entries wait for, with the reservations (keys) those entries match. */
export type Blocked = Map<Pool, Set<string>>;

/** True when every line of the pool has expired (a pool with no lines is not "expired"). */
export function expiredPool(p: Pool, now: number): boolean {
  return p.lines.length > 0 && p.lines.every((l) => l.expires !== null && now >= l.expires);
}

/**
 * Lets the ceilings follow the count and the unreserved seats, above them only while held
 * seats drain. `moved` (reload, restore, new options, a lease left a shared seat), or a
 * line expired since the last refresh: the seats held now outside reservations are
 * allowed, as held seats are above a dropped count.
 */
export function refresh(p: Pool, now: number, policy: PoolPolicy, moved = false): void {
  const count = countNow(p, now);
  p.ceiling = Math.max(count, Math.min(p.ceiling, p.inUse));
  const live = p.lines.filter((l) => l.expires === null || now < l.expires).length;
  const claims = claimsOf(p, now, policy);
  const free = count - sum(claims.map((c) => c.count));
  const used = claims.length === 0 ? 0 : sum(reservedUse(p, claims));
  const held = p.inUse - used;
  p.freeCeiling =
    moved || live !== p.live ? Math.max(free, held) : Math.max(free, Math.min(p.freeCeiling, held));
  p.live = live;
}

/** The most seats `who` could ever hold at once: count − others' reservations. */
export function reachable(p: Pool, who: Who, now: number, policy: PoolPolicy): number {
  const others = claimsOf(p, now, policy).filter((c) => !c.match(who));
  return countNow(p, now) - sum(others.map((c) => c.count));
}

/** The reservations of a pool that `who` matches, by key (what a waiting entry blocks). */
export function claimKeysOf(p: Pool, who: Who, now: number, policy: PoolPolicy): string[] {
  return claimsOf(p, now, policy)
    .filter((c) => c.match(who))
    .map((c) => c.key);
}

/**
 * Whether `extra` more seats for the group `groupKey` (`who` among its users) fit: within
 * the count, and the seats in use outside reservations within the unreserved seats. When
 * queued entries wait for the pool (`blocked`), only seats reserved for the requester that
 * no waiting entry could use fit: nobody overtakes.
 */
export function fits(
  p: Pool,
  groupKey: string,
  extra: number,
  who: Who,
  now: number,
  policy: PoolPolicy,
  blocked?: Set<string>,
): boolean {
  const count = countNow(p, now);
  if (p.inUse + extra > count) return false;
  const claims: Claim[] = claimsOf(p, now, policy);
  if (claims.length === 0) return blocked === undefined;
  if (blocked && claims.some((c) => blocked.has(c.key) && c.match(who))) return false;
  const seats = (p.groups.get(groupKey)?.seats ?? 0) + extra;
  const after = p.inUse + extra - sum(reservedUse(p, claims, { groupKey, seats, who }));
  if (after > count - sum(claims.map((c) => c.count))) return false;
  return blocked === undefined || after <= p.inUse - sum(reservedUse(p, claims));
}
