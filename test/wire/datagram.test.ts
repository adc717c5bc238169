/**
 * lib/wire/datagram.ts: whole-datagram round trips in every type and auth mode, every
 * framing DecodeError at its boundary, encode misuse, the prefilter, and the fast-check
 * properties (≥ 100,000 cases) that hostile bytes only ever raise DecodeError.
 */

import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import t from 'tap';
import {
  type AnyDatagram,
  AuthMode,
  cursor,
  DecodeError,
  DecodeErrorCode,
  decode,
  decodeDatagram,
  encode,
  encodeToBytes,
  encodingLength,
  Flags,
  hasAuthBlock,
  Limits,
  looksLikeDatagram,
  MAX_DATAGRAM,
  MsgType,
  signedRange,
} from '../../lib/wire/index.ts';
import {
  ALL_TYPES,
  allSampleDatagrams,
  arbDatagram,
  datagramOf,
  decodesOrDecodeError,
  SAMPLES,
  testEncoder,
  throwsDecode,
} from './helpers.ts';

const ping = (): AnyDatagram => datagramOf(MsgType.PING, { payload: new Uint8Array(4) });
/** Encoded PING in SESSION mode: 32 header + 2+4 body + 32 tag = 70 bytes. */
const pingBytes = (): Uint8Array => encodeToBytes(ping());
const setU16 = (b: Uint8Array, at: number, v: number): void => {
  b[at] = v >> 8;
  b[at + 1] = v & 0xff;
};

t.test('round trip of every sample of every type in every auth mode', async (t) => {
  const all = allSampleDatagrams();
  const seen = new Set(all.map((d) => d.type));
  t.same([...seen].sort(), [...ALL_TYPES].sort(), 'every message type is covered');
  for (const mode of [1, 2, 3, 4]) {
    t.ok(
      all.some((d) => d.auth.mode === mode && d.flags === 0),
      `mode ${mode} requests covered`,
    );
  }
  for (const d of all) testEncoder(t, d, `${d.type}/${d.auth.mode}/${d.flags}`);
});

t.test('header layout is byte-exact', async (t) => {
  const d = datagramOf(MsgType.CHECKOUT, SAMPLES[MsgType.CHECKOUT][0]!, AuthMode.ADMIN, 0);
  const b = encodeToBytes(d);
  t.same([...b.subarray(0, 8)], [0x46, 0x4c, 1, 0x02, 0, 4, b.length >> 8, b.length & 0xff]);
  t.same([...b.subarray(8, 12)], [1, 2, 3, 4], 'request id');
  t.same([...b.subarray(12, 20)], [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88], 'session');
  t.same([...b.subarray(20, 24)], [0, 0, 0, 7], 'seq');
  t.same([...b.subarray(24, 32)], [0, 0, 0x01, 0x9e, 0x70, 0x44, 0x88, 0x00], 'timestamp');
  t.same([...b.subarray(32, 38)], [5, 0x61, 0x64, 0x6d, 0x69, 0x6e], 'admin keyId block');
  t.same(signedRange(b.length), [0, b.length - 32]);
  t.same(b.subarray(b.length - 32), d.tag, 'tag last');
});

t.test('replies carry no auth block and decode to placeholders', async (t) => {
  t.equal(hasAuthBlock(0), true);
  for (const f of [Flags.REPLY, Flags.FROM_SERVER, Flags.REPLY | Flags.FROM_SERVER]) {
    t.equal(hasAuthBlock(f), false);
  }
  const req = datagramOf(MsgType.PING, { payload: new Uint8Array(0) }, AuthMode.CREDENTIAL, 0);
  const rep = { ...req, flags: Flags.REPLY | Flags.FROM_SERVER };
  t.equal(encodeToBytes(req).length - encodeToBytes(rep).length, 1 + 4 + 16, 'block omitted');
  const back = decodeDatagram(encodeToBytes(rep));
  t.strictSame(back.auth, { mode: 1, credId: '', nonce: new Uint8Array(16) });
  const tok = decodeDatagram(
    encodeToBytes({ ...rep, auth: { mode: 2, token: new Uint8Array(5) } }),
  );
  t.strictSame(tok.auth, { mode: 2, token: new Uint8Array(0) });
  const adm = decodeDatagram(encodeToBytes({ ...rep, auth: { mode: 4, keyId: 'x' } }));
  t.strictSame(adm.auth, { mode: 4, keyId: '' });
});

