/**
 * lib/wire/messages.ts: every body codec round-trips its samples, the schemas cover every
 * message type, and each body's own range rules hold at their exact boundaries.
 */
import t from 'tap';
import {
  BODIES,
  CLIENT_REQUESTS,
  type Codec,
  cursor,
  decodeDatagram,
  encodeToBytes,
  Limits,
  MsgType,
  type ReservationRecord,
  SCHEMAS,
  type StatusReply,
  TYPE_NAMES,
  toHex,
} from '../../lib/wire/index.ts';
import { ALL_TYPES, datagramOf, SAMPLES, testEncoder, throwsDecode } from './helpers.ts';

t.test('schemas, codecs and names cover every type', async (t) => {
  t.same(Object.keys(SCHEMAS).map(Number).sort(), [...ALL_TYPES].sort());
  t.same(Object.keys(BODIES).map(Number).sort(), [...ALL_TYPES].sort());
  for (const [name, v] of Object.entries(MsgType)) t.equal(TYPE_NAMES[v], name);
  t.same(
    [...CLIENT_REQUESTS].sort(),
    ALL_TYPES.filter((x) => x < 0x80 && x !== MsgType.TEST_CONN).sort(),
  );
});

t.test('every sample body round-trips through its codec and in a datagram', async (t) => {
  for (const type of ALL_TYPES) {
    const codec = BODIES[type] as unknown as Codec<unknown>;
    const samples = SAMPLES[type] as unknown[];
    t.ok(samples.length > 0, `${TYPE_NAMES[type]} has samples`);
    for (const body of samples) {
      const n = codec.encodingLength(body);
      const b = new Uint8Array(n + 3);
      const w = cursor(b, 3);
      codec.encode(body, w);
      t.equal(w.start, n + 3, `${TYPE_NAMES[type]} writes encodingLength bytes`);
      const r = cursor(b, 3);
      t.strictSame(codec.decode(r), body, `${TYPE_NAMES[type]} body round trip`);
      t.equal(r.start, n + 3);
      testEncoder(t, datagramOf(type, body as never), TYPE_NAMES[type]);
    }
  }
});

t.test('known body encodings', async (t) => {
  const hex = (type: MsgType, body: unknown): string => {
    const codec = BODIES[type] as unknown as Codec<unknown>;
    const b = new Uint8Array(codec.encodingLength(body as never));
    codec.encode(body as never, cursor(b));
    return toHex(b);
  };
  t.equal(hex(MsgType.HEARTBEAT, {}), '');
  t.equal(
    hex(MsgType.CHECKOUT, { feature: 'f', version: '1', count: 2, options: 1 }),
    '0166' + '0131' + '0002' + '01',
  );
  t.equal(
    hex(MsgType.ERROR, { code: 34, retryAfterMs: 1000, message: 'x' }),
    '0022' + '000003e8' + '0178',
  );
  t.equal(
    hex(MsgType.RECLAIM_REPLY, { results: [{ leaseId: 1n, code: 57 }] }),
    '01' + '0000000000000001' + '0039',
  );
  t.equal(
    hex(MsgType.STATUS_REPLY, {
      page: 0,
      pages: 1,
      snapshot: 9,
      records: [{ kind: 3, feature: 'f', user: 'u', host: 'h', since: 5, position: 1 }],
    }),
    '0000' +
      '0001' +
      '00000009' +
      '01' +
      '03' +
      '0166' +
      '0175' +
      '0168' +
      '0000000000000005' +
      '0001',
  );
  t.equal(
    hex(MsgType.STATUS_REPLY, {
      page: 0,
      pages: 1,
      snapshot: 9,
      records: [{ kind: 4, feature: 'f', type: 2, name: 'w', count: 3, inUse: 1 }],
    }),
    '0000' + '0001' + '00000009' + '01' + '04' + '0166' + '02' + '0177' + '0003' + '0001',
  );
});

