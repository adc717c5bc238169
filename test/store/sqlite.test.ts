/**
 * The SQLite state store against real files in temp dirs: round trips, group commit
 * semantics, all-or-nothing commits, refusal of foreign/garbage/damaged/newer files (left
 * byte-identical), locking, read-only use, argument checks, and incremental expiry.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import t, { type Test } from 'tap';
import {
  APPLICATION_ID,
  type LeaseRecord,
  openStore,
  SCHEMA_VERSION,
  type SessionRecord,
  STATE_FILE,
  StoreError,
} from '../../lib/store/index.ts';

const U64_MAX = 0xffff_ffff_ffff_ffffn;

function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'floatlm-store-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

function session(tokenId: bigint, over: Partial<SessionRecord> = {}): SessionRecord {
  return {
    tokenId,
    token: new Uint8Array([1, 2, 3, Number(tokenId & 0xffn)]),
    user: 'alice',
    host: 'ws1',
    vendor: 'demo',
    created: 1_700_000_000_000,
    expires: 1_700_086_400_000,
    ip: '192.0.2.7',
    port: 40000,
    seqFloor: -1,
    credential: '',
    ...over,
  };
}

function lease(leaseId: bigint, over: Partial<LeaseRecord> = {}): LeaseRecord {
  return {
    leaseId,
    tokenId: 7n,
    feature: 'cad',
    version: '2.1',
    count: 1,
    groupKey: 'alice@ws1',
    grantedAt: 1_700_000_000_123,
    ticket: new Uint8Array(64).fill(Number(leaseId % 251n)),
    ...over,
  };
}

/** Byte digest of every file in dir (name → sha256), to prove nothing was touched. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of fs.readdirSync(dir).sort()) {
    out[name] = createHash('sha256')
      .update(fs.readFileSync(path.join(dir, name)))
      .digest('hex');
  }
  return out;
}

function refused(tt: Test, dir: string, codes: string[], label: string): void {
  const before = snapshot(dir);
  let err: unknown;
  try {
    openStore(dir, { busyTimeoutMs: 0 }).close();
  } catch (e) {
    err = e;
  }
  tt.ok(err instanceof StoreError, `${label}: StoreError`);
  const se = err as StoreError;
  tt.ok(codes.includes(se.code), `${label}: code ${se.code} in ${codes.join('|')}`);
  tt.match(se.message, path.join(dir, STATE_FILE), `${label}: message names the file`);
  tt.notMatch(se.message, /\n/, `${label}: one line`);
  tt.same(snapshot(dir), before, `${label}: files left byte-identical, none added`);
}

t.test('round trip of every record kind through commit, close and reopen', (tt) => {
  const dir = path.join(tmpDir(), 'state');
  const s = openStore(dir);
  tt.equal(s.created, true);
  tt.equal(s.cleanShutdown, true, 'a new file counts as clean');
  tt.match(s.storeId, /^[0-9a-f-]{36}$/);
  tt.equal(fs.statSync(dir).mode & 0o777, 0o700, 'state dir created 0700');
  tt.equal(fs.statSync(s.path).mode & 0o077, 0, 'state file not readable by others');
  const storeId = s.storeId;

  const sessions = [
    session(0n),
    session(U64_MAX, { user: 'bob', port: 65535 }),
    session(1n << 63n),
  ];
  for (const x of sessions) s.putSession(x);
  s.touchSessionAddr(0n, '2001:db8::1', 0);
  const leases = [lease(0n), lease(U64_MAX, { count: 65535, feature: 'sim', version: '' })];
  for (const x of leases) s.putLease(x);
  const seqA = s.enqueue({ tokenId: 9n, feature: 'cad', version: '2', count: 2, since: 5 });
  const seqB = s.enqueue({ tokenId: 3n, feature: 'sim', version: '1', count: 1, since: 6 });
  const seqC = s.enqueue({ tokenId: 1n, feature: 'cad', version: '2', count: 1, since: 7 });
  tt.ok(seqA < seqB && seqB < seqC, 'seq increases in insertion order');
  s.revoke(U64_MAX, 123);
  s.markReclaimed(42n, 456);
  s.setMeta('site_id', 'site-1');
  tt.equal(s.pending(), 12);
  tt.equal(s.commit(), 12, 'commit reports what it applied');
  tt.equal(s.pending(), 0);
  tt.equal(s.commit(), 0, 'empty commit is a no-op');
  s.close();
  s.close();

  const r = openStore(dir);
  tt.equal(r.created, false);
  tt.equal(r.cleanShutdown, true, 'previous close was clean');
  tt.equal(r.storeId, storeId, 'store id survives');
  const snap = r.load();
  const byId = (a: { tokenId: bigint }, b: { tokenId: bigint }) => (a.tokenId < b.tokenId ? -1 : 1);
  tt.same(
    snap.sessions.sort(byId),
    [
      { ...session(0n), ip: '2001:db8::1', port: 0 },
      session(1n << 63n),
      session(U64_MAX, { user: 'bob', port: 65535 }),
    ].sort(byId),
    'sessions, with the touched address',
  );
  tt.type(snap.sessions[0]?.tokenId, 'bigint');
  tt.same([...r.eachSession()].sort(byId), snap.sessions, 'eachSession streams the same rows');
  const lean = r.load({ sessions: false });
  tt.same(lean.sessions, [], 'load without sessions');
  tt.same(lean.leases.length, 2, 'and the rest as before');
  let first: unknown;
  for (const x of r.eachSession()) {
    first = x;
    break; // abandoning the iteration frees the connection
  }
  tt.ok(first);
  tt.equal(r.isRevoked(U64_MAX), true, 'usable after a broken-off iteration');
  tt.same(
    snap.leases.sort((a, b) => (a.leaseId < b.leaseId ? -1 : 1)),
    leases,
  );
  tt.same(snap.queue, [
    { tokenId: 9n, feature: 'cad', version: '2', count: 2, since: 5, seq: seqA },
    { tokenId: 3n, feature: 'sim', version: '1', count: 1, since: 6, seq: seqB },
    { tokenId: 1n, feature: 'cad', version: '2', count: 1, since: 7, seq: seqC },
  ]);
  tt.equal(snap.revokedCount, 1);
  tt.equal(snap.reclaimedCount, 1);
  tt.equal(snap.meta.get('site_id'), 'site-1');
  tt.equal(snap.meta.get('store_id'), storeId);
  tt.equal(r.isRevoked(U64_MAX), true);
  tt.equal(r.isRevoked(U64_MAX - 1n), false);
  tt.equal(r.isReclaimed(42n), true);
  tt.equal(r.isReclaimed(43n), false);

  // Queue order survives reopen: a new entry goes behind the old ones.
  const seqD = r.enqueue({ tokenId: 2n, feature: 'cad', version: '2', count: 1, since: 8 });
  tt.ok(seqD > seqC, 'seq continues after reopen');
  r.close();
  tt.end();
});

t.test('changes apply in order; upserts and deletes', (tt) => {
  const dir = tmpDir();
  const s = openStore(dir);
  s.putLease(lease(1n));
  s.deleteLease(1n);
  s.putLease(lease(2n));
  s.putLease(lease(2n, { count: 3 }));
  s.putSession(session(5n));
  s.deleteSession(5n);
  s.touchSessionAddr(6n, '10.0.0.1', 1); // unknown session: no effect
  s.enqueue({ tokenId: 1n, feature: 'f', version: '1', count: 1, since: 1 });
  s.enqueue({ tokenId: 2n, feature: 'f', version: '1', count: 1, since: 2 });
  s.enqueue({ tokenId: 1n, feature: 'f', version: '9', count: 4, since: 3 }); // keeps its place
  s.enqueue({ tokenId: 3n, feature: 'f', version: '1', count: 1, since: 4 });
  s.dequeue(3n, 'f');
  s.dequeue(3n, 'nope');
  s.revoke(8n, 100);
  s.revoke(8n, 50); // the later expiry wins
  s.commit();
  const snap = s.load();
  tt.same(snap.leases, [lease(2n, { count: 3 })]);
  tt.same(snap.sessions, []);
  tt.same(
    snap.queue.map((q) => [q.tokenId, q.version, q.count, q.since]),
    [
      [1n, '9', 4, 3],
      [2n, '1', 1, 2],
    ],
  );
  tt.same(s.flushExpired(99, 10), { deleted: 0, more: false }, 'expiry 100 kept at 99');
  tt.same(s.flushExpired(100, 10), { deleted: 1, more: false }, 'and gone at 100');
  s.close();
  tt.end();
});

t.test('isRevoked and isReclaimed see pending changes', (tt) => {
  const s = openStore(tmpDir());
  s.revoke(10n, 1);
  s.markReclaimed(11n, 1);
  tt.equal(s.isRevoked(10n), true, 'pending revoke');
  tt.equal(s.isReclaimed(11n), true, 'pending reclaim');
  tt.equal(s.isRevoked(11n), false);
  tt.equal(s.isReclaimed(10n), false);
  s.commit();
  tt.equal(s.isRevoked(10n), true, 'committed revoke');
  tt.equal(s.isReclaimed(11n), true, 'committed reclaim');
  s.close();
  tt.end();
});

t.test('load commits pending changes first', (tt) => {
  const s = openStore(tmpDir());
  s.putLease(lease(1n));
  tt.equal(s.load().leases.length, 1);
  tt.equal(s.pending(), 0);
  s.close();
  tt.end();
});

t.test('a commit is all or nothing', (tt) => {
  const dir = tmpDir();
  let s = openStore(dir, { maxBytes: 32 * 4096 });
  s.putLease(lease(1n));
  s.revoke(1n, 10);
  s.commit();
  // One change that fits, then far more than the cap allows, in one commit.
  s.deleteLease(1n);
  s.putSession(session(1n));
  for (let i = 100n; i < 300n; i++) s.putLease(lease(i, { ticket: new Uint8Array(2000) }));
  s.revoke(2n, 10);
  const n = s.pending();
  tt.throws(() => s.commit(), { code: 'SQLITE_FULL' }, 'the commit fails');
  tt.equal(s.pending(), n, 'changes stay pending for a retry');
  tt.equal(s.isRevoked(2n), true, 'pending revoke still visible');
  tt.throws(() => s.close(), { code: 'SQLITE_FULL' }, 'close reports the failed final commit');
  tt.throws(() => s.commit(), { code: 'CLOSED' }, 'but the store is closed');

  s = openStore(dir);
  tt.equal(s.cleanShutdown, false, 'a failed close is not clean');
  const snap = s.load();
  tt.same(snap.leases, [lease(1n)], 'the delete before the failing insert was not applied');
  tt.same(snap.sessions, []);
  tt.equal(snap.revokedCount, 1);
  tt.equal(s.isRevoked(2n), false);
  s.close();
  tt.end();
});

t.test('a foreign SQLite database is refused and left byte-identical', (tt) => {
  for (const [label, appId, wal] of [
    ['no application_id', 0, false],
    ['other application_id', 0x12345678, false],
    ['other app in WAL mode', 0x12345678, true],
  ] as const) {
    const dir = tmpDir();
    const db = new Database(path.join(dir, STATE_FILE));
    if (wal) db.pragma('journal_mode = WAL');
    db.pragma(`application_id = ${appId}`);
    db.exec(
      "CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO photos VALUES (1, 'x')",
    );
    db.close();
    refused(tt, dir, ['FOREIGN'], label);
  }
  tt.end();
});

t.test('garbage, empty and damaged files are refused and left byte-identical', (tt) => {
  const write = (bytes: Uint8Array): string => {
    const dir = tmpDir();
    fs.writeFileSync(path.join(dir, STATE_FILE), bytes, { mode: 0o600 });
    return dir;
  };
  refused(tt, write(randomBytes(8192)), ['NOT_SQLITE'], 'random bytes');
  refused(tt, write(new Uint8Array(0)), ['NOT_SQLITE'], 'empty file');
  refused(tt, write(Buffer.from('SQLite format 3\0')), ['NOT_SQLITE'], 'magic only (16 bytes)');
  // A header that passes the hand check (magic, our application_id) over garbage pages.
  const fake = randomBytes(8192);
  Buffer.from('SQLite format 3\0', 'latin1').copy(fake, 0);
  fake.writeUInt32BE(APPLICATION_ID, 68);
  refused(tt, write(fake), ['NOT_SQLITE', 'CORRUPT'], 'our header over garbage');
  tt.end();
});

/** A closed store with enough rows to span many pages. */
function filledStore(): { dir: string; file: string } {
  const dir = tmpDir();
  const s = openStore(dir);
  for (let i = 0n; i < 2000n; i++) {
    s.putLease(lease(i));
    s.revoke(i, Number(i));
  }
  s.commit();
  s.close();
  return { dir, file: path.join(dir, STATE_FILE) };
}

