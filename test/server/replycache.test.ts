import t from 'tap';
import { ReplyCache } from '../../lib/server/replycache.ts';

const b = (n: number) => new Uint8Array([n]);
const A = '192.0.2.1';
/** `set` from a fixed source: the tests that are about bounds and time. */
const put = (c: ReplyCache, key: string, bytes: Uint8Array, now: number) =>
  c.set(key, bytes, A, 5000, now);
const bytesOf = (c: ReplyCache, key: string, now: number) => c.get(key, now)?.bytes;

t.test('get returns what set stored until it expires, at the exact TTL', async (t) => {
  const c = new ReplyCache(4, 1000);
  c.set('a', b(1), '198.51.100.9', 65535, 100);
  t.same(c.get('a', 100), { bytes: b(1), address: '198.51.100.9', port: 65535, resent: 0 });
  t.same(bytesOf(c, 'a', 1099), b(1), 'fresh 1 ms before the TTL');
  t.equal(c.get('a', 1100), undefined, 'gone at now + TTL');
  t.equal(c.get('b', 100), undefined, 'never set');
});

t.test('each entry keeps the address and port its request came from', async (t) => {
  const c = new ReplyCache(4, 1000);
  c.set('a', b(1), '::1', 1, 0);
  c.set('b', b(2), '127.0.0.2', 40000, 0);
  t.match(c.get('a', 0), { address: '::1', port: 1 });
  t.match(c.get('b', 0), { address: '127.0.0.2', port: 40000 });
  c.set('a', b(3), '127.0.0.3', 7, 0);
  t.match(c.get('a', 0), { bytes: b(3), address: '127.0.0.3', port: 7 }, 'replaced with the key');
});

t.test('resent counts resends per entry, saturates at 255, restarts on set', async (t) => {
  const c = new ReplyCache(4, 1000);
  put(c, 'a', b(1), 0);
  put(c, 'b', b(2), 0);
  c.resent('a');
  c.resent('a');
  t.equal(c.get('a', 0)!.resent, 2);
  t.equal(c.get('b', 0)!.resent, 0, 'other entries untouched');
  for (let i = 0; i < 300; i++) c.resent('b');
  t.equal(c.get('b', 0)!.resent, 255, 'saturates');
  c.resent('nobody'); // no entry: nothing to count
  t.equal(c.size, 2);
  put(c, 'a', b(3), 0);
  t.equal(c.get('a', 0)!.resent, 0, 'a new reply for the key starts at 0');
  // The count belongs to the slot: a new entry in a reused slot starts at 0.
  put(c, 'c', b(4), 0); // the ring is full now: a (old), b, a, c
  put(c, 'd', b(4), 0); // takes the old a's slot
  put(c, 'e', b(4), 0); // takes b's slot, whose count was 255
  t.equal(c.get('b', 0), undefined);
  t.equal(c.get('e', 0)!.resent, 0);
});

t.test('bounded: the oldest entry goes when the max is reached', async (t) => {
  const c = new ReplyCache(3, 60_000);
  for (const k of ['a', 'b', 'c']) put(c, k, b(k.charCodeAt(0)), 0);
  t.equal(c.size, 3);
  t.ok(c.get('a', 0), 'three fit');
  put(c, 'd', b(4), 0);
  t.equal(c.size, 3);
  t.equal(c.get('a', 0), undefined, 'the oldest was evicted');
  t.same(bytesOf(c, 'b', 0), b('b'.charCodeAt(0)));
  t.same(bytesOf(c, 'd', 0), b(4));
  // Many more: the cache never holds more than its max, and keeps the newest.
  for (let i = 0; i < 10_000; i++) c.set(`k${i}`, b(i & 0xff), A, i & 0xffff, i);
  t.equal(c.size, 3);
  t.same(c.get('k9999', 9999), { bytes: b(9999 & 0xff), address: A, port: 9999, resent: 0 });
  t.same(bytesOf(c, 'k9997', 9999), b(9997 & 0xff));
  t.equal(c.get('k9996', 9999), undefined);
});

t.test('setting a key again replaces its reply; evicting the older slot keeps it', async (t) => {
  const c = new ReplyCache(3, 60_000);
  put(c, 'a', b(1), 0);
  put(c, 'b', b(2), 0);
  put(c, 'a', b(3), 0);
  t.same(bytesOf(c, 'a', 0), b(3), 'the newer reply');
  t.equal(c.size, 2, 'one live entry per key');
  put(c, 'c', b(4), 0); // evicts the first slot, which held the older 'a'
  t.same(bytesOf(c, 'a', 0), b(3), 'the newer a survives its old slot');
  t.same(bytesOf(c, 'b', 0), b(2));
  put(c, 'd', b(5), 0); // evicts 'b'
  t.equal(c.get('b', 0), undefined);
  t.same(bytesOf(c, 'a', 0), b(3));
});

t.test('sweep drops expired entries from the front, within its budget', async (t) => {
  const c = new ReplyCache(10, 100);
  for (let i = 0; i < 6; i++) put(c, `k${i}`, b(i), i * 10); // expire at 100, 110, … 150
  c.sweep(120, 2);
  t.equal(c.size, 4, 'budget 2: two dropped although three are due');
  c.sweep(120);
  t.equal(c.size, 3, 'the third due entry');
  t.equal(c.get('k2', 0), undefined);
  t.same(bytesOf(c, 'k3', 0), b(3), 'not yet due: kept');
  c.sweep(1000);
  t.equal(c.size, 0);
  put(c, 'again', b(9), 1000);
  t.same(bytesOf(c, 'again', 1000), b(9), 'usable after emptying');
});

t.test('constructor refuses bad bounds', async (t) => {
  t.throws(() => new ReplyCache(0, 1), RangeError);
  t.throws(() => new ReplyCache(1.5, 1), RangeError);
  t.throws(() => new ReplyCache(1, 0), RangeError);
});
