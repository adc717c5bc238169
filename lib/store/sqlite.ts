/**
 * The embedded durable state store: one SQLite file, `<stateDir>/floatlm.db`, holding the
 * daemon's sessions, leases, queue, revoked tokens, reclaimed lease tickets and a little meta.
 *
 * Writes are group-committed: the write methods only record changes in memory, and the
 * daemon calls `commit()` once per event-loop tick, sending the replies of that tick only
 * after `commit()` returned. One transaction, one fsync, for every change of the tick.
 *
 * The store owns persistence, not meaning: it never cascades, never checks that a lease's
 * session exists, and applies changes in the order they were made.
 *
 * A state file that is not ours, damaged, or from a newer floatlm is refused with a
 * `StoreError` and left exactly as it was: a foreign file is never handed to SQLite at all
 * (its header is read by hand), and ours is checked through a read-only connection, which
 * neither checkpoints nor rolls anything back, before a writable one is opened.
 */
import { randomUUID } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { StoreError, type StoreErrorCode } from './errors.ts';
import type { StateStore } from './state.ts';

/** File name of the state database inside the state dir. */
export const STATE_FILE = 'floatlm.db';
/** `PRAGMA application_id` of every floatlm state file: ASCII "FLLM". */
export const APPLICATION_ID = 0x464c4c4d;
/** Schema version written to `PRAGMA user_version`. */
export const SCHEMA_VERSION = 2;
/** Meta keys the store manages itself; `setMeta` refuses them. */
export const RESERVED_META = ['store_id', 'clean_shutdown'] as const;

const U64_MAX = 0xffff_ffff_ffff_ffffn;
const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

/**
 * Row checksums: SQLite's quick_check looks at pages and indexes, not at what a record says
 * (one byte flipped in every page after the first served user `c:r0` for `cor0`). Every row
 * carries `sum`, a 32-bit FNV-1a over its other columns (`flm_sum`, registered on every
 * connection), kept by triggers on every insert and update, and every row is checked when
 * the file is opened.
 */
const SUMMED: Record<string, { cols: string[]; key: string[] }> = {
  sessions: {
    cols: [
      'token_id',
      'token',
      'user',
      'host',
      'vendor',
      'created',
      'expires',
      'ip',
      'port',
      'seq_floor',
      'credential',
    ],
    key: ['token_id'],
  },
  leases: {
    cols: [
      'lease_id',
      'token_id',
      'feature',
      'version',
      'count',
      'group_key',
      'granted_at',
      'ticket',
    ],
    key: ['lease_id'],
  },
  queue: {
    cols: ['token_id', 'feature', 'version', 'count', 'since', 'seq'],
    key: ['token_id', 'feature'],
  },
  revoked: { cols: ['token_id', 'expires'], key: ['token_id'] },
  reclaimed: { cols: ['lease_id', 'expires', 'why'], key: ['lease_id'] },
  meta: { cols: ['key', 'value'], key: ['key'] },
  replies: { cols: ['key', 'reply', 'ip', 'port', 'expires'], key: ['key'] },
};

const SUM_TRIGGERS = Object.entries(SUMMED)
  .map(([t, { cols, key }]) => {
    const set = `UPDATE ${t} SET sum = flm_sum(${cols.map((c) => `NEW.${c}`).join(', ')}) WHERE ${key.map((k) => `${k} = NEW.${k}`).join(' AND ')};`;
    return `CREATE TRIGGER ${t}_sum_i AFTER INSERT ON ${t} BEGIN ${set} END;
CREATE TRIGGER ${t}_sum_u AFTER UPDATE OF ${cols.join(', ')} ON ${t} BEGIN ${set} END;`;
  })
  .join('\n');

/** FNV-1a (32 bits) over the values of a row, each tagged with its type. */
function rowSum(...values: unknown[]): number {
  let h = 0x811c9dc5;
  const byte = (b: number) => {
    h ^= b & 0xff;
    h = Math.imul(h, 0x01000193);
  };
  for (const v of values) {
    if (v === null || v === undefined) byte(0);
    else if (typeof v === 'bigint' || typeof v === 'number') {
      byte(1);
      const s = String(v);
      for (let i = 0; i < s.length; i++) byte(s.charCodeAt(i));
    } else if (typeof v === 'string') {
      byte(2);
      for (let i = 0; i < v.length; i++) {
        const c = v.charCodeAt(i);
        byte(c >> 8);
        byte(c);
      }
    } else if (v instanceof Uint8Array) {
      byte(3);
      for (let i = 0; i < v.length; i++) byte(v[i]!);
    }
    byte(0xff);
  }
  return h >>> 0;
}

/** Makes `flm_sum` available on a connection (the triggers and the open check use it). */
function registerSum(db: Db): void {
  db.function('flm_sum', { deterministic: true, varargs: true, safeIntegers: true }, rowSum);
}

/** File beside the state file counting committed transactions (outside the WAL). */
export const COMMITS_FILE = 'floatlm.commits';

/**
 * A WAL cut or deleted after a crash, or an older copy of the state put back, loses commits
 * that were acknowledged. Each commit also counts itself in meta `commits`, and after it the
 * count goes to floatlm.commits, a file beside the database, outside its WAL: written (not
 * fsynced) after every commit, so it survives a kill -9 (the page cache outlives the
 * process) but, after a power loss, may lag behind, never run ahead. A state whose count is
 * below the file's has lost acknowledged commits and is refused.
 */
function checkCommits(path: string, db: Db): void {
  const counted = readCommits(join(dirname(path), COMMITS_FILE));
  if (!counted) return; // no count kept yet (a new state, or from before it was kept)
  const meta = db.prepare('SELECT value FROM meta WHERE key = ?').pluck();
  const storeId = String(meta.get('store_id') ?? '');
  if (counted.storeId !== storeId) {
    throw new StoreError(
      'ROLLED_BACK',
      path,
      `${COMMITS_FILE} counts the commits of another state (store ${counted.storeId}, this file is ${storeId}): a state file from elsewhere was put here; refusing it (remove ${COMMITS_FILE} only if you mean to serve this state)`,
    );
  }
  const outside = counted.count;
  const inside = Number((meta.get('commits') as string) ?? 0);
  if (inside < outside) {
    throw new StoreError(
      'ROLLED_BACK',
      path,
      `the state holds ${inside} commit(s) but ${outside} were acknowledged (${COMMITS_FILE}): its -wal file was cut or deleted, or an older copy was put back; refusing it (remove ${COMMITS_FILE} only if you mean to serve this older state)`,
    );
  }
}

