import t from 'tap';
import { KeyedHmac, randomBytes } from '../../lib/crypto/hmac.ts';
import {
  encodeHeartbeatAck,
  HEARTBEAT_ACK_LENGTH,
  HmacCache,
  type KeyDeriver,
  LiveSlab,
  Session,
  SessionShared,
} from '../../lib/server/session.ts';

const anyKey: KeyDeriver = () => randomBytes(32);

/** What the session table shares between its sessions; one per cache here. */
const shares = new WeakMap<HmacCache, SessionShared>();
function shared(hmacs: HmacCache): SessionShared {
  let sh = shares.get(hmacs);
  if (!sh) {
    sh = new SessionShared(hmacs, new LiveSlab());
    shares.set(hmacs, sh);
  }
  return sh;
}

function session(cache: HmacCache, id: number, expires = 1000, floor?: number): Session {
  return new Session(
    {
      id: BigInt(id),
      token: new Uint8Array([id & 0xff, 0, 0xff, 0x80]),
      user: 'u',
      host: 'h',
      vendor: 'v',
      expires,
      address: '127.0.0.1',
      port: 1,
      lastSeen: 0,
      ...(floor !== undefined ? { floor } : {}),
    },
    shared(cache),
  );
}

t.test('HmacCache keeps at most max entries and every one of the last max/2', async (t) => {
  const c = new HmacCache(8, anyKey);
  const ss = Array.from({ length: 40 }, (_, i) => session(c, i));
  const keys = ss.map(() => randomBytes(32));
  const hs: KeyedHmac[] = [];
  const msg = new Uint8Array([1, 2, 3]);
  for (let i = 0; i < ss.length; i++) {
    hs.push(c.make(ss[i]!, keys[i]!));
    t.ok(c.size <= 8, `size ${c.size} ≤ 8 after ${i + 1} makes`);
    for (let j = Math.max(0, i - 3); j <= i; j++) {
      t.equal(c.get(ss[j]!), hs[j], `${j} kept at ${i}`);
      // Slots are reused as entries go: each kept one still computes with its own key.
      t.same(hs[j]!.mac(msg), new KeyedHmac(keys[j]!).mac(msg), `${j}'s MAC at ${i}`);
    }
  }
  t.equal(c.get(ss[0]!), undefined, 'long evicted');
  t.equal(c.slabBytes, 8 * 32 * 4, 'one slab of max slots, whatever the sessions');
  t.throws(
    () => hs[0]!.mac(msg),
    { message: 'KeyedHmac used after dispose()' },
    'an evicted one throws',
  );
});

t.test('HmacCache: a get refreshes an old-generation entry; delete forgets', async (t) => {
  const c = new HmacCache(4, anyKey); // generations of 2
  const [a, b, x, y] = [1, 2, 3, 4].map((i) => session(c, i)) as [
    Session,
    Session,
    Session,
    Session,
  ];
  const ha = c.make(a, randomBytes(32));
  const hb = c.make(b, randomBytes(32)); // young full: a, b become the old generation
  t.equal(c.get(a), ha, 'a found in the old generation and moved to the young one');
  c.make(x, randomBytes(32)); // young (a, x) full: old (b) dropped
  t.equal(c.get(b), undefined, 'b was not refreshed: dropped');
  t.equal(hb.offset, -1, "b's state disposed");
  t.equal(c.get(a), ha, 'a survived');
  c.delete(a);
  t.equal(c.get(a), undefined);
  t.throws(() => ha.signTrailing(new Uint8Array(40)), Error, 'a deleted one throws');
  c.make(y, randomBytes(32));
  t.ok(c.get(y));
  // Remaking a session's HMAC gives its old slot back first: the slab never runs out.
  for (let i = 0; i < 100; i++) c.make(y, randomBytes(32));
  t.ok(c.size <= 4);
  t.throws(() => new HmacCache(1, anyKey), RangeError);
  t.throws(() => new HmacCache(2.5, anyKey), RangeError);
  t.throws(() => new HmacCache(2, undefined as unknown as KeyDeriver), TypeError);
});

