/**
 * The C client (clients/c) against the reference: SHA-256/HMAC (RFC 4231 and node:crypto),
 * every known-answer vector decoded field by field, verified and re-encoded byte for byte,
 * the HELLO_OK key unwrap, every sample and random valid datagram of the TypeScript codec,
 * the same decode error as the reference on malformed input, and 100 000 random and mutated
 * datagrams through the decoder under AddressSanitizer and UBSan.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import t from 'tap';
import { type AnyDatagram, DecodeError, decodeDatagram, toHex } from '../../lib/wire/index.ts';
import { FIXTURE_PATH, sign, type Vector } from '../../scripts/gen-vectors.ts';
import { allSampleDatagrams, arbDatagram } from '../wire/helpers.ts';
import { buildC, runC } from './build.ts';

const vectors = JSON.parse(readFileSync(FIXTURE_PATH, 'utf8')) as Vector[];
const dir = buildC(['test_vectors', 'fuzz']);
const harness = join(dir, 'test_vectors');

interface COut {
  rc: string;
  verify?: string;
  encode?: string;
  reencoded?: string;
  type?: number;
  flags?: number;
  auth?: number;
  requestId?: number;
  sessionId?: string;
  seq?: number;
  timestamp?: number;
  authBlock?: Record<string, unknown>;
  body?: Record<string, unknown>;
}

/** Runs the harness's `vectors` mode over (key, datagram) pairs. */
function cVectors(pairs: [string, string][]): COut[] {
  const out = runC(harness, ['vectors'], pairs.map(([k, d]) => `${k} ${d}\n`).join(''));
  return out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as COut);
}

/** A JSON-safe copy, as in the vectors: bigints as decimal strings, bytes as hex. */
function jsonOf(v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Uint8Array) return toHex(v);
  if (Array.isArray(v)) return v.map(jsonOf);
  if (typeof v === 'object' && v !== null) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, jsonOf(x)]));
  }
  return v;
}

/** The vector-style fields of a datagram (auth block only where it is on the wire). */
function fieldsOf(d: AnyDatagram): Record<string, unknown> {
  const a = d.auth as Record<string, unknown>;
  const authBlock =
    d.flags !== 0 || a.mode === 3
      ? {}
      : a.mode === 1
        ? { credId: a.credId, nonce: a.nonce }
        : a.mode === 2
          ? { token: a.token }
          : { keyId: a.keyId };
  return jsonOf({
    type: d.type,
    flags: d.flags,
    auth: d.auth.mode,
    requestId: d.requestId,
    sessionId: d.sessionId,
    seq: d.seq,
    timestamp: d.timestamp,
    authBlock,
    body: d.body,
  }) as Record<string, unknown>;
}

function cFields(o: COut): Record<string, unknown> {
  const { type, flags, auth, requestId, sessionId, seq, timestamp, authBlock, body } = o;
  return { type, flags, auth, requestId, sessionId, seq, timestamp, authBlock, body };
}

