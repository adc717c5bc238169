import { createHash, createHmac, hkdfSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';
import fc from 'fast-check';
import t from 'tap';
import {
  concatBytes,
  equalBytes,
  hkdfSha256,
  hmacSha256,
  KEYED_WORDS,
  KeyedHmac,
  label,
  MAC_LENGTH,
  randomBytes,
  scratchSnapshotForTest,
  sha256,
  u32be,
  u64be,
  useNativeHmac,
} from '../../lib/crypto/hmac.ts';
import { addonUnavailable, loadAddon } from '../../lib/native.ts';
import { fromHex, toHex } from '../../lib/wire/index.ts';

const noAddon = addonUnavailable();
// Under CI the addon must have been built: its HMAC is what the daemon verifies tags with.
if (noAddon && process.env.CI === 'true') throw new Error(`CI=true: ${noAddon}`);

type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

const fill = (n: number, byte: number) => new Uint8Array(n).fill(byte);

/** RFC 4231 section 4, HMAC-SHA-256 of test cases 1-7 (case 5 truncated to 128 bits). */
const RFC4231: { name: string; key: Uint8Array; data: Uint8Array; mac: string }[] = [
  {
    name: 'case 1',
    key: fill(20, 0x0b),
    data: label('Hi There'),
    mac: 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7',
  },
  {
    name: 'case 2 (key shorter than the output)',
    key: label('Jefe'),
    data: label('what do ya want for nothing?'),
    mac: '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
  },
  {
    name: 'case 3 (combined length of key and data larger than 64 bytes)',
    key: fill(20, 0xaa),
    data: fill(50, 0xdd),
    mac: '773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe',
  },
  {
    name: 'case 4',
    key: Uint8Array.from({ length: 25 }, (_, i) => i + 1),
    data: fill(50, 0xcd),
    mac: '82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b',
  },
  {
    name: 'case 5 (truncation to 128 bits)',
    key: fill(20, 0x0c),
    data: label('Test With Truncation'),
    mac: 'a3b6167473100ee06e0c796c2955552b',
  },
  {
    name: 'case 6 (key larger than a block)',
    key: fill(131, 0xaa),
    data: label('Test Using Larger Than Block-Size Key - Hash Key First'),
    mac: '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54',
  },
  {
    name: 'case 7 (key and data larger than a block)',
    key: fill(131, 0xaa),
    data: label(
      'This is a test using a larger than block-size key and a larger than block-size data.' +
        ' The key needs to be hashed before being used by the HMAC algorithm.',
    ),
    mac: '9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2',
  },
];

t.test('HMAC-SHA256 matches all seven RFC 4231 test cases', async (t) => {
  t.equal(RFC4231.length, 7);
  for (const c of RFC4231) {
    const h = new KeyedHmac(c.key);
    // A truncated tag is the leading bytes of the full one (RFC 4231 section 4.6).
    const got = (m: Uint8Array) => toHex(m).slice(0, c.mac.length);
    t.equal(got(h.mac(c.data)), c.mac, `${c.name}: mac`);
    t.equal(got(hmacSha256(c.key, c.data)), c.mac, `${c.name}: one-shot`);
    const half = c.data.length >> 1;
    t.equal(
      got(h.mac(c.data.subarray(0, half), c.data.subarray(half))),
      c.mac,
      `${c.name}: data in two parts`,
    );
    t.equal(got(h.mac(c.data)), c.mac, `${c.name}: the keyed state is reused unchanged`);
    const signed = concatBytes(c.data, new Uint8Array(32));
    h.signTrailing(signed);
    t.equal(got(signed.subarray(c.data.length)), c.mac, `${c.name}: signTrailing`);
    t.ok(h.verifyTrailing(signed), `${c.name}: verifyTrailing`);
  }
});

interface Cavp {
  source: string;
  shortMsg: { bits: number; msg: string; md: string }[];
  longMsg: { bits: number; msg: string; md: string }[];
}
const cavp = JSON.parse(
  readFileSync(new URL('../fixtures/sha256-cavp.json', import.meta.url), 'utf8'),
) as Cavp;

t.test('SHA-256 matches the NIST CAVP SHAVS short- and long-message vectors', async (t) => {
  // Every short-message vector (0..512 bits in steps of 8) and seven long ones.
  t.equal(cavp.shortMsg.length, 65, 'all of SHA256ShortMsg.rsp');
  t.equal(cavp.longMsg.length, 7, 'a subset of SHA256LongMsg.rsp');
  for (const [file, vectors] of [
    ['ShortMsg', cavp.shortMsg],
    ['LongMsg', cavp.longMsg],
  ] as const) {
    for (const v of vectors) {
      const msg = fromHex(v.msg);
      t.equal(msg.length * 8, v.bits, `${file} Len = ${v.bits}: message length`);
      t.equal(toHex(sha256(msg)), v.md, `${file} Len = ${v.bits}`);
      // The same bytes in three parts that cut across block boundaries.
      const a = Math.min(msg.length, 63);
      const b = Math.min(msg.length, a + 65);
      t.equal(
        toHex(sha256(msg.subarray(0, a), msg.subarray(a, b), msg.subarray(b))),
        v.md,
        `${file} Len = ${v.bits}, in parts`,
      );
    }
  }
  t.throws(() => sha256('abc' as never), TypeError);
});

/**
 * The fast-check seed: fixed, so a failure reproduces; FLOATLM_FC_SEED overrides it to
 * explore (the seed in use is printed either way).
 */
const FC_SEED = Number(process.env.FLOATLM_FC_SEED ?? 0x464c_4d31);

t.test('seeded property: HMAC-SHA256 and SHA-256 agree with node:crypto', async (t) => {
  t.comment(`fast-check seed ${FC_SEED} (set FLOATLM_FC_SEED to change it)`);
  let runs = 0;
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 1, maxLength: 200 }),
      fc.uint8Array({ minLength: 0, maxLength: 1300 }),
      fc.nat(),
      (key, msg, cut) => {
        runs++;
        const want = createHmac('sha256', key).update(msg).digest();
        const h = new KeyedHmac(key);
        const at = cut % (msg.length + 1);
        const signed = concatBytes(msg, new Uint8Array(32));
        h.signTrailing(signed);
        const flipped = new Uint8Array(signed);
        flipped[cut % flipped.length]! ^= 1 << (cut % 8);
        const hash = (...p: Uint8Array[]) =>
          p.reduce((a, b) => a.update(b), createHash('sha256')).digest();
        return (
          Buffer.from(h.mac(msg)).equals(want) &&
          Buffer.from(hmacSha256(key, msg.subarray(0, at), msg.subarray(at))).equals(want) &&
          Buffer.from(signed.subarray(msg.length)).equals(want) &&
          h.verifyTrailing(signed) &&
          !h.verifyTrailing(flipped) &&
          Buffer.from(sha256(msg)).equals(hash(msg)) &&
          Buffer.from(sha256(key, msg)).equals(hash(key, msg))
        );
      },
    ),
    { seed: FC_SEED, numRuns: 300 },
  );
  t.equal(runs, 300, 'every generated case ran');
});

