/** lib/license/pool.ts: the pool's API (checkin, remove, lease ids, misuse) and a property test. */
import fc from 'fast-check';
import t from 'tap';
import { EMPTY_POLICY, parseOptions } from '../../lib/license/options.ts';
import { type Lease, LicensePool } from '../../lib/license/pool.ts';
import { ErrorCode } from '../../lib/wire/index.ts';
import { granted, line, resHost, resUser, setup, T0 } from './helpers.ts';

t.test('checkin, remove and removeLease', async (t) => {
  const { pool, co } = setup([
    line('a', '1', 5, { dupGroup: 'NONE' }),
    line('b', '1', 5, { dupGroup: 'NONE' }),
  ]);
  const l1 = granted(t, co(1, 'a', { user: 'ann', host: 'x' }));
  granted(t, co(1, 'b', { user: 'ann', host: 'x' }));
  granted(t, co(2, 'a', { user: 'bob', host: 'x' }));
  granted(t, co(3, 'a', { user: 'bob', host: 'y' }));
  const l5 = granted(t, co(4, 'b', { user: 'cy', host: 'z' }));
  t.same(
    pool.checkin(2n, l1.leaseId),
    { ok: false, code: ErrorCode.NOT_HOLDER },
    'another session',
  );
  t.same(pool.checkin(1n, 999n), { ok: false, code: ErrorCode.NOT_HOLDER }, 'unknown lease');
  t.same(pool.remove({}), [], 'an empty filter removes nothing');
  t.same(
    pool.remove({ user: 'bob', host: 'y' }).map((l) => l.sessionId),
    [3n],
  );
  t.same(
    pool
      .remove({ feature: 'a' })
      .map((l) => l.user)
      .sort(),
    ['ann', 'bob'],
  );
  t.same(
    pool.remove({ leaseId: l5.leaseId }).map((l) => l.leaseId),
    [l5.leaseId],
  );
  t.equal(pool.removeLease(l5.leaseId), undefined);
  const rest = pool.leasesOf(1n);
  t.same(
    rest.map((l) => l.feature),
    ['b'],
  );
  t.equal(pool.removeLease(rest[0]!.leaseId)?.feature, 'b');
  t.same(pool.status().holders, []);
  pool.assertInvariant();
});

t.test('lease ids: injected, redrawn on collision, or passed in', async (t) => {
  const ids = [5n, 5n, 0n, 7n];
  const pool = new LicensePool([line('a', '1', 9, { dupGroup: 'NONE' })], {
    now: () => T0,
    newLeaseId: () => ids.shift() ?? 9n,
  });
  const r = (s: bigint, leaseId?: bigint) =>
    pool.checkout({
      sessionId: s,
      user: 'u',
      host: 'h',
      feature: 'a',
      version: '1',
      count: 1,
      wait: false,
      ...(leaseId !== undefined ? { leaseId } : {}),
    });
  t.same(r(1n).status === 'granted' && r(1n).status, 'granted');
  t.same(
    pool.leasesOf(1n).map((l) => l.leaseId),
    [5n, 7n],
    'a used id and 0 are drawn again',
  );
  const own = r(2n, 42n);
  t.same(own.status === 'granted' && own.lease.leaseId, 42n);
  t.throws(() => r(2n, 42n), RangeError);
  t.throws(() => r(2n, 0n), RangeError);
  const rnd = new LicensePool([line('a', '1', 9)], { now: () => T0 });
  const g = rnd.checkout({
    sessionId: 1n,
    user: 'u',
    host: 'h',
    feature: 'a',
    version: '',
    count: 1,
    wait: false,
  });
  t.ok(g.status === 'granted' && g.lease.leaseId > 0n && g.lease.leaseId < 2n ** 64n);
});

t.test('API misuse throws', async (t) => {
  t.throws(() => new LicensePool([], {} as never), /options\.now/);
  t.throws(() => new LicensePool({} as never, { now: () => 0 }), /features/);
  const { pool } = setup([line('a', '1', 1)]);
  const base = {
    sessionId: 1n,
    user: 'u',
    host: 'h',
    feature: 'a',
    version: '',
    count: 1,
    wait: false,
  };
  t.throws(() => pool.checkout({ ...base, sessionId: 1 as never }), /req\.sessionId/);
  t.throws(() => pool.checkout({ ...base, count: 1.5 }), /req\.count/);
  t.throws(() => pool.checkout({ ...base, wait: 1 as never }), /req\.wait/);
  t.throws(() => pool.checkout({ ...base, user: null as never }), /req\.user/);
  t.throws(() => pool.checkin(1n, -1n), /leaseId/);
  t.throws(() => pool.remove(null as never), /filter/);
  t.throws(() => pool.dropStaleQueue(Number.NaN), /before/);
});