t.test('a truncated state file is refused and left byte-identical', (tt) => {
  const size = fs.statSync(filledStore().file).size;
  tt.ok(size >= 40 * 4096, 'the fixture spans many pages');
  for (const cut of [size / 2, size - 4096, size - 1, 4096, 1000, 99]) {
    const { dir, file } = filledStore();
    fs.truncateSync(file, cut);
    refused(tt, dir, ['CORRUPT', 'NOT_SQLITE'], `truncated to ${cut} bytes`);
  }
  tt.end();
});

t.test('a page overwritten with garbage is refused', (tt) => {
  const { dir, file } = filledStore();
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, randomBytes(4096), 0, 4096, 4096 * 5);
  fs.closeSync(fd);
  refused(tt, dir, ['CORRUPT'], 'overwritten page');
  tt.end();
});

t.test('newer and older schema versions are refused', (tt) => {
  for (const [v, code] of [
    [SCHEMA_VERSION + 1, 'NEWER_SCHEMA'],
    [0, 'OLD_SCHEMA'],
  ] as const) {
    const dir = tmpDir();
    openStore(dir).close();
    const db = new Database(path.join(dir, STATE_FILE));
    db.pragma(`user_version = ${v}`);
    db.close();
    refused(tt, dir, [code], `user_version ${v}`);
  }
  tt.end();
});

