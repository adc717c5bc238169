/** lib/wire/codes.ts: the wire error codes, their names and texts. */
import t from 'tap';
import { ERROR_TEXT, ErrorCode, errorName } from '../../lib/wire/index.ts';

t.test('every code is a unique u16 with a name and a text', async (t) => {
  const values = Object.values(ErrorCode);
  t.equal(new Set(values).size, values.length, 'numbers are unique');
  for (const [name, v] of Object.entries(ErrorCode)) {
    t.ok(Number.isInteger(v) && v >= 0 && v <= 0xffff, `${name} fits u16`);
    t.equal(errorName(v), name, `errorName(${v})`);
    t.type(ERROR_TEXT[v], 'string');
    t.ok(ERROR_TEXT[v].length > 0, `${name} has a text`);
  }
  t.same(
    Object.keys(ERROR_TEXT)
      .map(Number)
      .sort((a, b) => a - b),
    [...values].sort((a, b) => a - b),
    'no stray texts',
  );
});

t.test('fixed numbers the protocol relies on', async (t) => {
  t.equal(ErrorCode.OK, 0);
  t.equal(ErrorCode.UNKNOWN_SESSION, 34);
  t.equal(ErrorCode.NEED_PADDING, 35);
  t.equal(ErrorCode.IN_GRACE, 56);
  t.equal(ErrorCode.INTERNAL, 68);
});

t.test('unknown codes get a placeholder name', async (t) => {
  t.equal(errorName(3), 'CODE_3');
  t.equal(errorName(65535), 'CODE_65535');
});