// ------------------------------------------------------------------ the invariant, randomly

const FEATURES = (scale: number) => [
  line('A', '1.0', 2 * scale, { maxPerUser: 2 }, { reservations: [resUser('u0', scale)] }),
  line('A', '2.0', scale, { dupGroup: 'NONE' }, { reservations: [resHost('h1', scale)] }),
  line(
    'B',
    '1',
    2 * scale,
    { dupGroup: 'H', maxPerHost: 3, queueMax: 3 },
    { reservations: [resHost('h0', scale), resUser('u2', scale)] },
  ),
  line(
    'B',
    '1',
    scale,
    {},
    { keyword: 'INCREMENT', expires: T0 + 50, reservations: [resUser('u1', scale)] },
  ),
  line('C', '1', scale, { dupGroup: 'U', queue: false }),
];
const RELOADS = [
  FEATURES(1),
  FEATURES(0).filter((f) => f.count > 0),
  FEATURES(2),
  [FEATURES(1)[0]!, FEATURES(1)[4]!],
];

type Op =
  | { op: 'checkout'; s: number; feature: string; version: string; count: number; wait: boolean }
  | { op: 'checkin'; s: number; pick: number }
  | { op: 'leave'; s: number; feature: string }
  | { op: 'release'; s: number }
  | { op: 'remove'; user: number }
  | { op: 'reload'; which: number }
  | { op: 'reclaim'; s: number; id: number; feature: string; version: string; count: number }
  | { op: 'tick'; ms: number }
  | { op: 'restart' };

const session = fc.integer({ min: 1, max: 6 });
const feature = fc.constantFrom('A', 'A', 'B', 'B', 'C', 'D');
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      op: fc.constant('checkout' as const),
      s: session,
      feature,
      version: fc.constantFrom('', '1', '1', '1.5', '2', '3'),
      count: fc.integer({ min: 1, max: 3 }),
      wait: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ op: fc.constant('checkin' as const), s: session, pick: fc.nat(5) }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('leave' as const), s: session, feature }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('release' as const), s: session }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('remove' as const), user: fc.nat(2) }) },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant('reload' as const), which: fc.nat(RELOADS.length - 1) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('reclaim' as const),
      s: session,
      id: fc.integer({ min: 1000, max: 1008 }),
      feature,
      version: fc.constantFrom('1', '2'),
      count: fc.integer({ min: 1, max: 2 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('tick' as const), ms: fc.nat(40) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('restart' as const) }) },
);

