import t from 'tap';
import { signDatagram } from '../../lib/auth/sign.ts';
import { randomBytes } from '../../lib/crypto/hmac.ts';
import { Keyring } from '../../lib/crypto/keyring.ts';
import { extractToken, getToken } from '../../lib/token/client.ts';
import { returnToken } from '../../lib/token/store.ts';
import { makeToken, tokenValid } from '../../lib/token/token.ts';
import {
  AuthMode,
  type Datagram,
  decodeDatagram,
  Flags,
  MIN_FIRST_CONTACT,
  MsgType,
  TAG_LENGTH,
} from '../../lib/wire/index.ts';

const A = Date.parse('2030-01-01T00:00:00Z');
const keyring = new Keyring({
  period: 86_400,
  grace: 172_800,
  secrets: [{ id: 1, secret: randomBytes(32), activates: A }],
});
const credKey = randomBytes(32);
const now = A + 60_000;
const hello = {
  credId: 'demo',
  vendor: 'demo',
  program: 'cad',
  version: '2.1',
  user: 'alice',
  host: 'ws7',
};

/** The server side of first contact, with the real codec. */
function serve(helloBytes: Uint8Array): {
  reply: Uint8Array;
  sessionKey: Uint8Array;
  tokenId: bigint;
} {
  const d = decodeDatagram(helloBytes);
  if (d.type !== MsgType.HELLO || d.auth.mode !== AuthMode.CREDENTIAL)
    throw new Error('not a HELLO');
  const tok = makeToken(
    { addr: '192.0.2.7', port: 40001, ...d.body, lifetimeS: 3600 },
    keyring,
    now,
  );
  const v = tokenValid(tok.bytes, { address: '192.0.2.7', port: 40001 }, { keyring, now });
  if (!v.ok) throw new Error('fresh token invalid');
  const ok: Datagram<typeof MsgType.HELLO_OK> = {
    type: MsgType.HELLO_OK,
    flags: Flags.REPLY | Flags.FROM_SERVER,
    auth: { mode: AuthMode.CREDENTIAL, credId: '', nonce: new Uint8Array(16) },
    requestId: d.requestId,
    sessionId: tok.tokenId,
    seq: 0,
    timestamp: now,
    body: returnToken(tok, v.sessionKey, credKey, d.auth.nonce, 30_000),
    tag: new Uint8Array(TAG_LENGTH),
  };
  return { reply: signDatagram(ok, v.sessionKey), sessionKey: v.sessionKey, tokenId: tok.tokenId };
}

t.test('getToken builds a padded mode-1 HELLO', async (t) => {
  const { datagram, nonce } = getToken({ ...hello, requestId: 7, now });
  t.equal(nonce.length, 16);
  t.equal(datagram.auth.mode, AuthMode.CREDENTIAL);
  t.equal(datagram.flags, 0);
  t.equal(datagram.timestamp, now);
  const bytes = signDatagram(datagram, credKey);
  t.equal(bytes.length, MIN_FIRST_CONTACT, 'padded to exactly the minimum');
  const long = getToken({ ...hello, user: 'u'.repeat(64), requestId: 7, now, nonce });
  t.ok(signDatagram(long.datagram, credKey).length >= MIN_FIRST_CONTACT);
  t.same(long.nonce, nonce);
  t.throws(() => getToken({ ...hello, requestId: 1, now, nonce: new Uint8Array(3) }), RangeError);
});

t.test('HELLO → HELLO_OK → extractToken round trip with the real codec', async (t) => {
  const { datagram, nonce } = getToken({ ...hello, requestId: 42, now });
  const { reply, sessionKey, tokenId } = serve(signDatagram(datagram, credKey));
  t.ok(reply.length <= MIN_FIRST_CONTACT, 'reply no larger than the request');
  const got = extractToken(reply, credKey, nonce, 42);
  t.ok(got);
  if (!got) return;
  t.same(got.sessionKey, sessionKey);
  t.equal(got.sessionId, tokenId);
  t.equal(got.heartbeatMs, 30_000);
  t.equal(got.expires, (Math.floor(now / 1000) + 3600) * 1000);
  t.ok(tokenValid(got.token, { address: '192.0.2.7', port: 40001 }, { keyring, now }).ok);
});

t.test('extractToken refuses a reply it cannot verify', async (t) => {
  const { datagram, nonce } = getToken({ ...hello, requestId: 42, now });
  const { reply } = serve(signDatagram(datagram, credKey));
  t.equal(extractToken(reply, randomBytes(32), nonce, 42), null, 'other credential key');
  t.equal(extractToken(reply, credKey, randomBytes(16), 42), null, 'other nonce');
  t.equal(extractToken(reply, credKey, nonce, 43), null, 'other request id');
  t.equal(extractToken(reply.subarray(0, 50), credKey, nonce, 42), null, 'truncated');
  let accepted = 0;
  for (let i = 0; i < reply.length * 8; i++) {
    const b = reply.slice();
    b[i >> 3]! ^= 1 << (i & 7);
    if (extractToken(b, credKey, nonce, 42)) accepted++;
  }
  t.equal(accepted, 0, 'every single-bit flip refused');
});