/**
 * The count kept in floatlm.commits (`<store id> <count>`), or undefined when there is none
 * or it cannot be read (a garbled count is ignored: it must never refuse a good state).
 */
function readCommits(file: string): { storeId: string; count: number } | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'latin1');
  } catch {
    return undefined;
  }
  const m = /^(\S+) (\d{1,16})\n?$/.exec(text.replace(/ +$/, ''));
  if (!m) return undefined;
  return { storeId: m[1]!, count: Number(m[2]) };
}

/** Rows whose checksum does not match their contents, per table (empty: all match). */
function badSums(db: Db): string[] {
  const out: string[] = [];
  for (const [t, { cols }] of Object.entries(SUMMED)) {
    const n = db
      .prepare(`SELECT count(*) FROM ${t} WHERE sum IS NOT flm_sum(${cols.join(', ')})`)
      .pluck()
      .get() as number;
    if (n > 0) out.push(`${n} row(s) of ${t}`);
  }
  return out;
}

/** What schema 2 added to schema 1: replay floors and idempotency records. */
const SCHEMA_V2 = `
CREATE TABLE replies (
  key BLOB PRIMARY KEY, reply BLOB NOT NULL, ip TEXT NOT NULL, port INTEGER NOT NULL,
  expires INTEGER NOT NULL, sum INTEGER NOT NULL DEFAULT 0) STRICT;
CREATE INDEX replies_expires ON replies (expires);
${SUM_TRIGGERS}`;
const MIGRATE_V1 = `ALTER TABLE sessions ADD COLUMN seq_floor INTEGER NOT NULL DEFAULT -1;
ALTER TABLE sessions ADD COLUMN credential TEXT NOT NULL DEFAULT '';
ALTER TABLE reclaimed ADD COLUMN why INTEGER NOT NULL DEFAULT 0;
${Object.keys(SUMMED)
  .filter((t) => t !== 'replies')
  .map((t) => `ALTER TABLE ${t} ADD COLUMN sum INTEGER NOT NULL DEFAULT 0;`)
  .join('\n')}
${SCHEMA_V2}
${Object.entries(SUMMED)
  .filter(([t]) => t !== 'replies')
  .map(([t, c]) => `UPDATE ${t} SET sum = flm_sum(${c.cols.join(', ')});`)
  .join('\n')}`;

const SCHEMA = `
CREATE TABLE sessions (
  token_id INTEGER PRIMARY KEY, token BLOB NOT NULL, user TEXT NOT NULL, host TEXT NOT NULL,
  vendor TEXT NOT NULL, created INTEGER NOT NULL, expires INTEGER NOT NULL,
  ip TEXT NOT NULL, port INTEGER NOT NULL, seq_floor INTEGER NOT NULL DEFAULT -1,
  credential TEXT NOT NULL DEFAULT '', sum INTEGER NOT NULL DEFAULT 0) STRICT;
CREATE TABLE leases (
  lease_id INTEGER PRIMARY KEY, token_id INTEGER NOT NULL, feature TEXT NOT NULL,
  version TEXT NOT NULL, count INTEGER NOT NULL, group_key TEXT NOT NULL,
  granted_at INTEGER NOT NULL, ticket BLOB NOT NULL, sum INTEGER NOT NULL DEFAULT 0) STRICT;
CREATE TABLE queue (
  token_id INTEGER NOT NULL, feature TEXT NOT NULL, version TEXT NOT NULL,
  count INTEGER NOT NULL, since INTEGER NOT NULL, seq INTEGER NOT NULL,
  sum INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (token_id, feature)) STRICT, WITHOUT ROWID;
CREATE TABLE revoked (
  token_id INTEGER PRIMARY KEY, expires INTEGER NOT NULL, sum INTEGER NOT NULL DEFAULT 0) STRICT;
CREATE INDEX revoked_expires ON revoked (expires);
CREATE TABLE reclaimed (
  lease_id INTEGER PRIMARY KEY, expires INTEGER NOT NULL, why INTEGER NOT NULL DEFAULT 0,
  sum INTEGER NOT NULL DEFAULT 0) STRICT;
CREATE INDEX reclaimed_expires ON reclaimed (expires);
CREATE TABLE meta (
  key TEXT PRIMARY KEY, value TEXT NOT NULL, sum INTEGER NOT NULL DEFAULT 0) STRICT, WITHOUT ROWID;
${SCHEMA_V2}`;

/** A session (an issued token) as stored. Ids are u64. */
export interface SessionRecord {
  tokenId: bigint;
  /** The token bytes exactly as issued. */
  token: Uint8Array;
  user: string;
  host: string;
  vendor: string;
  /** ms UTC */
  created: number;
  /** ms UTC */
  expires: number;
  /** Last address the session was seen from. */
  ip: string;
  port: number;
  /** Every client seq at or below this may have been used (-1: none); see setSeqFloor. */
  seqFloor?: number;
  /** Id of the credential the session was opened with ('' when unknown). */
  credential?: string;
}

/** Why a lease ticket is burned: 0 reclaimed, released or reaped; 1 removed by an admin. */
export type ReclaimedWhy = 0 | 1;

/** A reply kept durably for the request that produced it (exactly-once across restarts). */
export interface ReplyRecord {
  reply: Uint8Array;
  /** Where the request came from: the only address the reply may go to again. */
  ip: string;
  port: number;
  /** ms UTC; the record may be flushed from then on. */
  expires: number;
}

/** A granted seat lease as stored. */
export interface LeaseRecord {
  leaseId: bigint;
  tokenId: bigint;
  feature: string;
  version: string;
  count: number;
  groupKey: string;
  /** ms UTC */
  grantedAt: number;
  /** The lease ticket bytes handed to the client. */
  ticket: Uint8Array;
}

/** A queued request; `seq` is assigned by the store and orders the queue (FIFO). */
export interface QueueRecord {
  tokenId: bigint;
  feature: string;
  version: string;
  count: number;
  /** ms UTC */
  since: number;
  seq: number;
}

/** What `load()` returns for a restart. */
export interface StoreSnapshot {
  sessions: SessionRecord[];
  leases: LeaseRecord[];
  /** Ascending `seq`: FIFO order overall, hence FIFO order within each feature. */
  queue: QueueRecord[];
  revokedCount: number;
  reclaimedCount: number;
  meta: Map<string, string>;
}

