import t from 'tap';
import { randomBytes } from '../../lib/crypto/hmac.ts';
import { Keyring, keyringFromJSON } from '../../lib/crypto/keyring.ts';
import { TokenStore } from '../../lib/token/store.ts';
import {
  decodeToken,
  makeToken,
  sessionKeyFor,
  sessionKeyOfBytes,
  type TokenFields,
  testTokenChecksum,
  tokenValid,
  unwrapSessionKey,
  wrapSessionKey,
} from '../../lib/token/token.ts';
import { DecodeError, ErrorCode } from '../../lib/wire/index.ts';

const A = Date.parse('2030-01-01T00:00:00Z');
const DAY = 86_400_000;
const fields: TokenFields = {
  addr: '192.0.2.7',
  port: 40001,
  host: 'ws7',
  vendor: 'demo',
  program: 'cad',
  version: '2.1',
  user: 'alice',
  lifetimeS: 3600,
};
const from = { address: '192.0.2.7', port: 40001 };

function ring(grace = 172_800): Keyring {
  return new Keyring({
    period: 86_400,
    grace,
    secrets: [{ id: 1, secret: randomBytes(32), activates: A }],
  });
}

t.test('makeToken encodes every field and decodes back', async (t) => {
  const k = ring();
  const now = A + 12_345;
  const tok = makeToken({ ...fields, tokenId: 0x0102030405060708n }, k, now);
  t.equal(tok.tokenId, 0x0102030405060708n);
  t.equal(tok.keyId, k.current(now).keyId);
  t.equal(tok.issuedAt, Math.floor(now / 1000));
  t.equal(tok.expires, tok.issuedAt + 3600);
  t.equal(tok.addr, '192.0.2.7');
  t.equal(tok.ip.family, 4);
  const { lifetimeS: _, addr: __, ...rest } = fields;
  t.match(tok, rest, 'port, host, vendor, program, version, user as given');
  t.equal(tok.bytes.length, 1 + 4 + 8 + 4 + 4 + 1 + 4 + 2 + 4 + 5 + 4 + 4 + 6 + 32);
  t.same(decodeToken(tok.bytes), tok);
  const v6 = makeToken({ ...fields, addr: '2001:db8::1' }, k, now);
  t.equal(v6.ip.family, 6);
  t.equal(v6.addr, '2001:db8:0:0:0:0:0:1');
  const mapped = makeToken({ ...fields, addr: '::ffff:192.0.2.7' }, k, now);
  t.equal(mapped.ip.family, 4, 'IPv4-mapped IPv6 is stored as IPv4');
  t.not(makeToken(fields, k, now).tokenId, makeToken(fields, k, now).tokenId, 'random ids');
  t.throws(() => makeToken({ ...fields, user: 'x'.repeat(65) }, k, now), /fields\.user/);
  t.throws(() => makeToken({ ...fields, version: 'x'.repeat(33) }, k, now), /fields\.version/);
  t.throws(() => makeToken({ ...fields, addr: 'ws7' }, k, now), TypeError);
  t.throws(() => makeToken({ ...fields, lifetimeS: 0 }, k, now), /lifetimeS/);
});

t.test('tokenValid accepts a good token and a same-IP new-port presentation', async (t) => {
  const k = ring();
  const tok = makeToken(fields, k, A + 1000);
  const r = tokenValid(tok.bytes, from, { keyring: k, now: A + 2000 });
  t.ok(r.ok);
  if (r.ok) {
    t.equal(r.moved, false);
    t.same(r.sessionKey, sessionKeyFor(tok, k.current(A + 1000)));
  }
  const m = tokenValid(tok.bytes, { address: '192.0.2.7', port: 5 }, { keyring: k, now: A + 2000 });
  t.ok(m.ok && m.moved, 'new port: accepted, moved');
  const mm = tokenValid(
    tok.bytes,
    { address: '::ffff:192.0.2.7', port: 40001 },
    { keyring: k, now: A + 2000 },
  );
  t.ok(mm.ok && !mm.moved, 'IPv4-mapped source is the same host');
});