t.test(
  'property: seats in use never grow past the count, bookkeeping stays consistent',
  async (t) => {
    const stats = { runs: 0, granted: 0, queued: 0, denied: 0, reservedGrants: 0, keptReserved: 0 };
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 20, maxLength: 80, size: 'max' }), (ops) => {
        const clock = { now: T0 };
        let next = 0n;
        let features = FEATURES(1);
        const mk = () =>
          new LicensePool(features, { now: () => clock.now, newLeaseId: () => ++next });
        let pool = mk();
        stats.runs++;
        const user = (s: number) => `u${s % 3}`;
        const host = (s: number) => `h${s % 2}`;
        for (const o of ops) {
          const st = pool.status();
          const before = new Map(st.features.map((f) => [`${f.name} ${f.version}`, f.inUse]));
          /** Seats neither in use nor reserved-and-unused, per pool. */
          const freeForOthers = new Map(
            st.features.map((f) => [
              `${f.name} ${f.version}`,
              f.count -
                f.inUse -
                st.reservations
                  .filter((r) => r.feature === f.name && r.version === f.version)
                  .reduce((n, r) => n + r.count - r.inUse, 0),
            ]),
          );
          switch (o.op) {
            case 'checkout': {
              const r = pool.checkout({
                sessionId: BigInt(o.s),
                user: user(o.s),
                host: host(o.s),
                feature: o.feature,
                version: o.version,
                count: o.count,
                wait: o.wait,
              });
              if (r.status === 'granted' && r.lease.count !== o.count && !r.fromQueue) return false;
              if (r.status === 'queued' && (r.position < 1 || r.position > r.queueLength))
                return false;
              stats[r.status]++;
              const mine = pool
                .status()
                .reservations.filter((x) =>
                  x.type === 'user' ? x.name === user(o.s) : x.name === host(o.s),
                );
              const sharing = (l: Lease) =>
                [1, 2, 3, 4, 5, 6].some((s) =>
                  pool
                    .leasesOf(BigInt(s))
                    .some((x) => x.leaseId !== l.leaseId && x.groupKey === l.groupKey),
                );
              // A seat shared with others (DUP_GROUP) counts for any sharer's reservation.
              if (r.status === 'granted' && !r.fromQueue && !sharing(r.lease)) {
                const k = `${r.lease.feature} ${r.lease.version}`;
                const grew =
                  pool.status().features.find((f) => `${f.name} ${f.version}` === k)!.inUse -
                  (before.get(k) ?? 0);
                const matched = mine.some((x) => `${x.feature} ${x.version}` === k);
                if (matched) stats.reservedGrants++;
                // Someone no reservation names only ever gets seats nobody reserved.
                else if (grew > Math.max(0, freeForOthers.get(k) ?? 0)) return false;
              }
              if (
                r.status === 'denied' &&
                r.code === ErrorCode.NO_SEATS &&
                st.features.some(
                  (f) => f.name === o.feature && f.count - f.inUse >= o.count && !f.expired,
                )
              )
                stats.keptReserved++;
              break;
            }
            case 'checkin': {
              const ls = pool.leasesOf(BigInt(o.s));
              const l = ls[o.pick % Math.max(1, ls.length)];
              const r = pool.checkin(BigInt(o.s), l?.leaseId ?? 12345n);
              if (r.ok !== (l !== undefined)) return false;
              break;
            }
            case 'leave':
              pool.leaveQueue(BigInt(o.s), o.feature);
              break;
            case 'release':
              pool.releaseSession(BigInt(o.s));
              if (pool.leasesOf(BigInt(o.s)).length || pool.queuedOf(BigInt(o.s))) return false;
              break;
            case 'remove':
              pool.remove({ user: `u${o.user}` });
              break;
            case 'reload':
              features = RELOADS[o.which]!;
              pool.reload(features);
              break;
            case 'reclaim':
              pool.reclaim({
                leaseId: BigInt(o.id),
                sessionId: BigInt(o.s),
                user: user(o.s),
                host: host(o.s),
                feature: o.feature,
                version: o.version,
                count: o.count,
                grantedAt: clock.now,
              });
              break;
            case 'tick':
              clock.now += o.ms;
              break;
            case 'restart': {
              const snap = JSON.parse(JSON.stringify(pool.snapshot()));
              const status = pool.status();
              pool = mk();
              pool.restore(snap);
              const after = pool.status();
              if (
                JSON.stringify(after.holders, (_, v) => (typeof v === 'bigint' ? `${v}` : v)) !==
                JSON.stringify(status.holders, (_, v) => (typeof v === 'bigint' ? `${v}` : v))
              )
                return false;
              continue;
            }
          }
          pool.takeAssigned();
          pool.assertInvariant();
          for (const f of pool.status().features) {
            const was = before.get(`${f.name} ${f.version}`) ?? 0;
            // Use may only grow within the count; above it (count dropped) it may only shrink.
            if (f.inUse > was && f.inUse > f.count) return false;
          }
        }
        return true;
      }),
      { numRuns: 400 },
    );
    t.ok(
      stats.granted > 500 &&
        stats.queued > 25 &&
        stats.denied > 500 &&
        stats.reservedGrants > 100 &&
        stats.keptReserved > 20,
      `exercised: ${JSON.stringify(stats)}`,
    );
  },
);

// ------------------------------------------------------------------ options can never add a seat

const subjectArb = fc.constantFrom(
  'USER u0',
  'USER u1',
  'HOST h0',
  'GROUP g0',
  'HOST_GROUP hg',
  'INTERNET 10.0.0.1',
  'INTERNET 10.0.0.0/31',
  'INTERNET ::1',
);
const optFeature = fc.constantFrom('A', 'B', 'C', 'D');
const ruleArb = fc.oneof(
  fc.tuple(fc.constantFrom('INCLUDE', 'EXCLUDE'), optFeature, subjectArb).map((x) => x.join(' ')),
  fc.tuple(fc.constantFrom('INCLUDEALL', 'EXCLUDEALL'), subjectArb).map((x) => x.join(' ')),
  fc
    .tuple(fc.constantFrom('RESERVE'), fc.integer({ min: 1, max: 4 }), optFeature, subjectArb)
    .map((x) => x.join(' ')),
  fc
    .tuple(fc.constantFrom('MAX'), fc.integer({ min: 0, max: 3 }), optFeature, subjectArb)
    .map((x) => x.join(' ')),
  fc.tuple(optFeature, fc.integer({ min: 1, max: 60 })).map(([f, s]) => `TIMEOUT ${f} ${s}`),
  fc.integer({ min: 1, max: 60 }).map((s) => `TIMEOUTALL ${s}`),
  fc.tuple(optFeature, fc.nat(3)).map(([f, n]) => `MAX_QUEUE ${f} ${n}`),
);
const optionsFileArb = fc
  .array(ruleArb, { maxLength: 8 })
  .map((rules) => ['GROUP g0 u0 u2', 'HOST_GROUP hg h1', ...rules].join('\n'));

