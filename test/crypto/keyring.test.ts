import t from 'tap';
import { KeyFileError } from '../../lib/crypto/errors.ts';
import { randomBytes } from '../../lib/crypto/hmac.ts';
import {
  Keyring,
  keyringFromJSON,
  MAX_EPOCH,
  makeKeyId,
  splitKeyId,
} from '../../lib/crypto/keyring.ts';

const A = Date.parse('2030-01-01T00:00:00Z');
const P = 3600; // period, s
const G = 7200; // grace, s

function ring(): Keyring {
  return new Keyring({
    period: P,
    grace: G,
    secrets: [{ id: 1, secret: randomBytes(32), activates: A }],
  });
}

t.test('key ids compose secret id and epoch', async (t) => {
  t.equal(makeKeyId(1, 0), 0x10000);
  t.equal(makeKeyId(0xffff, 0xffff), 0xffffffff);
  t.same(splitKeyId(0xffff0003), { secretId: 0xffff, epoch: 3 });
  t.throws(() => makeKeyId(0, 0), RangeError);
  t.throws(() => makeKeyId(1, 0x10000), RangeError);
});

t.test('the current key changes exactly at each period boundary', async (t) => {
  const k = ring();
  t.equal(k.current(A).keyId, makeKeyId(1, 0));
  t.equal(k.current(A + P * 1000 - 1).keyId, makeKeyId(1, 0));
  t.equal(k.current(A + P * 1000).keyId, makeKeyId(1, 1));
  t.equal(k.nextChange(A + 5), A + P * 1000);
  t.throws(() => k.current(A - 1), RangeError, 'nothing active before activation');
  t.notSame(k.current(A).key, k.current(A + P * 1000).key, 'each epoch has its own key');
});

t.test(
  'an old epoch key verifies through the grace, inclusive, and is retired after',
  async (t) => {
    const k = ring();
    const id = makeKeyId(1, 0);
    const signEnd = A + P * 1000;
    const last = signEnd + G * 1000;
    const at = k.lookup(id, last);
    t.ok(at.ok);
    if (at.ok) t.equal(at.key.retiresAt, last);
    t.same(k.lookup(id, last + 1), { ok: false, reason: 'retired' });
    t.same(k.lookup(id, last + 1000), { ok: false, reason: 'retired' });
  },
);

t.test(
  'unknown: other secret ids and epochs that have not started (beyond the lead)',
  async (t) => {
    const k = ring();
    t.same(k.lookup(makeKeyId(2, 0), A), { ok: false, reason: 'unknown' });
    const e1 = makeKeyId(1, 1);
    const start = A + P * 1000;
    t.ok(k.lookup(e1, start - 300_000).ok, 'a key is known one skew before its epoch');
    t.same(k.lookup(e1, start - 300_001), { ok: false, reason: 'unknown' });
    t.same(k.lookup(e1, start - 1, 0), { ok: false, reason: 'unknown' }, 'leadMs 0');
    t.same(k.lookup(-1, A), { ok: false, reason: 'unknown' });
    t.same(k.lookup(2 ** 32, A), { ok: false, reason: 'unknown' });
  },
);

t.test(
  'forced rotation: the new secret signs at once; the old key keeps verifying for grace',
  async (t) => {
    const k = ring();
    const R = A + 1234_567;
    const old = k.current(R - 1);
    const s = k.rotate(R);
    t.equal(s.id, 2);
    t.equal(k.current(R - 1).keyId, old.keyId, 'before R the old key still signs');
    t.equal(k.current(R).keyId, makeKeyId(2, 0));
    const before = k.lookup(old.keyId, R + G * 1000);
    t.ok(before.ok);
    if (before.ok) t.equal(before.key.signEnd, R, 'sign end moved to the rotation');
    t.same(k.lookup(old.keyId, R + G * 1000 + 1000), { ok: false, reason: 'retired' });
    // Epochs of the old secret that would have begun after R never existed.
    t.same(k.lookup(makeKeyId(1, 1), A + P * 1000), { ok: false, reason: 'unknown' });
  },
);