t.test('SHA-256 and HMAC-SHA256 (RFC 4231 test cases 1-7, then node:crypto)', async (t) => {
  const rfc4231: [string, string, string][] = [
    [
      '0b'.repeat(20),
      toHex(Buffer.from('Hi There')),
      'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7',
    ],
    [
      toHex(Buffer.from('Jefe')),
      toHex(Buffer.from('what do ya want for nothing?')),
      '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
    ],
    [
      'aa'.repeat(20),
      'dd'.repeat(50),
      '773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe',
    ],
    [
      '0102030405060708090a0b0c0d0e0f10111213141516171819',
      'cd'.repeat(50),
      '82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b',
    ],
    // case 5 is specified truncated to 128 bits
    [
      '0c'.repeat(20),
      toHex(Buffer.from('Test With Truncation')),
      'a3b6167473100ee06e0c796c2955552b',
    ],
    [
      'aa'.repeat(131),
      toHex(Buffer.from('Test Using Larger Than Block-Size Key - Hash Key First')),
      '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54',
    ],
    [
      'aa'.repeat(131),
      toHex(
        Buffer.from(
          'This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.',
        ),
      ),
      '9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2',
    ],
  ];
  for (const [i, [key, data, want]] of rfc4231.entries()) {
    const got = runC(harness, ['hmac', key, data]).trim();
    t.equal(got.slice(0, want.length), want, `RFC 4231 test case ${i + 1}`);
  }
  t.equal(
    runC(harness, ['sha256', '']).trim(),
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    'SHA-256 of the empty string',
  );
  // lengths around the 55/56/64-byte padding boundaries, keys around the 64-byte block
  for (const n of [1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000]) {
    const data = randomBytes(n);
    const key = randomBytes([0, 32, 64, 65, 100][n % 5]!);
    t.equal(
      runC(harness, ['sha256', data.toString('hex')]).trim(),
      createHash('sha256').update(data).digest('hex'),
      `SHA-256 of ${n} bytes`,
    );
    if (key.length > 0) {
      t.equal(
        runC(harness, ['hmac', key.toString('hex'), data.toString('hex')]).trim(),
        createHmac('sha256', key).update(data).digest('hex'),
        `HMAC of ${n} bytes under a ${key.length}-byte key`,
      );
    }
  }
});

t.test('every vector: decoded fields, tag, re-encoding byte for byte', async (t) => {
  const out = cVectors(vectors.map((v) => [v.key, v.datagram]));
  t.equal(out.length, vectors.length);
  for (const [i, v] of vectors.entries()) {
    const o = out[i]!;
    t.equal(o.rc, 'OK', `${v.name}: decodes`);
    t.equal(o.verify, 'OK', `${v.name}: tag verifies under ${v.keyName}`);
    t.equal(o.reencoded, v.datagram, `${v.name}: encodes and signs to the same bytes`);
    const { type, flags, auth, requestId, sessionId, seq, timestamp, authBlock, body } = v;
    t.same(
      cFields(o),
      { type, flags, auth, requestId, sessionId, seq, timestamp, authBlock, body },
      `${v.name}: every field`,
    );
  }
  const wrong = cVectors(vectors.map((v) => [toHex(randomBytes(32)), v.datagram]));
  t.ok(
    wrong.every((o) => o.verify === 'BAD_TAG'),
    'no vector verifies under another key',
  );
  const flipped = cVectors(
    vectors.map((v) => {
      const b = Buffer.from(v.datagram, 'hex');
      b[b.length - 1]! ^= 1;
      return [v.key, b.toString('hex')];
    }),
  );
  t.ok(
    flipped.every((o) => o.verify === 'BAD_TAG'),
    'a flipped tag bit never verifies',
  );
});

t.test('HELLO_OK: the session key unwraps from the credential key and verifies', async (t) => {
  const hello = vectors.find((v) => v.typeName === 'HELLO')!;
  const ok = vectors.find((v) => v.typeName === 'HELLO_OK')!;
  const [key, verdict] = runC(harness, ['unwrap', hello.key, hello.authBlock.nonce!, ok.datagram])
    .trim()
    .split(' ');
  t.equal(key, ok.key, 'the unwrapped key is the session key of the example token');
  t.equal(verdict, 'OK', 'HELLO_OK verifies under it');
  const [, bad] = runC(harness, [
    'unwrap',
    toHex(randomBytes(32)),
    hello.authBlock.nonce!,
    ok.datagram,
  ])
    .trim()
    .split(' ');
  t.equal(bad, 'BAD_TAG', 'a wrong credential key unwraps a key that does not verify');
});

