/**
 * Shared test support for lib/wire: sample bodies of every message type (edge cases
 * included), datagram builders, fast-check arbitraries derived from the body schemas, and
 * the round-trip helper (in the style of dns-packet's testEncoder).
 */
import fc from 'fast-check';
import type { Test } from 'tap';
import {
  type AnyDatagram,
  AuthMode,
  type Bodies,
  CheckoutStatus,
  cursor,
  DecodeError,
  type DecodeErrorCode,
  decode,
  encode,
  encodeToBytes,
  encodingLength,
  Flags,
  Limits,
  MAX_DATAGRAM,
  MsgType,
  ReservationType,
  SCHEMAS,
  StatusRecord,
} from '../../lib/wire/index.ts';
import type { Field, Schema } from '../../lib/wire/schema.ts';

export const ALL_TYPES: MsgType[] = Object.values(MsgType);

const bytes = (n: number, fill = 0): Uint8Array => new Uint8Array(n).fill(fill);
const seq = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => i & 0xff);

/** Several bodies per message type: typical values, empty values and values at their caps. */
export const SAMPLES: { [K in MsgType]: Bodies[K][] } = {
  [MsgType.HELLO]: [
    {
      vendor: 'acme',
      program: 'cad',
      version: '2.1',
      user: 'alice',
      host: 'ws1',
      padding: bytes(500),
    },
    { vendor: '', program: '', version: '', user: '', host: '', padding: bytes(0) },
    {
      vendor: 'v'.repeat(Limits.NAME),
      program: 'é'.repeat(Limits.NAME / 2),
      version: '\u{1F600}'.repeat(Limits.VERSION_STR / 4),
      user: '\uFEFFbom',
      host: 'h\0st',
      padding: bytes(700),
    },
  ],
  [MsgType.HELLO_OK]: [
    { token: seq(120), wrappedKey: seq(32), tokenExpires: 1_780_000_000_000, heartbeatMs: 30_000 },
    { token: seq(Limits.TOKEN), wrappedKey: bytes(32, 0xff), tokenExpires: 0, heartbeatMs: 0 },
    {
      token: bytes(0),
      wrappedKey: bytes(32),
      tokenExpires: Number.MAX_SAFE_INTEGER,
      heartbeatMs: 0xffffffff,
    },
  ],
  [MsgType.CHECKOUT]: [
    { feature: 'solver', version: '3.0', count: 1, options: 0 },
    { feature: 'f'.repeat(Limits.NAME), version: 'v'.repeat(32), count: 1000, options: 1 },
  ],
  [MsgType.CHECKOUT_REPLY]: [
    {
      status: CheckoutStatus.GRANTED,
      feature: 'solver',
      leaseId: 42n,
      count: 2,
      ticket: seq(90),
      heartbeatMs: 30_000,
      position: 0,
      queueLength: 0,
      reason: 0,
      retryAfterMs: 0,
    },
    {
      status: CheckoutStatus.QUEUED,
      feature: 'solver',
      leaseId: 0n,
      count: 0,
      ticket: bytes(0),
      heartbeatMs: 30_000,
      position: 3,
      queueLength: 0xffff,
      reason: 0,
      retryAfterMs: 1000,
    },
    {
      status: CheckoutStatus.DENIED,
      feature: '',
      leaseId: 0xffffffffffffffffn,
      count: 0xffff,
      ticket: seq(Limits.TICKET),
      heartbeatMs: 0xffffffff,
      position: 0xffff,
      queueLength: 0xffff,
      reason: 56,
      retryAfterMs: 0xffffffff,
    },
  ],
  [MsgType.HEARTBEAT]: [{}],
  [MsgType.HEARTBEAT_ACK]: [
    { leases: 1, queued: 0, heartbeatMs: 30_000 },
    { leases: 0xffff, queued: 0xffff, heartbeatMs: 0xffffffff },
  ],
  [MsgType.CHECKIN]: [
    { leaseId: 42n, feature: '' },
    { leaseId: 0n, feature: 'solver' },
  ],
  [MsgType.CHECKIN_OK]: [
    { leaseId: 42n, released: 1 },
    { leaseId: 0n, released: 0 },
  ],
  [MsgType.TEST_CONN]: [{ nonce: seq(8) }, { nonce: bytes(8, 0xff) }],
  [MsgType.TEST_CONN_ACK]: [
    { nonce: seq(8), leases: 2 },
    { nonce: bytes(8), leases: 0 },
  ],
  [MsgType.STATUS]: [
    { page: 0, feature: '' },
    { page: 0xffff, feature: 'solver' },
  ],
  [MsgType.STATUS_REPLY]: [
    { page: 0, pages: 1, snapshot: 0, records: [] },
    {
      page: 1,
      pages: 3,
      snapshot: 0xffffffff,
      records: [
        {
          kind: StatusRecord.FEATURE,
          name: 'solver',
          version: '3.0',
          vendor: 'acme',
          expires: 0,
          count: 10,
          inUse: 2,
          queued: 1,
          issued: 100,
          denied: 7,
        },
        {
          kind: StatusRecord.HOLDER,
          feature: 'solver',
          user: 'alice',
          host: 'ws1',
          since: 1_780_000_000_000,
          count: 2,
          leaseId: 42n,
          program: 'cad',
          version: '2.10',
        },
        {
          kind: StatusRecord.QUEUED,
          feature: 'solver',
          user: 'bob',
          host: 'ws2',
          since: 1_780_000_001_000,
          position: 1,
        },
        {
          kind: StatusRecord.RESERVATION,
          feature: 'solver',
          type: ReservationType.HOST,
          name: 'ws9',
          count: 0xffff,
          inUse: 0,
        },
        {
          kind: StatusRecord.SERVER,
          name: 'lic1:27400',
          state: 1,
          since: 1_780_000_002_000,
          self: 1,
        },
        { kind: StatusRecord.SERVER, name: 'lic2:27400', state: 0, since: 0, self: 0 },
      ],
    },
    {
      page: 0,
      pages: 1,
      snapshot: 1,
      records: Array.from({ length: Limits.STATUS_RECORDS }, (_, i) => ({
        kind: StatusRecord.QUEUED,
        feature: '',
        user: '',
        host: '',
        since: i,
        position: i,
      })),
    },
  ],
  [MsgType.ADMIN]: [
    { op: 1, feature: 'solver', user: 'alice', host: 'ws1', leaseId: 42n },
    { op: 3, feature: '', user: '', host: '', leaseId: 0n },
  ],
  [MsgType.ADMIN_REPLY]: [
    { op: 1, affected: 1, message: 'removed' },
    { op: 3, affected: 0xffffffff, message: 'm'.repeat(Limits.MESSAGE) },
  ],
  [MsgType.PING]: [{ payload: bytes(0) }, { payload: seq(Limits.PING_PAYLOAD) }],
  [MsgType.PONG]: [
    { serverVersion: '0.1.0', uptimeMs: 1234, state: 0, graceLeftMs: 0 },
    {
      serverVersion: 'x'.repeat(32),
      uptimeMs: Number.MAX_SAFE_INTEGER,
      state: 2,
      graceLeftMs: 0xffffffff,
    },
  ],
  [MsgType.RECLAIM]: [
    { tickets: [] },
    { tickets: [{ ticket: seq(90) }, { ticket: bytes(0) }] },
    { tickets: Array.from({ length: Limits.TICKETS }, () => ({ ticket: seq(100) })) },
  ],
  [MsgType.RECLAIM_REPLY]: [
    { results: [] },
    {
      results: Array.from({ length: Limits.TICKETS }, (_, i) => ({
        leaseId: BigInt(i),
        code: i * 7,
      })),
    },
  ],
  [MsgType.ERROR]: [
    { code: 34, retryAfterMs: 0, message: '' },
    { code: 0xffff, retryAfterMs: 0xffffffff, message: 'ü'.repeat(Limits.MESSAGE / 2) },
  ],
};