t.test('a journal left without its database is not replayed into a new one', (tt) => {
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, `${STATE_FILE}-wal`), randomBytes(100));
  refused(tt, dir, ['CORRUPT'], 'orphan WAL');
  tt.end();
});

t.test('a second opener is refused while a store is open', (tt) => {
  const dir = tmpDir();
  const s = openStore(dir);
  tt.throws(() => openStore(dir, { busyTimeoutMs: 0 }), { code: 'LOCKED' });
  tt.throws(() => openStore(dir, { busyTimeoutMs: 0, readonly: true }), { code: 'LOCKED' });
  s.putLease(lease(1n));
  s.close();
  const again = openStore(dir, { busyTimeoutMs: 0 });
  tt.equal(again.load().leases.length, 1, 'usable after close');
  again.close();
  tt.end();
});

t.test('read-only stores', (tt) => {
  const dir = tmpDir();
  tt.throws(() => openStore(dir, { readonly: true }), { code: 'MISSING' });
  tt.same(fs.readdirSync(dir), [], 'nothing created');
  const w = openStore(dir);
  w.putLease(lease(3n));
  w.close();
  const r = openStore(dir, { readonly: true });
  tt.equal(r.readonly, true);
  tt.same(r.load().leases, [lease(3n)]);
  tt.equal(r.isRevoked(1n), false);
  tt.throws(() => r.putLease(lease(4n)), { code: 'READONLY' });
  tt.throws(() => r.flushExpired(1, 1), { code: 'READONLY' });
  r.close();
  tt.equal(openStore(dir).cleanShutdown, true, 'a read-only open does not touch the flag');
  tt.end();
});

