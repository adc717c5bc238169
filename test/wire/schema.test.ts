/**
 * lib/wire/schema.ts: the field-list codec builder, on a schema that uses every field
 * kind, checked at every bound.
 */
import t from 'tap';
import { cursor, fromHex, toHex } from '../../lib/wire/index.ts';
import { codecOf, type Schema } from '../../lib/wire/schema.ts';
import { throwsDecode } from './helpers.ts';

const schema: Schema = [
  { name: 'a', kind: 'u8', min: 1, max: 3 },
  { name: 'b', kind: 'u16' },
  { name: 'c', kind: 'u32', max: 1000 },
  { name: 'd', kind: 'u53' },
  { name: 'e', kind: 'u64' },
  { name: 's', kind: 'str', max: 4 },
  { name: 'p', kind: 'bytes', prefix: 2, max: 3 },
  { name: 'f', kind: 'fixed', length: 2 },
  { name: 'l', kind: 'list', max: 2, item: [{ name: 'x', kind: 'u8' }] },
  {
    name: 'u',
    kind: 'union',
    max: 2,
    tag: 'k',
    variants: { 1: [{ name: 'y', kind: 'u8' }], 2: [{ name: 'z', kind: 'str', max: 2 }] },
  },
];
const codec = codecOf<Record<string, unknown>>(schema);
const value = {
  a: 3,
  b: 0xffff,
  c: 1000,
  d: 2 ** 53 - 1,
  e: 2n ** 64n - 1n,
  s: 'abcd',
  p: Uint8Array.of(7, 8, 9),
  f: Uint8Array.of(1, 2),
  l: [{ x: 5 }, { x: 6 }],
  u: [
    { k: 1, y: 4 },
    { k: 2, z: 'hi' },
  ],
};
// a   b    c        d                e                s          p          f    l        u
const HEX =
  '03' +
  'ffff' +
  '000003e8' +
  '001fffffffffffff' +
  'ffffffffffffffff' +
  '0461626364' +
  '0003070809' +
  '0102' +
  '020506' +
  '02' +
  '0104' +
  '02026869';

function enc(v: Record<string, unknown>): Uint8Array {
  const out = new Uint8Array(codec.encodingLength(v));
  const c = cursor(out);
  codec.encode(v, c);
  t.equal(c.start, out.length, 'encode fills exactly encodingLength');
  return out;
}

t.test('every field kind, byte-exact', async (t) => {
  const b = enc(value);
  t.equal(toHex(b), HEX);
  const c = cursor(b);
  t.strictSame(codec.decode(c), value);
  t.equal(c.start, b.length);
});

t.test('decode bounds: each at its exact limit', async (t) => {
  const at = (hexOff: number, hex: string) => {
    const h = HEX.slice(0, hexOff) + hex + HEX.slice(hexOff + hex.length);
    return () => codec.decode(cursor(fromHex(h)));
  };
  throwsDecode(t, at(0, '00'), 'OUT_OF_RANGE', /a 0 not in \[1, 3\]/, 0);
  throwsDecode(t, at(0, '04'), 'OUT_OF_RANGE', /a 4 not in \[1, 3\]/, 0);
  t.ok(at(0, '01')(), 'a = min decodes');
  throwsDecode(t, at(6, '000003e9'), 'OUT_OF_RANGE', /c 1001 not in \[0, 1000\]/, 3);
  throwsDecode(t, at(14, '0020000000000000'), 'OUT_OF_RANGE', /d exceeds 2\^53-1/, 7);
  throwsDecode(t, at(46, '05'), 'BAD_LENGTH', /s length 5 exceeds 4/, 23);
  throwsDecode(t, at(56, '0004'), 'BAD_LENGTH', /p length 4 exceeds 3/, 28);
  throwsDecode(t, at(70, '03'), 'BAD_LENGTH', /l count 3 exceeds 2/, 35);
  throwsDecode(t, at(76, '03'), 'BAD_LENGTH', /u count 3 exceeds 2/, 38);
  throwsDecode(t, at(78, '03'), 'OUT_OF_RANGE', /unknown k 3/, 39);
  throwsDecode(t, at(78, '00'), 'OUT_OF_RANGE', /unknown k 0/, 39);
  throwsDecode(t, at(84, '03'), 'BAD_LENGTH', /z length 3 exceeds 2/, 42);
  throwsDecode(t, at(86, 'fe'), 'BAD_STRING', /z is not valid UTF-8/, 43);
  for (let n = 0; n < HEX.length / 2; n++) {
    throwsDecode(t, () => codec.decode(cursor(fromHex(HEX).subarray(0, n))), 'TRUNCATED', /needs/);
  }
});