t.test('body range rules at their boundaries', async (t) => {
  const body = (type: MsgType, b: unknown) => encodeToBytes(datagramOf(type, b as never));
  const co = SAMPLES[MsgType.CHECKOUT][0]!;
  // CHECKOUT count in [1, 1000], options bit 0 only.
  for (const [count, ok] of [
    [0, false],
    [1, true],
    [1000, true],
    [1001, false],
  ] as const) {
    if (ok)
      t.equal(
        (decodeDatagram(body(MsgType.CHECKOUT, { ...co, count })).body as { count: number }).count,
        count,
      );
    else
      t.throws(() => body(MsgType.CHECKOUT, { ...co, count }), {
        name: 'RangeError',
        message: /^count/,
      });
  }
  t.throws(() => body(MsgType.CHECKOUT, { ...co, options: 2 }), {
    name: 'RangeError',
    message: /^options/,
  });
  const good = body(MsgType.CHECKOUT, co);
  // header 32 | feature 1+6 | version 1+3 | count 2 | options 1
  const countAt = 32 + 7 + 4;
  const x = good.slice();
  x[countAt] = 0;
  x[countAt + 1] = 0;
  throwsDecode(t, () => decodeDatagram(x), 'OUT_OF_RANGE', /count 0 not in \[1, 1000\]/, countAt);
  x[countAt] = 0x03;
  x[countAt + 1] = 0xe9;
  throwsDecode(t, () => decodeDatagram(x), 'OUT_OF_RANGE', /count 1001 not in/, countAt);
  const y = good.slice();
  y[countAt + 2] = 2;
  throwsDecode(t, () => decodeDatagram(y), 'OUT_OF_RANGE', /options 2 not in \[0, 1\]/);

  // CHECKOUT_REPLY status ≤ 2; PONG state ≤ 3 (DEGRADED); ADMIN op in [1, 3]; STATUS_REPLY pages ≥ 1.
  const cr = body(MsgType.CHECKOUT_REPLY, SAMPLES[MsgType.CHECKOUT_REPLY][0]!);
  cr[32] = 3;
  throwsDecode(t, () => decodeDatagram(cr), 'OUT_OF_RANGE', /status 3 not in \[0, 2\]/, 32);
  const adm = body(MsgType.ADMIN, SAMPLES[MsgType.ADMIN][0]!);
  adm[32] = 0;
  throwsDecode(t, () => decodeDatagram(adm), 'OUT_OF_RANGE', /op 0 not in \[1, 3\]/, 32);
  adm[32] = 4;
  throwsDecode(t, () => decodeDatagram(adm), 'OUT_OF_RANGE', /op 4 not in \[1, 3\]/, 32);
  const sr = body(MsgType.STATUS_REPLY, SAMPLES[MsgType.STATUS_REPLY][0]!);
  sr[34] = 0;
  sr[35] = 0;
  throwsDecode(t, () => decodeDatagram(sr), 'OUT_OF_RANGE', /pages 0 not in/, 34);
  // STATUS_REPLY record kind in [1, 5]; RESERVATION type in [1, 2].
  const res = { kind: 4, feature: 'f', type: 1, name: 'w', count: 3, inUse: 1 };
  const rr = body(MsgType.STATUS_REPLY, { page: 0, pages: 1, snapshot: 0, records: [res] });
  // header 32 | page 2 | pages 2 | snapshot 4 | count 1 | kind 1 | feature 1+1 | type 1
  const kindAt = 32 + 9;
  const typeAt = kindAt + 3;
  const records = (d: Uint8Array) => (decodeDatagram(d).body as StatusReply).records;
  t.equal(records(rr)[0]!.kind, 4);
  for (const kind of [0, 6]) {
    const z = rr.slice();
    z[kindAt] = kind;
    throwsDecode(t, () => decodeDatagram(z), 'OUT_OF_RANGE', /kind/, kindAt);
  }
  for (const [type, ok] of [
    [0, false],
    [1, true],
    [2, true],
    [3, false],
  ] as const) {
    const z = rr.slice();
    z[typeAt] = type;
    if (ok) t.equal((records(z)[0] as ReservationRecord).type, type);
    else
      throwsDecode(t, () => decodeDatagram(z), 'OUT_OF_RANGE', /type \d not in \[1, 2\]/, typeAt);
    const enc = () =>
      body(MsgType.STATUS_REPLY, { page: 0, pages: 1, snapshot: 0, records: [{ ...res, type }] });
    if (ok) t.doesNotThrow(enc);
    else t.throws(enc, { name: 'RangeError', message: /^type/ });
  }
  const pong = SAMPLES[MsgType.PONG][0]!;
  t.throws(() => body(MsgType.PONG, { ...pong, state: 4 }), {
    name: 'RangeError',
    message: /^state/,
  });

  // List caps: 8 tickets, 64 status records.
  const tickets = Array.from({ length: Limits.TICKETS + 1 }, () => ({ ticket: new Uint8Array(1) }));
  t.throws(() => body(MsgType.RECLAIM, { tickets }), {
    name: 'RangeError',
    message: /^tickets has 9 items, at most 8/,
  });
  const rc = body(MsgType.RECLAIM, { tickets: [] });
  rc[32] = 9;
  throwsDecode(t, () => decodeDatagram(rc), 'BAD_LENGTH', /tickets count 9 exceeds 8/, 32);
  const many = SAMPLES[MsgType.STATUS_REPLY][2]!;
  t.equal(many.records.length, Limits.STATUS_RECORDS);
  t.throws(
    () => body(MsgType.STATUS_REPLY, { ...many, records: [...many.records, many.records[0]] }),
    { name: 'RangeError', message: /^records has 65 items, at most 64/ },
  );

  // Fixed-length nonces; the padding cap.
  t.throws(() => body(MsgType.TEST_CONN, { nonce: new Uint8Array(7) }), {
    name: 'TypeError',
    message: /^nonce must be a Uint8Array of 8 bytes/,
  });
  const hello = SAMPLES[MsgType.HELLO][1]!;
  t.throws(() => body(MsgType.HELLO, { ...hello, padding: new Uint8Array(Limits.PADDING + 1) }), {
    name: 'RangeError',
    message: /^padding is 1101 bytes, at most 1100/,
  });
});

t.test('a HELLO padded to 600 bytes fits with room to spare', async (t) => {
  const d = datagramOf(
    MsgType.HELLO,
    { ...SAMPLES[MsgType.HELLO][0]!, padding: new Uint8Array(0) },
    1,
    0,
  );
  const bare = encodeToBytes(d).length;
  const padded = encodeToBytes({
    ...d,
    body: { ...d.body, padding: new Uint8Array(600 - bare) },
  } as never);
  t.equal(padded.length, 600);
});