t.test('closed stores and argument checks', (tt) => {
  const s = openStore(tmpDir());
  tt.throws(() => s.revoke(-1n, 0), RangeError);
  tt.throws(() => s.revoke(U64_MAX + 1n, 0), RangeError);
  tt.throws(() => s.revoke(1 as unknown as bigint, 0), TypeError);
  tt.throws(() => s.revoke(1n, -1), RangeError);
  tt.throws(() => s.revoke(1n, 1.5), RangeError);
  tt.throws(() => s.putSession(session(1n, { port: 65536 })), /session\.port/);
  tt.throws(() => s.putSession(session(1n, { port: -1 })), RangeError);
  tt.throws(() => s.putSession(session(1n, { token: 'x' as unknown as Uint8Array })), TypeError);
  tt.throws(() => s.putLease(lease(1n, { count: 0 })), /lease\.count/);
  tt.throws(() => s.putLease(lease(1n, { count: 65536 })), RangeError);
  tt.throws(() => s.putLease(null as unknown as LeaseRecord), TypeError);
  tt.throws(
    () =>
      s.enqueue({ tokenId: 1n, feature: 2 as unknown as string, version: '', count: 1, since: 0 }),
    TypeError,
  );
  tt.throws(() => s.setMeta('store_id', 'x'), RangeError);
  tt.throws(() => s.setMeta('clean_shutdown', '1'), RangeError);
  tt.throws(() => s.flushExpired(0, 0), /batch/);
  tt.throws(() => s.flushExpired(0, 1_000_001), RangeError);
  tt.throws(() => s.flushExpired(0, 1, 0), /budgetMs/);
  tt.throws(() => s.flushExpired(0, 1, Number.NaN), /budgetMs/);
  tt.equal(s.pending(), 0, 'rejected changes are not queued');
  s.putSession(session(1n, { port: 65535 }));
  s.putLease(lease(1n, { count: 65535 }));
  tt.equal(s.pending(), 2, 'boundary values accepted');
  tt.throws(() => openStore(tmpDir(), { durability: 'off' as 'full' }), RangeError);
  tt.throws(() => openStore(tmpDir(), { busyTimeoutMs: -1 }), RangeError);
  s.close();
  tt.throws(() => s.isRevoked(1n), { code: 'CLOSED' });
  tt.throws(() => s.putLease(lease(1n)), { code: 'CLOSED' });
  tt.throws(() => s.load(), { code: 'CLOSED' });
  tt.doesNotThrow(() => s.close(), 'close is idempotent');
  tt.end();
});

