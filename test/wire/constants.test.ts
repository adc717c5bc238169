/** lib/wire/constants.ts: numbers the protocol fixes, and their consistency. */
import t from 'tap';
import {
  AuthMode,
  DEFAULT_PORT,
  Flags,
  HEADER_LENGTH,
  KNOWN_FLAGS,
  Limits,
  MAGIC,
  MAX_DATAGRAM,
  MIN_FIRST_CONTACT,
  MsgType,
  PEER_TYPE_RANGES,
  TAG_LENGTH,
  VERSION,
} from '../../lib/wire/index.ts';

t.test('fixed numbers', async (t) => {
  t.equal(MAGIC, 0x464c);
  t.equal(VERSION, 1);
  t.equal(HEADER_LENGTH, 32);
  t.equal(TAG_LENGTH, 32);
  t.equal(MAX_DATAGRAM, 1200);
  t.equal(DEFAULT_PORT, 27400);
  t.equal(MIN_FIRST_CONTACT, 600);
  t.equal(KNOWN_FLAGS, Flags.REPLY | Flags.FROM_SERVER);
  t.same(Object.values(AuthMode), [1, 2, 3, 4]);
});

t.test('message types: requests below 0x80, each reply = request | 0x80', async (t) => {
  const values = Object.values(MsgType);
  t.equal(new Set(values).size, values.length, 'unique');
  for (const [name, v] of Object.entries(MsgType)) {
    for (const [lo, hi] of PEER_TYPE_RANGES) t.ok(v < lo || v > hi, `${name} outside peer range`);
    if (v < 0x80 && v !== MsgType.TEST_CONN) {
      t.ok(values.includes((v | 0x80) as MsgType), `${name} has a reply type`);
    }
  }
  t.same(PEER_TYPE_RANGES, [
    [0x40, 0x5f],
    [0xc0, 0xdf],
  ]);
});

t.test('caps fit their prefixes and the datagram', async (t) => {
  for (const k of ['NAME', 'VERSION_STR', 'CRED_ID', 'MESSAGE'] as const) t.ok(Limits[k] <= 255, k);
  for (const k of ['TOKEN', 'TICKET', 'PADDING', 'PING_PAYLOAD'] as const) {
    t.ok(Limits[k] < MAX_DATAGRAM, k);
  }
  t.ok(Limits.TICKETS <= 255 && Limits.STATUS_RECORDS <= 255, 'counts fit a u8');
});