t.test('a token moved to another host is refused', async (t) => {
  const k = ring();
  const tok = makeToken(fields, k, A + 1000);
  const r = tokenValid(
    tok.bytes,
    { address: '192.0.2.8', port: 40001 },
    { keyring: k, now: A + 2000 },
  );
  t.same(r.ok ? 'ok' : r.code, ErrorCode.TOKEN_WRONG_HOST);
  const r6 = tokenValid(
    tok.bytes,
    { address: '2001:db8::7', port: 40001 },
    { keyring: k, now: A + 2000 },
  );
  t.same(r6.ok ? 'ok' : r6.code, ErrorCode.TOKEN_WRONG_HOST);
});

t.test('expiry: valid until the second before expires, refused from expires on', async (t) => {
  const k = ring();
  const tok = makeToken(fields, k, A + 1000);
  const end = tok.expires * 1000;
  t.ok(tokenValid(tok.bytes, from, { keyring: k, now: end - 1 }).ok);
  const r = tokenValid(tok.bytes, from, { keyring: k, now: end });
  t.equal(r.ok ? 'ok' : r.code, ErrorCode.TOKEN_EXPIRED);
});

t.test('issued in the future: +300 s accepted, +301 s refused', async (t) => {
  const k = ring();
  const issue = A + DAY / 2;
  const tok = makeToken(fields, k, issue);
  t.ok(tokenValid(tok.bytes, from, { keyring: k, now: issue - 300_000 }).ok);
  const r = tokenValid(tok.bytes, from, { keyring: k, now: issue - 301_000 });
  t.equal(r.ok ? 'ok' : r.code, ErrorCode.TOKEN_FUTURE);
  t.ok(tokenValid(tok.bytes, from, { keyring: k, now: issue - 1000, skewMs: 1000 }).ok);
});

t.test(
  'a token of a rotated key: accepted inside the grace, refused one second after',
  async (t) => {
    const grace = 7200;
    const k = ring(grace);
    const tok = makeToken({ ...fields, lifetimeS: 30 * 86_400 }, k, A + 1000);
    const R = A + 50_000;
    k.rotate(R);
    t.not(k.current(R).keyId, tok.keyId, 'a new key signs');
    t.ok(tokenValid(tok.bytes, from, { keyring: k, now: R + grace * 1000 }).ok);
    const r = tokenValid(tok.bytes, from, { keyring: k, now: R + grace * 1000 + 1000 });
    t.equal(r.ok ? 'ok' : r.code, ErrorCode.TOKEN_UNKNOWN_KEY);
    // Automatic rotation at the period boundary behaves the same way.
    const k2 = ring(grace);
    const tok2 = makeToken({ ...fields, lifetimeS: 30 * 86_400 }, k2, A);
    t.ok(tokenValid(tok2.bytes, from, { keyring: k2, now: A + DAY + grace * 1000 }).ok);
    const r2 = tokenValid(tok2.bytes, from, { keyring: k2, now: A + DAY + grace * 1000 + 1000 });
    t.equal(r2.ok ? 'ok' : r2.code, ErrorCode.TOKEN_UNKNOWN_KEY);
  },
);

t.test('a revoked token is refused even while it is still on a valid list', async (t) => {
  const k = ring();
  const tok = makeToken(fields, k, A + 1000);
  const valid = new TokenStore();
  valid.storeToken(tok);
  const revoked = new TokenStore();
  revoked.addRevoked(tok.tokenId, tok.expires);
  t.ok(valid.findToken(tok.tokenId), 'still on the valid list');
  const r = tokenValid(tok.bytes, from, { keyring: k, now: A + 2000, revoked });
  t.equal(r.ok ? 'ok' : r.code, ErrorCode.TOKEN_REVOKED);
  valid.invalidateToken(tok);
  const r2 = tokenValid(tok.bytes, from, { keyring: k, now: A + 2000, revoked: valid });
  t.equal(r2.ok ? 'ok' : r2.code, ErrorCode.TOKEN_REVOKED);
});