t.test(
  'Session.hmac is derived once, re-derived after eviction, dead when underivable',
  async (t) => {
    let derived = 0;
    const key = randomBytes(32);
    const seen: Uint8Array[] = [];
    const c = new HmacCache(2, (token) => {
      derived++;
      seen.push(token);
      // A fresh copy, as the daemon's derivation makes: Session zeroes what it is given.
      return token[0] === 4 ? undefined : key.slice();
    });
    const s = session(c, 1);
    const msg = randomBytes(40);
    const tag = s.hmac!.mac(msg);
    t.equal(derived, 1);
    t.same(seen[0], new Uint8Array([1, 0, 0xff, 0x80]), 'derived from the token bytes as given');
    t.ok(s.hmac!.verify(tag, msg));
    t.equal(derived, 1, 'cached');
    session(c, 2).hmac; // pushes s out of a 2-entry cache
    session(c, 3).hmac;
    t.ok(s.hmac!.verify(tag, msg), 'same key after re-derivation');
    t.equal(derived, 4, 're-derived after eviction');
    const dead = session(c, 4);
    t.equal(dead.hmac, undefined, 'a session whose key is gone has no key (no fallback)');
    t.equal(derived, 5);
    t.equal(dead.hmac, undefined, 'asked again: still none, nothing cached');
    t.equal(derived, 6);
    // A session made with its key does not derive it.
    const before = derived;
    const keyed = new Session(
      {
        id: 77n,
        token: new Uint8Array([4]),
        user: 'u',
        host: 'h',
        vendor: 'v',
        expires: 1000,
        address: 'a',
        port: 1,
        lastSeen: 0,
      },
      shared(c),
      key,
    );
    t.ok(keyed.hmac!.verify(tag, msg), 'the key it was given');
    t.equal(derived, before, 'no derivation');
  },
);

t.test(
  'Session: token bytes round-trip, expiry in whole seconds, lazy test_conn state',
  async (t) => {
    const c = new HmacCache(2, anyKey);
    const token = new Uint8Array(256).map((_, i) => i);
    const s = new Session(
      {
        id: 9n,
        token: token.subarray(1, 200),
        user: 'u',
        host: 'h',
        vendor: 'v',
        expires: 1_700_000_000_000,
        address: 'a',
        port: 2,
        lastSeen: 5,
      },
      shared(c),
    );
    t.same(s.token, token.subarray(1, 200), 'every byte value survives, the view only');
    t.not(s.token, s.token, 'a fresh copy each time');
    t.equal(s.expires, 1_700_000_000_000);
    t.equal(session(c, 5, 1_700_000_000_001).expires, 1_700_000_001_000, 'rounded up to a second');
    t.equal(s.pings, 0);
    t.equal(s.nextPingAt, 0);
    t.equal(s.serverSeq, 0);
    t.equal(s.pingNonce, undefined);
    s.pings = 0;
    s.pingNonce = undefined;
    s.pings++;
    s.nextPingAt = 123;
    s.serverSeq = 0xffff_fffe;
    const nonce = new Uint8Array(8);
    s.pingNonce = nonce;
    t.same([s.pings, s.nextPingAt, s.serverSeq, s.pingNonce], [1, 123, 0xffff_fffe, nonce]);
    s.pings = 0;
    s.pingNonce = undefined;
    t.same([s.pings, s.nextPingAt, s.serverSeq, s.pingNonce], [0, 123, 0xffff_fffe, undefined]);
    t.equal(s.keptReply(1), undefined, 'nothing kept yet');
    const ack = encodeHeartbeatAck(
      0xffff_fff0,
      9n,
      0x8000_0001,
      3,
      1_700_000_000_999,
      3,
      4,
      10_000,
      s.hmac!,
    );
    s.keepReply(0xffff_fff0, ack);
    t.same(s.keptReply(0xffff_fff0), ack, 'rebuilt byte for byte');
    t.equal(s.keptReply(0xffff_fff1), undefined, 'another request id');
    t.equal(s.keptReply(-16), undefined, 'not the same request id as its int32 form');
    const next = encodeHeartbeatAck(5, 9n, 6, 2, 7, 0, 0, 1, s.hmac!);
    s.keepReply(5, next);
    t.same(s.keptReply(5), next, 'the newest replaces it');
    t.equal(s.keptReply(0xffff_fff0), undefined);
    t.throws(() => s.keepReply(1, new Uint8Array(71)), RangeError);
    t.ok(s.checkSeq(1), 'a window comes with the kept reply');
  },
);

