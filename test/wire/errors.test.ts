/** lib/wire/errors.ts: the DecodeError class and its stable codes. */
import t from 'tap';
import { decodeError } from '../../lib/wire/errors.ts';
import { DecodeError, DecodeErrorCode } from '../../lib/wire/index.ts';

t.test('DecodeError carries code, offset and a uniform message', async (t) => {
  const e = new DecodeError(DecodeErrorCode.BAD_MAGIC, 'not a floatlm datagram', 0);
  t.ok(e instanceof Error);
  t.equal(e.name, 'DecodeError');
  t.equal(e.code, 'BAD_MAGIC');
  t.equal(e.offset, 0);
  t.equal(e.message, 'BAD_MAGIC: not a floatlm datagram at byte 0');
  const f = decodeError(DecodeErrorCode.TRUNCATED, 'x', 7);
  t.ok(f instanceof DecodeError);
  t.equal(f.message, 'TRUNCATED: x at byte 7');
});

t.test('codes are stable strings equal to their names', async (t) => {
  t.same(Object.keys(DecodeErrorCode).sort(), [
    'BAD_AUTH_MODE',
    'BAD_FLAGS',
    'BAD_LENGTH',
    'BAD_MAGIC',
    'BAD_STRING',
    'BAD_VERSION',
    'OUT_OF_RANGE',
    'TOO_LARGE',
    'TRAILING_BYTES',
    'TRUNCATED',
    'UNKNOWN_TYPE',
  ]);
  for (const [k, v] of Object.entries(DecodeErrorCode)) t.equal(v, k);
});