t.test('flushExpired removes 100,000 rows incrementally', (tt) => {
  const s = openStore(tmpDir());
  const N = 50_000;
  for (let i = 0; i < N; i++) {
    s.revoke(BigInt(i), 1_000 + i);
    s.markReclaimed(BigInt(i) * 3n, 1_000 + i);
  }
  // Not yet expired at `now`: must survive every call.
  s.revoke(U64_MAX, 1_000 + N);
  s.markReclaimed(U64_MAX, 1_000 + N);
  s.commit();
  const now = 1_000 + N - 1;
  const batch = 1_000;
  let calls = 0;
  let total = 0;
  let r: { deleted: number; more: boolean };
  do {
    r = s.flushExpired(now, batch);
    tt.ok(r.deleted <= batch, 'never more than a batch');
    total += r.deleted;
    calls++;
  } while (r.more && calls < 1_000);
  tt.equal(calls, (2 * N) / batch, 'full batches until done');
  tt.equal(total, 2 * N);
  tt.same(s.flushExpired(now, batch), { deleted: 0, more: false });
  const snap = s.load();
  tt.equal(snap.revokedCount, 1);
  tt.equal(snap.reclaimedCount, 1);
  tt.equal(s.isRevoked(U64_MAX), true);
  tt.equal(s.isReclaimed(U64_MAX), true);
  tt.equal(s.isRevoked(0n), false);
  tt.same(s.flushExpired(now + 1, batch), { deleted: 2, more: false }, 'boundary: expires == now');
  s.close();
  tt.end();
});

