/** lib/license/capacity.ts through the pool: counts that move under held seats, reclaim. */
import t from 'tap';
import { claimKeysOf, expiredPool, fits, reachable, refresh } from '../../lib/license/capacity.ts';
import { newPool } from '../../lib/license/ledger.ts';
import { EMPTY_POLICY } from '../../lib/license/options.ts';
import type { LicensePool } from '../../lib/license/pool.ts';
import { ErrorCode } from '../../lib/wire/index.ts';
import { code, granted, inUse, line, resUser, setup, T0 } from './helpers.ts';

t.test('reload keeps held seats; a lowered count grants nothing until below it', async (t) => {
  const { pool, co } = setup([line('s', '1', 3), line('gone', '1', 1), line('up', '1', 1)]);
  const leases = [1, 2, 3].map((s) => granted(t, co(s, 's')));
  const gone = granted(t, co(4, 'gone'));
  granted(t, co(5, 'up'));
  co(6, 'up', { wait: true });
  co(7, 'gone', { wait: true });
  const r = pool.reload([line('s', '1', 1), line('up', '1', 2)]);
  t.same(
    r.dropped.map((e) => [e.sessionId, e.feature]),
    [[7n, 'gone']],
    'queue of a removed feature dropped',
  );
  t.same(
    pool.takeAssigned().map((l) => [l.sessionId, l.feature]),
    [[6n, 'up']],
    'a raised count grants the queue',
  );
  const s = pool.status().features.find((f) => f.name === 's')!;
  t.same([s.count, s.inUse], [1, 3]);
  pool.assertInvariant();
  t.equal(code(co(8, 's')), ErrorCode.NO_SEATS);
  pool.checkin(1n, leases[0]!.leaseId);
  pool.checkin(2n, leases[1]!.leaseId);
  t.equal(code(co(8, 's')), ErrorCode.NO_SEATS, '1 in use of 1');
  pool.checkin(3n, leases[2]!.leaseId);
  granted(t, co(8, 's'));
  const g = pool.status().features.find((f) => f.name === 'gone')!;
  t.same([g.removed, g.count, g.inUse], [true, 0, 1], 'removed feature keeps its holder');
  t.equal(code(co(9, 'gone')), ErrorCode.NO_SUCH_FEATURE);
  t.equal(
    code(co(7, 'gone', { wait: true })),
    ErrorCode.NO_SUCH_FEATURE,
    'the dropped poll learns why',
  );
  t.same(pool.checkin(4n, gone.leaseId).ok, true);
  t.notOk(
    pool.status().features.some((f) => f.name === 'gone'),
    'gone after its last lease',
  );
  pool.reload([line('s', '1', 1), line('up', '1', 2), line('gone', '1', 1)]);
  granted(t, co(9, 'gone'), 'back in the license');
  pool.assertInvariant();
});

t.test('reclaim: never above the count, never twice', async (t) => {
  const { pool, co } = setup([line('s', '1.0', 2), line('x', '1', 1, {}, { expires: T0 })]);
  const req = (leaseId: bigint, o: Partial<Parameters<LicensePool['reclaim']>[0]> = {}) =>
    pool.reclaim({
      leaseId,
      sessionId: 1n,
      user: 'u',
      host: `h${leaseId}`,
      feature: 's',
      version: '1.0',
      count: 1,
      grantedAt: T0 - 5,
      ...o,
    });
  const r1 = req(100n);
  t.same(r1.ok && [r1.lease.leaseId, r1.lease.grantedAt, r1.lease.version], [100n, T0 - 5, '1.0']);
  t.same(req(100n), { ok: false, code: ErrorCode.ALREADY_RECLAIMED });
  t.same(req(101n, { version: '1' }).ok, true, '1 = 1.0');
  t.same(req(102n), { ok: false, code: ErrorCode.NO_SEATS }, 'would exceed the count');
  t.same(req(103n, { host: 'h100' }).ok, true, 'shares the seat of its group');
  t.same(req(104n, { feature: 'nope' }), { ok: false, code: ErrorCode.NO_SUCH_FEATURE });
  t.same(req(104n, { version: '2' }), { ok: false, code: ErrorCode.NO_SUCH_VERSION });
  t.same(req(104n, { feature: 'x', version: '1' }), { ok: false, code: ErrorCode.FEATURE_EXPIRED });
  t.same(req(0n), { ok: false, code: ErrorCode.BAD_REQUEST });
  t.equal(inUse(pool, 's'), 2);
  t.equal(code(co(5, 's')), ErrorCode.NO_SEATS);
  t.equal(pool.status().features[0]!.issued, 0, 'reclaims are not new grants');
  pool.assertInvariant();
});

t.test('fits and reachable: the count, the unreserved seats, nobody overtakes', async (t) => {
  const p = newPool('c', 'acme', '1', [line('c', '1', 3, {}, { reservations: [resUser('r', 1)] })]);
  refresh(p, T0, EMPTY_POLICY);
  const anyone = { user: 'x', host: 'h', addr: '' };
  const r = { user: 'r', host: 'h', addr: '' };
  t.ok(fits(p, 'g', 2, anyone, T0, EMPTY_POLICY), 'the 2 unreserved seats');
  t.notOk(fits(p, 'g', 3, anyone, T0, EMPTY_POLICY), 'not the reserved one');
  t.ok(fits(p, 'g', 3, r, T0, EMPTY_POLICY), 'the reserved user may take all 3');
  t.notOk(fits(p, 'g', 4, r, T0, EMPTY_POLICY), 'never above the count');
  t.notOk(
    fits(p, 'g', 1, r, T0, EMPTY_POLICY, new Set(['user:r'])),
    'a waiting entry for the same reservation is not overtaken',
  );
  t.notOk(fits(p, 'g', 1, anyone, T0, EMPTY_POLICY, new Set()), 'nor one for the unreserved seats');
  t.same([reachable(p, anyone, T0, EMPTY_POLICY), reachable(p, r, T0, EMPTY_POLICY)], [2, 3]);
  t.same(claimKeysOf(p, r, T0, EMPTY_POLICY), ['user:r']);
  t.notOk(expiredPool(p, T0));
});
