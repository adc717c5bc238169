import fc from 'fast-check';
import t from 'tap';
import type { FeatureLine, FeatureOptions, Reservation } from '../../lib/license/file.ts';
import {
  type CheckoutResult,
  type Lease,
  LicensePool,
  reservedFlow,
} from '../../lib/license/pool.ts';
import { ErrorCode } from '../../lib/wire/index.ts';

const T0 = Date.parse('2030-01-01T00:00:00Z');

function line(
  name: string,
  version: string,
  count: number,
  options: Partial<FeatureOptions> = {},
  extra: {
    vendor?: string;
    expires?: number | null;
    keyword?: 'FEATURE' | 'INCREMENT';
    reservations?: Reservation[];
  } = {},
): FeatureLine {
  return {
    keyword: extra.keyword ?? 'FEATURE',
    name,
    vendor: extra.vendor ?? 'acme',
    version,
    expiry: 'permanent',
    expires: extra.expires ?? null,
    expired: false,
    count,
    options: {
      dupGroup: 'UHD',
      maxPerUser: null,
      maxPerHost: null,
      queue: true,
      queueMax: null,
      heartbeat: null,
      ...options,
    },
    reservations: extra.reservations ?? [],
    rawOptions: {},
    canonical: '',
    signature: new Uint8Array(64),
    file: 'test.lic',
    line: 1,
  };
}

function setup(features: FeatureLine[]) {
  const clock = { now: T0 };
  let next = 0n;
  const pool = new LicensePool(features, { now: () => clock.now, newLeaseId: () => ++next });
  const co = (
    session: number,
    feature: string,
    o: { user?: string; host?: string; version?: string; count?: number; wait?: boolean } = {},
  ): CheckoutResult =>
    pool.checkout({
      sessionId: BigInt(session),
      user: o.user ?? `u${session}`,
      host: o.host ?? `h${session}`,
      feature,
      version: o.version ?? '',
      count: o.count ?? 1,
      wait: o.wait ?? false,
    });
  return { pool, clock, co };
}

type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

function granted(t: Tap, r: CheckoutResult, msg?: string): Lease {
  if (r.status !== 'granted') t.fail(`${msg ?? 'expected a grant'}: ${JSON.stringify(r)}`);
  else t.pass(msg ?? 'granted');
  return (r as { lease: Lease }).lease;
}

const code = (r: CheckoutResult) => (r.status === 'denied' ? r.code : r.status);
const inUse = (pool: LicensePool, name: string, version?: string) =>
  pool
    .status()
    .features.find((f) => f.name === name && (version === undefined || f.version === version))!
    .inUse;

t.test('version matching: lowest sufficient version that has seats', async (t) => {
  const { pool, co } = setup([
    line('cad', '1.0', 1),
    line('cad', '2.9', 1),
    line('cad', '2.10', 1),
  ]);
  t.equal(granted(t, co(1, 'cad', { version: '2' })).version, '2.9');
  t.equal(granted(t, co(2, 'cad', { version: '2' })).version, '2.10', '2.10 > 2.9');
  t.equal(code(co(3, 'cad', { version: '2' })), ErrorCode.NO_SEATS, '1.0 does not serve 2');
  t.equal(granted(t, co(4, 'cad', { version: '1' })).version, '1.0');
  t.equal(code(co(5, 'cad', { version: '2.11' })), ErrorCode.NO_SUCH_VERSION);
  t.equal(code(co(5, 'cad', { version: '2.10.1' })), ErrorCode.NO_SUCH_VERSION);
  t.equal(code(co(5, 'nope')), ErrorCode.NO_SUCH_FEATURE);
  t.equal(code(co(5, 'cad', { version: 'x' })), ErrorCode.BAD_REQUEST);
  t.equal(code(co(5, 'cad', { count: 0 })), ErrorCode.BAD_REQUEST);
  t.equal(code(co(5, 'cad', { count: 65536 })), ErrorCode.BAD_REQUEST);
  pool.assertInvariant();
});

t.test('a vendor filter and equal versions', async (t) => {
  const { pool } = setup([
    line('x', '1', 1, {}, { vendor: 'a' }),
    line('x', '1.0', 1, {}, { vendor: 'b' }),
  ]);
  const r = pool.checkout({
    sessionId: 1n,
    user: 'u',
    host: 'h',
    feature: 'x',
    version: '1.0',
    count: 1,
    wait: false,
    vendor: 'b',
  });
  t.equal(granted(t, r).vendor, 'b');
  const r2 = pool.checkout({
    sessionId: 2n,
    user: 'v',
    host: 'h',
    feature: 'x',
    version: '1.0',
    count: 1,
    wait: false,
    vendor: 'c',
  });
  t.equal(code(r2), ErrorCode.NO_SUCH_FEATURE);
});