t.test('datagram tags on both sides of the long-message threshold match node:crypto', async (t) => {
  // Below 448 bytes the tag is hashed here, from 448 to 2048 the inner hash is node:crypto's
  // (when it has crypto.hash), above that here again.
  for (const n of [0, 63, 64, 447, 448, 449, 600, 1168, 2047, 2048, 2049, 3000]) {
    for (const keyLength of [1, 32, 64, 65, 131]) {
      const key = randomBytes(keyLength);
      const m = randomBytes(n);
      const want = createHmac('sha256', key).update(m).digest();
      const h = new KeyedHmac(key);
      const d = concatBytes(m, new Uint8Array(32));
      h.signTrailing(d);
      t.same(Buffer.from(d.subarray(n)), want, `signTrailing, ${n} bytes, key ${keyLength}`);
      t.ok(h.verifyTrailing(d), `verifyTrailing, ${n} bytes, key ${keyLength}`);
      d[n >> 1]! ^= 0x40;
      t.notOk(h.verifyTrailing(d), `verifyTrailing refuses a changed byte, ${n} bytes`);
    }
  }
});

t.test('every operation leaves the shared scratch zeroed', async (t) => {
  const zero = (what: string) => {
    const s = scratchSnapshotForTest();
    // S, BLOCK, LONG, the key pad, HKDF's midstates, PRK, T and counter, the two counters.
    const bytes = 8 * 4 + 64 + (64 + 2048) + 64 + 32 * 4 + 32 + 32 + 1 + 16;
    t.equal(s.length, bytes, `${what}: the whole scratch is checked`);
    t.ok(
      s.every((b) => b === 0),
      `${what}: scratch zeroed`,
    );
  };
  const key = randomBytes(32);
  const h = new KeyedHmac(key);
  zero('keying with a 32-byte key');
  new KeyedHmac(randomBytes(131));
  zero('keying with a key longer than a block (hashed first)');
  // Lengths that leave bytes in the block buffer, and ones that fill whole blocks.
  for (const n of [0, 5, 55, 56, 64, 100, 447, 448, 600, 1200, 2048, 2049]) {
    const m = randomBytes(n);
    h.mac(m);
    zero(`mac of ${n} bytes`);
    h.macInto(new Uint8Array(40), 8, m.subarray(0, n >> 1), m.subarray(n >> 1));
    zero(`macInto of ${n} bytes in two parts`);
    const d = concatBytes(m, new Uint8Array(32));
    h.signTrailing(d);
    zero(`signTrailing of ${n} bytes`);
    t.ok(h.verifyTrailing(d));
    zero(`verifyTrailing of ${n} bytes, tag good`);
    d[d.length - 1]! ^= 1;
    t.notOk(h.verifyTrailing(d));
    zero(`verifyTrailing of ${n} bytes, tag bad`);
    t.ok(h.verify(h.mac(m), m));
    zero(`verify of ${n} bytes`);
    sha256(m);
    zero(`sha256 of ${n} bytes`);
  }
  hmacSha256(key, randomBytes(70));
  zero('hmacSha256');
  hkdfSha256(key, randomBytes(8), label('info'), 100);
  zero('hkdfSha256');
});