/** Flags a datagram of this type normally carries. */
export function flagsOf(type: MsgType): number {
  if (type === MsgType.TEST_CONN) return Flags.FROM_SERVER;
  if (type === MsgType.TEST_CONN_ACK) return Flags.REPLY;
  return type & 0x80 ? Flags.REPLY | Flags.FROM_SERVER : 0;
}

/** A decoded-form auth block for `mode` under `flags` (placeholders when not on the wire). */
export function authOf(mode: AuthMode, flags: number): AnyDatagram['auth'] {
  const request = flags === 0;
  switch (mode) {
    case AuthMode.CREDENTIAL:
      return request
        ? { mode, credId: 'demo', nonce: seq(16) }
        : { mode, credId: '', nonce: bytes(16) };
    case AuthMode.TOKEN:
      return { mode, token: request ? seq(130) : bytes(0) };
    case AuthMode.SESSION:
      return { mode };
    case AuthMode.ADMIN:
      return { mode, keyId: request ? 'admin' : '' };
  }
}

/** A whole datagram around a body, with fixed header fields. */
export function datagramOf<T extends MsgType>(
  type: T,
  body: Bodies[T],
  mode: AuthMode = AuthMode.SESSION,
  flags: number = flagsOf(type),
): AnyDatagram {
  return {
    type,
    flags,
    auth: authOf(mode, flags),
    requestId: 0x01020304,
    sessionId: 0x1122334455667788n,
    seq: 7,
    timestamp: 1_780_000_000_000,
    body,
    tag: seq(32),
  } as AnyDatagram;
}

