/**
 * Reservations: seats of a pool kept for a user, host, group or address range (the
 * license's RESERVE= option and the options file's RESERVE lines). Seats reserved and not
 * used by whoever they are for are granted to nobody else.
 *
 * Which held seats count against which reservation is a maximum flow (held seats →
 * reservations they match), so a grant is allowed when the seats in use outside
 * reservations stay within the unreserved seats (count − Σ reserved); as Σ reserved ≤
 * count, that also keeps use within the count. Options reservations come after the
 * license's and are clipped so that Σ reserved never exceeds the count.
 */
import type { Reservation } from './file.ts';
import type { Group, Pool } from './ledger.ts';
import type { PoolPolicy, Who } from './options.ts';

/** One reservation of a pool now (a license one summed over its unexpired lines). */
export interface Claim {
  key: string;
  type: 'user' | 'host' | 'group' | 'host_group' | 'internet';
  name: string;
  count: number;
  match(who: Who): boolean;
}

export const sum = (ns: readonly number[]) => ns.reduce((a, b) => a + b, 0);

/** Seats licensed now: the counts of the pool's lines that have not expired. */
export function countNow(p: Pool, now: number): number {
  let n = 0;
  for (const l of p.lines) if (l.expires === null || now < l.expires) n += l.count;
  return n;
}

function licenseClaim(r: Reservation): Claim {
  const name = r.name;
  return {
    key: `${r.type}:${name}`,
    type: r.type,
    name,
    count: r.count,
    match: r.type === 'user' ? (w) => w.user === name : (w) => w.host === name,
  };
}

/**
 * The pool's reservations now: the unexpired lines' entries summed per user/host, then the
 * policy's RESERVE lines for the feature in file order, each clipped to the seats left.
 */
export function claimsOf(p: Pool, now: number, policy: PoolPolicy): Claim[] {
  let out: Claim[] | undefined;
  for (const l of p.lines) {
    if (!l.reservations?.length || (l.expires !== null && now >= l.expires)) continue;
    out ??= [];
    for (const r of l.reservations) {
      const c = licenseClaim(r);
      const same = out.find((o) => o.key === c.key);
      if (same) same.count += r.count;
      else out.push(c);
    }
  }
  if (policy.reserve.length === 0 || p.lines.length === 0) return out ?? [];
  let left = countNow(p, now) - sum((out ?? []).map((c) => c.count));
  for (const r of policy.reserve) {
    if (r.feature !== p.name || left <= 0) continue;
    const count = Math.min(r.count, left);
    left -= count;
    out ??= [];
    out.push({
      key: `options:${r.line}`,
      type: r.subject.type.toLowerCase() as Claim['type'],
      name: r.subject.name,
      count,
      match: r.subject.match,
    });
  }
  return out ?? [];
}

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

/** A change to weigh before making it: group `groupKey` holding `seats`, `who` among its users. */
export interface GroupChange {
  groupKey: string;
  seats: number;
  who: Who;
}

/** Reservations (indices into claims) matched by any lease of a group, plus `who`. */
function matchSet(claims: readonly Claim[], g: Group | undefined, who?: Who): Set<number> {
  const m = new Set<number>();
  claims.forEach((c, i) => {
    if ((who && c.match(who)) || (g && [...g.leases.values()].some((l) => c.match(l)))) m.add(i);
  });
  return m;
}

/**
 * Seats held against each reservation (a maximum flow, see the module comment), as if
 * the group `change.groupKey` held `change.seats` with `change.who` among its users.
 */
export function reservedUse(p: Pool, claims: readonly Claim[], change?: GroupChange): number[] {
  if (claims.length === 0) return [];
  const demands = new Map<string, { match: number[]; seats: number }>();
  const add = (m: Set<number>, seats: number) => {
    if (m.size === 0 || seats === 0) return;
    const match = [...m].sort((a, b) => a - b);
    const key = match.join(',');
    const d = demands.get(key);
    if (d) d.seats += seats;
    else demands.set(key, { match, seats });
  };
  let changed = false;
  for (const [gk, g] of p.groups) {
    if (change && gk === change.groupKey) {
      add(matchSet(claims, g, change.who), change.seats);
      changed = true;
    } else add(matchSet(claims, g), g.seats);
  }
  if (change && !changed) add(matchSet(claims, undefined, change.who), change.seats);
  return reservedFlow(
    claims.map((c) => c.count),
    [...demands.values()],
  );
}