t.test('KeyedHmac stays correct on reuse', async (t) => {
  const h = new KeyedHmac(label('Jefe'));
  const want = '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843';
  t.equal(toHex(h.mac(label('what do ya want for nothing?'))), want);
  t.equal(
    toHex(h.mac(label('what do ya '), label('want for nothing?'))),
    want,
    'parts concatenate',
  );
  t.equal(toHex(h.mac(label('what do ya want for nothing?'))), want, 'third use, same answer');
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
      t.same(a.mac(m), hmac(nobleSha256, k1, m), `k1 length ${n}`);
      t.same(b.mac(m), hmac(nobleSha256, k2, m), `k2 length ${n}`);
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
    t.same(b.subarray(n - 32), hmac(nobleSha256, key, b.subarray(0, n - 32)), `length ${n}`);
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
  t.same(big.subarray(58, 90), hmac(nobleSha256, key, big.subarray(10, 58)));
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

t.test(
  'a KeyedHmac keyed into a slab slot computes what its own would; dispose zeroes it',
  async (t) => {
    const slab = new Int32Array(3 * KEYED_WORDS).fill(7);
    const key = randomBytes(32);
    const own = new KeyedHmac(key);
    const inSlot = new KeyedHmac(key, slab, KEYED_WORDS);
    t.same(slab.subarray(0, KEYED_WORDS), new Int32Array(KEYED_WORDS).fill(7), 'slot 0 untouched');
    t.same(slab.subarray(2 * KEYED_WORDS), new Int32Array(KEYED_WORDS).fill(7), 'slot 2 untouched');
    for (const len of [0, 1, 55, 56, 64, 447, 448, 600]) {
      const msg = randomBytes(len + MAC_LENGTH);
      t.same(inSlot.mac(msg), own.mac(msg), `mac, ${len} bytes`);
      const a = msg.slice();
      const b = msg.slice();
      own.signTrailing(a);
      inSlot.signTrailing(b);
      t.same(b, a, `signTrailing, ${len} bytes`);
      t.ok(inSlot.verifyTrailing(a), `verifyTrailing, ${len} bytes`);
    }
    t.equal(inSlot.offset, KEYED_WORDS);
    inSlot.dispose();
    inSlot.dispose();
    t.equal(inSlot.offset, -1, 'disposed');
    t.same(
      slab.subarray(KEYED_WORDS, 2 * KEYED_WORDS),
      new Int32Array(KEYED_WORDS),
      'its slot zeroed',
    );
    t.throws(() => inSlot.mac(key), { message: 'KeyedHmac used after dispose()' });
    t.throws(() => inSlot.verifyTrailing(new Uint8Array(64)), Error);
    t.throws(() => new KeyedHmac(key, slab, 2 * KEYED_WORDS + 1), {
      name: 'RangeError',
      message: `at must leave ${KEYED_WORDS} words in slab`,
    });
    t.throws(() => new KeyedHmac(key, slab, -1), RangeError);
  },
);

/**
 * Runs `fn` once for each SHA-256 this machine has: the JavaScript, and with the addon its
 * portable C and (CPU permitting) SHA-NI compressions; the fastest is in use again after.
 */
function forEachImpl(t: Tap, fn: (name: string) => void): void {
  const addon = loadAddon();
  const impls: { name: string; use: () => void }[] = [
    { name: 'JavaScript', use: () => t.notOk(useNativeHmac(false)) },
  ];
  if (addon) {
    impls.push({
      name: 'addon, portable C',
      use: () => {
        t.ok(useNativeHmac(true));
        t.equal(addon.sha256Impl('portable'), 'portable');
      },
    });
    const best = addon.sha256Impl();
    if (best !== 'portable')
      impls.push({ name: `addon, ${best}`, use: () => t.ok(useNativeHmac(true)) });
    else t.comment('this CPU has no SHA extensions: the portable C compression only');
  } else t.comment(`${noAddon}: the JavaScript implementation only`);
  try {
    for (const impl of impls) {
      impl.use();
      fn(impl.name);
    }
  } finally {
    useNativeHmac(true);
    addon?.sha256Impl();
  }
}

t.test(
  'trailing tags: JavaScript, the addon portable and with SHA extensions all agree',
  async (t) => {
    const slab = new Int32Array(KEYED_WORDS * 3);
    forEachImpl(t, (name) => {
      let bad = 0;
      let checked = 0;
      for (const keyLength of [1, 32, 64, 65, 131]) {
        const key = randomBytes(keyLength);
        // Its own words, and the last slot of a slab (the daemon's session keys).
        for (const h of [new KeyedHmac(key), new KeyedHmac(key, slab, 2 * KEYED_WORDS)]) {
          for (let n = 0; n <= 1300; n += n < 200 ? 1 : 37) {
            // At an odd offset of a larger buffer, as a view of a receive area would be.
            const big = randomBytes(n + 32 + 3);
            const d = big.subarray(3);
            h.signTrailing(d);
            checked++;
            const want = createHmac('sha256', key).update(d.subarray(0, n)).digest();
            if (!Buffer.from(d.subarray(n)).equals(want) || !h.verifyTrailing(d)) bad++;
            d[(n * 7) % (n + 32)]! ^= 0x01;
            if (h.verifyTrailing(d)) bad++;
          }
        }
      }
      t.equal(bad, 0, `${name}: ${checked} tags signed, verified, refused when changed`);
    });
  },
);

t.test(
  "keying and HKDF: every implementation keys alike and derives node:crypto's keys",
  async (t) => {
    let first: string | undefined;
    forEachImpl(t, (name) => {
      // The keyed state word for word, for key lengths around the block (longer ones hashed),
      // in its own words and in a slab slot.
      const states: string[] = [];
      for (const n of [1, 31, 32, 55, 63, 64, 65, 100, 131, 200]) {
        const key = Uint8Array.from({ length: n }, () => Math.floor(Math.random() * 256));
        const slab = new Int32Array(KEYED_WORDS * 2);
        new KeyedHmac(key, slab, KEYED_WORDS);
        const own = new KeyedHmac(key);
        const m = randomBytes(n);
        if (!Buffer.from(own.mac(m)).equals(createHmac('sha256', key).update(m).digest()))
          states.push('bad mac');
        // Compare the words themselves across implementations with a fixed key.
        const fixed = Uint8Array.from({ length: n }, (_, i) => (i * 37 + n) & 255);
        const s2 = new Int32Array(KEYED_WORDS);
        new KeyedHmac(fixed, s2, 0);
        states.push(toHex(new Uint8Array(s2.buffer)));
      }
      const joined = states.join(',');
      first ??= joined;
      t.notOk(joined.includes('bad mac'), `${name}: keyed HMACs as node:crypto's`);
      t.equal(joined, first, `${name}: the keyed states word for word as the JavaScript's`);
      let bad = 0;
      let checked = 0;
      for (const [ikmLength, saltLength, infoLength] of [
        [32, 8, 50],
        [22, 0, 0],
        [80, 80, 80],
        [1, 200, 3],
        [32, 8, 512],
        [32, 8, 513],
      ] as const) {
        const ikm = randomBytes(ikmLength);
        const salt = randomBytes(saltLength);
        const info = randomBytes(infoLength);
        for (const length of [1, 31, 32, 33, 64, 65, 100, 8160]) {
          checked++;
          const got = Buffer.from(hkdfSha256(ikm, salt, info, length));
          if (!got.equals(Buffer.from(hkdfSync('sha256', ikm, salt, info, length)))) bad++;
        }
      }
      t.equal(bad, 0, `${name}: ${checked} HKDF outputs as node:crypto's`);
    });
  },
);

t.test(
  "the addon's HMAC refuses what is not a keyed state and a datagram",
  { skip: noAddon ?? false },
  async (t) => {
    const a = loadAddon()!;
    const st = new Int32Array(16);
    const d = new Uint8Array(40);
    const bad = (f: () => unknown, cls: ErrorConstructor, message: string) =>
      t.throws(f, { name: cls.name, message }, message);
    bad(
      () => a.hmacVerify(new Uint32Array(16) as unknown as Int32Array, 0, d),
      TypeError,
      'state must be an Int32Array',
    );
    bad(() => a.hmacVerify(st, 1, d), RangeError, 'at must leave 16 words in state');
    bad(() => a.hmacVerify(st, -1, d), RangeError, 'at must leave 16 words in state');
    // Not wrapped or rounded into some other slot of the state.
    for (const at of [2 ** 32, -(2 ** 32), 0.5, Number.NaN, Number.POSITIVE_INFINITY, '0']) {
      bad(() => a.hmacVerify(st, at as number, d), RangeError, 'at must leave 16 words in state');
    }
    bad(
      () => a.hmacSign(st, 0, new Uint16Array(20) as unknown as Uint8Array),
      TypeError,
      'bytes must be a Uint8Array',
    );
    bad(() => a.hmacSign(st, 0, new Uint8Array(31)), RangeError, 'bytes must be at least 32 long');
    bad(
      () => (a.hmacVerify as (...x: unknown[]) => boolean)(st, 0),
      TypeError,
      'expected (state, at, bytes)',
    );
    t.equal(
      a.hmacVerify(st, 0, new Uint8Array(32)),
      false,
      'an empty message with a zero tag is refused',
    );
    const w = new Int32Array(32);
    bad(() => a.hmacKey(w, 1, d), RangeError, 'at must leave 32 words in state');
    const slab = new Int32Array(64);
    bad(() => a.hmacKey(slab, 2 ** 32 + 32, d), RangeError, 'at must leave 32 words in state');
    t.ok(
      slab.every((x) => x === 0),
      'nothing written for an offset past 2^32',
    );
    bad(() => a.hmacKey(w, 0, 'k' as unknown as Uint8Array), TypeError, 'key must be a Uint8Array');
    bad(() => a.hkdf(d, d, d, new Uint8Array(0)), RangeError, 'out must be 1 to 8160 bytes long');
    bad(
      () => a.hkdf(d, 'x' as unknown as Uint8Array, d, d),
      TypeError,
      'salt must be a Uint8Array',
    );
    t.equal(
      a.hkdf(d, d, new Uint8Array(513), new Uint8Array(32)),
      false,
      'a longer info is left to the JavaScript',
    );
  },
);