t.test('encode misuse names the field', async (t) => {
  const cases: [Record<string, unknown>, string, RegExp][] = [
    [{ a: 0 }, 'RangeError', /^a must be an integer in \[1, 3\], got 0/],
    [{ a: 4 }, 'RangeError', /^a must be an integer in \[1, 3\]/],
    [{ a: 1.5 }, 'RangeError', /^a must be an integer/],
    [{ a: '1' }, 'RangeError', /^a must be an integer/],
    [{ b: 0x10000 }, 'RangeError', /^b must be an integer in \[0, 65535\]/],
    [{ b: -1 }, 'RangeError', /^b /],
    [{ c: 1001 }, 'RangeError', /^c must be an integer in \[0, 1000\]/],
    [{ d: 2 ** 53 }, 'RangeError', /^d /],
    [{ e: 1 }, 'RangeError', /^e must be a bigint/],
    [{ e: -1n }, 'RangeError', /^e must be a bigint/],
    [{ e: 2n ** 64n }, 'RangeError', /^e must be a bigint/],
    [{ s: 'abcde' }, 'RangeError', /^s is 5 bytes, at most 4/],
    [{ s: 'ééé' }, 'RangeError', /^s is 6 bytes/],
    [{ s: null }, 'TypeError', /^s must be a string/],
    [{ s: '\udfff' }, 'TypeError', /^s must be well-formed Unicode/],
    [{ p: [1] }, 'TypeError', /^p must be a Uint8Array/],
    [{ p: new Uint8Array(4) }, 'RangeError', /^p is 4 bytes, at most 3/],
    [{ f: new Uint8Array(3) }, 'TypeError', /^f must be a Uint8Array of 2 bytes/],
    [{ f: undefined }, 'TypeError', /^f must be/],
    [{ l: {} }, 'TypeError', /^l must be an array/],
    [{ l: [{ x: 1 }, { x: 1 }, { x: 1 }] }, 'RangeError', /^l has 3 items, at most 2/],
    [{ l: [null] }, 'TypeError', /^l items must be objects/],
    [{ l: [{ x: 256 }] }, 'RangeError', /^x must be/],
    [{ u: [{ k: 3 }] }, 'RangeError', /^u: unknown k 3/],
    [{ u: [{ y: 1 }] }, 'RangeError', /^u: unknown k undefined/],
    [{ u: [{ k: 2, z: 'abc' }] }, 'RangeError', /^z is 3 bytes/],
  ];
  for (const [patch, name, message] of cases) {
    const v = { ...value, ...patch };
    t.throws(() => codec.encodingLength(v), { name, message }, `length: ${message.source}`);
    t.throws(
      () => codec.encode(v, cursor(new Uint8Array(100))),
      { name, message },
      `encode: ${message.source}`,
    );
  }
  t.throws(() => codec.encodingLength(null as never), { name: 'TypeError', message: /^body/ });
  t.throws(() => codec.encode(value, cursor(new Uint8Array(10))), RangeError, 'no room');
});

t.test('empty schema and empty collections', async (t) => {
  const empty = codecOf<Record<string, never>>([]);
  t.equal(empty.encodingLength({}), 0);
  t.same(empty.decode(cursor(new Uint8Array(0))), {});
  const b = enc({ ...value, s: '', p: new Uint8Array(0), l: [], u: [] });
  t.strictSame(codec.decode(cursor(b)), { ...value, s: '', p: new Uint8Array(0), l: [], u: [] });
});
