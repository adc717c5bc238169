/** lib/license/ledger.ts: groups share seats, every index follows adds and removes. */
import t from 'tap';
import {
  groupKeyOf,
  type LeaseRec,
  Ledger,
  newPool,
  publicLease,
} from '../../lib/license/ledger.ts';
import { line } from './helpers.ts';

function rec(pool: ReturnType<typeof newPool>, id: bigint, o: Partial<LeaseRec> = {}): LeaseRec {
  return {
    leaseId: id,
    sessionId: 1n,
    user: 'u',
    host: 'h',
    addr: '',
    credential: '',
    feature: pool.name,
    version: pool.version,
    vendor: pool.vendor,
    count: 1,
    grantedAt: 0,
    groupKey: 'g',
    pool,
    pending: false,
    lastActive: 0,
    ...o,
  };
}

t.test('groupKeyOf: one key per duplicate grouping', async (t) => {
  t.equal(groupKeyOf('UHD', 'u', 'h', undefined), 'UH\0u\0h');
  t.equal(groupKeyOf('UH', 'u', 'h', 5n), 'UH\0u\0h');
  t.equal(groupKeyOf('U', 'u', 'h', undefined), 'U\0u');
  t.equal(groupKeyOf('H', 'u', 'h', undefined), 'H\0h');
  t.equal(groupKeyOf('NONE', 'u', 'h', 5n), 'L\x005');
});

t.test('add and remove: seats of a group are its largest lease', async (t) => {
  const ledger = new Ledger();
  const p = newPool('a', 'acme', '1', [line('a', '1', 9)]);
  ledger.pools.set(p.key, p);
  const a = rec(p, 1n, { count: 2 });
  const b = rec(p, 2n, { count: 3, sessionId: 2n, credential: 'c' });
  const c = rec(p, 3n, { groupKey: 'other', credential: 'c' });
  t.same([ledger.add(a), ledger.add(b), ledger.add(c)], [2, 1, 1], 'seats each add took');
  t.equal(p.inUse, 4);
  t.same(
    [...(ledger.bySession.get(1n) ?? [])].map((l) => l.leaseId),
    [1n, 3n],
  );
  t.same(
    [...(ledger.byCredential.get('c') ?? [])].map((l) => l.leaseId),
    [2n, 3n],
  );
  t.equal(ledger.remove(b), 1, 'back to the other lease of the group');
  t.equal(ledger.remove(a), 2);
  t.notOk(p.groups.has('g'), 'an empty group goes');
  t.equal(ledger.remove(c), 1);
  t.same(
    [p.inUse, ledger.leases.size, ledger.bySession.size, ledger.byCredential.size],
    [0, 0, 0, 0],
  );
  t.same(ledger.poolsNamed('a'), [p]);
  t.same(ledger.poolsNamed('b'), []);
  const pub = publicLease(rec(p, 9n, { addr: '10.0.0.1', pending: true }));
  t.same(Object.keys(pub).sort(), [
    'addr',
    'count',
    'credential',
    'feature',
    'grantedAt',
    'groupKey',
    'host',
    'leaseId',
    'sessionId',
    'user',
    'vendor',
    'version',
  ]);
});

t.test('pendingOf: the lease assigned from the queue, not yet picked up', async (t) => {
  const ledger = new Ledger();
  const p = newPool('a', 'acme', '1', []);
  ledger.add(rec(p, 1n));
  ledger.add(rec(p, 2n, { pending: true, groupKey: 'x' }));
  t.equal(ledger.pendingOf(1n, 'a')?.leaseId, 2n);
  t.equal(ledger.pendingOf(1n, 'b'), undefined);
  t.equal(ledger.pendingOf(2n, 'a'), undefined);
});
