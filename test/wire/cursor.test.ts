/**
 * lib/wire/cursor.ts: bounds on every read and write, the u53 limit, length caps checked
 * before allocation, strict UTF-8, hex helpers.
 */
import t from 'tap';
import {
  checkString,
  cursor,
  expectEnd,
  fromHex,
  readBytes,
  readString,
  readU8,
  readU16,
  readU32,
  readU53,
  readU64,
  readVarBytes,
  remaining,
  stringLength,
  toHex,
  utf8,
  writeBytes,
  writeString,
  writeU8,
  writeU16,
  writeU32,
  writeU53,
  writeU64,
  writeVarBytes,
} from '../../lib/wire/index.ts';
import { throwsDecode } from './helpers.ts';

t.test('cursor() checks its arguments', async (t) => {
  const b = new Uint8Array(4);
  t.same(cursor(b), { buffer: b, start: 0, end: 4 });
  t.same(cursor(b, 4), { buffer: b, start: 4, end: 4 });
  t.throws(() => cursor([1, 2] as unknown as Uint8Array), {
    name: 'TypeError',
    message: /^buffer/,
  });
  t.throws(() => cursor(b, -1), { name: 'RangeError', message: /^start/ });
  t.throws(() => cursor(b, 5), { name: 'RangeError', message: /^start/ });
  t.throws(() => cursor(b, 1.5), { name: 'RangeError', message: /^start/ });
  t.throws(() => cursor(b, 2, 1), { name: 'RangeError', message: /^end/ });
  t.throws(() => cursor(b, 0, 5), { name: 'RangeError', message: /^end/ });
  t.equal(remaining(cursor(b, 1, 3)), 2);
});

t.test('integers round-trip at their extremes, big-endian', async (t) => {
  const b = new Uint8Array(1 + 2 + 4 + 8 + 8);
  const w = cursor(b);
  writeU8(w, 0xff);
  writeU16(w, 0xfeff);
  writeU32(w, 0xfffffffe);
  writeU64(w, 0xfffffffffffffffen);
  writeU53(w, Number.MAX_SAFE_INTEGER);
  t.equal(remaining(w), 0);
  t.equal(toHex(b), 'fffefffffffffefffffffffffffffe001fffffffffffff');
  const r = cursor(b);
  t.equal(readU8(r), 0xff);
  t.equal(readU16(r), 0xfeff);
  t.equal(readU32(r), 0xfffffffe);
  t.equal(readU64(r), 0xfffffffffffffffen);
  t.equal(readU53(r), Number.MAX_SAFE_INTEGER);
  expectEnd(r, 'test');
});

t.test('reads past the end are TRUNCATED, with the offset', async (t) => {
  const b = new Uint8Array(10);
  throwsDecode(t, () => readU8(cursor(b, 10), 'x'), 'TRUNCATED', /x needs 1 bytes, 0 left/, 10);
  throwsDecode(t, () => readU16(cursor(b, 9), 'y'), 'TRUNCATED', /y needs 2 bytes, 1 left/, 9);
  throwsDecode(t, () => readU32(cursor(b, 7)), 'TRUNCATED', /u32 needs 4 bytes, 3 left/, 7);
  throwsDecode(t, () => readU64(cursor(b, 3)), 'TRUNCATED', /u64 needs 8 bytes, 7 left/, 3);
  throwsDecode(t, () => readU53(cursor(b, 3)), 'TRUNCATED', /needs 8 bytes/, 3);
  throwsDecode(t, () => readBytes(cursor(b, 0, 4), 5), 'TRUNCATED', /needs 5 bytes, 4 left/, 0);
  // The end bound is honoured even when the buffer goes on.
  throwsDecode(t, () => readU16(cursor(b, 0, 1)), 'TRUNCATED', /needs 2 bytes, 1 left/);
  const c = cursor(b, 9);
  try {
    readU16(c);
  } catch {}
  t.equal(c.start, 9, 'a failed read does not advance');
});

t.test('readU53 refuses values above 2^53-1', async (t) => {
  const ok = fromHex('001fffffffffffff');
  t.equal(readU53(cursor(ok)), 2 ** 53 - 1);
  throwsDecode(
    t,
    () => readU53(cursor(fromHex('0020000000000000')), 'when'),
    'OUT_OF_RANGE',
    /when exceeds 2\^53-1/,
    0,
  );
  t.equal(readU64(cursor(fromHex('0020000000000000'))), 2n ** 53n, 'u64 reads it');
});

