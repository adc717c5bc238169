import t from 'tap';
import { randomBytes } from '../../lib/crypto/hmac.ts';
import { Keyring } from '../../lib/crypto/keyring.ts';
import { decodeTicket, makeTicket, verifyTicket } from '../../lib/token/ticket.ts';
import { DecodeError, ErrorCode } from '../../lib/wire/index.ts';

const A = Date.parse('2030-01-01T00:00:00Z');
const k = new Keyring({
  period: 86_400,
  grace: 3600,
  secrets: [{ id: 1, secret: randomBytes(32), activates: A }],
});
const f = {
  leaseId: 77n,
  tokenId: 99n,
  feature: 'solver',
  version: '3.0',
  count: 2,
  grantedAt: A + 5,
};

t.test('a ticket round trips and verifies for its session only', async (t) => {
  const tk = makeTicket(f, k, A + 10);
  t.match(tk, f, 'every field as given');
  t.same(decodeTicket(tk.bytes), tk);
  t.same(verifyTicket(tk.bytes, k, A + 20), { ok: true, ticket: tk });
  t.ok(verifyTicket(tk.bytes, k, A + 20, 99n).ok);
  t.same(verifyTicket(tk.bytes, k, A + 20, 98n), { ok: false, code: ErrorCode.TICKET_BAD });
});

t.test('every single-bit flip of a ticket is refused', async (t) => {
  const tk = makeTicket(f, k, A + 10);
  let accepted = 0;
  for (let i = 0; i < tk.bytes.length * 8; i++) {
    const b = tk.bytes.slice();
    b[i >> 3]! ^= 1 << (i & 7);
    if (verifyTicket(b, k, A + 20).ok) accepted++;
  }
  t.equal(accepted, 0);
});

t.test('a ticket of a retired key is refused; malformed bytes throw DecodeError', async (t) => {
  const tk = makeTicket(f, k, A + 10);
  const retire = A + 86_400_000 + 3600_000;
  t.ok(verifyTicket(tk.bytes, k, retire).ok);
  t.same(verifyTicket(tk.bytes, k, retire + 1), { ok: false, code: ErrorCode.TICKET_BAD });
  t.throws(() => decodeTicket(new Uint8Array(257)), DecodeError);
  t.throws(() => decodeTicket(tk.bytes.subarray(0, 40)), DecodeError);
  t.same(verifyTicket(new Uint8Array(5), k, A), { ok: false, code: ErrorCode.TICKET_BAD });
  t.throws(() => makeTicket({ ...f, count: 70000 }, k, A), /fields\.count/);
  t.throws(() => makeTicket({ ...f, leaseId: -1n }, k, A), /fields\.leaseId/);
});
