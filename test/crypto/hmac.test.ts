import { createHmac, hkdfSync } from 'node:crypto';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import t from 'tap';
import {
  concatBytes,
  equalBytes,
  hkdfSha256,
  hmacSha256,
  KeyedHmac,
  label,
  randomBytes,
  u32be,
  u64be,
} from '../../lib/crypto/hmac.ts';
import { fromHex, toHex } from '../../lib/wire/index.ts';

t.test('KeyedHmac matches RFC 4231 test case 2 and stays correct on reuse', async (t) => {
  const h = new KeyedHmac(label('Jefe'));
  const want = '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843';
  t.equal(toHex(h.mac(label('what do ya want for nothing?'))), want);
  t.equal(
    toHex(h.mac(label('what do ya '), label('want for nothing?'))),
    want,
    'parts concatenate',
  );
  t.equal(toHex(h.mac(label('what do ya want for nothing?'))), want, 'third use, same answer');
  t.equal(toHex(hmacSha256(label('Jefe'), label('what do ya want for nothing?'))), want);
});

t.test(
  'KeyedHmac agrees with one-shot noble hmac across lengths and interleaved keys',
  async (t) => {
    const k1 = randomBytes(32);
    const k2 = randomBytes(32);
    const a = new KeyedHmac(k1);
    const b = new KeyedHmac(k2);
    for (const n of [0, 1, 55, 56, 63, 64, 65, 200, 1200]) {
      const m = randomBytes(n);
      t.same(a.mac(m), hmac(sha256, k1, m), `k1 length ${n}`);
      t.same(b.mac(m), hmac(sha256, k2, m), `k2 length ${n}`);
    }
  },
);

t.test('macInto writes at an offset and verify is exact', async (t) => {
  const h = new KeyedHmac(randomBytes(32));
  const m = randomBytes(100);
  const out = new Uint8Array(40);
  h.macInto(out, 8, m);
  t.same(out.subarray(8), h.mac(m));
  t.same(out.subarray(0, 8), new Uint8Array(8));
  t.throws(() => h.macInto(out, 9, m), RangeError);
  const tag = h.mac(m);
  t.ok(h.verify(tag, m));
  tag[31]! ^= 1;
  t.notOk(h.verify(tag, m));
  t.notOk(h.verify(tag.subarray(0, 31), m), 'short tag');
  t.throws(() => new KeyedHmac(new Uint8Array(0)), TypeError);
});

t.test('hkdfSha256 matches RFC 5869 test case 1', async (t) => {
  const okm = hkdfSha256(
    fromHex('0b'.repeat(22)),
    fromHex('000102030405060708090a0b0c'),
    fromHex('f0f1f2f3f4f5f6f7f8f9'),
    42,
  );
  t.equal(
    toHex(okm),
    '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865',
  );
  t.throws(() => hkdfSha256(okm, okm, okm, 0), RangeError);
  t.throws(() => hkdfSha256(okm, okm, okm, 8161), RangeError);
});