t.test('length-prefixed bytes: cap checked before reading', async (t) => {
  const b = new Uint8Array(300);
  b[0] = 10;
  t.equal(readVarBytes(cursor(b), 1, 10).length, 10, 'at the cap');
  throwsDecode(
    t,
    () => readVarBytes(cursor(b), 1, 9, 'blob'),
    'BAD_LENGTH',
    /blob length 10 exceeds 9/,
    0,
  );
  const big = fromHex('ffff');
  throwsDecode(t, () => readVarBytes(cursor(big), 2, 0xfffe), 'BAD_LENGTH', /65535 exceeds 65534/);
  throwsDecode(
    t,
    () => readVarBytes(cursor(big), 2, 0xffff, 'p'),
    'TRUNCATED',
    /p needs 65535 bytes, 0 left/,
  );
  throwsDecode(
    t,
    () => readVarBytes(cursor(new Uint8Array(1)), 2, 5, 'p'),
    'TRUNCATED',
    /p length needs 2/,
  );
  const w = cursor(new Uint8Array(5));
  writeVarBytes(w, 2, Uint8Array.of(1, 2, 3));
  t.same([...w.buffer], [0, 3, 1, 2, 3]);
  const copy = readVarBytes(cursor(w.buffer), 2, 3);
  w.buffer[2] = 9;
  t.same([...copy], [1, 2, 3], 'reads copy, never alias');
});

t.test('strings: strict UTF-8, BOM kept, caps in bytes', async (t) => {
  for (const s of ['', 'abc', 'é', '\u{1F600}', '\uFEFFx', '\0']) {
    const w = cursor(new Uint8Array(stringLength(s)));
    writeString(w, s);
    t.equal(remaining(w), 0, `length of ${JSON.stringify(s)}`);
    t.equal(readString(cursor(w.buffer), 64), s, `round trip ${JSON.stringify(s)}`);
  }
  t.equal(stringLength('é'), 3);
  t.same([...utf8('é')], [0xc3, 0xa9]);
  for (const bad of ['01ff', '01c0', '02c3', '03eda080', '04f4908080']) {
    throwsDecode(
      t,
      () => readString(cursor(fromHex(bad)), 64, 'name'),
      bad === '02c3' ? 'TRUNCATED' : 'BAD_STRING',
      /name/,
    );
  }
  throwsDecode(
    t,
    () => readString(cursor(fromHex('01ff')), 64, 'name'),
    'BAD_STRING',
    /name is not valid UTF-8/,
    1,
  );
  throwsDecode(
    t,
    () => readString(cursor(fromHex('03616263')), 2, 'name'),
    'BAD_LENGTH',
    /name length 3 exceeds 2/,
  );
  t.equal(checkString('ab', 2, 'f'), 'ab');
  t.throws(() => checkString('abc', 2, 'f'), {
    name: 'RangeError',
    message: /^f is 3 bytes, at most 2/,
  });
  t.throws(() => checkString('éa', 2, 'f'), { name: 'RangeError', message: /^f is 3 bytes/ });
  t.throws(() => checkString(1, 2, 'f'), { name: 'TypeError', message: /^f must be a string/ });
  for (const s of ['\ud800', 'a\udc00', '\udc00\ud800']) {
    t.throws(() => checkString(s, 9, 'f'), {
      name: 'TypeError',
      message: /^f must be well-formed/,
    });
  }
  t.equal(checkString('\ud83d\ude00', 9, 'f'), '\u{1F600}', 'a surrogate pair is fine');
});

t.test('writes without room throw RangeError naming the field', async (t) => {
  const full = (n: number) => cursor(new Uint8Array(n));
  t.throws(() => writeU8(full(0), 1, 'a'), { name: 'RangeError', message: /write a \(1 bytes\)/ });
  t.throws(() => writeU16(full(1), 1, 'b'), { name: 'RangeError', message: /write b \(2/ });
  t.throws(() => writeU32(full(3), 1, 'c'), { name: 'RangeError', message: /write c \(4/ });
  t.throws(() => writeU64(full(7), 1n, 'd'), { name: 'RangeError', message: /write d \(8/ });
  t.throws(() => writeU53(full(7), 1, 'e'), { name: 'RangeError', message: /write e \(8/ });
  t.throws(() => writeBytes(full(1), new Uint8Array(2), 'f'), {
    name: 'RangeError',
    message: /write f/,
  });
  t.throws(() => writeString(full(3), 'abc', 'g'), { name: 'RangeError', message: /write g/ });
});

t.test('expectEnd', async (t) => {
  const c = cursor(new Uint8Array(3), 1);
  throwsDecode(
    t,
    () => expectEnd(c, 'thing'),
    'TRAILING_BYTES',
    /2 unexpected bytes after thing/,
    1,
  );
  c.start = 3;
  expectEnd(c, 'thing');
  t.pass('exhausted cursor passes');
});

t.test('hex helpers', async (t) => {
  t.equal(toHex(Uint8Array.of(0, 0xab, 0xff)), '00abff');
  t.equal(toHex(new Uint8Array(8).subarray(2, 4)), '0000', 'respects subarray bounds');
  t.same([...fromHex('00 AB\nff')], [0, 0xab, 0xff], 'whitespace and case ignored');
  t.same(fromHex(''), new Uint8Array(0));
  t.throws(() => fromHex('abc'), { name: 'TypeError', message: /^hex/ });
  t.throws(() => fromHex('zz'), { name: 'TypeError', message: /^hex/ });
});