t.test('flushExpired with a time budget: never above batch, finishes, keeps the rest', (tt) => {
  const s = openStore(tmpDir());
  const N = 20_000;
  for (let i = 0; i < N; i++) {
    s.revoke((BigInt(i) * 0x9e3779b97f4a7c15n) % U64_MAX, 1_000 + (i % 997));
    if (i % 2 === 0) s.markReclaimed(BigInt(i), 1_000 + (i % 13));
  }
  s.revoke(U64_MAX, 10_000); // not expired at `now`
  s.commit();
  const now = 5_000;
  let total = 0;
  let calls = 0;
  let r: { deleted: number; more: boolean };
  do {
    r = s.flushExpired(now, 3_000, 0.5);
    tt.ok(r.deleted <= 3_000, 'never more than a batch');
    total += r.deleted;
    calls++;
  } while (r.more && calls < 100_000);
  tt.equal(total, N + N / 2, 'every expired row went');
  tt.notOk(r.more);
  tt.ok(calls > 1, 'over several calls');
  tt.same(s.flushExpired(now, 3_000, 0.5), { deleted: 0, more: false });
  // Pending changes are untouched by a flush, and commit at the usual durability after it.
  s.revoke(7n, 1);
  tt.same(s.flushExpired(now, 10, 1), { deleted: 0, more: false }, 'a pending row is not flushed');
  tt.equal(s.isRevoked(7n), true);
  tt.equal(s.commit(), 1);
  tt.same(s.flushExpired(now, 10, 1), { deleted: 1, more: false }, 'committed, then flushed');
  const snap = s.load();
  tt.equal(snap.revokedCount, 1);
  tt.equal(snap.reclaimedCount, 0);
  s.close();
  tt.end();
});

t.test('replay floors and kept replies survive a reopen; replies expire and flush', async (tt) => {
  const dir = path.join(tmpDir(), 'state');
  const s = openStore(dir);
  s.putSession(session(7n));
  s.setSeqFloor(7n, 4096);
  s.setSeqFloor(7n, 100); // never lowers it
  const key = new Uint8Array([1, 2, 3]);
  s.putReply(key, { reply: new Uint8Array([9, 9]), ip: '127.0.0.1', port: 5, expires: 2000 });
  tt.same(s.getReply(key, 1000)?.reply, new Uint8Array([9, 9]), 'visible while pending');
  s.commit();
  tt.equal(s.getReply(key, 2000), undefined, 'an expired record is not returned');
  s.close();
  const r = openStore(dir);
  tt.equal([...r.eachSession()][0]?.seqFloor, 4096, 'floor kept, the higher one');
  const got = r.getReply(key, 1000);
  tt.same(got, { reply: new Uint8Array([9, 9]), ip: '127.0.0.1', port: 5, expires: 2000 });
  tt.same(r.flushExpired(3000, 100), { deleted: 1, more: false }, 'expired replies flushed');
  tt.equal(r.getReply(key, 1000), undefined, 'gone after the flush');
  r.close();
});

t.test('a schema-1 state file is upgraded in place by a writable open', async (tt) => {
  const dir = path.join(tmpDir(), 'state');
  openStore(dir).close();
  const file = path.join(dir, STATE_FILE);
  // Back to schema 1: no triggers, checksums, replies table or schema-2 columns.
  const db = new Database(file);
  const triggers = db
    .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger'")
    .pluck()
    .all();
  for (const name of triggers) db.exec(`DROP TRIGGER ${name}`);
  for (const t of ['sessions', 'leases', 'queue', 'revoked', 'reclaimed', 'meta'])
    db.exec(`ALTER TABLE ${t} DROP COLUMN sum`);
  db.exec(
    'DROP TABLE replies; ALTER TABLE sessions DROP COLUMN seq_floor; ' +
      'ALTER TABLE sessions DROP COLUMN credential; ALTER TABLE reclaimed DROP COLUMN why; ' +
      "INSERT INTO meta (key, value) VALUES ('old', 'row'); PRAGMA user_version = 1",
  );
  db.close();
  tt.throws(() => openStore(dir, { readonly: true }), { code: 'OLD_SCHEMA' }, 'read-only refuses');
  const s = openStore(dir);
  s.putSession(session(1n));
  s.setSeqFloor(1n, 10);
  s.commit();
  tt.equal([...s.eachSession()][0]?.seqFloor, 10);
  s.close();
  const again = openStore(dir);
  tt.equal(again.load().meta.get('old'), 'row', 'rows from schema 1 got checksums: the file opens');
  again.close();
});
