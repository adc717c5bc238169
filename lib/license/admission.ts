/**
 * Admission: which pools may serve a checkout and whether the requester may take seats of
 * them. Version matching (the lowest version ≥ the one asked for), expiry, the options
 * file's INCLUDE/EXCLUDE, and the limits: the license's MAX_PER_USER and MAX_PER_HOST (the
 * host counted both as declared and as the source address, so made-up names from one
 * address share one host's seats), the options file's MAX, and a credential's seat cap.
 * Whether the seats are there at all is capacity's answer (lib/license/capacity.ts).
 */
import { ErrorCode } from '../wire/index.ts';
import { type Blocked, expiredPool, fits } from './capacity.ts';
import { type CredentialCap, groupKeyOf, type LeaseRec, type Ledger, type Pool } from './ledger.ts';
import { type CountRule, type PoolPolicy, permitted, type Who } from './options.ts';
import { compareVersion } from './version.ts';

export type DenialCode =
  | typeof ErrorCode.BAD_REQUEST
  | typeof ErrorCode.NO_SUCH_FEATURE
  | typeof ErrorCode.NO_SUCH_VERSION
  | typeof ErrorCode.FEATURE_EXPIRED
  | typeof ErrorCode.NO_SEATS
  | typeof ErrorCode.USER_MAX
  | typeof ErrorCode.HOST_MAX
  | typeof ErrorCode.QUEUE_FULL
  | typeof ErrorCode.NOT_PERMITTED;

export type ResolveCode =
  | typeof ErrorCode.NO_SUCH_FEATURE
  | typeof ErrorCode.NO_SUCH_VERSION
  | typeof ErrorCode.FEATURE_EXPIRED;

/** A requester: who, and the cap of the credential its session opened with. */
export interface Requester extends Who {
  credential?: CredentialCap | undefined;
}

/** Where a grant goes: the pool, the duplicate group, the seats it adds. */
export interface Placement {
  pool: Pool;
  groupKey: string;
  extra: number;
  shared: boolean;
}

export type Attempt = Placement | { code: DenialCode };

/** The pools that may serve name ≥ version, lowest version first, or why none can. */
export function resolve(
  ledger: Ledger,
  name: string,
  version: string,
  vendor: string | undefined,
  now: number,
): { candidates: Pool[] } | { code: ResolveCode; countOn?: Pool } {
  const named = ledger
    .poolsNamed(name)
    .filter((p) => p.lines.length > 0 && (vendor === undefined || p.vendor === vendor));
  if (named.length === 0) return { code: ErrorCode.NO_SUCH_FEATURE };
  named.sort((a, b) => compareVersion(a.version, b.version));
  const sufficient =
    version === '' ? named : named.filter((p) => compareVersion(p.version, version) >= 0);
  if (sufficient.length === 0)
    return { code: ErrorCode.NO_SUCH_VERSION, countOn: named[named.length - 1]! };
  const live = sufficient.filter((p) => !expiredPool(p, now));
  if (live.length === 0) return { code: ErrorCode.FEATURE_EXPIRED, countOn: sufficient[0]! };
  return { candidates: live };
}

/** NOT_PERMITTED when the options file keeps `who` from `feature`. */
export function access(
  policy: PoolPolicy,
  feature: string,
  who: Who,
): typeof ErrorCode.NOT_PERMITTED | undefined {
  return permitted(policy, feature, who) ? undefined : ErrorCode.NOT_PERMITTED;
}

/** A seat to be added to a group: the group and the seats the lease needs. */
interface Add {
  pool: Pool;
  groupKey: string;
  count: number;
}

/**
 * Seats of the pools held by groups with a lease matching `mine`, as if `add` were granted
 * too (its group's seats grow to its count). A NONE (per-lease) group always adds.
 */
function seatsOf(pools: Iterable<Pool>, mine: (l: LeaseRec) => boolean, add?: Add): number {
  let n = 0;
  let addDone = false;
  for (const p of pools) {
    for (const [gk, g] of p.groups) {
      const isAdd = add !== undefined && p === add.pool && gk === add.groupKey;
      let holds = false;
      for (const l of g.leases.values()) {
        if (mine(l)) {
          holds = true;
          break;
        }
      }
      if (isAdd) {
        n += Math.max(g.seats, add.count);
        addDone = true;
      } else if (holds) n += g.seats;
    }
  }
  if (add && !addDone) n += add.count;
  return n;
}