export interface OpenOptions {
  /** Open an existing state file for reading only (no lock held, no writes). Default false. */
  readonly?: boolean;
  /**
   * 'full' (default): every commit is fsynced; survives power loss and kernel crashes.
   * 'normal': survives `kill -9` of the process only (see the note at `openStore`).
   */
  durability?: 'full' | 'normal';
  /** How long to wait for a lock held by another process before LOCKED. Default 2000 ms. */
  busyTimeoutMs?: number;
  /** Upper bound on the database size; a commit that would exceed it fails (SQLITE_FULL). */
  maxBytes?: number;
}

/** Result of one `flushExpired` call. */
export interface FlushResult {
  /** Rows deleted from revoked and reclaimed together (≤ batch). */
  deleted: number;
  /** Whether expired rows remain (call again, on a later tick). */
  more: boolean;
}

type Db = Database.Database;
type Stmt = Database.Statement;

/** Rows per DELETE statement in flushExpired (the granularity of its time budget). */
const FLUSH_CHUNK = 256;
/** Rows a budgeted flushExpired starts with, and the fewest it ever tries. */
const FLUSH_START_ROWS = 64;
const FLUSH_MIN_ROWS = 16;
/** WAL pages that set off a checkpoint (SQLite's default is 1000; see openStore). */
const WAL_AUTOCHECKPOINT = 128;

function u64(name: string, v: unknown): bigint {
  if (typeof v !== 'bigint') throw new TypeError(`${name} must be a bigint`);
  if (v < 0n || v > U64_MAX) throw new RangeError(`${name} must be a u64`);
  // SQLite integers are signed 64-bit: store the same 64 bits, read them back unsigned.
  return BigInt.asIntN(64, v);
}

function fromI64(v: unknown): bigint {
  return BigInt.asUintN(64, v as bigint);
}

function str(name: string, v: unknown): string {
  if (typeof v !== 'string') throw new TypeError(`${name} must be a string`);
  return v;
}

function int(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number') throw new TypeError(`${name} must be a number`);
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    throw new RangeError(`${name} must be an integer in [${min}, ${max}]`);
  }
  return v;
}

function ms(name: string, v: unknown): number {
  return int(name, v, 0, Number.MAX_SAFE_INTEGER);
}

function bytes(name: string, v: unknown): Buffer {
  if (!(v instanceof Uint8Array)) throw new TypeError(`${name} must be a Uint8Array`);
  // A copy: the caller may reuse its buffer before the commit happens.
  return Buffer.from(v);
}

function obj(name: string, v: unknown): Record<string, unknown> {
  if (typeof v !== 'object' || v === null) throw new TypeError(`${name} must be an object`);
  return v as Record<string, unknown>;
}

function num(v: unknown): number {
  return Number(v as bigint);
}

function sqliteCode(e: unknown): string {
  return typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'string'
    ? (e as { code: string }).code
    : '';
}

/** Maps an SQLite error raised while opening or checking the file to a StoreError. */
function openError(path: string, e: unknown): StoreError {
  if (e instanceof StoreError) return e;
  const code = sqliteCode(e);
  const detail = e instanceof Error ? e.message : String(e);
  let c: StoreErrorCode = 'CANTOPEN';
  let msg = `cannot open the state file (${code || 'error'}: ${detail})`;
  if (code === 'SQLITE_NOTADB') {
    c = 'NOT_SQLITE';
    msg = 'not an SQLite database; refusing to use or replace it';
  } else if (code.startsWith('SQLITE_CORRUPT')) {
    c = 'CORRUPT';
    msg = `the state database is damaged (${detail}); refusing to use or repair it`;
  } else if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    c = 'LOCKED';
    msg = 'the state file is in use by another process (is another floatlmd running?)';
  }
  return new StoreError(c, path, msg, { cause: e });
}

/** Reads the 100-byte SQLite header by hand so a foreign file never reaches SQLite. */
function checkHeader(path: string): void {
  const fd = openSync(path, 'r');
  const h = Buffer.alloc(100);
  let n: number;
  try {
    n = readSync(fd, h, 0, 100, 0);
  } finally {
    closeSync(fd);
  }
  if (n < 100 || !h.subarray(0, 16).equals(SQLITE_MAGIC)) {
    throw new StoreError(
      'NOT_SQLITE',
      path,
      n === 0
        ? 'the file is empty, not a floatlm state database; refusing to use or replace it'
        : 'not an SQLite database; refusing to use or replace it',
    );
  }
  const appId = h.readUInt32BE(68);
  if (appId !== APPLICATION_ID) {
    throw new StoreError(
      'FOREIGN',
      path,
      `an SQLite database of another application (application_id 0x${appId.toString(16)}); ` +
        'refusing to use or replace it',
    );
  }
  // SQLite reads a short last page as zeros, so a file cut inside its last page (or cut
  // while the header still tells the old size) can pass quick_check. Without a WAL to
  // replay, a whole file is a whole number of pages and at least as long as its header says
  // (when that header field is valid: change counter == version-valid-for). With a WAL, a
  // crash in mid-checkpoint legitimately leaves the file short; recovery completes it.
  const raw = h.readUInt16BE(16);
  const pageSize = raw === 1 ? 65536 : raw;
  const size = statSync(path).size;
  let walBytes = 0;
  try {
    walBytes = statSync(`${path}-wal`).size;
  } catch {
    // no WAL
  }
  if (walBytes === 0 && pageSize >= 512) {
    const headerPages = h.readUInt32BE(24) === h.readUInt32BE(92) ? h.readUInt32BE(28) : 0;
    if (size % pageSize !== 0 || size < headerPages * pageSize) {
      throw new StoreError(
        'CORRUPT',
        path,
        `the file is truncated (${size} bytes, pages of ${pageSize}, header says ` +
          `${headerPages} pages); refusing to use or repair it`,
      );
    }
  }
}

function checkSchema(path: string, db: Db, migratable = false): void {
  const appId = db.pragma('application_id', { simple: true }) as number;
  if (appId !== APPLICATION_ID) {
    throw new StoreError(
      'FOREIGN',
      path,
      `an SQLite database of another application (application_id 0x${appId.toString(16)}); ` +
        'refusing to use or replace it',
    );
  }
  const v = db.pragma('user_version', { simple: true }) as number;
  if (v > SCHEMA_VERSION) {
    throw new StoreError(
      'NEWER_SCHEMA',
      path,
      `schema version ${v} was written by a newer floatlm (this one reads ${SCHEMA_VERSION})`,
    );
  }
  if (v < SCHEMA_VERSION && !(migratable && v === 1)) {
    throw new StoreError(
      'OLD_SCHEMA',
      path,
      `schema version ${v} cannot be read (this floatlm reads ${SCHEMA_VERSION})`,
    );
  }
}

