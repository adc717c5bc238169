import fc from 'fast-check';
import t from 'tap';
import { signDatagram } from '../../lib/auth/sign.ts';
import { KeyedHmac, randomBytes } from '../../lib/crypto/hmac.ts';
import { ERROR_OVERHEAD, errorReply } from '../../lib/server/error-reply.ts';
import { decodeDatagram, Flags, MsgType } from '../../lib/wire/index.ts';

const key = new KeyedHmac(randomBytes(32));

/** What the generic encoder makes of the same ERROR. */
function generic(
  requestId: number,
  sessionId: bigint,
  seq: number,
  mode: number,
  timestamp: number,
  code: number,
  retryAfterMs: number,
  message: string,
): Uint8Array {
  return signDatagram(
    {
      type: MsgType.ERROR,
      flags: Flags.REPLY | Flags.FROM_SERVER,
      auth: { mode } as never,
      requestId,
      sessionId,
      seq,
      timestamp,
      body: { code, retryAfterMs, message },
      tag: new Uint8Array(32),
    },
    key,
  );
}

t.test('errorReply is byte for byte the generic encoder’s ERROR', async (t) => {
  fc.assert(
    fc.property(
      fc.nat(0xffffffff),
      fc.bigInt({ min: 0n, max: 0xffff_ffff_ffff_ffffn }),
      fc.nat(0xffffffff),
      fc.integer({ min: 1, max: 4 }),
      fc.integer({ min: 0, max: 2 ** 50 }),
      fc.nat(0xffff),
      fc.nat(0xffffffff),
      fc
        .string({ unit: 'grapheme', maxLength: 60 })
        .filter((s) => Buffer.byteLength(s, 'utf8') <= 200),
      (rid, sid, seq, mode, ts, code, retry, msg) => {
        const a = errorReply(rid, sid, seq, mode, ts, code, retry, msg, key);
        const b = generic(rid, sid, seq, mode, ts, code, retry, msg);
        return Buffer.from(a).equals(Buffer.from(b));
      },
    ),
    { numRuns: 500 },
  );
  const e = errorReply(7, 9n, 11, 3, 1_700_000_000_123, 33, 250, 'héllo', key);
  t.equal(e.length, ERROR_OVERHEAD + 6, 'overhead plus the UTF-8 bytes of the text');
  const d = decodeDatagram(e);
  t.equal(d.type, MsgType.ERROR);
  t.same(
    { rid: d.requestId, sid: d.sessionId, seq: d.seq, ts: d.timestamp, body: d.body },
    {
      rid: 7,
      sid: 9n,
      seq: 11,
      ts: 1_700_000_000_123,
      body: { code: 33, retryAfterMs: 250, message: 'héllo' },
    },
  );
  t.ok(key.verifyTrailing(e), 'signed with the key');
  t.equal(errorReply(1, 1n, 1, 3, 1, 33, 0, '', key).length, 71, 'an ERROR without text: 71 bytes');
});

t.test('errorReply refuses what the generic encoder refuses', async (t) => {
  t.throws(() => errorReply(1, 1n, 1, 3, 1, 1, 0, 'x'.repeat(201), key), RangeError);
  t.throws(() => errorReply(1, 1n, 1, 3, 1, 1, 0, '\ud800', key), TypeError);
  t.throws(() => generic(1, 1n, 1, 3, 1, 1, 0, '\ud800'), TypeError);
});