t.test('Session windows: checkSeq, acceptSeq, the restart floor, release on drop', async (t) => {
  const c = new HmacCache(4, anyKey);
  const s = session(c, 1);
  t.notOk(s.checkSeq(0), 'seq 0 is never a session seq (protocol.md §10): counted seen');
  t.ok(s.checkSeq(1), 'a fresh window takes seq 1');
  t.equal(s.highestSeq, 0);
  t.ok(s.checkSeq(7));
  t.ok(s.checkSeq(7), 'check alone changes nothing');
  s.acceptSeq(7);
  t.notOk(s.checkSeq(7), 'accepted: seen');
  t.ok(s.checkSeq(6), 'below, unseen: fresh');
  t.equal(s.highestSeq, 7);
  const restored = session(c, 2, 1000, 1023);
  t.equal(restored.reservedSeq, 1023, 'durable floor before the window exists');
  t.notOk(restored.checkSeq(1023), 'the floor counts as seen');
  t.notOk(restored.checkSeq(500));
  t.ok(restored.checkSeq(1024));
  t.equal(restored.highestSeq, 1023);
  restored.reservedSeq = 2000;
  t.equal(restored.reservedSeq, 2000);
  t.equal(s.reservedSeq, 0, 'per session');
  // Windows of different sessions are independent slots of one slab.
  const other = session(c, 3);
  other.acceptSeq(7);
  t.notOk(other.checkSeq(7));
  t.ok(restored.checkSeq(1024));
  const slot = s.slot;
  s.drop();
  const next = session(c, 4);
  t.equal(next.slot, slot, 'a dropped session frees its slot for the next');
  t.ok(next.checkSeq(7), 'which is a fresh window');
  t.equal(next.highestSeq, 0);
});

t.test('LiveSlab keeps HEARTBEAT_ACKs of more sessions than its initial size', async (t) => {
  const key = randomBytes(32);
  const c = new HmacCache(4096, () => key.slice());
  const n = 1100; // the slab starts with 1024 slots
  const ss = Array.from({ length: n }, (_, i) => session(c, i + 1));
  const h = new KeyedHmac(key);
  const acks = ss.map((s, i) => {
    const ack = encodeHeartbeatAck(i, s.id, i + 1, 3, 1_700_000_000_000 + i, i & 0xff, 1, 500, h);
    s.keepReply(i, ack);
    return ack;
  });
  let same = 0;
  for (const [i, s] of ss.entries()) {
    const kept = s.keptReply(i);
    if (kept && kept.length === HEARTBEAT_ACK_LENGTH && kept.every((b, j) => b === acks[i]![j]))
      same++;
  }
  t.equal(same, n, 'every kept reply rebuilt byte for byte after the slab grew');
  t.ok(new KeyedHmac(key).verifyTrailing(ss[n - 1]!.keptReply(n - 1)!), 'signed');
});

t.test('a kept reply needs the session key: none once it is gone', async (t) => {
  let gone = false;
  const key = randomBytes(32);
  const c = new HmacCache(2, () => (gone ? undefined : key.slice()));
  const s = session(c, 1);
  const ack = encodeHeartbeatAck(1, s.id, 1, 3, 5, 0, 0, 1, s.hmac!);
  s.keepReply(1, ack);
  t.same(s.keptReply(1), ack);
  session(c, 2).hmac; // evicts s's keyed HMAC from the 2-entry cache
  session(c, 3).hmac;
  gone = true; // and then the keyring loses the server key
  t.equal(s.hmac, undefined);
  t.equal(s.keptReply(1), undefined, 'nothing to sign it with');
});

t.test('test_conn state is per session, kept only for pinged ones, gone on drop', async (t) => {
  const c = new HmacCache(4, anyKey);
  const a = session(c, 11);
  const b = session(c, 12);
  const sh = shared(c);
  a.pings = 0;
  t.equal(sh.probes.size, 0, 'a request resets nothing that does not exist');
  a.pings = 2;
  a.nextPingAt = 5000;
  a.serverSeq = 7;
  t.equal(sh.probes.size, 1, 'one pinged session, one probe');
  t.equal(a.pings, 2);
  t.equal(a.nextPingAt, 5000);
  t.equal(a.serverSeq, 7);
  t.equal(b.pings, 0, 'the other is untouched');
  t.equal(b.serverSeq, 0);
  t.equal(b.pingNonce, undefined);
  a.pings = 0;
  t.equal(a.serverSeq, 7, 'an answer resets the count, not the server seq');
  t.equal(a.vendor, b.vendor);
  t.equal(a.credential, '', 'no credential recorded');
  a.drop();
  t.equal(sh.probes.size, 0, 'dropped with the session');
});
