/**
 * The pool's invariant: the seat rule (seats in use ≤ the count, reservations within their
 * counts, use outside reservations within the unreserved seats, above them only while a
 * moved count drains) and the bookkeeping behind it (groups, indexes, queues).
 */
import { refresh } from './capacity.ts';
import type { Ledger } from './ledger.ts';
import type { PoolPolicy } from './options.ts';
import type { Queues } from './queue.ts';
import { claimsOf, countNow, reservedUse, sum } from './reservations.ts';

/**
 * Checks the bookkeeping and the seat rule.
 * @throws {Error} describing the first violation
 */
export function checkInvariant(
  ledger: Ledger,
  queues: Queues,
  policy: PoolPolicy,
  now: number,
): void {
  const fail = (m: string): never => {
    throw new Error(`license pool invariant: ${m}`);
  };
  let leaseCount = 0;
  for (const p of ledger.pools.values()) {
    // Time may have lowered the count (a line expired) since the last change.
    refresh(p, now, policy);
    let inUse = 0;
    for (const [gk, g] of p.groups) {
      if (g.leases.size === 0) fail(`empty group ${gk} in ${p.name}`);
      let max = 0;
      for (const [id, l] of g.leases) {
        if (ledger.leases.get(id) !== l || l.pool !== p || l.groupKey !== gk)
          fail(`lease ${id} misfiled in ${p.name}`);
        max = Math.max(max, l.count);
        leaseCount++;
      }
      if (g.seats !== max)
        fail(`group ${gk} of ${p.name} has ${g.seats} seats, leases need ${max}`);
      inUse += g.seats;
    }
    if (inUse !== p.inUse)
      fail(`${p.name} ${p.version} counts ${p.inUse} in use, groups hold ${inUse}`);
    const count = countNow(p, now);
    if (p.inUse > Math.max(count, p.ceiling))
      fail(`${p.name} ${p.version}: ${p.inUse} in use > count ${count}`);
    const claims = claimsOf(p, now, policy);
    const used = reservedUse(p, claims);
    claims.forEach((c, i) => {
      if (used[i]! > c.count) fail(`${p.name} ${p.version}: reservation ${c.key} over`);
    });
    const reserved = sum(claims.map((c) => c.count));
    if (reserved > count) fail(`${p.name} ${p.version}: ${reserved} reserved > count ${count}`);
    const free = p.inUse - sum(used);
    if (free > Math.max(count - reserved, p.freeCeiling))
      fail(
        `${p.name} ${p.version}: ${free} seats in use outside reservations > ${count - reserved} unreserved`,
      );
  }
  if (leaseCount !== ledger.leases.size)
    fail(`${ledger.leases.size} leases, ${leaseCount} in groups`);
  let indexed = 0;
  for (const [sid, ls] of ledger.bySession) {
    if (ls.size === 0) fail(`empty session index ${sid}`);
    for (const l of ls)
      if (ledger.leases.get(l.leaseId) !== l || l.sessionId !== sid)
        fail(`session index of ${sid} lists ${l.leaseId}`);
    indexed += ls.size;
  }
  if (indexed !== ledger.leases.size) fail('session index out of step');
  let byCred = 0;
  for (const [id, ls] of ledger.byCredential) {
    for (const l of ls)
      if (ledger.leases.get(l.leaseId) !== l || l.credential !== id)
        fail(`credential index of ${id} lists ${l.leaseId}`);
    byCred += ls.size;
  }
  let capped = 0;
  for (const l of ledger.leases.values()) if (l.credential !== '') capped++;
  if (byCred !== capped) fail('credential index out of step');
  try {
    queues.check();
  } catch (e) {
    fail((e as Error).message);
  }
  for (const e of queues.entries()) {
    if (ledger.pendingOf(e.sessionId, e.feature))
      fail(`session ${e.sessionId} queued and assigned for ${e.feature}`);
  }
}
