/** lib/license/admission.ts through the pool: versions, expiry, duplicate groups, limits. */
import t from 'tap';
import type { Lease } from '../../lib/license/pool.ts';
import { ErrorCode } from '../../lib/wire/index.ts';
import { code, granted, inUse, line, setup, T0 } from './helpers.ts';

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

// ------------------------------------------------------------------ declared names vs. source address

t.test(
  'MAX_PER_HOST counts the source address: 20 made-up user/host pairs from one address',
  async (t) => {
    const { pool, co } = setup([line('demo', '1', 20, { maxPerUser: 2, maxPerHost: 2 })]);
    const results = Array.from({ length: 20 }, (_, i) =>
      co(i + 1, 'demo', { user: `user${i + 1}`, host: `host${i + 1}`, addr: '127.0.0.1' }),
    );
    t.equal(results.filter((r) => r.status === 'granted').length, 2, 'at most MAX_PER_HOST seats');
    t.same(results.slice(2).map(code), Array(18).fill(ErrorCode.HOST_MAX), 'the rest: HOST_MAX');
    t.equal(inUse(pool, 'demo'), 2);
    // The same address spelled as IPv4-mapped IPv6 is the same host.
    t.equal(
      code(co(30, 'demo', { user: 'x', host: 'y', addr: '::ffff:127.0.0.1' })),
      ErrorCode.HOST_MAX,
    );
    // Another address gets its own MAX_PER_HOST.
    granted(t, co(31, 'demo', { user: 'x', host: 'y', addr: '127.0.0.2' }));
    granted(t, co(32, 'demo', { user: 'x2', host: 'y2', addr: '127.0.0.2' }));
    t.equal(
      code(co(33, 'demo', { user: 'x3', host: 'y3', addr: '127.0.0.2' })),
      ErrorCode.HOST_MAX,
    );
    t.equal(pool.leasesOf(31n)[0]!.addr, '127.0.0.2', 'the lease records the address');
    // Unknown address (''): only the declared host counts, as before.
    granted(t, co(40, 'demo', { user: 'a', host: 'b' }));
    pool.assertInvariant();
  },
);

t.test('two source addresses with made-up names: at most 2 × MAX_PER_HOST', async (t) => {
  const { pool, co } = setup([line('demo', '1', 300, { maxPerHost: 2 })]);
  let n = 0;
  for (let i = 0; i < 300; i++) {
    const r = co(i + 1, 'demo', {
      user: `u${i}`,
      host: `h${i}`,
      addr: i % 2 ? '10.0.0.1' : '10.0.0.2',
    });
    if (r.status === 'granted') n++;
  }
  t.equal(n, 4);
  t.equal(inUse(pool, 'demo'), 4);
});

t.test('the address cap is at its exact boundary and shares duplicate groups', async (t) => {
  const { pool, co } = setup([line('s', '1', 9, { maxPerHost: 3 })]);
  granted(t, co(1, 's', { user: 'a', host: 'h', addr: '2001:db8::1', count: 2 }));
  // Same user/host group from the same address: shares the seats, no more.
  const shared = co(2, 's', { user: 'a', host: 'h', addr: '2001:DB8:0::1', count: 2 });
  t.equal(shared.status === 'granted' && shared.shared, true, 'a shared seat adds nothing');
  granted(t, co(3, 's', { user: 'b', host: 'k', addr: '2001:db8::1' }), '3 of 3');
  t.equal(code(co(4, 's', { user: 'c', host: 'm', addr: '2001:db8::1' })), ErrorCode.HOST_MAX);
  t.throws(() => co(5, 's', { addr: 'not-an-ip' }), RangeError, 'a bad addr is API misuse');
  pool.assertInvariant();
});

t.test('credential caps: sessions of one credential together hold at most N seats', async (t) => {
  const { pool, co } = setup([line('a', '1', 10), line('b', '1', 10, { dupGroup: 'NONE' })]);
  const cap = { id: 'demo', seats: 3 };
  granted(t, co(1, 'a', { credentialCap: cap, count: 2 }));
  granted(t, co(2, 'b', { credentialCap: cap }), 'another feature, another session: 3 of 3');
  t.equal(code(co(3, 'a', { credentialCap: cap })), ErrorCode.USER_MAX, 'over the cap');
  t.equal(code(co(3, 'b', { credentialCap: cap })), ErrorCode.USER_MAX, 'NONE groups too');
  // Sharing an existing seat of the credential adds none.
  const again = co(4, 'a', { user: 'u1', host: 'h1', credentialCap: cap, count: 2 });
  t.equal(again.status === 'granted' && again.shared, true);
  granted(t, co(5, 'a', { credentialCap: { id: 'other', seats: 3 } }), 'another credential');
  granted(t, co(6, 'a'), 'no cap');
  t.equal(pool.leasesOf(1n)[0]!.credential, 'demo');
  pool.checkin(2n, pool.leasesOf(2n)[0]!.leaseId);
  granted(t, co(3, 'a', { credentialCap: cap }), 'a seat back under the cap');
  t.equal(code(co(7, 'a', { credentialCap: { id: 'zero', seats: 0 } })), ErrorCode.USER_MAX);
  t.throws(() => co(8, 'a', { credentialCap: { id: '', seats: 1 } }), /req\.credentialCap\.id/);
  t.throws(
    () => co(8, 'a', { credentialCap: { id: 'x', seats: -1 } }),
    /req\.credentialCap\.seats/,
  );
  pool.assertInvariant();
});

t.test('credential caps apply to queued entries when their seat comes', async (t) => {
  const { pool, co } = setup([line('a', '1', 1), line('b', '1', 5)]);
  const cap = { id: 'c', seats: 1 };
  const first = granted(t, co(1, 'a', { user: 'x' }));
  t.equal(co(2, 'a', { credentialCap: cap, wait: true }).status, 'queued');
  granted(t, co(3, 'b', { credentialCap: cap }), 'the credential now holds its one seat');
  pool.checkin(1n, first.leaseId);
  t.same(pool.takeAssigned(), [], 'the queued entry is held back by its cap');
  t.equal(pool.queuedOf(2n), 1);
  pool.checkin(3n, pool.leasesOf(3n)[0]!.leaseId);
  t.same(
    pool.takeAssigned().map((l) => l.sessionId),
    [2n],
  );
  pool.assertInvariant();
});