/** Seats held by the sessions of one credential, over every pool, optionally with `add`. */
function credentialSeats(ledger: Ledger, id: string, add?: Add): number {
  const groups = new Map<Pool, Set<string>>();
  for (const l of ledger.byCredential.get(id) ?? []) {
    const s = groups.get(l.pool) ?? new Set<string>();
    s.add(l.groupKey);
    groups.set(l.pool, s);
  }
  let n = 0;
  let addDone = false;
  for (const [p, keys] of groups) {
    for (const gk of keys) {
      const seats = p.groups.get(gk)!.seats;
      if (add && p === add.pool && gk === add.groupKey) {
        n += Math.max(seats, add.count);
        addDone = true;
      } else n += seats;
    }
  }
  if (add && !addDone) n += add.count;
  return n;
}

const maxCode = (r: CountRule) =>
  r.subject.type === 'USER' || r.subject.type === 'GROUP' ? ErrorCode.USER_MAX : ErrorCode.HOST_MAX;

/** The first limit a grant of `add` to `who` would break, or undefined. */
function overLimit(
  ledger: Ledger,
  policy: PoolPolicy,
  who: Requester,
  add: Add,
  nonce: boolean,
): DenialCode | undefined {
  const p = add.pool;
  const checks: [number, Iterable<Pool>, (l: LeaseRec) => boolean, DenialCode][] = [];
  if (p.options.maxPerUser !== null)
    checks.push([p.options.maxPerUser, [p], (l) => l.user === who.user, ErrorCode.USER_MAX]);
  if (p.options.maxPerHost !== null) {
    checks.push([p.options.maxPerHost, [p], (l) => l.host === who.host, ErrorCode.HOST_MAX]);
    // The source address is a host too: names a client declares cannot multiply its seats.
    if (who.addr !== '')
      checks.push([p.options.maxPerHost, [p], (l) => l.addr === who.addr, ErrorCode.HOST_MAX]);
  }
  let named: Pool[] | undefined;
  for (const r of policy.max) {
    if (r.feature !== p.name || !r.subject.match(who)) continue;
    named ??= ledger.poolsNamed(p.name);
    checks.push([r.count, named, (l) => r.subject.match(l), maxCode(r)]);
  }
  for (const [max, pools, mine, code] of checks) {
    const before = seatsOf(pools, mine);
    const after = nonce ? before + add.count : seatsOf(pools, mine, add);
    if (after > max && after > before) return code;
  }
  if (who.credential) {
    const before = credentialSeats(ledger, who.credential.id);
    const after = nonce ? before + add.count : credentialSeats(ledger, who.credential.id, add);
    if (after > who.credential.seats && after > before) return ErrorCode.USER_MAX;
  }
  return undefined;
}

/**
 * Finds the lowest candidate that can grant. NO_SEATS when some candidate only lacks
 * seats (queueing may help); otherwise the first limit's code.
 */
export function attempt(
  ledger: Ledger,
  policy: PoolPolicy,
  candidates: readonly Pool[],
  who: Requester,
  count: number,
  blocked: Blocked,
  now: number,
  leaseId?: bigint,
): Attempt {
  let limit: DenialCode | undefined;
  let seats = false;
  for (const p of candidates) {
    const groupKey = groupKeyOf(p.options.dupGroup, who.user, who.host, leaseId);
    const nonce = p.options.dupGroup === 'NONE';
    const g = nonce ? undefined : p.groups.get(groupKey);
    const extra = g ? Math.max(0, count - g.seats) : count;
    if (extra > 0) {
      const over = overLimit(ledger, policy, who, { pool: p, groupKey, count }, nonce);
      if (over !== undefined) {
        limit ??= over;
        continue;
      }
      if (!fits(p, groupKey, extra, who, now, policy, blocked.get(p))) {
        seats = true;
        continue;
      }
    }
    return { pool: p, groupKey, extra, shared: extra === 0 && g !== undefined };
  }
  return { code: seats || limit === undefined ? ErrorCode.NO_SEATS : limit };
}

/** Queue entries allowed for a feature given the pools that would queue the request. */
export function queueLimit(policy: PoolPolicy, name: string, allowing: readonly Pool[]): number {
  const limits = allowing.map((p) => p.options.queueMax);
  const license = limits.includes(null) ? Infinity : Math.max(...(limits as number[]));
  return Math.min(license, policy.maxQueue.get(name) ?? Infinity);
}