t.test(
  'expiry: FEATURE_EXPIRED at the instant, INCREMENT seats vanish, holders kept',
  async (t) => {
    const end = T0 + 1000;
    const { pool, clock, co } = setup([
      line('a', '1', 1, {}, { expires: end }),
      line('b', '1', 1),
      line('b', '1', 1, {}, { expires: end, keyword: 'INCREMENT' }),
      line('c', '1', 1, {}, { expires: end }),
      line('c', '2', 1),
    ]);
    clock.now = end - 1;
    granted(t, co(1, 'a'));
    granted(t, co(2, 'b'));
    granted(t, co(3, 'b'));
    t.equal(
      pool.status().features.find((f) => f.name === 'b')!.expires,
      0,
      'a permanent line: never',
    );
    t.equal(pool.status().features.find((f) => f.name === 'a')!.expires, end);
    clock.now = end;
    t.equal(code(co(4, 'a')), ErrorCode.FEATURE_EXPIRED);
    t.equal(
      code(co(4, 'c', { version: '1' })).toString(),
      'granted',
      'an expired 1 is skipped for a live 2',
    );
    t.equal(pool.leasesOf(4n)[0]!.version, '2');
    const b = pool.status().features.find((f) => f.name === 'b')!;
    t.same([b.count, b.inUse], [1, 2], 'the INCREMENT expired under a holder: kept');
    pool.assertInvariant();
    t.equal(code(co(5, 'b')), ErrorCode.NO_SEATS);
    pool.checkin(2n, pool.leasesOf(2n)[0]!.leaseId);
    t.equal(code(co(5, 'b')), ErrorCode.NO_SEATS, '1 in use of 1: still full');
    pool.checkin(3n, pool.leasesOf(3n)[0]!.leaseId);
    granted(t, co(5, 'b'));
    const st = pool.status().features.find((f) => f.name === 'a')!;
    t.equal(st.expired, true);
    t.equal(st.denied, 1);
    t.equal(st.inUse, 1, 'the holder of the expired feature keeps its lease');
  },
);

t.test('a pool takes its options from its lines that had not expired when parsed', async (t) => {
  const old = { ...line('a', '1', 5, { queue: false }, { expires: T0 }), expired: true };
  const { pool, co } = setup([old, line('a', '1.0', 1)]);
  t.same(
    pool.status().features.map((f) => [f.count, f.expired]),
    [[1, false]],
  );
  granted(t, co(1, 'a'));
  t.equal(
    co(2, 'a', { wait: true }).status,
    'queued',
    'QUEUE=no of the expired line does not apply',
  );
});

t.test('queue: FIFO positions, polls, leaving, grants in order', async (t) => {
  const { pool, co } = setup([line('s', '1', 1)]);
  const a = granted(t, co(1, 's'));
  t.same(co(2, 's', { wait: true }), {
    status: 'queued',
    position: 1,
    queueLength: 1,
    added: true,
  });
  t.same(co(3, 's', { wait: true }), {
    status: 'queued',
    position: 2,
    queueLength: 2,
    added: true,
  });
  t.same(co(4, 's', { wait: true }), {
    status: 'queued',
    position: 3,
    queueLength: 3,
    added: true,
  });
  t.same(
    co(3, 's', { wait: true }),
    { status: 'queued', position: 2, queueLength: 3, added: false },
    'poll',
  );
  t.equal(pool.queuedOf(3n), 1);
  t.same(
    pool.status().queue.map((q) => [q.sessionId, q.position]),
    [
      [2n, 1],
      [3n, 2],
      [4n, 3],
    ],
  );
  t.equal(pool.leaveQueue(2n, 's'), true);
  t.equal(pool.leaveQueue(2n, 's'), false);
  t.same(co(3, 's', { wait: true }), {
    status: 'queued',
    position: 1,
    queueLength: 2,
    added: false,
  });
  t.same(co(4, 's', { wait: true }), {
    status: 'queued',
    position: 2,
    queueLength: 2,
    added: false,
  });
  t.same(co(5, 's'), { status: 'denied', code: ErrorCode.NO_SEATS }, 'no WAIT: denied');
  const c = pool.checkin(1n, a.leaseId);
  t.same(c.ok && [c.released, c.feature], [1, 's']);
  const assigned = pool.takeAssigned();
  t.same(
    assigned.map((l) => [l.sessionId, l.feature]),
    [[3n, 's']],
    'the head of the queue got the seat',
  );
  t.same(pool.takeAssigned(), [], 'taken once');
  t.equal(inUse(pool, 's'), 1);
  t.same(co(4, 's', { wait: true }), {
    status: 'queued',
    position: 1,
    queueLength: 1,
    added: false,
  });
  const g = co(3, 's', { wait: true });
  t.same(
    g.status === 'granted' && [g.fromQueue, g.lease.leaseId],
    [true, assigned[0]!.leaseId],
    'the poll picks it up',
  );
  const again = co(3, 's', { wait: true });
  t.same(
    again.status === 'granted' && again.fromQueue,
    false,
    'a later checkout is a new one (shares the seat)',
  );
  t.equal(pool.queuedOf(3n), 0);
  pool.assertInvariant();
});