t.test('DecodeError codes, each provoked at its boundary', async (t) => {
  const b = pingBytes();
  t.equal(b.length, 70);

  throwsDecode(t, () => decodeDatagram(b.subarray(0, 1)), 'TRUNCATED', /magic needs 2 bytes/, 0);
  throwsDecode(t, () => decodeDatagram(b.subarray(0, 7)), 'TRUNCATED', /length needs 2 bytes/);
  throwsDecode(t, () => decodeDatagram(b.subarray(0, 69)), 'TRUNCATED', /says 70 bytes, 69/, 6);

  const magic = b.slice();
  magic[1] = 0x4d;
  throwsDecode(t, () => decodeDatagram(magic), 'BAD_MAGIC', /not a floatlm datagram/, 0);

  for (const v of [0, 2, 255]) {
    const x = b.slice();
    x[2] = v;
    throwsDecode(t, () => decodeDatagram(x), 'BAD_VERSION', new RegExp(`version ${v}, `), 2);
  }

  for (const ty of [0x00, 0x0a, 0x40, 0x5f, 0x80, 0x8a, 0x8e, 0x90, 0xc0, 0xdf, 0xff]) {
    const x = b.slice();
    x[3] = ty;
    throwsDecode(t, () => decodeDatagram(x), 'UNKNOWN_TYPE', /type 0x/, 3);
  }

  for (const fl of [0x04, 0x80, 0xff]) {
    const x = b.slice();
    x[4] = fl;
    throwsDecode(t, () => decodeDatagram(x), 'BAD_FLAGS', /unknown flag bits/, 4);
  }

  for (const m of [0, 5, 255]) {
    const x = b.slice();
    x[5] = m;
    throwsDecode(t, () => decodeDatagram(x), 'BAD_AUTH_MODE', new RegExp(`auth mode ${m}`), 5);
  }

  const tooLarge = new Uint8Array(1300);
  tooLarge.set(b.subarray(0, 32));
  setU16(tooLarge, 6, 1201);
  throwsDecode(t, () => decodeDatagram(tooLarge), 'TOO_LARGE', /1201 exceeds 1200/, 6);
  setU16(tooLarge, 6, 1200);
  let code1200: string | undefined;
  try {
    decodeDatagram(tooLarge.subarray(0, 1200));
  } catch (e) {
    code1200 = (e as DecodeError).code;
  }
  t.not(code1200, 'TOO_LARGE', '1200 itself is allowed');

  const short = b.slice();
  setU16(short, 6, 63);
  throwsDecode(t, () => decodeDatagram(short), 'BAD_LENGTH', /length 63 below minimum 64/, 6);

  // Length field 1 byte short of the payload: one trailing byte after the datagram.
  const trailing = new Uint8Array(71);
  trailing.set(b);
  throwsDecode(
    t,
    () => decodeDatagram(trailing),
    'TRAILING_BYTES',
    /1 unexpected bytes after datagram/,
    70,
  );

  // Body shorter than what the length says: the extra byte is inside, before the tag.
  const padded = new Uint8Array(71);
  padded.set(b.subarray(0, 38));
  padded.set(b.subarray(38), 39);
  setU16(padded, 6, 71);
  throwsDecode(
    t,
    () => decodeDatagram(padded),
    'TRAILING_BYTES',
    /1 unexpected bytes after body/,
    38,
  );

  // Body field running into the tag is TRUNCATED, never read from the tag.
  const over = b.slice();
  setU16(over, 32, 5);
  throwsDecode(t, () => decodeDatagram(over), 'TRUNCATED', /payload needs 5 bytes, 4 left/, 34);

  const ts = b.slice();
  ts[25] = 0x20; // timestamp high word 0x0020019e > 0x1fffff: above 2^53-1
  throwsDecode(t, () => decodeDatagram(ts), 'OUT_OF_RANGE', /timestamp exceeds 2\^53-1/, 24);

  // BAD_LENGTH on an auth-block cap: token length 513.
  const tokReq = encodeToBytes(datagramOf(MsgType.HEARTBEAT, {}, AuthMode.TOKEN, 0));
  setU16(tokReq, 32, Limits.TOKEN + 1);
  throwsDecode(t, () => decodeDatagram(tokReq), 'BAD_LENGTH', /token length 513 exceeds 512/, 32);

  // BAD_STRING in the credential id.
  const cred = encodeToBytes(datagramOf(MsgType.HELLO, SAMPLES[MsgType.HELLO][1]!, 1, 0));
  cred[33] = 0xff;
  throwsDecode(t, () => decodeDatagram(cred), 'BAD_STRING', /credId is not valid UTF-8/, 33);
});

t.test('decode reads only its own bytes from a cursor', async (t) => {
  const b = pingBytes();
  const two = new Uint8Array(140);
  two.set(b);
  two.set(b, 70);
  const c = cursor(two);
  decode(c);
  t.equal(c.start, 70);
  decode(c);
  t.equal(c.start, 140);
  throwsDecode(t, () => decodeDatagram(two), 'TRAILING_BYTES', /70 unexpected bytes/);
});

