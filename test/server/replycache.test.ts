import t from 'tap';
import { ReplyCache } from '../../lib/server/replycache.ts';

const b = (n: number) => new Uint8Array([n]);

t.test('get returns what set stored until it expires, at the exact TTL', async (t) => {
  const c = new ReplyCache(4, 1000);
  c.set('a', b(1), 100);
  t.same(c.get('a', 100), b(1));
  t.same(c.get('a', 1099), b(1), 'fresh 1 ms before the TTL');
  t.equal(c.get('a', 1100), undefined, 'gone at now + TTL');
  t.equal(c.get('b', 100), undefined, 'never set');
});

t.test('bounded: the oldest entry goes when the max is reached', async (t) => {
  const c = new ReplyCache(3, 60_000);
  for (const k of ['a', 'b', 'c']) c.set(k, b(k.charCodeAt(0)), 0);
  t.equal(c.size, 3);
  t.ok(c.get('a', 0), 'three fit');
  c.set('d', b(4), 0);
  t.equal(c.size, 3);
  t.equal(c.get('a', 0), undefined, 'the oldest was evicted');
  t.same(c.get('b', 0), b('b'.charCodeAt(0)));
  t.same(c.get('d', 0), b(4));
  // Many more: the cache never holds more than its max, and keeps the newest.
  for (let i = 0; i < 10_000; i++) c.set(`k${i}`, b(i & 0xff), i);
  t.equal(c.size, 3);
  t.same(c.get('k9999', 9999), b(9999 & 0xff));
  t.same(c.get('k9997', 9999), b(9997 & 0xff));
  t.equal(c.get('k9996', 9999), undefined);
});

t.test('setting a key again replaces its reply; evicting the older slot keeps it', async (t) => {
  const c = new ReplyCache(3, 60_000);
  c.set('a', b(1), 0);
  c.set('b', b(2), 0);
  c.set('a', b(3), 0);
  t.same(c.get('a', 0), b(3), 'the newer reply');
  t.equal(c.size, 2, 'one live entry per key');
  c.set('c', b(4), 0); // evicts the first slot, which held the older 'a'
  t.same(c.get('a', 0), b(3), 'the newer a survives its old slot');
  t.same(c.get('b', 0), b(2));
  c.set('d', b(5), 0); // evicts 'b'
  t.equal(c.get('b', 0), undefined);
  t.same(c.get('a', 0), b(3));
});

t.test('sweep drops expired entries from the front, within its budget', async (t) => {
  const c = new ReplyCache(10, 100);
  for (let i = 0; i < 6; i++) c.set(`k${i}`, b(i), i * 10); // expire at 100, 110, … 150
  c.sweep(120, 2);
  t.equal(c.size, 4, 'budget 2: two dropped although three are due');
  c.sweep(120);
  t.equal(c.size, 3, 'the third due entry');
  t.equal(c.get('k2', 0), undefined);
  t.same(c.get('k3', 0), b(3), 'not yet due: kept');
  c.sweep(1000);
  t.equal(c.size, 0);
  c.set('again', b(9), 1000);
  t.same(c.get('again', 1000), b(9), 'usable after emptying');
});

t.test('constructor refuses bad bounds', async (t) => {
  t.throws(() => new ReplyCache(0, 1), RangeError);
  t.throws(() => new ReplyCache(1.5, 1), RangeError);
  t.throws(() => new ReplyCache(1, 0), RangeError);
});
