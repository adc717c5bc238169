import t from 'tap';
import { signDatagram, verifyTag } from '../../lib/auth/sign.ts';
import { KeyedHmac, randomBytes } from '../../lib/crypto/hmac.ts';
import {
  type AnyDatagram,
  AuthMode,
  decodeDatagram,
  MsgType,
  TAG_LENGTH,
} from '../../lib/wire/index.ts';

const key = randomBytes(32);
const d: AnyDatagram = {
  type: MsgType.CHECKOUT,
  flags: 0,
  auth: { mode: AuthMode.SESSION },
  requestId: 9,
  sessionId: 0x1122334455667788n,
  seq: 3,
  timestamp: 1_900_000_000_000,
  body: { feature: 'solver', version: '1.0', count: 1, options: 0 },
  tag: new Uint8Array(TAG_LENGTH),
};

t.test('signDatagram writes the HMAC of every byte before the tag', async (t) => {
  const bytes = signDatagram(d, key);
  const end = bytes.length - TAG_LENGTH;
  t.same(bytes.subarray(end), new KeyedHmac(key).mac(bytes.subarray(0, end)));
  t.same(signDatagram(d, new KeyedHmac(key)), bytes, 'raw key and KeyedHmac agree');
  t.ok(verifyTag(bytes, key));
  t.ok(verifyTag(bytes, new KeyedHmac(key)));
  t.notOk(verifyTag(bytes, randomBytes(32)), 'other key');
  t.notOk(verifyTag(bytes.subarray(0, 40), key), 'too short');
  const back = decodeDatagram(bytes);
  t.same(back.tag, bytes.subarray(end));
  t.throws(() => signDatagram(d, 'k' as unknown as Uint8Array), TypeError);
});

t.test('every single-bit flip of a signed datagram is refused', async (t) => {
  const bytes = signDatagram(d, key);
  const h = new KeyedHmac(key);
  let accepted = 0;
  for (let i = 0; i < bytes.length * 8; i++) {
    const b = bytes.slice();
    b[i >> 3]! ^= 1 << (i & 7);
    if (verifyTag(b, h)) accepted++;
  }
  t.equal(accepted, 0);
});
