/** lib/license/reservations.ts: the maximum flow, and reservations through the pool. */
import t from 'tap';
import { reservedFlow } from '../../lib/license/reservations.ts';
import { ErrorCode } from '../../lib/wire/index.ts';
import { code, granted, inUse, line, resHost, resUser, setup, T0 } from './helpers.ts';

t.test('reservedFlow: the largest assignment of held seats to reservations', async (t) => {
  t.same(reservedFlow([], []), []);
  t.same(reservedFlow([2], [{ match: [0], seats: 5 }]), [2], 'capped by the reservation');
  t.same(reservedFlow([2], [{ match: [0], seats: 1 }]), [1], 'capped by the seats held');
  // Greedy would put the seat matching both into reservation 0 and leave 1 empty.
  t.same(
    reservedFlow(
      [1, 1],
      [
        { match: [0, 1], seats: 1 },
        { match: [0], seats: 1 },
      ],
    ),
    [1, 1],
    'reroutes through a seat that matches both',
  );
  const caps = [3, 1, 2];
  const f = reservedFlow(caps, [
    { match: [0, 1], seats: 2 },
    { match: [1, 2], seats: 2 },
    { match: [0], seats: 1 },
  ]);
  t.equal(f[0]! + f[1]! + f[2]!, 5, 'every held seat assigned');
  t.ok(
    f.every((n, i) => n <= caps[i]!),
    'within each reservation',
  );
  t.same(reservedFlow([1, 1], [{ match: [0], seats: 3 }]), [1, 0], 'only matching ones');
});

t.test('reservations: others cannot use reserved seats, the reserved user can', async (t) => {
  const { pool, co } = setup([line('r', '1', 3, {}, { reservations: [resUser('alice', 2)] })]);
  granted(t, co(1, 'r', { user: 'alice', host: 'a1' }), 'alice takes a reserved seat');
  granted(t, co(2, 'r', { user: 'bob' }), 'bob takes the one unreserved seat');
  t.equal(code(co(3, 'r', { user: 'carol' })), ErrorCode.NO_SEATS, 'one seat left, reserved');
  t.equal(inUse(pool, 'r'), 2);
  pool.assertInvariant();
  granted(t, co(4, 'r', { user: 'alice', host: 'a2' }), 'alice takes her second reserved seat');
  t.equal(code(co(5, 'r', { user: 'alice', host: 'a3' })), ErrorCode.NO_SEATS, 'count reached');
  t.same(pool.status().reservations, [
    { feature: 'r', version: '1', vendor: 'acme', type: 'user', name: 'alice', count: 2, inUse: 2 },
  ]);
  pool.assertInvariant();
});

t.test('reservations: exact boundary of the unreserved seats', async (t) => {
  const { pool, co } = setup([line('r', '1', 5, {}, { reservations: [resUser('alice', 2)] })]);
  t.equal(code(co(1, 'r', { user: 'bob', count: 4 })), ErrorCode.NO_SEATS, '4 > 5 − 2');
  granted(t, co(1, 'r', { user: 'bob', count: 3 }), '3 = 5 − 2');
  t.equal(code(co(2, 'r', { user: 'carol' })), ErrorCode.NO_SEATS);
  t.equal(code(co(2, 'r', { user: 'alice', count: 3 })), ErrorCode.NO_SEATS, 'only 2 left');
  granted(t, co(2, 'r', { user: 'alice', count: 2 }));
  pool.assertInvariant();
  // The reserved user uses her reservation first, then unreserved seats.
  const b = setup([line('r', '1', 5, {}, { reservations: [resUser('alice', 2)] })]);
  granted(t, b.co(1, 'r', { user: 'alice', count: 4 }), 'alice takes 2 reserved + 2 unreserved');
  granted(t, b.co(2, 'r', { user: 'bob' }), 'the last unreserved seat');
  t.equal(code(b.co(3, 'r', { user: 'carol' })), ErrorCode.NO_SEATS);
  t.same(
    b.pool.status().reservations.map((r) => r.inUse),
    [2],
  );
  b.pool.assertInvariant();
});

t.test('reservations by host, and overlapping user and host reservations', async (t) => {
  const { pool, co } = setup([
    line('h', '1', 2, {}, { reservations: [resHost('ws9', 1)] }),
    line('o', '1', 2, {}, { reservations: [resUser('alice', 1), resHost('ws9', 1)] }),
  ]);
  granted(t, co(1, 'h', { user: 'x', host: 'ws1' }));
  t.equal(code(co(2, 'h', { user: 'y', host: 'ws1' })), ErrorCode.NO_SEATS, 'kept for ws9');
  granted(t, co(3, 'h', { user: 'y', host: 'ws9' }), 'anyone on ws9');
  // alice on ws9 matches both; her seat counts against one so carol on ws9 gets the other.
  granted(t, co(4, 'o', { user: 'alice', host: 'ws9' }));
  t.equal(code(co(5, 'o', { user: 'bob', host: 'ws1' })), ErrorCode.NO_SEATS);
  granted(t, co(6, 'o', { user: 'carol', host: 'ws9' }));
  t.same(
    pool
      .status()
      .reservations.filter((r) => r.feature === 'o')
      .map((r) => [r.type, r.name, r.count, r.inUse]),
    [
      ['user', 'alice', 1, 1],
      ['host', 'ws9', 1, 1],
    ],
  );
  pool.assertInvariant();
});

