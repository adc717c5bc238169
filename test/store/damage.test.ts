/**
 * Damaged state that SQLite's own checks let through (issue 15): record contents changed
 * with the page structure intact (one byte flipped in every page after the first turned
 * user `cor0` into `c:r0`), and acknowledged commits lost with a cut or deleted WAL after a
 * kill -9. Each is refused with one line, the files left as they were.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { COMMITS_FILE, openStore, STATE_FILE, StoreError } from '../../lib/store/index.ts';

function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'floatlm-damage-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return path.join(d, 'state');
}

function snapshot(dir: string, skip = ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of fs.readdirSync(dir).sort())
    if (n !== skip)
      out[n] = createHash('sha256')
        .update(fs.readFileSync(path.join(dir, n)))
        .digest('hex');
  return out;
}

function refusedAs(tt: Test, dir: string, code: string, label: string, skip = ''): void {
  const before = snapshot(dir, skip);
  let err: unknown;
  try {
    openStore(dir).close();
  } catch (e) {
    err = e;
  }
  tt.ok(err instanceof StoreError, `${label}: StoreError`);
  tt.equal((err as StoreError).code, code, `${label}: ${code}`);
  tt.notMatch((err as Error).message, /\n/, `${label}: one line`);
  tt.same(snapshot(dir, skip), before, `${label}: files left as they were`);
}

/** Replaces every occurrence of `from` by `to` (same length) in the file. */
function patch(file: string, from: Buffer, to: Buffer): number {
  const b = fs.readFileSync(file);
  let n = 0;
  for (let i = b.indexOf(from); i >= 0; i = b.indexOf(from, i + 1)) {
    to.copy(b, i);
    n++;
  }
  fs.writeFileSync(file, b);
  return n;
}

function fill(dir: string): void {
  const s = openStore(dir);
  for (let i = 0; i < 300; i++) {
    s.putSession({
      tokenId: BigInt(i + 1),
      token: new Uint8Array(120).fill(i & 0xff),
      user: `cor${i % 10}`,
      host: 'ws1',
      vendor: 'demo',
      created: 1_700_000_000_000,
      expires: 1_800_000_000_000,
      ip: '10.1.2.3',
      port: 4000,
    });
  }
  s.putLease({
    leaseId: 77n,
    tokenId: 1n,
    feature: 'zzfeature',
    version: '1.0',
    count: 1,
    groupKey: 'g',
    grantedAt: 1_700_000_000_000,
    ticket: new Uint8Array(40).fill(0xab),
  });
  s.enqueue({ tokenId: 2n, feature: 'qqfeature', version: '', count: 1, since: 5 });
  s.revoke(3n, 0x0123456789ab);
  s.markReclaimed(78n, 0x0234567890ab);
  s.setMeta('site', 'mmmeta');
  s.putReply(new Uint8Array([1, 2, 3]), {
    reply: Buffer.from('rrreply'),
    ip: '127.0.0.1',
    port: 9,
    expires: 1_800_000_000_000,
  });
  s.close();
}

t.test('a clean file with checksums opens', async (tt) => {
  const dir = tmpDir();
  fill(dir);
  const s = openStore(dir);
  tt.equal([...s.eachSession()].length, 300);
  s.close();
});

t.test('record contents changed in every page after the first: refused', async (tt) => {
  const dir = tmpDir();
  fill(dir);
  const n = patch(path.join(dir, STATE_FILE), Buffer.from('cor0'), Buffer.from('c:r0'));
  tt.ok(n >= 2, `${n} records changed across pages`);
  refusedAs(tt, dir, 'CORRUPT', 'cor0 → c:r0');
});

for (const [table, from, to] of [
  ['leases', Buffer.from('zzfeature'), Buffer.from('zzfeaturf')],
  ['queue', Buffer.from('qqfeature'), Buffer.from('qqfeaturf')],
  ['revoked', Buffer.from('0123456789ab', 'hex'), Buffer.from('0123456789ac', 'hex')],
  ['reclaimed', Buffer.from('0234567890ab', 'hex'), Buffer.from('0234567890ac', 'hex')],
  ['meta', Buffer.from('mmmeta'), Buffer.from('mmmetb')],
  ['replies', Buffer.from('rrreply'), Buffer.from('rrreplz')],
  ['sessions', Buffer.from('10.1.2.3'), Buffer.from('10.1.2.4')],
] as const) {
  t.test(`a byte flipped in a ${table} row: refused`, async (tt) => {
    const dir = tmpDir();
    fill(dir);
    tt.ok(patch(path.join(dir, STATE_FILE), from, to) >= 1, 'the row was changed');
    refusedAs(tt, dir, 'CORRUPT', table);
  });
}

const child = fileURLToPath(new URL('./crash-child.ts', import.meta.url));
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

/** Runs the crash child until it has acknowledged `atLeast` leases, then kill -9. */
function ackThenKill(dir: string, atLeast: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', child, dir, 'full'], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let lines = 0;
    const guard = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.stdout.setEncoding('utf8');
    p.stdout.on('data', (d: string) => {
      lines += d.split('\n').length - 1;
      if (lines >= atLeast) p.kill('SIGKILL');
    });
    p.on('error', reject);
    p.on('close', () => {
      clearTimeout(guard);
      resolve(lines);
    });
  });
}

