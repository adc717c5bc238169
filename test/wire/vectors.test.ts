/**
 * Known-answer vectors (test/fixtures/vectors.json): every tag verifies under its key,
 * decoding each datagram gives the fixture's fields, encoding the fields (and signing)
 * gives the datagram byte for byte, and the file is exactly what the generator writes.
 */
import { readFileSync } from 'node:fs';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import t from 'tap';
import {
  AuthMode,
  decodeDatagram,
  Flags,
  fromHex,
  MsgType,
  TYPE_NAMES,
  toHex,
} from '../../lib/wire/index.ts';
import {
  buildVectors,
  datagramFromVector,
  derive,
  FIXTURE_PATH,
  fixtureText,
  sign,
  type Vector,
} from '../../scripts/gen-vectors.ts';

const text = readFileSync(FIXTURE_PATH, 'utf8');
const vectors = JSON.parse(text) as Vector[];

t.test('the fixture is what the generator writes (run `npm run vectors`)', async (t) => {
  t.equal(text, fixtureText(buildVectors()));
});

t.test('shape and coverage', async (t) => {
  t.ok(Array.isArray(vectors) && vectors.length > 0);
  t.equal(new Set(vectors.map((v) => v.name)).size, vectors.length, 'names are unique');
  for (const type of Object.values(MsgType)) {
    t.ok(
      vectors.some((v) => v.type === type),
      `${TYPE_NAMES[type]} has a vector`,
    );
  }
  const requests = (mode: number) => vectors.filter((v) => v.flags === 0 && v.auth === mode);
  t.same(
    requests(AuthMode.CREDENTIAL)
      .map((v) => v.typeName)
      .sort(),
    ['HELLO', 'PING'],
  );
  t.same(
    requests(AuthMode.TOKEN)
      .map((v) => v.typeName)
      .sort(),
    ['CHECKOUT', 'RECLAIM'],
  );
  t.same(
    requests(AuthMode.ADMIN)
      .map((v) => v.typeName)
      .sort(),
    ['ADMIN', 'STATUS'],
  );
  t.ok(requests(AuthMode.SESSION).length >= 6, 'session-mode requests');
  const statuses = vectors
    .filter((v) => v.type === MsgType.CHECKOUT_REPLY)
    .map((v) => v.body.status);
  t.same(statuses.sort(), [0, 1, 2], 'granted, queued and denied');
  const kinds = vectors
    .filter((v) => v.type === MsgType.STATUS_REPLY)
    .flatMap((v) => (v.body.records as { kind: number }[]).map((r) => r.kind));
  t.same([...new Set(kinds)].sort(), [1, 2, 3, 4], 'all four status record kinds');
  const tc = vectors.find((v) => v.type === MsgType.TEST_CONN)!;
  t.equal(tc.flags, Flags.FROM_SERVER, 'TEST_CONN is server-originated');
  for (const v of vectors) {
    for (const k of ['name', 'key', 'datagram', 'typeName', 'sessionId']) {
      t.type((v as unknown as Record<string, unknown>)[k], 'string', `${v.name}: ${k}`);
    }
    t.match(v.key, /^[0-9a-f]{64}$/);
    t.match(v.datagram, /^([0-9a-f]{2})+$/);
  }
});

t.test('every tag is HMAC-SHA256(key, bytes before it)', async (t) => {
  for (const v of vectors) {
    const b = fromHex(v.datagram);
    const mac = hmac(sha256, fromHex(v.key), b.subarray(0, b.length - 32));
    t.equal(toHex(b.subarray(b.length - 32)), toHex(mac), v.name);
    const flipped = b.slice();
    flipped[10]! ^= 1;
    t.not(
      toHex(hmac(sha256, fromHex(v.key), flipped.subarray(0, b.length - 32))),
      toHex(b.subarray(b.length - 32)),
      `${v.name}: a flipped bit breaks the tag`,
    );
  }
});

t.test('decoding each datagram gives the fixture fields', async (t) => {
  for (const v of vectors) {
    const b = fromHex(v.datagram);
    const d = decodeDatagram(b);
    const want = datagramFromVector(v);
    want.tag = b.subarray(b.length - 32).slice();
    t.strictSame(d, want, v.name);
    t.equal(d.type, v.type);
    t.equal(TYPE_NAMES[d.type], v.typeName);
    t.equal(d.sessionId.toString(), v.sessionId);
  }
});

t.test('encoding the fixture fields and signing gives the datagram byte for byte', async (t) => {
  for (const v of vectors) {
    t.equal(toHex(sign(datagramFromVector(v), fromHex(v.key))), v.datagram, v.name);
  }
});

t.test('the example keys follow the derivation rules', async (t) => {
  const k = derive();
  const hello = vectors.find((v) => v.type === MsgType.HELLO)!;
  const ok = vectors.find((v) => v.type === MsgType.HELLO_OK)!;
  t.equal(fromHex(hello.datagram).length, 600, 'HELLO padded to 600 bytes');
  t.ok(fromHex(ok.datagram).length <= 600, 'HELLO_OK no larger than HELLO');
  t.equal(ok.key, toHex(k.sessionKey), 'HELLO_OK signed with the session key');
  t.equal(ok.sessionId, k.tokenId.toString(), 'HELLO_OK names the new session');
  // The client unwraps: wrapped XOR HMAC(credKey, "floatlm wrap v1" || nonce || tokenId).
  const nonce = fromHex(hello.authBlock.nonce!);
  const id = fromHex(BigInt(ok.sessionId).toString(16).padStart(16, '0'));
  const label = new TextEncoder().encode('floatlm wrap v1');
  const mask = hmac(sha256, fromHex(hello.key), new Uint8Array([...label, ...nonce, ...id]));
  const unwrapped = fromHex(ok.body.wrappedKey as string).map((b, i) => b ^ mask[i]!);
  t.equal(toHex(unwrapped), ok.key, 'unwrapped key verifies HELLO_OK');
  for (const v of vectors.filter((x) => x.auth === AuthMode.TOKEN && x.flags === 0)) {
    t.equal(v.authBlock.token, toHex(k.token), `${v.name} carries the token`);
    t.equal(v.key, toHex(k.sessionKey), `${v.name} signed with the session key`);
  }
});