t.test('queue: nobody overtakes; limits, QUEUE=no, QUEUE_MAX, impossible counts', async (t) => {
  const { pool, co } = setup([
    line('s', '1', 3),
    line('n', '1', 1, { queue: false }),
    line('m', '1', 1, { queueMax: 2 }),
  ]);
  granted(t, co(1, 's', { count: 2 }));
  t.same(co(2, 's', { count: 2, wait: true }).status, 'queued');
  t.equal(
    code(co(3, 's', { count: 1 })),
    ErrorCode.NO_SEATS,
    'a free seat is kept for the head of the queue',
  );
  t.equal(co(3, 's', { count: 1, wait: true }).status, 'queued');
  t.equal(inUse(pool, 's'), 2);
  t.equal(
    code(co(9, 's', { count: 4, wait: true })),
    ErrorCode.NO_SEATS,
    'more than the count: never queued',
  );
  pool.releaseSession(1n);
  t.same(
    pool.takeAssigned().map((l) => [l.sessionId, l.count]),
    [
      [2n, 2],
      [3n, 1],
    ],
    'granted in order',
  );
  granted(t, co(1, 'n'));
  t.equal(code(co(2, 'n', { wait: true })), ErrorCode.NO_SEATS, 'QUEUE=no');
  granted(t, co(1, 'm'));
  t.equal(co(2, 'm', { wait: true }).status, 'queued');
  t.equal(co(3, 'm', { wait: true }).status, 'queued');
  t.equal(code(co(4, 'm', { wait: true })), ErrorCode.QUEUE_FULL, 'QUEUE_MAX=2');
  t.equal(pool.status().features.find((f) => f.name === 'm')!.denied, 1);
  pool.assertInvariant();
});

t.test('queue: an entry held back by its own user maximum blocks nobody', async (t) => {
  const { pool, co } = setup([line('s', '1', 2, { maxPerUser: 1, dupGroup: 'NONE' })]);
  granted(t, co(1, 's', { user: 'ann' }));
  granted(t, co(2, 's', { user: 'bob' }));
  t.equal(co(3, 's', { user: 'cy', wait: true }).status, 'queued');
  t.equal(co(4, 's', { user: 'dee', wait: true }).status, 'queued');
  // cy takes a seat another way while queued: its queue entry is now over its maximum.
  pool.checkin(2n, pool.leasesOf(2n)[0]!.leaseId);
  t.same(
    pool.takeAssigned().map((l) => l.user),
    ['cy'],
  );
  pool.leaveQueue(4n, 's');
  t.equal(co(5, 's', { user: 'cy', wait: true }).status, 'denied', 'USER_MAX is not queued');
  t.equal(code(co(5, 's', { user: 'cy', wait: true })), ErrorCode.USER_MAX);
  pool.assertInvariant();
});

t.test('queue entries survive a reconnect (same session) and go with releaseSession', async (t) => {
  const { pool, clock, co } = setup([line('s', '1', 1)]);
  granted(t, co(1, 's'));
  co(2, 's', { wait: true });
  co(3, 's', { wait: true });
  clock.now += 5000;
  pool.touch(3n);
  t.same(
    pool.dropStaleQueue(clock.now - 1000).map((e) => e.sessionId),
    [2n],
    'not polled: dropped',
  );
  t.same(co(3, 's', { wait: true }), {
    status: 'queued',
    position: 1,
    queueLength: 1,
    added: false,
  });
  const r = pool.releaseSession(3n);
  t.same(r, { leases: [], queued: ['s'] });
  const r1 = pool.releaseSession(1n);
  t.same(
    r1.leases.map((l) => l.sessionId),
    [1n],
  );
  t.equal(inUse(pool, 's'), 0);
  t.same(pool.takeAssigned(), []);
});