t.test('every sample and 400 random valid datagrams of the reference codec', async (t) => {
  const ds = [...allSampleDatagrams(), ...fc.sample(arbDatagram, { numRuns: 400, seed: 7 })];
  const key = randomBytes(32);
  const bytes = ds.map((d) => sign(d, key));
  const out = cVectors(bytes.map((b) => [key.toString('hex'), toHex(b)]));
  let mismatches = 0;
  for (const [i, d] of ds.entries()) {
    const o = out[i]!;
    const ok =
      o.rc === 'OK' &&
      o.verify === 'OK' &&
      o.reencoded === toHex(bytes[i]!) &&
      JSON.stringify(cFields(o)) === JSON.stringify(fieldsOf(decodeDatagram(bytes[i]!)));
    if (!ok) {
      mismatches++;
      if (mismatches <= 3)
        t.fail(`datagram ${i} (type ${d.type}): ${JSON.stringify(o).slice(0, 400)}`);
    }
  }
  t.equal(
    mismatches,
    0,
    `${ds.length} datagrams decode to the same fields and re-encode identically`,
  );
});

/** The reference decoder's verdict: OK or the DecodeError code. */
function reference(b: Uint8Array): string {
  try {
    decodeDatagram(b);
    return 'OK';
  } catch (e) {
    if (e instanceof DecodeError) return e.code;
    throw e;
  }
}

t.test('malformed input: the same decode error as the reference codec', async (t) => {
  let s = 12345;
  const rnd = (n: number) => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s >>> 8) % n;
  };
  const seeds = vectors.map((v) => Buffer.from(v.datagram, 'hex'));
  const inputs: Buffer[] = [Buffer.alloc(0), Buffer.from([0x46]), Buffer.from([0x46, 0x4c])];
  for (let i = 0; i < 6000; i++) {
    const b = Buffer.from(seeds[rnd(seeds.length)]!);
    let out = b;
    const op = rnd(6);
    if (op === 0) out = b.subarray(0, rnd(b.length + 1));
    else if (op === 1) b[rnd(b.length)] = rnd(256);
    else if (op === 2) b[rnd(b.length)]! ^= 1 << rnd(8);
    else if (op === 3) out = Buffer.concat([b, Buffer.alloc(1 + rnd(4))]);
    else if (op === 4)
      b[32 + rnd(b.length - 32)] = [0, 1, 0x41, 0x80, 0xc0, 0xed, 0xf4, 0xff][rnd(8)]!;
    else {
      const at = 32 + rnd(b.length - 32);
      out = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + rnd(8))]);
    }
    // usually keep the length field honest, so the mutation reaches the body
    if (rnd(4) !== 0 && out.length >= 8) out.writeUInt16BE(out.length & 0xffff, 6);
    inputs.push(out);
  }
  const got = runC(harness, ['decode'], inputs.map((b) => `${b.toString('hex')}\n`).join(''))
    .trim()
    .split('\n');
  t.equal(got.length, inputs.length);
  const counts: Record<string, number> = {};
  let mismatches = 0;
  for (const [i, b] of inputs.entries()) {
    const want = reference(b);
    counts[want] = (counts[want] ?? 0) + 1;
    if (got[i] !== want) {
      mismatches++;
      if (mismatches <= 5)
        t.fail(`input ${b.toString('hex')}: C says ${got[i]}, reference ${want}`);
    }
  }
  t.equal(mismatches, 0, `${inputs.length} inputs, verdicts ${JSON.stringify(counts)}`);
  t.ok(Object.keys(counts).length >= 9, 'the mutations reach most decode errors');
});

t.test('fuzz: 100 000 random and mutated datagrams under ASan and UBSan', async (t) => {
  const seeds = vectors.map((v) => `${v.datagram}\n`).join('');
  const out = runC(join(dir, 'fuzz'), ['100000', String(Date.now())], seeds);
  t.match(out, /^iterations 100000 decoded \d+/, out.trim());
  const decoded = Number(/decoded (\d+)/.exec(out)![1]);
  t.ok(decoded > 1000 && decoded < 100000, 'both valid and invalid datagrams were generated');
});