t.test('encode misuse names the field', async (t) => {
  const base = ping();
  const bad = (patch: Record<string, unknown>): AnyDatagram =>
    ({ ...base, ...patch }) as unknown as AnyDatagram;
  const cases: [Record<string, unknown>, ErrorConstructor | RangeErrorConstructor, RegExp][] = [
    [{ type: 0x0a }, RangeError, /^type must be a known message type/],
    [{ type: 0x40 }, RangeError, /^type/],
    [{ flags: 4 }, RangeError, /^flags/],
    [{ flags: 1.5 }, RangeError, /^flags/],
    [{ requestId: -1 }, RangeError, /^requestId/],
    [{ requestId: 2 ** 32 }, RangeError, /^requestId/],
    [{ requestId: 1.5 }, RangeError, /^requestId/],
    [{ seq: 2 ** 32 }, RangeError, /^seq/],
    [{ sessionId: 1 }, RangeError, /^sessionId/],
    [{ sessionId: -1n }, RangeError, /^sessionId/],
    [{ sessionId: 2n ** 64n }, RangeError, /^sessionId/],
    [{ timestamp: -1 }, RangeError, /^timestamp/],
    [{ timestamp: 2 ** 53 }, RangeError, /^timestamp/],
    [{ tag: new Uint8Array(31) }, TypeError, /^tag must be/],
    [{ auth: null }, TypeError, /^auth must be/],
    [{ auth: { mode: 5 } }, RangeError, /^auth.mode/],
    [{ auth: { mode: 1, credId: 'x', nonce: new Uint8Array(15) } }, TypeError, /^auth.nonce/],
    [{ auth: { mode: 1, credId: 7, nonce: new Uint8Array(16) } }, TypeError, /^auth.credId/],
    [
      { auth: { mode: 1, credId: 'x'.repeat(65), nonce: new Uint8Array(16) } },
      RangeError,
      /^auth.credId is 65 bytes, at most 64/,
    ],
    [{ auth: { mode: 2, token: 'abc' } }, TypeError, /^auth.token/],
    [{ auth: { mode: 2, token: new Uint8Array(513) } }, RangeError, /^auth.token is 513 bytes/],
    [{ auth: { mode: 4, keyId: '\ud800' } }, TypeError, /^auth.keyId must be well-formed/],
    [{ body: null }, TypeError, /^body must be an object/],
    [{ body: {} }, TypeError, /^payload must be a Uint8Array/],
    [{ body: { payload: new Uint8Array(1025) } }, RangeError, /^payload is 1025 bytes/],
  ];
  for (const [patch, cls, re] of cases) {
    const d = bad(patch);
    t.throws(() => encodingLength(d), cls, `encodingLength ${JSON.stringify(Object.keys(patch))}`);
    t.throws(() => encodeToBytes(d), { name: cls.name, message: re }, re.source);
  }
  // Credential auth blocks only exist on requests.
  t.throws(
    () =>
      encodeToBytes(bad({ auth: { mode: 1, credId: 'x', nonce: new Uint8Array(15) }, flags: 0 })),
    TypeError,
  );

  const big = datagramOf(MsgType.PING, { payload: new Uint8Array(1024) }, AuthMode.TOKEN, 0);
  (big.auth as { token: Uint8Array }).token = new Uint8Array(500);
  t.throws(() => encodeToBytes(big), { name: 'RangeError', message: /at most 1200/ });

  const out = new Uint8Array(69);
  t.throws(() => encode(base, cursor(out)), {
    name: 'RangeError',
    message: /no room for a 70-byte/,
  });
  t.same(out, new Uint8Array(69), 'nothing written when there is no room');
});

t.test('looksLikeDatagram prefilter', async (t) => {
  const b = pingBytes();
  t.equal(looksLikeDatagram(b), true);
  t.equal(looksLikeDatagram(b.subarray(0, 63)), false, 'under 64 bytes');
  t.equal(looksLikeDatagram(new Uint8Array(0)), false, 'empty');
  const fix = (patch: (x: Uint8Array) => void): boolean => {
    const x = b.slice();
    patch(x);
    return looksLikeDatagram(x);
  };
  t.equal(
    fix((x) => (x[0] = 0)),
    false,
    'magic hi',
  );
  t.equal(
    fix((x) => (x[1] = 0)),
    false,
    'magic lo',
  );
  t.equal(
    fix((x) => (x[2] = 2)),
    false,
    'version',
  );
  t.equal(
    fix((x) => setU16(x, 6, 71)),
    false,
    'length field disagrees',
  );
  t.equal(
    fix((x) => (x[3] = 0xff)),
    true,
    'type is not its business',
  );
  const min = new Uint8Array(64);
  min.set([0x46, 0x4c, 1, 8, 0, 3, 0, 64]);
  t.equal(looksLikeDatagram(min), true, '64 bytes accepted');
  const max = new Uint8Array(MAX_DATAGRAM);
  max.set([0x46, 0x4c, 1, 8, 0, 3, 0x04, 0xb0]);
  t.equal(looksLikeDatagram(max), true, '1200 bytes accepted');
  const over = new Uint8Array(MAX_DATAGRAM + 1);
  over.set([0x46, 0x4c, 1, 8, 0, 3, 0x04, 0xb1]);
  t.equal(looksLikeDatagram(over), false, '1201 bytes refused');
});