/**
 * Where each commit SQLite has not yet copied into the database ends in the -wal file
 * (https://www.sqlite.org/walformat.html): the frames that carry the header's salts, since a
 * checkpoint restarts the WAL from its start under new salts and leaves older frames behind
 * them (cutting the file at half its size then cut only frames already copied, and lost
 * nothing). The store locks exclusively, so its wal-index lives in memory, not in -shm: the
 * database pages tell instead whether a checkpoint copied these frames before the kill, and
 * if any page the WAL holds already matches its newest image there, none is counted.
 */
function pendingCommits(dir: string): number[] {
  const wal = fs.readFileSync(path.join(dir, `${STATE_FILE}-wal`));
  const db = fs.readFileSync(path.join(dir, STATE_FILE));
  if (wal.length < 32) return [];
  const pageSize = wal.readUInt32BE(8);
  const salts = wal.subarray(16, 24);
  const ends: number[] = [];
  const newest = new Map<number, Buffer>();
  for (let off = 32; off + 24 + pageSize <= wal.length; off += 24 + pageSize) {
    if (!wal.subarray(off + 8, off + 16).equals(salts)) break;
    newest.set(wal.readUInt32BE(off), wal.subarray(off + 24, off + 24 + pageSize));
    if (wal.readUInt32BE(off + 4) !== 0) ends.push(off + 24 + pageSize);
  }
  for (const [page, image] of newest)
    if (db.subarray((page - 1) * pageSize, page * pageSize).equals(image)) return [];
  return ends;
}

/**
 * kill -9 with acknowledged commits of which at least three are still only in the WAL: the
 * last count written to floatlm.commits may lag one commit, so losing the last two is always
 * one acknowledged commit lost. A child killed just after a checkpoint is run again.
 */
async function crashWithPendingCommits(tt: Test, dir: string, atLeast: number): Promise<number[]> {
  let acked = 0;
  for (let run = 0; run < 8; run++) {
    acked += await ackThenKill(dir, atLeast);
    const ends = pendingCommits(dir);
    if (ends.length >= 3) {
      tt.ok(acked >= atLeast, `${acked} leases acknowledged before the kill`);
      return ends;
    }
  }
  throw new Error('8 runs of the crash child each ended just after a checkpoint');
}

t.test('the WAL deleted after kill -9 with acknowledged commits: refused', async (tt) => {
  const dir = tmpDir();
  openStore(dir).close();
  await crashWithPendingCommits(tt, dir, 50);
  tt.ok(fs.existsSync(path.join(dir, COMMITS_FILE)), 'the commit count was kept outside the WAL');
  fs.rmSync(path.join(dir, `${STATE_FILE}-wal`), { force: true });
  fs.rmSync(path.join(dir, `${STATE_FILE}-shm`), { force: true });
  refusedAs(tt, dir, 'ROLLED_BACK', 'WAL deleted');
});

t.test(
  'the WAL cut short after kill -9: refused; untouched it opens with every lease',
  async (tt) => {
    const dir = tmpDir();
    openStore(dir).close();
    // Past the first checkpoint (~60 commits), where the WAL starts again from its start:
    // the case a cut at half the file's size missed.
    const ends = await crashWithPendingCommits(tt, dir, 300);
    const copy = path.join(path.dirname(dir), 'copy');
    fs.cpSync(dir, copy, { recursive: true });
    const s = openStore(copy);
    tt.ok(s.load().leases.length >= 50, 'the intact copy opens with what was acknowledged');
    s.close();
    // Torn inside the frames of the last commit but one, as a write cut off by a crash is.
    const cut = (ends.at(-3) as number) + 100;
    fs.truncateSync(path.join(dir, `${STATE_FILE}-wal`), cut);
    // SQLite rebuilds its -shm index of the cut WAL on a read; the data files stay as they were.
    refusedAs(tt, dir, 'ROLLED_BACK', 'WAL cut', `${STATE_FILE}-shm`);
  },
);

t.test(
  'floatlm.commits: another state put in place, or the state deleted, is refused',
  async (tt) => {
    const dir = tmpDir();
    fill(dir);
    const other = path.join(path.dirname(dir), 'other');
    fill(other);
    // Another state's database (its own store id) beside this state's count.
    fs.copyFileSync(path.join(other, STATE_FILE), path.join(dir, STATE_FILE));
    refusedAs(tt, dir, 'ROLLED_BACK', 'another state');
    // The database deleted, the count left: refused before anything is created.
    fs.rmSync(path.join(dir, STATE_FILE));
    for (const f of [`${STATE_FILE}-wal`, `${STATE_FILE}-shm`])
      fs.rmSync(path.join(dir, f), { force: true });
    refusedAs(tt, dir, 'ROLLED_BACK', 'state deleted');
    tt.notOk(fs.existsSync(path.join(dir, STATE_FILE)), 'no empty state was made');
    // Its own count is accepted, open after open.
    const s = openStore(other);
    s.close();
    tt.match(fs.readFileSync(path.join(other, COMMITS_FILE), 'latin1'), /^\S+ \d{16}\n$/);
  },
);