t.test('every single-bit flip of a token is refused', async (t) => {
  const k = ring();
  const tok = makeToken(fields, k, A + 1000);
  const codes = new Set<number>();
  let accepted = 0;
  for (let i = 0; i < tok.bytes.length * 8; i++) {
    const b = tok.bytes.slice();
    b[i >> 3]! ^= 1 << (i & 7);
    const r = tokenValid(b, from, { keyring: k, now: A + 2000 });
    if (r.ok) accepted++;
    else codes.add(r.code);
  }
  t.equal(accepted, 0);
  t.ok(codes.has(ErrorCode.TOKEN_BAD_SIGNATURE));
  t.ok(codes.has(ErrorCode.TOKEN_UNKNOWN_KEY));
  t.ok(codes.has(ErrorCode.TOKEN_MALFORMED));
  t.ok(
    [...codes].every((c) => c === 16 || c === 17 || c === 22),
    'only checksum-level codes',
  );
});

t.test(
  'malformed tokens: DecodeError from decodeToken, TOKEN_MALFORMED from the checks',
  async (t) => {
    const k = ring();
    const tok = makeToken(fields, k, A + 1000);
    const cases: [Uint8Array, string][] = [
      [tok.bytes.subarray(0, 20), 'TRUNCATED'],
      [new Uint8Array(513), 'TOO_LARGE'],
      [new Uint8Array(10), 'TRUNCATED'],
    ];
    const v2 = tok.bytes.slice();
    v2[0] = 2;
    cases.push([v2, 'BAD_VERSION']);
    const fam = tok.bytes.slice();
    fam[21] = 5;
    cases.push([fam, 'OUT_OF_RANGE']);
    const zero = tok.bytes.slice();
    zero.fill(0, 5, 13);
    cases.push([zero, 'OUT_OF_RANGE']);
    const trailing = new Uint8Array(tok.bytes.length + 1);
    trailing.set(tok.bytes.subarray(0, tok.bytes.length - 32));
    cases.push([trailing, 'TRAILING_BYTES']);
    for (const [b, code] of cases) {
      t.throws(() => decodeToken(b), DecodeError);
      try {
        decodeToken(b);
      } catch (e) {
        t.equal((e as DecodeError).code, code);
      }
      t.same(testTokenChecksum(b, k, A + 2000), { ok: false, code: ErrorCode.TOKEN_MALFORMED });
    }
  },
);

t.test(
  'session keys: any server with the keyring derives the same key; wrap inverts',
  async (t) => {
    const k = ring();
    const other = keyringFromJSON(JSON.parse(JSON.stringify(k.toJSON())));
    const tok = makeToken(fields, k, A + 1000);
    const sk = sessionKeyFor(tok, k.current(A + 1000));
    const r = tokenValid(tok.bytes, from, { keyring: other, now: A + 5000 });
    t.ok(r.ok && Buffer.from(r.sessionKey).equals(Buffer.from(sk)));
    t.notSame(sessionKeyFor(makeToken(fields, k, A + 1000), k.current(A + 1000)), sk);
    t.throws(() => sessionKeyFor(tok, k.current(A + DAY)), RangeError);
    // From the stored bytes alone (a restored session's first datagram): the same key.
    t.same(sessionKeyOfBytes(tok.bytes, other, A + 5000), sk);
    t.equal(sessionKeyOfBytes(tok.bytes.subarray(0, 40), other, A + 5000), undefined, 'too short');
    const j = JSON.parse(JSON.stringify(k.toJSON()));
    j.secrets = [{ ...j.secrets[0], id: 77, secret: 'ee'.repeat(32) }];
    t.equal(sessionKeyOfBytes(tok.bytes, keyringFromJSON(j), A + 5000), undefined, 'key gone');
    const cred = randomBytes(32);
    const nonce = randomBytes(16);
    const w = wrapSessionKey(sk, cred, nonce, tok.tokenId);
    t.notSame(w, sk);
    t.same(unwrapSessionKey(w, cred, nonce, tok.tokenId), sk);
    t.notSame(unwrapSessionKey(w, randomBytes(32), nonce, tok.tokenId), sk);
    t.notSame(unwrapSessionKey(w, cred, randomBytes(16), tok.tokenId), sk);
    t.throws(() => wrapSessionKey(sk, cred, new Uint8Array(15), 1n), RangeError);
  },
);