/**
 * Read-only validation: never writes, rolls back, or checkpoints anything. A read-only
 * connection may still create an empty `-wal` and a `-shm` beside the file; when the file is
 * refused, those it created are removed again so the directory is left as it was found.
 */
function openChecked(path: string, timeout: number, readonlyOpen: boolean): Db {
  const siblings = [`${path}-wal`, `${path}-shm`].filter((p) => !existsSync(p));
  let db: Db | undefined;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true, timeout });
    registerSum(db);
    checkSchema(path, db, !readonlyOpen);
    const rows = db.pragma('quick_check') as { quick_check: string }[];
    if (rows.length !== 1 || rows[0]?.quick_check !== 'ok') {
      const first = rows[0]?.quick_check ?? 'no result';
      throw new StoreError(
        'CORRUPT',
        path,
        `integrity check failed (${first}); refusing to use or repair it`,
      );
    }
    if ((db.pragma('user_version', { simple: true }) as number) === SCHEMA_VERSION) {
      const bad = badSums(db);
      if (bad.length > 0) {
        throw new StoreError(
          'CORRUPT',
          path,
          `record contents do not match their checksums (${bad.join(', ')}); refusing to use or repair it`,
        );
      }
    }
    checkCommits(path, db);
    return db;
  } catch (e) {
    db?.close();
    for (const p of siblings) {
      try {
        unlinkSync(p);
      } catch {
        // not created after all
      }
    }
    throw openError(path, e);
  }
}

function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Creates a complete, empty state file under a temporary name and links it into place, so
 * `floatlm.db` either does not exist or is a whole, initialised database: a crash during
 * creation cannot leave a half-made file that would later be refused.
 */
function createFile(dir: string, path: string): void {
  // A journal left without its database would be replayed into a fresh one.
  for (const suffix of ['-wal', '-journal']) {
    if (existsSync(path + suffix)) {
      throw new StoreError(
        'CORRUPT',
        path,
        `${STATE_FILE}${suffix} exists without ${STATE_FILE}; move it away (state was lost)`,
      );
    }
  }
  const tmp = `${path}.new-${process.pid}-${randomUUID().slice(0, 8)}`;
  try {
    closeSync(openSync(tmp, 'wx', 0o600));
    const db = new Database(tmp);
    try {
      registerSum(db);
      db.pragma('journal_mode = WAL');
      db.transaction(() => {
        db.pragma(`application_id = ${APPLICATION_ID}`);
        db.pragma(`user_version = ${SCHEMA_VERSION}`);
        db.exec(SCHEMA);
        const put = db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)');
        put.run('store_id', randomUUID());
        put.run('clean_shutdown', '1');
      })();
    } finally {
      db.close(); // checkpoints everything into tmp and removes tmp-wal
    }
    fsyncPath(tmp);
    try {
      linkSync(tmp, path); // never clobbers: fails if another process created it first
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    fsyncPath(dir);
  } catch (e) {
    throw openError(path, e);
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone or never created
    }
  }
}

/**
 * Opens (creating if absent, unless read-only) the state store in `dir`.
 *
 * Durability: the journal is WAL and `synchronous` is FULL by default, so each commit ends
 * with an fsync of the WAL. In WAL mode NORMAL already survives `kill -9` of the process
 * (a committed transaction is in the OS page cache, which outlives the process; the crash
 * test passes with either setting), but not a power loss or kernel panic, which would lose
 * the last commits, i.e. grants already acknowledged. The brief says nothing acknowledged is
 * lost whatever happens to the host, and with one commit per event-loop tick the fsync is
 * paid once per batch of replies, not per request, so FULL is the default.
 *
 * A writable store holds an exclusive lock on the file for its lifetime, so a second daemon
 * on the same state dir fails with LOCKED instead of granting from a second copy of the
 * state. Read-only opens therefore fail with LOCKED while the daemon runs.
 *
 * @throws {StoreError} NOT_SQLITE, CORRUPT, FOREIGN, NEWER_SCHEMA, OLD_SCHEMA, LOCKED,
 *   MISSING (read-only and absent), CANTOPEN; the file is left untouched in every case
 * @throws {TypeError|RangeError} on bad options
 */
