import t from 'tap';
import { randomBytes } from '../../lib/crypto/hmac.ts';
import { Keyring } from '../../lib/crypto/keyring.ts';
import { returnToken, TokenStore } from '../../lib/token/store.ts';
import { makeToken, unwrapSessionKey } from '../../lib/token/token.ts';

const A = Date.parse('2030-01-01T00:00:00Z');
const k = new Keyring({
  period: 86_400,
  grace: 172_800,
  secrets: [{ id: 1, secret: randomBytes(32), activates: A }],
});
const fields = {
  addr: '10.0.0.1',
  port: 1,
  host: 'h',
  vendor: 'v',
  program: 'p',
  version: '1',
  user: 'u',
  lifetimeS: 3600,
};

t.test('store, find, invalidate', async (t) => {
  const s = new TokenStore();
  const tok = makeToken(fields, k, A);
  t.ok(s.storeToken(tok));
  t.equal(s.findToken(tok.tokenId), tok);
  t.notOk(s.isRevoked(tok.tokenId));
  t.ok(s.invalidateToken(tok));
  t.equal(s.findToken(tok.tokenId), undefined, 'gone from the valid list');
  t.ok(s.isRevoked(tok.tokenId));
  t.notOk(s.invalidateToken(tok), 'second invalidate: already revoked');
  t.notOk(s.storeToken(tok), 'a revoked token cannot be stored again');
  t.same([...s.revokedEntries()], [[tok.tokenId, tok.expires]]);
  const other = makeToken(fields, k, A);
  s.storeToken(other);
  t.ok(s.invalidateToken(other.tokenId), 'by id, expiry from the valid list');
  t.throws(() => s.invalidateToken(123n), RangeError, 'unknown id without expires');
  t.ok(s.invalidateToken(123n, 5));
});

t.test('flush drops a revoked id only after its expiry', async (t) => {
  const s = new TokenStore();
  const tok = makeToken(fields, k, A);
  s.storeToken(tok);
  s.invalidateToken(tok);
  const end = tok.expires * 1000;
  while (s.flushTokens(end - 1));
  t.ok(s.isRevoked(tok.tokenId), 'kept one ms before expiry');
  while (s.flushTokens(end));
  t.notOk(s.isRevoked(tok.tokenId), 'dropped at expiry');
  const r = new TokenStore({ retainMs: 60_000 });
  r.addRevoked(1n, 100);
  while (r.flushTokens(100_000 + 59_999));
  t.ok(r.isRevoked(1n), 'retainMs keeps it longer');
  while (r.flushTokens(160_000));
  t.notOk(r.isRevoked(1n));
});

t.test('flush drops expired tokens from the valid list', async (t) => {
  const s = new TokenStore();
  const tok = makeToken(fields, k, A);
  s.storeToken(tok);
  s.flushTokens(tok.expires * 1000 - 1);
  t.ok(s.findToken(tok.tokenId));
  s.flushTokens(tok.expires * 1000);
  t.notOk(s.findToken(tok.tokenId));
});

t.test('flushing many revoked ids proceeds in bounded, resumable steps', async (t) => {
  const s = new TokenStore();
  const n = 300_000;
  for (let i = 1; i <= n; i++) s.addRevoked(BigInt(i), i % 2 === 0 ? 100 : 10_000);
  const budget = 25_000;
  let calls = 0;
  let more = true;
  while (more) {
    const before = s.revokedCount;
    more = s.flushTokens(200_000, budget);
    calls++;
    t.ok(before - s.revokedCount <= budget, `call ${calls} removed at most the budget`);
    if (calls > 100) break;
  }
  // 12 calls of a full budget, then one that finds the pass complete.
  t.equal(calls, n / budget + 1);
  t.equal(s.revokedCount, n / 2, 'only the expired half is gone');
  t.ok(s.isRevoked(1n));
  t.notOk(s.isRevoked(2n));
  t.throws(() => s.flushTokens(0, 0), RangeError);
});

t.test('ids revoked during a pass are examined later in the same pass', async (t) => {
  const s = new TokenStore();
  for (let i = 1; i <= 10; i++) s.addRevoked(BigInt(i), 1);
  t.ok(s.flushTokens(5000, 5), 'half done');
  s.addRevoked(100n, 2);
  t.notOk(s.flushTokens(5000, 100), 'pass finished');
  t.equal(s.revokedCount, 0, 'the late id was flushed too');
});

t.test('returnToken fills a HELLO_OK body whose wrapped key unwraps', async (t) => {
  const tok = makeToken(fields, k, A);
  const sk = randomBytes(32);
  const cred = randomBytes(32);
  const nonce = randomBytes(16);
  const body = returnToken(tok, sk, cred, nonce, 30_000);
  t.same(body.token, tok.bytes);
  t.equal(body.tokenExpires, tok.expires * 1000);
  t.equal(body.heartbeatMs, 30_000);
  t.same(unwrapSessionKey(body.wrappedKey, cred, nonce, tok.tokenId), sk);
  t.throws(() => returnToken(tok, sk, cred, nonce, -1), RangeError);
});