t.test('duplicate grouping', async (t) => {
  const { pool, co } = setup([
    line('uhd', '1', 1),
    line('u', '1', 2, { dupGroup: 'U' }),
    line('h', '1', 2, { dupGroup: 'H' }),
    line('none', '1', 2, { dupGroup: 'NONE' }),
  ]);
  const a = granted(t, co(1, 'uhd', { user: 'ann', host: 'x' }));
  const b = co(2, 'uhd', { user: 'ann', host: 'x' });
  t.same(b.status === 'granted' && b.shared, true, 'same user+host, another session: shares');
  const bl = (b as { lease: Lease }).lease;
  t.not(a.leaseId, bl.leaseId, 'each checkout has its own lease');
  t.equal(a.groupKey, bl.groupKey);
  t.equal(inUse(pool, 'uhd'), 1);
  t.equal(
    code(co(3, 'uhd', { user: 'ann', host: 'y' })),
    ErrorCode.NO_SEATS,
    'other host: another seat',
  );
  t.equal(
    code(co(3, 'uhd', { user: 'bob', host: 'x' })),
    ErrorCode.NO_SEATS,
    'other user: another seat',
  );
  const c1 = pool.checkin(1n, a.leaseId);
  t.same(c1.ok && c1.released, 0, 'the group still holds the seat');
  t.equal(inUse(pool, 'uhd'), 1);
  const c2 = pool.checkin(2n, bl.leaseId);
  t.same(c2.ok && c2.released, 1, 'the last lease frees it');

  granted(t, co(1, 'u', { user: 'ann', host: 'x' }));
  granted(t, co(2, 'u', { user: 'ann', host: 'y' }));
  t.equal(inUse(pool, 'u'), 1, 'U: one seat per user on any host');
  granted(t, co(1, 'h', { user: 'ann', host: 'x' }));
  granted(t, co(2, 'h', { user: 'bob', host: 'x' }));
  t.equal(inUse(pool, 'h'), 1, 'H: one seat per host');
  granted(t, co(1, 'none', { user: 'ann', host: 'x' }));
  granted(t, co(1, 'none', { user: 'ann', host: 'x' }));
  t.equal(inUse(pool, 'none'), 2, 'NONE: every checkout a seat');
  t.equal(code(co(1, 'none', { user: 'ann', host: 'x' })), ErrorCode.NO_SEATS);

  // A group holds as many seats as its largest lease.
  const g = setup([line('g', '1', 3)]);
  const l1 = granted(t, g.co(1, 'g', { user: 'a', host: 'x', count: 1 }));
  const l2 = granted(t, g.co(2, 'g', { user: 'a', host: 'x', count: 3 }));
  t.equal(inUse(g.pool, 'g'), 3);
  t.equal(code(g.co(3, 'g', { user: 'a', host: 'x', count: 4 })), ErrorCode.NO_SEATS);
  const r = g.pool.checkin(2n, l2.leaseId);
  t.same(r.ok && r.released, 2);
  t.equal(inUse(g.pool, 'g'), 1);
  g.pool.checkin(1n, l1.leaseId);
  t.equal(inUse(g.pool, 'g'), 0);
  pool.assertInvariant();
  g.pool.assertInvariant();
});

t.test('per-user maximum counts seats, at its exact boundary', async (t) => {
  const { pool, co } = setup([line('s', '1', 10, { maxPerUser: 2 })]);
  granted(t, co(1, 's', { user: 'ann', host: 'a' }));
  granted(t, co(2, 's', { user: 'ann', host: 'b' }), 'second seat: at the maximum');
  t.equal(code(co(3, 's', { user: 'ann', host: 'c' })), ErrorCode.USER_MAX, 'third seat: over');
  t.equal(
    code(co(3, 's', { user: 'ann', host: 'c', wait: true })),
    ErrorCode.USER_MAX,
    'not queued',
  );
  granted(t, co(4, 's', { user: 'ann', host: 'a' }), 'sharing a seat already held is not refused');
  granted(t, co(5, 's', { user: 'bob', host: 'c', count: 2 }));
  t.equal(
    code(co(6, 's', { user: 'cy', host: 'd', count: 3 })),
    ErrorCode.USER_MAX,
    'count above the maximum',
  );
  t.equal(pool.status().features[0]!.denied, 3);
  t.equal(pool.status().features[0]!.issued, 4);
});

t.test('per-host maximum counts seats, at its exact boundary', async (t) => {
  const { pool, co } = setup([line('s', '1', 10, { maxPerHost: 2, maxPerUser: 5 })]);
  granted(t, co(1, 's', { user: 'a', host: 'x' }));
  granted(t, co(2, 's', { user: 'b', host: 'x' }));
  t.equal(code(co(3, 's', { user: 'c', host: 'x' })), ErrorCode.HOST_MAX);
  granted(t, co(3, 's', { user: 'c', host: 'y', count: 2 }));
  t.equal(
    code(co(4, 's', { user: 'c', host: 'y', count: 3 })),
    ErrorCode.HOST_MAX,
    'growing the group over',
  );
  pool.assertInvariant();
});

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

// ------------------------------------------------------------------ reservations

const resUser = (name: string, count: number): Reservation => ({ type: 'user', name, count });
const resHost = (name: string, count: number): Reservation => ({ type: 'host', name, count });

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