type OptOp =
  | {
      op: 'checkout';
      s: number;
      feature: string;
      count: number;
      wait: boolean;
      addr: number;
      capped: boolean;
    }
  | { op: 'checkin'; s: number; pick: number }
  | { op: 'release'; s: number }
  | { op: 'options'; text: string }
  | { op: 'idle'; ms: number }
  | { op: 'reload'; which: number }
  | { op: 'restart' };

const optOpArb: fc.Arbitrary<OptOp> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      op: fc.constant('checkout' as const),
      s: session,
      feature,
      count: fc.integer({ min: 1, max: 3 }),
      wait: fc.boolean(),
      addr: fc.nat(2),
      capped: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ op: fc.constant('checkin' as const), s: session, pick: fc.nat(5) }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('release' as const), s: session }) },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant('options' as const), text: optionsFileArb }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('idle' as const), ms: fc.nat(30_000) }) },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant('reload' as const), which: fc.nat(RELOADS.length - 1) }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('restart' as const) }) },
);

t.test('property: no options file lets seats held exceed the count', async (t) => {
  const stats = { runs: 0, granted: 0, denied: 0, refused: 0, applied: 0, expired: 0, broken: 0 };
  const ADDRS = ['10.0.0.1', '10.0.0.2', '::1'];
  fc.assert(
    fc.property(
      optionsFileArb,
      fc.array(optOpArb, { minLength: 20, maxLength: 80, size: 'max' }),
      (first, ops) => {
        const clock = { now: T0 };
        let next = 0n;
        let features = FEATURES(1);
        let parsed = parseOptions(first, 'p.opt');
        let applied = parsed.problems.length === 0 ? parsed.policy : EMPTY_POLICY;
        const mk = () =>
          new LicensePool(features, {
            now: () => clock.now,
            newLeaseId: () => ++next,
            policy: applied,
          });
        let pool = mk();
        stats.runs++;
        for (const o of ops) {
          const before = new Map(
            pool.status().features.map((f) => [`${f.name} ${f.version}`, f.inUse]),
          );
          switch (o.op) {
            case 'checkout': {
              const r = pool.checkout({
                sessionId: BigInt(o.s),
                user: `u${o.s % 3}`,
                host: `h${o.s % 2}`,
                addr: ADDRS[o.addr]!,
                ...(o.capped ? { credentialCap: { id: 'cred', seats: 3 } } : {}),
                feature: o.feature,
                version: '',
                count: o.count,
                wait: o.wait,
              });
              if (r.status === 'granted') stats.granted++;
              else if (r.status === 'denied') {
                stats.denied++;
                if (r.code === ErrorCode.NOT_PERMITTED) stats.refused++;
              }
              break;
            }
            case 'checkin': {
              const ls = pool.leasesOf(BigInt(o.s));
              const l = ls[o.pick % Math.max(1, ls.length)];
              if (l) pool.checkin(BigInt(o.s), l.leaseId);
              break;
            }
            case 'release':
              pool.releaseSession(BigInt(o.s));
              break;
            case 'options': {
              parsed = parseOptions(o.text, 'p.opt');
              if (parsed.problems.length > 0) {
                // All or nothing: a file with a problem changes nothing.
                stats.broken++;
                const was = pool.policy;
                try {
                  pool.setOptions(parsed);
                  return false;
                } catch {
                  if (pool.policy !== was) return false;
                }
              } else {
                pool.setOptions(parsed);
                applied = parsed.policy;
                stats.applied++;
              }
              break;
            }
            case 'idle':
              clock.now += o.ms;
              stats.expired += pool.expireIdle().length;
              break;
            case 'reload':
              features = RELOADS[o.which]!;
              pool.reload(features);
              break;
            case 'restart': {
              const snap = JSON.parse(JSON.stringify(pool.snapshot()));
              pool = mk();
              pool.restore(snap);
              break;
            }
          }
          pool.takeAssigned();
          pool.assertInvariant();
          const st = pool.status();
          for (const f of st.features) {
            const was = before.get(`${f.name} ${f.version}`) ?? 0;
            if (f.inUse > was && f.inUse > f.count) return false;
            const reserved = st.reservations
              .filter((r) => r.feature === f.name && r.version === f.version)
              .reduce((n, r) => n + r.count, 0);
            if (reserved > f.count) return false;
          }
        }
        return true;
      },
    ),
    { numRuns: 300 },
  );
  t.ok(
    stats.granted > 300 &&
      stats.refused > 20 &&
      stats.applied > 50 &&
      stats.expired > 20 &&
      stats.broken > 5,
    `exercised: ${JSON.stringify(stats)}`,
  );
});