t.test('reservations and the queue: reserved seats are not handed to others', async (t) => {
  const { pool, co } = setup([line('q', '1', 2, {}, { reservations: [resUser('alice', 1)] })]);
  granted(t, co(1, 'q', { user: 'bob' }));
  t.equal(code(co(2, 'q', { user: 'carol', wait: true })), 'queued', 'the free seat is reserved');
  t.equal(
    code(co(3, 'q', { user: 'dan', count: 2, wait: true })),
    ErrorCode.NO_SEATS,
    'more than dan could ever hold: denied, not queued',
  );
  const a = granted(t, co(4, 'q', { user: 'alice' }), 'alice is not held up by the queue');
  pool.checkin(4n, a.leaseId);
  t.same(pool.takeAssigned(), [], 'her freed seat stays reserved');
  pool.checkin(1n, pool.leasesOf(1n)[0]!.leaseId);
  t.same(
    pool.takeAssigned().map((l) => l.user),
    ['carol'],
    'an unreserved seat goes to the queue',
  );
  pool.assertInvariant();
  // An entry waiting for the reserved seat blocks others who match the same reservation.
  const h = setup([line('q', '1', 2, {}, { reservations: [resHost('ws9', 1)] })]);
  granted(t, h.co(1, 'q', { user: 'x', host: 'ws9' }));
  granted(t, h.co(2, 'q', { user: 'y', host: 'ws1' }));
  t.equal(code(h.co(3, 'q', { user: 'z', host: 'ws9', wait: true })), 'queued');
  h.pool.checkin(2n, h.pool.leasesOf(2n)[0]!.leaseId);
  t.same(
    h.pool.takeAssigned().map((l) => l.user),
    ['z'],
    'z on ws9 may use the unreserved seat too',
  );
  h.pool.assertInvariant();
});

t.test(
  'reservations: reclaim keeps them, an expired line takes its reservation away',
  async (t) => {
    const { pool, co } = setup([line('r', '1', 2, {}, { reservations: [resUser('alice', 1)] })]);
    granted(t, co(1, 'r', { user: 'bob' }));
    const req = {
      sessionId: 9n,
      user: 'carol',
      host: 'h',
      feature: 'r',
      version: '1',
      count: 1,
      grantedAt: T0,
    };
    t.same(pool.reclaim({ ...req, leaseId: 77n }), { ok: false, code: ErrorCode.NO_SEATS });
    t.equal(pool.reclaim({ ...req, user: 'alice', leaseId: 78n }).ok, true);
    pool.assertInvariant();

    const e = setup([
      line('r', '1', 1),
      line(
        'r',
        '1',
        1,
        {},
        { keyword: 'INCREMENT', expires: T0 + 10, reservations: [resUser('a', 1)] },
      ),
    ]);
    granted(t, e.co(1, 'r', { user: 'b' }));
    t.equal(code(e.co(2, 'r', { user: 'c' })), ErrorCode.NO_SEATS);
    granted(t, e.co(3, 'r', { user: 'a' }));
    t.equal(e.pool.status().reservations.length, 1);
    e.clock.now = T0 + 10;
    t.same(e.pool.status().reservations, [], 'gone with its line');
    e.pool.assertInvariant();
    e.pool.checkin(3n, e.pool.leasesOf(3n)[0]!.leaseId);
    t.equal(code(e.co(2, 'r', { user: 'c' })), ErrorCode.NO_SEATS, 'count now 1, held by b');
    e.pool.assertInvariant();
  },
);

t.test(
  'reservations: a reload adding one keeps held seats, grants nothing outside it',
  async (t) => {
    const { pool, co } = setup([line('r', '1', 2)]);
    granted(t, co(1, 'r', { user: 'b' }));
    granted(t, co(2, 'r', { user: 'c' }));
    pool.reload([line('r', '1', 2, {}, { reservations: [resUser('a', 1)] })]);
    pool.assertInvariant();
    pool.checkin(1n, pool.leasesOf(1n)[0]!.leaseId);
    t.equal(code(co(3, 'r', { user: 'd' })), ErrorCode.NO_SEATS, 'now reserved');
    granted(t, co(4, 'r', { user: 'a' }));
    pool.assertInvariant();
  },
);