/** Every sample body of every type, in every auth mode, as datagrams no larger than 1200. */
export function allSampleDatagrams(): AnyDatagram[] {
  const out: AnyDatagram[] = [];
  for (const type of ALL_TYPES) {
    for (const body of SAMPLES[type] as Bodies[MsgType][]) {
      for (const mode of [1, 2, 3, 4] as AuthMode[]) {
        const d = datagramOf(type, body as never, mode);
        if (encodingLength(d) <= MAX_DATAGRAM) out.push(d);
      }
    }
  }
  return out;
}

/**
 * Round-trip checks of one datagram: decode(encode(x)) deep-equals x, encodingLength equals
 * the bytes written, re-encoding the decoded value is byte-identical, and all of it holds at
 * a non-zero offset inside a larger buffer.
 */
export function testEncoder(t: Test, d: AnyDatagram, label = ''): void {
  const bytesOut = encodeToBytes(d);
  t.equal(bytesOut.length, encodingLength(d), `${label} encodingLength = bytes written`);
  const back = decode(cursor(bytesOut));
  t.strictSame(back, d, `${label} decode(encode(x)) deep-equals x`);
  t.same(encodeToBytes(back), bytesOut, `${label} re-encode is byte-identical`);

  const offset = 13;
  const big = new Uint8Array(offset + bytesOut.length + 9).fill(0xa5);
  const w = cursor(big, offset);
  encode(d, w);
  t.equal(w.start, offset + bytesOut.length, `${label} encode advances the cursor`);
  t.same(big.subarray(offset, offset + bytesOut.length), bytesOut, `${label} same bytes at offset`);
  t.equal(big[offset - 1], 0xa5, `${label} byte before untouched`);
  t.equal(big[offset + bytesOut.length], 0xa5, `${label} byte after untouched`);
  const r = cursor(big, offset);
  t.strictSame(decode(r), d, `${label} decodes at offset`);
  t.equal(r.start, offset + bytesOut.length, `${label} decode advances exactly one datagram`);
}

/** Asserts `fn` throws a DecodeError with `code` whose message matches `message`. */
export function throwsDecode(
  t: Test,
  fn: () => unknown,
  code: DecodeErrorCode,
  message: RegExp,
  offset?: number,
): void {
  try {
    fn();
    t.fail(`expected DecodeError ${code}`);
  } catch (e) {
    t.ok(e instanceof DecodeError, `${code}: is a DecodeError`);
    const err = e as DecodeError;
    t.equal(err.code, code, `code is ${code}`);
    t.match(err.message, message, `${code}: message`);
    t.ok(err.message.startsWith(`${code}: `), 'message starts with the code');
    if (offset !== undefined) t.equal(err.offset, offset, `${code}: offset`);
  }
}