t.test('equalBytes, randomBytes, concatBytes, u32be, u64be', async (t) => {
  t.ok(equalBytes(new Uint8Array([1, 2]), new Uint8Array([1, 2])));
  t.notOk(equalBytes(new Uint8Array([1, 2]), new Uint8Array([1, 3])));
  t.notOk(equalBytes(new Uint8Array([1, 2]), new Uint8Array([1, 2, 3])));
  t.equal(randomBytes(16).length, 16);
  t.notSame(randomBytes(16), randomBytes(16));
  t.throws(() => randomBytes(-1), RangeError);
  t.same(
    concatBytes(new Uint8Array([1]), new Uint8Array([]), new Uint8Array([2, 3])),
    new Uint8Array([1, 2, 3]),
  );
  t.same(u32be(0x01020304), new Uint8Array([1, 2, 3, 4]));
  t.same(u32be(0xffffffff), new Uint8Array([255, 255, 255, 255]));
  t.throws(() => u32be(2 ** 32), RangeError);
  t.throws(() => u32be(-1), RangeError);
  t.same(u64be(0x0102030405060708n), new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
  t.throws(() => u64be(1n << 64n), RangeError);
});

t.test('signTrailing and verifyTrailing: the tag is the HMAC of the bytes before it', async (t) => {
  const key = randomBytes(32);
  const h = new KeyedHmac(key);
  for (const n of [32, 33, 64, 96, 119, 120, 200, 1200]) {
    const b = randomBytes(n);
    h.signTrailing(b);
    t.same(b.subarray(n - 32), hmac(sha256, key, b.subarray(0, n - 32)), `length ${n}`);
    t.ok(h.verifyTrailing(b), `verifies at ${n}`);
    for (const i of [0, n - 33, n - 32, n - 1]) {
      if (i < 0) continue;
      const c = new Uint8Array(b);
      c[i]! ^= 0x80;
      t.notOk(h.verifyTrailing(c), `length ${n}, bit flipped at ${i}`);
    }
    t.notOk(new KeyedHmac(randomBytes(32)).verifyTrailing(b), 'another key');
  }
  t.notOk(h.verifyTrailing(new Uint8Array(31)), 'shorter than a tag');
  t.throws(() => h.signTrailing(new Uint8Array(31)), RangeError);
  // A subarray view signs and verifies its own range only.
  const big = randomBytes(100);
  const view = big.subarray(10, 90);
  h.signTrailing(view);
  t.same(big.subarray(58, 90), hmac(sha256, key, big.subarray(10, 58)));
  t.ok(h.verifyTrailing(view));
});

t.test(
  'SHA-256 inside KeyedHmac agrees with node:crypto at every length near a block',
  async (t) => {
    let bad = 0;
    let checked = 0;
    for (const keyLength of [1, 31, 32, 55, 56, 63, 64, 65, 100, 128, 129, 300]) {
      const key = randomBytes(keyLength);
      const h = new KeyedHmac(key);
      for (let n = 0; n <= 300; n++) {
        const m = randomBytes(n);
        const want = createHmac('sha256', key).update(m).digest();
        // Whole, and split into three parts at points that straddle block boundaries.
        const a = (n * 7) % (n + 1);
        const b = a + ((n - a) >> 1);
        const got = [h.mac(m), h.mac(m.subarray(0, a), m.subarray(a, b), m.subarray(b))];
        for (const g of got) {
          checked++;
          if (!Buffer.from(g).equals(want)) bad++;
        }
      }
    }
    t.equal(bad, 0, `${checked} tags agree`);
    // Lengths of many blocks, and a message of a megabyte.
    const key = randomBytes(32);
    for (const n of [4096, 65_535, 1 << 20]) {
      const m = randomBytes(n);
      t.same(
        Buffer.from(new KeyedHmac(key).mac(m)),
        createHmac('sha256', key).update(m).digest(),
        `${n} bytes`,
      );
    }
  },
);

t.test('KeyedHmac instances interleave without sharing state', async (t) => {
  const keys = [randomBytes(32), randomBytes(80), randomBytes(1)];
  const hs = keys.map((k) => new KeyedHmac(k));
  const msgs = [randomBytes(10), randomBytes(64), randomBytes(150)];
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 3; i++) {
      const m = msgs[(i + round) % 3]!;
      t.same(Buffer.from(hs[i]!.mac(m)), createHmac('sha256', keys[i]!).update(m).digest());
    }
  }
});

t.test('hkdfSha256 agrees with node:crypto: lengths, empty salt and info', async (t) => {
  for (const [ikmLength, saltLength, infoLength] of [
    [32, 8, 20],
    [22, 0, 0],
    [80, 80, 80],
    [1, 200, 3],
  ] as const) {
    const ikm = randomBytes(ikmLength);
    const salt = randomBytes(saltLength);
    const info = randomBytes(infoLength);
    for (const length of [1, 31, 32, 33, 64, 65, 100, 8160]) {
      t.same(
        Buffer.from(hkdfSha256(ikm, salt, info, length)),
        Buffer.from(hkdfSync('sha256', ikm, salt, info, length)),
        `ikm ${ikmLength}, salt ${saltLength}, info ${infoLength}, length ${length}`,
      );
    }
  }
});