t.test('the epoch is capped at 0xffff and the last epoch signs forever', async (t) => {
  const k = new Keyring({
    period: 1,
    grace: 0,
    secrets: [{ id: 1, secret: randomBytes(32), activates: 0 }],
  });
  const far = (MAX_EPOCH + 10) * 1000;
  const cur = k.current(far);
  t.equal(splitKeyId(cur.keyId).epoch, MAX_EPOCH);
  t.equal(cur.signEnd, Number.POSITIVE_INFINITY);
  t.equal(k.nextChange(far), Number.POSITIVE_INFINITY);
});

t.test('two servers with the same file derive the same keys without talking', async (t) => {
  const k = ring();
  k.rotate(A + 10_000);
  const json = JSON.parse(JSON.stringify(k.toJSON()));
  const other = keyringFromJSON(json);
  for (const now of [A + 10_000, A + 10_000 + P * 1000 * 3 + 7]) {
    t.same(other.current(now).key, k.current(now).key);
    t.equal(other.current(now).keyId, k.current(now).keyId);
  }
  t.same(other.toJSON(), k.toJSON());
});

t.test('generate makes a one-secret keyring with the defaults', async (t) => {
  const k = Keyring.generate(A);
  t.equal(k.period, 86_400);
  t.equal(k.grace, 172_800);
  t.equal(k.secrets.length, 1);
  t.equal(k.current(A).keyId, makeKeyId(1, 0));
});

t.test('constructor refuses bad options naming them', async (t) => {
  const secret = randomBytes(32);
  t.throws(
    () => new Keyring({ period: 0, grace: 0, secrets: [{ id: 1, secret, activates: 0 }] }),
    /period/,
  );
  t.throws(
    () => new Keyring({ period: 1, grace: -1, secrets: [{ id: 1, secret, activates: 0 }] }),
    /grace/,
  );
  t.throws(() => new Keyring({ period: 1, grace: 0, secrets: [] }), /secrets/);
  t.throws(
    () =>
      new Keyring({
        period: 1,
        grace: 0,
        secrets: [
          { id: 1, secret, activates: 0 },
          { id: 1, secret, activates: 5 },
        ],
      }),
    /repeats/,
  );
  t.throws(
    () =>
      new Keyring({
        period: 1,
        grace: 0,
        secrets: [{ id: 1, secret: randomBytes(31), activates: 0 }],
      }),
    TypeError,
  );
});

t.test('keyringFromJSON names the malformed field', async (t) => {
  const good = ring().toJSON();
  const cases: [unknown, RegExp][] = [
    [null, /server: must be an object/],
    [{ ...good, version: 2 }, /server\.version: must be 1/],
    [{ ...good, period: 'x' }, /server\.period/],
    [{ ...good, secrets: [] }, /server\.secrets: must be a non-empty array/],
    [
      { ...good, secrets: [{ ...good.secrets[0], secret: 'abc' }] },
      /server\.secrets\[0\]\.secret: must be 64 hex digits/,
    ],
    [
      { ...good, secrets: [{ ...good.secrets[0], activates: 'yesterday' }] },
      /server\.secrets\[0\]\.activates/,
    ],
    [{ ...good, secrets: [{ ...good.secrets[0], id: 0 }] }, /server\.secrets\[0\]\.id/],
  ];
  for (const [value, re] of cases) {
    t.throws(() => keyringFromJSON(value, '/etc/keys.json'), re);
    try {
      keyringFromJSON(value, '/etc/keys.json');
    } catch (e) {
      t.ok(
        e instanceof KeyFileError &&
          e.code === 'MALFORMED' &&
          e.message.startsWith('/etc/keys.json: '),
      );
    }
  }
});