export function openStore(dir: string, options: OpenOptions = {}): Store {
  str('dir', dir);
  obj('options', options);
  const readonly = options.readonly ?? false;
  if (typeof readonly !== 'boolean') throw new TypeError('options.readonly must be a boolean');
  const durability = options.durability ?? 'full';
  if (durability !== 'full' && durability !== 'normal') {
    throw new RangeError("options.durability must be 'full' or 'normal'");
  }
  const timeout = int('options.busyTimeoutMs', options.busyTimeoutMs ?? 2000, 0, 600_000);
  const maxBytes =
    options.maxBytes === undefined
      ? undefined
      : int('options.maxBytes', options.maxBytes, 65536, Number.MAX_SAFE_INTEGER);

  const path = join(dir, STATE_FILE);
  let created = false;
  if (!existsSync(path)) {
    if (readonly) throw new StoreError('MISSING', path, 'no state file here');
    const counted = readCommits(join(dir, COMMITS_FILE));
    if (counted && counted.count > 0) {
      // Never start afresh over a state that acknowledged commits: refuse before creating.
      throw new StoreError(
        'ROLLED_BACK',
        path,
        `the state file is missing but ${counted.count} commit(s) were acknowledged (${COMMITS_FILE}); refusing to start empty (remove ${COMMITS_FILE} only if you mean to start a new state)`,
      );
    }
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw openError(path, e);
    }
    createFile(dir, path);
    created = true;
  }
  try {
    checkHeader(path);
  } catch (e) {
    throw openError(path, e);
  }
  const checked = openChecked(path, timeout, readonly);
  if (readonly) return new Store(checked, path, true, created);
  checked.close();

  let db: Db | undefined;
  try {
    db = new Database(path, { fileMustExist: true, timeout });
    registerSum(db);
    // Before the first access: hold the lock for life and keep the WAL index in heap memory.
    db.pragma('locking_mode = EXCLUSIVE');
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal') throw new Error(`journal_mode is ${String(mode)}, not wal`);
    db.pragma(`synchronous = ${durability === 'full' ? 'FULL' : 'NORMAL'}`);
    // The default 2 MB page cache is smaller than a busy site's tables; misses cost reads.
    db.pragma('cache_size = -32768');
    // A checkpoint runs inside whichever commit takes the WAL past this many pages, and
    // costs about 1 ms per 32 pages on a plain disk: SQLite's 1000 stalled the event loop
    // for 20–60 ms; small and frequent checkpoints keep each stall short.
    db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT}`);
    if (maxBytes !== undefined) {
      const pageSize = db.pragma('page_size', { simple: true }) as number;
      db.pragma(`max_page_count = ${Math.floor(maxBytes / pageSize)}`);
    }
    checkSchema(path, db, true);
    const open = db;
    if ((open.pragma('user_version', { simple: true }) as number) === 1) {
      // Schema 1 (floatlm 0.1.0 before replay floors): add what 2 has, in one transaction.
      open
        .transaction(() => {
          open.exec(MIGRATE_V1);
          open.pragma(`user_version = ${SCHEMA_VERSION}`);
        })
        .immediate();
    }
    return new Store(db, path, false, created);
  } catch (e) {
    db?.close();
    throw openError(path, e);
  }
}

/** The state store; obtain one with `openStore`. */
export class Store implements StateStore {
  /** Full path of the state file. */
  /** The StateStore backend name. */
  readonly backend = 'sqlite' as const;
  readonly path: string;
  readonly readonly: boolean;
  /** True when this open created the file. */
  readonly created: boolean;
  /**
   * Whether the previous writer closed the store cleanly (true for a new file). False after
   * a crash or `kill -9`: the daemon may want a longer reclaim grace then.
   */
  readonly cleanShutdown: boolean;
  /** Random id made when the file was created; identifies this state across restarts. */
  readonly storeId: string;

  readonly #db: Db;
  #closed = false;
  #ops: (() => void)[] = [];
  readonly #pendingRevoked = new Map<bigint, number>();
  /** Lease id → why, of burned tickets not yet committed. */
  readonly #pendingReclaimed = new Map<bigint, number>();
  readonly #pendingReplies = new Map<string, ReplyRecord>();
  #nextSeq = 1;
  #fault: Error | undefined;
  /** Committed transactions (meta `commits`), and the file counting them outside the WAL. */
  #commits = 0;
  #commitsFd: number | undefined;
  /** Pending ops that are replay-floor raises (pendingForeground leaves them out). */
  #background = 0;
  readonly #s: Record<string, Stmt> = {};
  readonly #applyAll: Database.Transaction<() => void>;
  readonly #flush: Database.Transaction<(now: number, batch: number, deadline: number) => number>;
  /** The connection's synchronous level, restored after a flush (which runs at NORMAL). */
  #sync: Stmt | undefined;
  #syncNormal: Stmt | undefined;
  /** Rows the next budgeted flushExpired deletes (adapted to what rows cost here). */
  #flushRows = FLUSH_START_ROWS;

  /** @internal use openStore */
  constructor(db: Db, path: string, readonly: boolean, created: boolean) {
    this.#db = db;
    this.path = path;
    this.readonly = readonly;
    this.created = created;
    const meta = db.prepare('SELECT value FROM meta WHERE key = ?').pluck();
    this.storeId = String(meta.get('store_id') ?? '');
    this.#commits = Number(meta.get('commits') ?? 0) || 0;
    this.cleanShutdown = meta.get('clean_shutdown') === '1';
    const maxSeq = db.prepare('SELECT max(seq) FROM queue').pluck().get();
    this.#nextSeq = (typeof maxSeq === 'number' ? maxSeq : 0) + 1;

    const p = (name: string, sql: string, safe = false): void => {
      this.#s[name] = db.prepare(sql).safeIntegers(safe);
    };
    p('isRevoked', 'SELECT 1 FROM revoked WHERE token_id = ?');
    p('isReclaimed', 'SELECT why FROM reclaimed WHERE lease_id = ?');
    p('getReply', 'SELECT reply, ip, port, expires FROM replies WHERE key = ?');
    p('sessions', 'SELECT * FROM sessions', true);
    p('leases', 'SELECT * FROM leases', true);
    p('queue', 'SELECT * FROM queue ORDER BY seq', true);
    p('revokedCount', 'SELECT count(*) FROM revoked');
    p('reclaimedCount', 'SELECT count(*) FROM reclaimed');
    p('meta', 'SELECT key, value FROM meta');
    p(
      'moreExpired',
      'SELECT EXISTS (SELECT 1 FROM revoked WHERE expires <= ?) ' +
        'OR EXISTS (SELECT 1 FROM reclaimed WHERE expires <= ?) ' +
        'OR EXISTS (SELECT 1 FROM replies WHERE expires <= ?)',
    );

    // Writes need a writable connection; a read-only store never prepares them.
    this.#applyAll = db.transaction(() => {
      for (const op of this.#ops) op();
    });
    this.#flush = db.transaction((now: number, batch: number, deadline: number): number => {
      let n = 0;
      for (const st of [this.#s.flushRevoked!, this.#s.flushReclaimed!, this.#s.flushReplies!]) {
        for (;;) {
          const want = Math.min(FLUSH_CHUNK, batch - n);
          if (want <= 0) return n;
          // The row's own expiry is checked again: a damaged index entry deletes nothing live.
          const got = st.run(now, want, now).changes;
          n += got;
          if (got < want) break; // this table has nothing more to flush
          if (performance.now() >= deadline) return n;
        }
      }
      return n;
    });
    if (readonly) return;
    p(
      'putSession',
      'INSERT OR REPLACE INTO sessions (token_id, token, user, host, vendor, created, expires, ' +
        'ip, port, seq_floor, credential) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    );
    p('touchSessionAddr', 'UPDATE sessions SET ip = ?, port = ? WHERE token_id = ?');
    p('setSeqFloor', 'UPDATE sessions SET seq_floor = max(seq_floor, ?) WHERE token_id = ?');
    p(
      'putReply',
      'INSERT OR REPLACE INTO replies (key, reply, ip, port, expires) VALUES (?, ?, ?, ?, ?)',
    );
    p(
      'flushReplies',
      'DELETE FROM replies WHERE key IN ' +
        '(SELECT key FROM replies WHERE expires <= ? ORDER BY expires LIMIT ?) AND expires <= ?',
    );
    p('deleteSession', 'DELETE FROM sessions WHERE token_id = ?');
    p(
      'putLease',
      'INSERT OR REPLACE INTO leases (lease_id, token_id, feature, version, count, group_key, ' +
        'granted_at, ticket) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
    p('deleteLease', 'DELETE FROM leases WHERE lease_id = ?');
    p(
      'enqueue',
      'INSERT INTO queue (token_id, feature, version, count, since, seq) ' +
        'VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (token_id, feature) DO UPDATE SET ' +
        'version = excluded.version, count = excluded.count, since = excluded.since',
    );
    p('dequeue', 'DELETE FROM queue WHERE token_id = ? AND feature = ?');
    p(
      'revoke',
      'INSERT INTO revoked (token_id, expires) VALUES (?, ?) ON CONFLICT (token_id) ' +
        'DO UPDATE SET expires = max(expires, excluded.expires)',
    );
    p(
      'markReclaimed',
      'INSERT INTO reclaimed (lease_id, expires, why) VALUES (?, ?, ?) ON CONFLICT (lease_id) ' +
        'DO UPDATE SET expires = max(expires, excluded.expires), why = max(why, excluded.why)',
    );
    p('setMeta', 'INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)');
    p(
      'flushRevoked',
      'DELETE FROM revoked WHERE token_id IN ' +
        '(SELECT token_id FROM revoked WHERE expires <= ? ORDER BY expires LIMIT ?) AND expires <= ?',
    );
    p(
      'flushReclaimed',
      'DELETE FROM reclaimed WHERE lease_id IN ' +
        '(SELECT lease_id FROM reclaimed WHERE expires <= ? ORDER BY expires LIMIT ?) AND expires <= ?',
    );
    const level = db.pragma('synchronous', { simple: true }) as number;
    this.#sync = db.prepare(`PRAGMA synchronous = ${level}`);
    this.#syncNormal = db.prepare('PRAGMA synchronous = NORMAL');
    // Durable before the daemon serves anything: a crash from here on reads as unclean.
    this.#s.setMeta!.run('clean_shutdown', '0');
  }

  #live(): void {
    if (this.#closed) throw new StoreError('CLOSED', this.path, 'the store is closed');
  }

  #queue(name: string, args: unknown[]): void {
    const st = this.#s[name]!;
    this.#ops.push(() => st.run(args));
  }

  /** Records a revocation or reclaim: queued, and visible to isRevoked/isReclaimed at once. */
  #mark(name: 'revoke', idName: string, id: bigint, expires: number): void {
    this.#write();
    const i64 = u64(idName, id);
    ms('expires', expires);
    this.#queue(name, [i64, expires]);
    this.#pendingRevoked.set(id, Math.max(expires, this.#pendingRevoked.get(id) ?? 0));
  }

  #write(): void {
    this.#live();
    if (this.readonly) throw new StoreError('READONLY', this.path, 'the store is read-only');
  }

  /**
   * Records a new or replaced session (by tokenId).
   * @throws {TypeError|RangeError} on a malformed record; {StoreError} READONLY, CLOSED
   */
  putSession(s: SessionRecord): void {
    this.#write();
    obj('session', s);
    const args = [
      u64('session.tokenId', s.tokenId),
      bytes('session.token', s.token),
      str('session.user', s.user),
      str('session.host', s.host),
      str('session.vendor', s.vendor),
      ms('session.created', s.created),
      ms('session.expires', s.expires),
      str('session.ip', s.ip),
      int('session.port', s.port, 0, 65535),
      int('session.seqFloor', s.seqFloor ?? -1, -1, 0xffff_ffff),
      str('session.credential', s.credential ?? ''),
    ];
    this.#queue('putSession', args);
  }

  /**
   * Records a session's new last address; no effect if the session is not stored.
   * @throws {TypeError|RangeError} on bad arguments; {StoreError} READONLY, CLOSED
   */
  touchSessionAddr(tokenId: bigint, ip: string, port: number): void {
    this.#write();
    const id = u64('tokenId', tokenId);
    str('ip', ip);
    int('port', port, 0, 65535);
    this.#queue('touchSessionAddr', [ip, port, id]);
  }

  /**
   * Raises a session's replay floor: after a restart every client seq at or below it counts
   * as already seen, so captured datagrams cannot be acted on again. Never lowers it.
   * @throws {TypeError|RangeError} on bad arguments; {StoreError} READONLY, CLOSED
   */
  setSeqFloor(tokenId: bigint, floor: number): void {
    this.#write();
    const id = u64('tokenId', tokenId);
    int('floor', floor, 0, 0xffff_ffff);
    this.#queue('setSeqFloor', [floor, id]);
    this.#background++;
  }

  /**
   * Keeps a reply for the request `key` names (the caller's idempotency key), to be sent
   * again, to the same address only, for a retransmission until `expires`. Pending until
   * commit, and visible to getReply at once.
   * @throws {TypeError|RangeError} on a malformed record; {StoreError} READONLY, CLOSED
   */
  putReply(key: Uint8Array, r: ReplyRecord): void {
    this.#write();
    obj('record', r);
    const k = bytes('key', key);
    const args = [
      k,
      bytes('record.reply', r.reply),
      str('record.ip', r.ip),
      int('record.port', r.port, 0, 65535),
      ms('record.expires', r.expires),
    ];
    this.#queue('putReply', args);
    this.#pendingReplies.set(k.toString('latin1'), {
      reply: new Uint8Array(r.reply),
      ip: r.ip,
      port: r.port,
      expires: r.expires,
    });
  }

  /**
   * The reply kept for `key` (pending or committed) if its record has not expired at `now`.
   * @throws {TypeError|RangeError} on bad arguments; {StoreError} CLOSED
   */
  getReply(key: Uint8Array, now: number): ReplyRecord | undefined {
    this.#live();
    const k = bytes('key', key);
    const pending = this.#pendingReplies.get(k.toString('latin1'));
    const r =
      pending ??
      (this.#s.getReply!.get(k) as
        | { reply: Buffer; ip: string; port: number; expires: number }
        | undefined);
    if (!r || r.expires <= now) return undefined;
    return { reply: new Uint8Array(r.reply), ip: r.ip, port: r.port, expires: r.expires };
  }

  /**
   * Removes a session (its leases and queue entries are the caller's to remove).
   * @throws {TypeError|RangeError} on a bad id; {StoreError} READONLY, CLOSED
   */
  deleteSession(tokenId: bigint): void {
    this.#write();
    const id = u64('tokenId', tokenId);
    this.#queue('deleteSession', [id]);
  }

  /**
   * Records a new or replaced lease (by leaseId).
   * @throws {TypeError|RangeError} on a malformed record; {StoreError} READONLY, CLOSED
   */
  putLease(l: LeaseRecord): void {
    this.#write();
    obj('lease', l);
    const args = [
      u64('lease.leaseId', l.leaseId),
      u64('lease.tokenId', l.tokenId),
      str('lease.feature', l.feature),
      str('lease.version', l.version),
      int('lease.count', l.count, 1, 65535),
      str('lease.groupKey', l.groupKey),
      ms('lease.grantedAt', l.grantedAt),
      bytes('lease.ticket', l.ticket),
    ];
    this.#queue('putLease', args);
  }

  /**
   * Removes a lease.
   * @throws {TypeError|RangeError} on a bad id; {StoreError} READONLY, CLOSED
   */
  deleteLease(leaseId: bigint): void {
    this.#write();
    const id = u64('leaseId', leaseId);
    this.#queue('deleteLease', [id]);
  }

  /**
   * Appends a queue entry behind every other; if (tokenId, feature) is already queued it
   * keeps its place and takes the new version, count and since. Returns the entry's seq when
   * newly appended (for an existing entry the stored seq is kept and the returned one unused).
   * @throws {TypeError|RangeError} on a malformed entry; {StoreError} READONLY, CLOSED
   */
  enqueue(e: Omit<QueueRecord, 'seq'>): number {
    this.#write();
    obj('entry', e);
    const seq = this.#nextSeq;
    const args = [
      u64('entry.tokenId', e.tokenId),
      str('entry.feature', e.feature),
      str('entry.version', e.version),
      int('entry.count', e.count, 1, 65535),
      ms('entry.since', e.since),
      seq,
    ];
    this.#nextSeq++;
    this.#queue('enqueue', args);
    return seq;
  }

  /**
   * Removes a queue entry.
   * @throws {TypeError|RangeError} on bad arguments; {StoreError} READONLY, CLOSED
   */
  dequeue(tokenId: bigint, feature: string): void {
    this.#write();
    const id = u64('tokenId', tokenId);
    str('feature', feature);
    this.#queue('dequeue', [id, feature]);
  }

  /**
   * Records a revoked token, kept until `expires` (ms; the token's own expiry). Revoking
   * again keeps the later expiry.
   * @throws {TypeError|RangeError} on bad arguments; {StoreError} READONLY, CLOSED
   */
  revoke(tokenId: bigint, expires: number): void {
    this.#mark('revoke', 'tokenId', tokenId, expires);
  }

  /**
   * Records that a lease ticket has been reclaimed, kept until `expires` (ms).
   * @throws {TypeError|RangeError} on bad arguments; {StoreError} READONLY, CLOSED
   */
  markReclaimed(leaseId: bigint, expires: number, why: ReclaimedWhy = 0): void {
    this.#write();
    const id = u64('leaseId', leaseId);
    ms('expires', expires);
    if (why !== 0 && why !== 1) throw new RangeError('why must be 0 or 1');
    this.#queue('markReclaimed', [id, expires, why]);
    const had = this.#pendingReclaimed.get(leaseId);
    this.#pendingReclaimed.set(leaseId, Math.max(why, had ?? 0));
  }

  /**
   * Sets a meta value (e.g. a site or daemon identity).
   * @throws {TypeError} on non-strings; {RangeError} for a RESERVED_META key;
   *   {StoreError} READONLY, CLOSED
   */
  setMeta(key: string, value: string): void {
    this.#write();
    str('key', key);
    str('value', value);
    if ((RESERVED_META as readonly string[]).includes(key)) {
      throw new RangeError(`key ${key} is managed by the store`);
    }
    this.#queue('setMeta', [key, value]);
  }

  /**
   * Drops every change recorded and not committed (after a failed commit: the daemon undoes
   * them in memory too, so nothing is kept that no client was told of). Returns how many.
   * @throws {StoreError} CLOSED
   */
  discardPending(): number {
    this.#live();
    const n = this.#ops.length;
    this.#ops = [];
    this.#background = 0;
    this.#pendingRevoked.clear();
    this.#pendingReclaimed.clear();
    this.#pendingReplies.clear();
    return n;
  }

  /**
   * Whether the state file takes a write now: one small transaction of its own, at the
   * connection's durability (used to find the end of a disk fault). Pending changes are not
   * touched. Never throws: false on any error.
   */
  probe(now: number): boolean {
    if (this.#closed || this.readonly || this.#fault) return false;
    try {
      this.#db.transaction(() => this.#s.setMeta!.run('probe', String(now))).immediate();
      return true;
    } catch {
      return false;
    }
  }

  /** Writes the commit count to floatlm.commits (best effort: a lagging count is harmless). */
  #countOutside(): void {
    try {
      const file = join(dirname(this.path), COMMITS_FILE);
      // Opened without truncating: an emptied file after a crash would hide a rollback.
      if (this.#commitsFd === undefined) {
        if (!existsSync(file)) closeSync(openSync(file, 'wx', 0o600));
        this.#commitsFd = openSync(file, 'r+');
      }
      // Fixed width, written in place: the file is never shorter or half old, half new.
      const b = Buffer.from(
        `${this.storeId} ${String(this.#commits).padStart(16, '0')}\n`,
        'latin1',
      );
      writeSync(this.#commitsFd, b, 0, b.length, 0);
    } catch {
      // A full disk or the like: the count lags, which never refuses a good state.
    }
  }

  /**
   * Fault injection for tests of what a filesystem cannot produce on demand: while set,
   * every commit throws `error` (nothing is applied) and every probe fails. `undefined`
   * clears it.
   */
  injectFault(error: Error | undefined): void {
    if (error !== undefined && !(error instanceof Error))
      throw new TypeError('error must be an Error or undefined');
    this.#fault = error;
  }

  /** Number of changes recorded and not yet committed. */
  pending(): number {
    return this.#ops.length;
  }

  /**
   * Pending changes a reply may have to wait for: all but replay-floor raises, which are
   * reserved ahead and need not delay anything (the daemon waits for one only when a seq
   * passes the committed floor).
   */
  pendingForeground(): number {
    return this.#ops.length - this.#background;
  }

  /**
   * Applies every pending change in one transaction, in the order they were made, and makes
   * it durable; returns how many were applied (0: nothing to do, no disk access). On failure
   * nothing is applied, the changes stay pending (a retry may succeed after a transient
   * error such as a full disk), and the error propagates: send no reply that depends on them.
   * @throws the SQLite error (e.g. SQLITE_FULL, SQLITE_IOERR); {StoreError} CLOSED
   */
  commit(): number {
    this.#live();
    const n = this.#ops.length;
    if (n === 0) return 0;
    if (this.#fault) throw this.#fault;
    const commits = this.#commits + 1;
    this.#ops.push(() => this.#s.setMeta!.run('commits', String(commits)));
    try {
      this.#applyAll.immediate();
    } catch (e) {
      this.#ops.pop();
      throw e;
    }
    this.#commits = commits;
    this.#countOutside();
    this.#ops = [];
    this.#background = 0;
    this.#pendingRevoked.clear();
    this.#pendingReclaimed.clear();
    this.#pendingReplies.clear();
    return n;
  }

  /**
   * Whether the token is revoked, committed or pending (regardless of the stored expiry).
   * @throws {TypeError|RangeError} on a bad id; {StoreError} CLOSED
   */
  isRevoked(tokenId: bigint): boolean {
    this.#live();
    const id = u64('tokenId', tokenId);
    if (this.#pendingRevoked.has(tokenId)) return true;
    return this.#s.isRevoked!.get(id) !== undefined;
  }

  /**
   * Whether the lease ticket was reclaimed already, committed or pending.
   * @throws {TypeError|RangeError} on a bad id; {StoreError} CLOSED
   */
  isReclaimed(leaseId: bigint): boolean {
    return this.reclaimedWhy(leaseId) !== undefined;
  }

  /**
   * Why the lease's ticket is burned (0 reclaimed or released, 1 removed by an admin),
   * committed or pending; undefined when it is not.
   * @throws {TypeError|RangeError} on a bad id; {StoreError} CLOSED
   */
  reclaimedWhy(leaseId: bigint): ReclaimedWhy | undefined {
    this.#live();
    const id = u64('leaseId', leaseId);
    const row = this.#s.isReclaimed!.pluck().get(id) as number | undefined;
    const pending = this.#pendingReclaimed.get(leaseId);
    if (row === undefined && pending === undefined) return undefined;
    return Math.max(row ?? 0, pending ?? 0) as ReclaimedWhy;
  }

  /**
   * Deletes at most `batch` revoked and reclaimed rows with `expires <= now`, oldest first, in
   * one small transaction of its own (pending changes are not touched), in chunks of 256
   * rows. With `budgetMs` (for a caller on an event loop) it stops after the first chunk that
   * ends past that many milliseconds, and sizes each call's rows from what the last call's
   * cost with its commit, so the whole call stays near the budget whether the rows share
   * pages or lie scattered. Indexed: the cost is proportional to the rows deleted, not to
   * the table size; call it again (e.g. once per tick) while `more`.
   *
   * The transaction commits at `synchronous = NORMAL` (no fsync of its own): losing a flush
   * to a power cut only means flushing again, and the next ordinary commit's fsync covers it,
   * the WAL being written in order.
   * @throws {TypeError|RangeError} on bad arguments; {StoreError} READONLY, CLOSED
   */
  flushExpired(now: number, batch: number, budgetMs = Number.POSITIVE_INFINITY): FlushResult {
    this.#write();
    ms('now', now);
    int('batch', batch, 1, 1_000_000);
    if (!(budgetMs > 0)) throw new RangeError('budgetMs must be > 0');
    if (this.#fault) throw this.#fault;
    const budgeted = budgetMs !== Number.POSITIVE_INFINITY;
    const rows = budgeted ? Math.min(batch, this.#flushRows) : batch;
    const start = performance.now();
    this.#syncNormal!.run();
    let deleted: number;
    try {
      deleted = this.#flush.immediate(now, rows, start + budgetMs);
    } finally {
      this.#sync!.run();
    }
    if (budgeted && deleted > 0) {
      // What a row costs depends on how its pages are spread, and the commit (and any WAL
      // checkpoint it sets off) comes after the deadline check: aim the next call's rows at
      // the budget from this call's whole time, growing at most twofold per call.
      const took = Math.max(performance.now() - start, 0.05);
      const next = Math.round((deleted * budgetMs) / took);
      this.#flushRows = Math.max(FLUSH_MIN_ROWS, Math.min(next, 2 * rows, 1_000_000));
    }
    const more = this.#s.moreExpired!.pluck().get(now, now, now) === 1;
    return { deleted, more };
  }

  /**
   * The committed state, for a restart; pending changes are committed first. With
   * `{ sessions: false }` the snapshot's sessions are left empty: read them with
   * `eachSession` instead.
   * @throws the SQLite error of that commit; {StoreError} CLOSED
   */
  load(opts: { sessions?: boolean } = {}): StoreSnapshot {
    if (!this.readonly) this.commit();
    this.#live();
    const sessions = opts.sessions === false ? [] : [...this.eachSession()];
    const leases = (this.#s.leases!.all() as Record<string, unknown>[]).map((r) => ({
      leaseId: fromI64(r.lease_id),
      tokenId: fromI64(r.token_id),
      feature: r.feature as string,
      version: r.version as string,
      count: num(r.count),
      groupKey: r.group_key as string,
      grantedAt: num(r.granted_at),
      ticket: new Uint8Array(r.ticket as Buffer),
    }));
    const queue = (this.#s.queue!.all() as Record<string, unknown>[]).map((r) => ({
      tokenId: fromI64(r.token_id),
      feature: r.feature as string,
      version: r.version as string,
      count: num(r.count),
      since: num(r.since),
      seq: num(r.seq),
    }));
    const meta = new Map<string, string>();
    for (const r of this.#s.meta!.all() as { key: string; value: string }[]) {
      meta.set(r.key, r.value);
    }
    return {
      sessions,
      leases,
      queue,
      revokedCount: this.#s.revokedCount!.pluck().get() as number,
      reclaimedCount: this.#s.reclaimedCount!.pluck().get() as number,
      meta,
    };
  }

  /**
   * The committed sessions, one row at a time: a restart over a million sessions need not
   * hold every row at once (that doubled the daemon's memory, and the allocator kept it).
   * Iterate to the end (or break) before any other call on this store: the connection is
   * busy meanwhile.
   * @throws {StoreError} CLOSED
   */
  *eachSession(): IterableIterator<SessionRecord> {
    this.#live();
    for (const r of this.#s.sessions!.iterate() as IterableIterator<Record<string, unknown>>) {
      yield {
        tokenId: fromI64(r.token_id),
        token: new Uint8Array(r.token as Buffer),
        user: r.user as string,
        host: r.host as string,
        vendor: r.vendor as string,
        created: num(r.created),
        expires: num(r.expires),
        ip: r.ip as string,
        port: num(r.port),
        seqFloor: num(r.seq_floor),
        credential: r.credential as string,
      };
    }
  }

  /**
   * Commits what is pending, marks the shutdown clean and closes the file. Idempotent. If the
   * final commit fails the file is still closed (not marked clean) and the error propagates.
   * @throws the SQLite error of the final commit
   */
  close(): void {
    if (this.#closed) return;
    try {
      if (!this.readonly) {
        this.#ops.push(() => this.#s.setMeta!.run('clean_shutdown', '1'));
        this.commit();
      }
    } finally {
      this.#closed = true;
      this.#ops = [];
      this.#db.close();
      if (this.#commitsFd !== undefined) closeSync(this.#commitsFd);
    }
  }
}
