/** lib/license/invariant.ts: every broken rule and index is reported. */
import t from 'tap';
import { refresh } from '../../lib/license/capacity.ts';
import { checkInvariant } from '../../lib/license/invariant.ts';
import { type LeaseRec, Ledger, newPool } from '../../lib/license/ledger.ts';
import { EMPTY_POLICY } from '../../lib/license/options.ts';
import { Queues } from '../../lib/license/queue.ts';
import { line, resUser } from './helpers.ts';

function world(count = 2) {
  const ledger = new Ledger();
  const queues = new Queues();
  const p = newPool('a', 'acme', '1', [
    line('a', '1', count, {}, { reservations: [resUser('r', 1)] }),
  ]);
  ledger.pools.set(p.key, p);
  // As the pool does on load: the ceilings start at the count and the unreserved seats.
  refresh(p, 0, EMPTY_POLICY);
  const lease = (id: bigint, o: Partial<LeaseRec> = {}): LeaseRec => {
    const l: LeaseRec = {
      leaseId: id,
      sessionId: id,
      user: `u${id}`,
      host: 'h',
      addr: '',
      credential: '',
      feature: 'a',
      version: '1',
      vendor: 'acme',
      count: 1,
      grantedAt: 0,
      groupKey: `g${id}`,
      pool: p,
      pending: false,
      lastActive: 0,
      ...o,
    };
    ledger.add(l);
    return l;
  };
  const check = () => checkInvariant(ledger, queues, EMPTY_POLICY, 0);
  return { ledger, queues, p, lease, check };
}

t.test('a consistent state passes', async (t) => {
  const w = world();
  w.lease(1n, { user: 'r' });
  w.lease(2n);
  t.doesNotThrow(w.check);
});

t.test('over the count, over the unreserved seats', async (t) => {
  const a = world(2);
  a.lease(1n);
  a.lease(2n, { user: 'r' });
  a.lease(3n, { user: 'r' });
  t.throws(a.check, /3 in use > count 2/);
  const b = world(2);
  b.lease(1n);
  b.lease(2n);
  t.throws(b.check, /2 seats in use outside reservations > 1 unreserved/);
});

t.test('bookkeeping: seats, groups, indexes, queues', async (t) => {
  const a = world();
  a.lease(1n);
  a.p.inUse = 2;
  t.throws(a.check, /counts 2 in use, groups hold 1/);
  const b = world();
  b.lease(1n);
  b.p.groups.get('g1')!.seats = 2;
  t.throws(b.check, /has 2 seats, leases need 1/);
  const c = world();
  const l = c.lease(1n);
  c.ledger.bySession.get(1n)!.delete(l);
  t.throws(c.check, /session index/);
  const d = world();
  d.lease(1n, { credential: 'x' });
  d.ledger.byCredential.clear();
  t.throws(d.check, /credential index out of step/);
  const e = world();
  e.lease(1n, { pending: true });
  e.queues.push({
    sessionId: 1n,
    user: 'u1',
    host: 'h',
    addr: '',
    feature: 'a',
    version: '',
    count: 1,
    since: 0,
    lastPoll: 0,
  });
  t.throws(e.check, /queued and assigned/);
  const f = world();
  const m = f.lease(1n);
  f.ledger.leases.delete(m.leaseId);
  t.throws(f.check, /misfiled/);
});