// ---- properties: ≥ 100,000 cases in all ---------------------------------------------------

const RUNS = {
  roundTrip: 10_000,
  random: 40_000,
  flipped: 25_000,
  truncated: 15_000,
  extended: 15_000,
};

t.test('property: any valid datagram round-trips', async (t) => {
  fc.assert(
    fc.property(arbDatagram, (d) => {
      const b = encodeToBytes(d);
      const back = decodeDatagram(b);
      return (
        isDeepStrictEqual(back, d) &&
        Buffer.from(encodeToBytes(back)).equals(Buffer.from(b)) &&
        looksLikeDatagram(b)
      );
    }),
    { numRuns: RUNS.roundTrip },
  );
  t.pass('round trips held');
});

t.test('property: random bytes decode or throw DecodeError', async (t) => {
  const header = fc.uint8Array({ minLength: 0, maxLength: 1300 });
  // Half the cases get a plausible header so the body decoders are reached too.
  const plausible = fc
    .record({
      type: fc.constantFrom(...ALL_TYPES),
      flags: fc.integer({ min: 0, max: 3 }),
      mode: fc.integer({ min: 1, max: 4 }),
      rest: fc.oneof(
        fc.uint8Array({ minLength: 32, maxLength: 80 }),
        fc.uint8Array({ minLength: 32, maxLength: 1168 }),
      ),
    })
    .map(({ type, flags, mode, rest }) => {
      const b = new Uint8Array(32 + rest.length);
      b.set(rest, 32 - 24);
      b.set([0x46, 0x4c, 1, type, flags, mode, b.length >> 8, b.length & 0xff]);
      b.set([0, 0, 0], 24); // a timestamp that fits 2^53, so the body gets read
      return b;
    });
  let decoded = 0;
  fc.assert(
    fc.property(fc.oneof(header, plausible), (b) => {
      if (decodesOrDecodeError(() => decodeDatagram(b))) decoded++;
    }),
    { numRuns: RUNS.random },
  );
  t.ok(decoded > 0, `some random datagrams decoded (${decoded})`);
});

t.test('property: mutated valid datagrams decode or throw DecodeError', async (t) => {
  const withBytes = arbDatagram.map((d) => encodeToBytes(d));
  fc.assert(
    fc.property(
      withBytes,
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), {
        minLength: 1,
        maxLength: 4,
      }),
      (b, flips) => {
        const x = b.slice();
        for (const [at, mask] of flips) x[at % x.length]! ^= mask;
        decodesOrDecodeError(() => decodeDatagram(x));
        decodesOrDecodeError(() => decode(cursor(x)));
      },
    ),
    { numRuns: RUNS.flipped },
  );
  fc.assert(
    fc.property(withBytes, fc.nat(), (b, cut) => {
      const n = cut % b.length;
      return !decodesOrDecodeError(() => decodeDatagram(b.subarray(0, n)));
    }),
    { numRuns: RUNS.truncated },
  );
  fc.assert(
    fc.property(withBytes, fc.uint8Array({ minLength: 1, maxLength: 64 }), (b, extra) => {
      const x = new Uint8Array(b.length + extra.length);
      x.set(b);
      x.set(extra, b.length);
      if (decodesOrDecodeError(() => decodeDatagram(x))) return false;
      // With the length field rewritten to match, the body decoder sees the extra bytes.
      if (x.length <= MAX_DATAGRAM) {
        setU16(x, 6, x.length);
        decodesOrDecodeError(() => decodeDatagram(x));
      }
      return true;
    }),
    { numRuns: RUNS.extended },
  );
  t.pass('no exception other than DecodeError');
});

t.test('case budget', async (t) => {
  const total = Object.values(RUNS).reduce((a, b) => a + b, 0);
  t.ok(total >= 100_000, `${total} property cases`);
});

t.test('DecodeError is the only error decode throws for a non-cursor mistake', async (t) => {
  t.throws(
    () => decodeDatagram('x' as unknown as Uint8Array),
    TypeError,
    'API misuse is TypeError',
  );
  t.ok(new DecodeError(DecodeErrorCode.TRUNCATED, 'm', 0) instanceof Error);
});
