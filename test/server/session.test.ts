import t from 'tap';
import { KeyedHmac, randomBytes } from '../../lib/crypto/hmac.ts';
import { HmacCache, type KeyDeriver, Session } from '../../lib/server/session.ts';

function session(
  cache: HmacCache,
  id: number,
  derive: KeyDeriver = () => randomBytes(32),
): Session {
  return new Session(
    {
      id: BigInt(id),
      token: new Uint8Array([id & 0xff]),
      user: 'u',
      host: 'h',
      vendor: 'v',
      expires: 1,
      address: '127.0.0.1',
      port: 1,
      lastSeen: 0,
    },
    cache,
    derive,
  );
}

t.test('HmacCache keeps at most max entries and every one of the last max/2', async (t) => {
  const c = new HmacCache(8);
  const ss = Array.from({ length: 40 }, (_, i) => session(c, i));
  const hs = ss.map(() => new KeyedHmac(randomBytes(32)));
  for (let i = 0; i < ss.length; i++) {
    c.set(ss[i]!, hs[i]!);
    t.ok(c.size <= 8, `size ${c.size} ≤ 8 after ${i + 1} sets`);
    for (let j = Math.max(0, i - 3); j <= i; j++)
      t.equal(c.get(ss[j]!), hs[j], `${j} kept at ${i}`);
  }
  t.equal(c.get(ss[0]!), undefined, 'long evicted');
});

t.test('HmacCache: a get refreshes an old-generation entry; delete forgets', async (t) => {
  const c = new HmacCache(4); // generations of 2
  const [a, b, x, y] = [1, 2, 3, 4].map((i) => session(c, i)) as [
    Session,
    Session,
    Session,
    Session,
  ];
  const ha = new KeyedHmac(randomBytes(32));
  c.set(a, ha);
  c.set(b, new KeyedHmac(randomBytes(32))); // young full: a, b become the old generation
  t.equal(c.get(a), ha, 'a found in the old generation and moved to the young one');
  c.set(x, new KeyedHmac(randomBytes(32))); // young (a, x) full: old (b) dropped
  t.equal(c.get(b), undefined, 'b was not refreshed: dropped');
  t.equal(c.get(a), ha, 'a survived');
  c.delete(a);
  t.equal(c.get(a), undefined);
  c.set(y, new KeyedHmac(randomBytes(32)));
  t.ok(c.get(y));
  t.throws(() => new HmacCache(1), RangeError);
  t.throws(() => new HmacCache(2.5), RangeError);
});

t.test(
  'Session.hmac is derived once, re-derived after eviction, dead when underivable',
  async (t) => {
    const c = new HmacCache(2);
    let derived = 0;
    const key = randomBytes(32);
    const s = session(c, 1, () => {
      derived++;
      return key;
    });
    const msg = randomBytes(40);
    const tag = s.hmac.mac(msg);
    t.equal(derived, 1);
    t.ok(s.hmac.verify(tag, msg));
    t.equal(derived, 1, 'cached');
    session(c, 2).hmac; // pushes s out of a 2-entry cache
    session(c, 3).hmac;
    t.ok(s.hmac.verify(tag, msg), 'same key after re-derivation');
    t.equal(derived, 2, 're-derived after eviction');
    const dead = session(c, 4, () => undefined);
    t.notOk(dead.hmac.verify(tag, msg), 'a session whose key is gone verifies nothing');
  },
);
