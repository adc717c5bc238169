/** lib/license/queue.ts: the queues' order and index, and queueing through the pool. */
import t from 'tap';
import { type QueueEntry, Queues } from '../../lib/license/queue.ts';
import { ErrorCode } from '../../lib/wire/index.ts';
import { code, granted, inUse, line, setup } from './helpers.ts';

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

t.test('Queues: FIFO per feature, a per-session index, filter and touch', async (t) => {
  const q = new Queues();
  const e = (s: number, feature: string, credential?: string): QueueEntry => ({
    sessionId: BigInt(s),
    user: `u${s}`,
    host: `h${s}`,
    addr: '',
    ...(credential ? { credential: { id: credential, seats: 1 } } : {}),
    feature,
    version: '',
    count: 1,
    since: 0,
    lastPoll: 0,
  });
  t.ok(q.push(e(1, 'a')));
  t.ok(q.push(e(2, 'a', 'c')));
  t.ok(q.push(e(1, 'b', 'c')));
  t.notOk(q.push(e(1, 'a')), 'one entry per session and feature');
  t.same(
    [q.position(1n, 'a'), q.position(2n, 'a'), q.position(1n, 'b'), q.position(3n, 'a')],
    [1, 2, 1, 0],
  );
  t.same([q.countOf(1n), q.countOf(2n), q.countOf(3n)], [2, 1, 0]);
  t.same(q.featuresOf(1n).sort(), ['a', 'b']);
  t.same(q.featuresOfCredential('c').sort(), ['a', 'b']);
  q.touch(1n, 50);
  t.same(
    [...q.entries()].map((x) => [x.sessionId, x.feature, x.lastPoll]),
    [
      [1n, 'a', 50],
      [2n, 'a', 0],
      [1n, 'b', 50],
    ],
  );
  t.same(
    q.filter('a', (x) => x.sessionId !== 1n).map((x) => x.sessionId),
    [1n],
    'filter returns what it removed',
  );
  t.same([q.position(2n, 'a'), q.countOf(1n)], [1, 1]);
  t.equal(q.remove(1n, 'b')?.feature, 'b');
  t.equal(q.remove(1n, 'b'), undefined);
  t.same(q.featuresOfCredential('c'), ['a']);
  t.same(q.features(), ['a']);
  q.check();
  t.equal(q.remove(2n, 'a')?.sessionId, 2n);
  t.same([q.features(), q.featuresOfCredential('c'), q.countOf(2n)], [[], [], 0]);
  q.check();
});

t.test("queuedOf and touch look only at the session's own entries", async (t) => {
  const { pool, co, clock } = setup([line('s', '1', 1), line('z', '1', 1)]);
  granted(t, co(1, 's'));
  granted(t, co(1, 'z'));
  for (let s = 2; s < 200; s++) co(s, s % 2 ? 's' : 'z', { wait: true });
  co(200, 's', { wait: true });
  co(200, 'z', { wait: true });
  t.same(
    [pool.queuedOf(200n), pool.queuedOf(2n), pool.queuedOf(1n), pool.queuedOf(999n)],
    [2, 1, 0, 0],
  );
  clock.now += 10;
  pool.touch(200n);
  const dropped = pool.dropStaleQueue(clock.now);
  t.equal(dropped.length, 198, 'every entry but the touched ones is stale');
  t.equal(pool.queuedOf(200n), 2);
  pool.assertInvariant();
});
