/**
 * protocol.md against the code: its appendix of test vectors must match the fixtures and
 * decode and verify with the codec, and its "Error codes" section must list every wire
 * error code and every DecodeError code with the same number.
 */
import { readFileSync } from 'node:fs';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import t from 'tap';
import {
  DecodeErrorCode,
  decodeDatagram,
  ErrorCode,
  fromHex,
  TYPE_NAMES,
  toHex,
} from '../lib/wire/index.ts';
import {
  BEGIN,
  buildVectors,
  END,
  FIXTURE_PATH,
  PROTOCOL_PATH,
  renderAppendix,
  type Vector,
} from '../scripts/gen-vectors.ts';

const doc = readFileSync(PROTOCOL_PATH, 'utf8');
const fixtures = JSON.parse(readFileSync(FIXTURE_PATH, 'utf8')) as Vector[];

interface DocVector {
  name: string;
  key: string;
  datagram: string;
}

/** Vectors as the appendix shows them: heading, key line, hex block. */
function parseAppendix(text: string): DocVector[] {
  const a = text.indexOf(BEGIN);
  const b = text.indexOf(END);
  if (a < 0 || b < a) return [];
  const body = text.slice(a + BEGIN.length, b);
  const out: DocVector[] = [];
  const re = /^### Vector \d+: (.+)\n[\s\S]*?^- key: `([0-9a-f]+)`\n\n```hex\n([\s\S]*?)```/gm;
  for (const m of body.matchAll(re)) {
    out.push({ name: m[1]!, key: m[2]!, datagram: m[3]!.replace(/\s+/g, '') });
  }
  return out;
}

/** The text of a `## ` section by title, up to the next `## `. */
function section(text: string, title: string): string {
  const start = text.search(new RegExp(`^## ${title}\\s*$`, 'm'));
  if (start < 0) return '';
  const rest = text.slice(start + 3);
  const next = rest.search(/^## /m);
  return next < 0 ? rest : rest.slice(0, next);
}

t.test('the appendix lists the fixtures, in order, byte for byte', async (t) => {
  const shown = parseAppendix(doc);
  t.equal(shown.length, fixtures.length, 'one appendix entry per fixture');
  shown.forEach((d, i) => {
    const f = fixtures[i]!;
    t.equal(d.name, f.name, `#${i + 1} name`);
    t.equal(d.key, f.key, `${f.name}: key`);
    t.equal(d.datagram, f.datagram, `${f.name}: datagram`);
  });
});

t.test('every appendix datagram decodes and its tag verifies', async (t) => {
  const shown = parseAppendix(doc);
  for (const d of shown) {
    const b = fromHex(d.datagram);
    const decoded = decodeDatagram(b);
    t.ok(TYPE_NAMES[decoded.type], `${d.name}: decodes as ${TYPE_NAMES[decoded.type]}`);
    const mac = hmac(sha256, fromHex(d.key), b.subarray(0, b.length - 32));
    t.equal(toHex(mac), toHex(b.subarray(b.length - 32)), `${d.name}: tag verifies`);
  }
});

t.test('the appendix is what the generator writes (run `npm run vectors`)', async (t) => {
  const a = doc.indexOf(BEGIN);
  const b = doc.indexOf(END);
  t.ok(a >= 0 && b > a, 'markers present');
  t.equal(doc.slice(a + BEGIN.length, b), renderAppendix(buildVectors()));
});

t.test('the appendix parser notices disagreement', async (t) => {
  const one = parseAppendix(doc)[0]!;
  const i = doc.indexOf('```hex\n', doc.indexOf(BEGIN)) + '```hex\n'.length;
  const swap = doc.slice(i, i + 2) === 'ff' ? '00' : 'ff';
  const broken = doc.slice(0, i) + swap + doc.slice(i + 2);
  t.not(parseAppendix(broken)[0]?.datagram, one.datagram, 'an edited byte is seen');
  t.same(parseAppendix('no markers'), []);
});

t.test('"Error codes" lists every wire code and DecodeError code', async (t) => {
  const errors = section(doc, 'Error codes');
  t.ok(errors.length > 0, 'section exists');
  for (const [name, value] of Object.entries(ErrorCode)) {
    const row = new RegExp(`^\\|\\s*${value}\\s*\\|\\s*\`?${name}\`?\\s*\\|`, 'm');
    t.match(errors, row, `${value} ${name}`);
  }
  const numbers = [...errors.matchAll(/^\|\s*(\d+)\s*\|\s*`?([A-Z_]+)`?\s*\|/gm)];
  const known = new Map(Object.entries(ErrorCode).map(([k, v]) => [v as number, k]));
  for (const m of numbers) {
    t.equal(known.get(Number(m[1])), m[2], `documented ${m[1]} ${m[2]} exists in codes.ts`);
  }
  for (const code of Object.values(DecodeErrorCode)) {
    t.match(errors, new RegExp(`^\\|\\s*\`${code}\`\\s*\\|`, 'm'), `DecodeError ${code}`);
  }
});