// ---- fast-check arbitraries derived from the schemas -------------------------------------

function arbString(max: number): fc.Arbitrary<string> {
  return fc.oneof(
    fc.string({ unit: 'grapheme-ascii', maxLength: max }),
    fc.string({ unit: 'binary', maxLength: Math.floor(max / 4) }),
  );
}

function arbField(f: Field): fc.Arbitrary<unknown> {
  switch (f.kind) {
    case 'u8':
    case 'u16':
    case 'u32':
    case 'u53': {
      const top = { u8: 0xff, u16: 0xffff, u32: 0xffffffff, u53: Number.MAX_SAFE_INTEGER }[f.kind];
      return fc.integer({ min: f.min ?? 0, max: Math.min(f.max ?? top, top) });
    }
    case 'u64':
      return fc.bigInt({ min: 0n, max: 0xffffffffffffffffn });
    case 'str':
      return arbString(f.max);
    case 'bytes':
      return fc.uint8Array({ maxLength: Math.min(f.max, 300) });
    case 'fixed':
      return fc.uint8Array({ minLength: f.length, maxLength: f.length });
    case 'list':
      return fc.array(arbSchema(f.item), { maxLength: Math.min(f.max, 4) });
    case 'union':
      return fc.array(
        fc.oneof(
          ...Object.entries(f.variants).map(([tag, s]) =>
            arbSchema(s).map((r) => ({ [f.tag]: Number(tag), ...r })),
          ),
        ),
        { maxLength: Math.min(f.max, 4) },
      );
  }
}

function arbSchema(s: Schema): fc.Arbitrary<Record<string, unknown>> {
  return fc.record(Object.fromEntries(s.map((f) => [f.name, arbField(f)])), {
    noNullPrototype: true,
  });
}

/** Any valid datagram (request or reply, any type, any mode) of at most 1200 bytes. */
export const arbDatagram: fc.Arbitrary<AnyDatagram> = fc
  .record({
    type: fc.constantFrom(...ALL_TYPES),
    flags: fc.constantFrom(0, 1, 2, 3),
    mode: fc.constantFrom(1, 2, 3, 4) as fc.Arbitrary<AuthMode>,
    credId: arbString(Limits.CRED_ID),
    nonce: fc.uint8Array({ minLength: 16, maxLength: 16 }),
    token: fc.uint8Array({ maxLength: 200 }),
    requestId: fc.integer({ min: 0, max: 0xffffffff }),
    sessionId: fc.bigInt({ min: 0n, max: 0xffffffffffffffffn }),
    seq: fc.integer({ min: 0, max: 0xffffffff }),
    timestamp: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    tag: fc.uint8Array({ minLength: 32, maxLength: 32 }),
  })
  .chain((h) =>
    arbSchema(SCHEMAS[h.type]).map((body) => {
      const request = h.flags === 0;
      const auth =
        h.mode === AuthMode.CREDENTIAL
          ? request
            ? { mode: h.mode, credId: h.credId, nonce: h.nonce }
            : { mode: h.mode, credId: '', nonce: new Uint8Array(16) }
          : h.mode === AuthMode.TOKEN
            ? { mode: h.mode, token: request ? h.token : new Uint8Array(0) }
            : h.mode === AuthMode.ADMIN
              ? { mode: h.mode, keyId: request ? h.credId : '' }
              : { mode: h.mode };
      return {
        type: h.type,
        flags: h.flags,
        auth,
        requestId: h.requestId,
        sessionId: h.sessionId,
        seq: h.seq,
        timestamp: h.timestamp,
        body,
        tag: h.tag,
      } as AnyDatagram;
    }),
  )
  .filter((d) => encodingLength(d) <= MAX_DATAGRAM);

/** Runs `fn` and reports whether it returned or threw a DecodeError; rethrows anything else. */
export function decodesOrDecodeError(fn: () => unknown): boolean {
  try {
    fn();
    return true;
  } catch (e) {
    if (e instanceof DecodeError) return false;
    throw e;
  }
}
