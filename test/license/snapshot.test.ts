/** lib/license/snapshot.ts: snapshot and restore through JSON. */
import t from 'tap';
import type { LicensePool } from '../../lib/license/pool.ts';
import { granted, line, setup, T0 } from './helpers.ts';

t.test('snapshot and restore through JSON', async (t) => {
  const { pool, co } = setup([line('s', '1.0', 2), line('n', '1', 2, { dupGroup: 'NONE' })]);
  granted(t, co(1, 's', { user: 'a', host: 'x' }));
  granted(t, co(2, 's', { user: 'a', host: 'x' }));
  const l3 = granted(t, co(3, 's', { count: 1 }));
  co(4, 's', { wait: true });
  co(5, 's', { wait: true });
  granted(t, co(6, 'n'));
  pool.checkin(3n, l3.leaseId); // session 4 is assigned, not yet polled
  pool.takeAssigned();
  const json = JSON.stringify(pool.snapshot());
  const copy = setup([line('s', '1.0', 2), line('n', '1', 2, { dupGroup: 'NONE' })]);
  t.same(copy.pool.restore(JSON.parse(json)), { leases: 4, queue: 1 });
  const noCounters = (p: LicensePool) => {
    const s = p.status();
    return { ...s, features: s.features.map(({ issued: _i, denied: _d, ...f }) => f) };
  };
  t.same(noCounters(copy.pool), noCounters(pool), 'the same state; counters are since start');
  t.same(copy.pool.snapshot(), pool.snapshot());
  const polled = copy.co(4, 's', { wait: true });
  t.same(polled.status === 'granted' && polled.fromQueue, true, 'a pending grant survives');
  t.same(
    copy.pool.restore(JSON.parse(json)),
    { leases: 0, queue: 0 },
    'ids already present are skipped',
  );
  copy.pool.assertInvariant();

  // The daemon restores what its store kept: bigints, no vendor or group, maybe over a smaller count.
  const small = setup([line('s', '1', 1)]);
  const n = small.pool.restore({
    leases: [
      {
        leaseId: 1n,
        sessionId: 1n,
        user: 'a',
        host: 'x',
        feature: 's',
        version: '1.0',
        count: 1,
        grantedAt: T0,
      },
      {
        leaseId: 2n,
        sessionId: 2n,
        user: 'b',
        host: 'x',
        feature: 's',
        version: '1.0',
        count: 1,
        grantedAt: T0,
      },
      {
        leaseId: 3n,
        sessionId: 3n,
        user: 'c',
        host: 'x',
        feature: 'old',
        version: '3',
        count: 1,
        grantedAt: T0,
      },
    ],
    queue: [
      { sessionId: 4n, user: 'd', host: 'x', feature: 's', version: '1', count: 1, since: T0 },
    ],
  });
  t.same(n, { leases: 3, queue: 1 });
  small.pool.assertInvariant();
  t.same(
    small.pool.status().features.map((f) => [f.name, f.count, f.inUse, f.removed]),
    [
      ['old', 0, 1, true],
      ['s', 1, 2, false],
    ],
  );
  t.same(small.pool.takeAssigned(), [], 'restore grants nothing');
  small.pool.checkin(1n, 1n);
  t.same(small.pool.takeAssigned(), [], 'still at the count');
  small.pool.checkin(2n, 2n);
  t.same(
    small.pool.takeAssigned().map((l) => l.sessionId),
    [4n],
  );
  t.throws(() => small.pool.restore({ leases: [{ leaseId: 'x' } as never], queue: [] }), TypeError);
});
