/**
 * Two outputs of the daemon: the operator log (levelled, one line each, to stderr, as text or
 * as JSON for journald and log shippers) and the report log (JSON lines of grants, denials,
 * queue events, releases, reclaims and reaps, for usage reports), with its rotation (by size,
 * by day, on SIGHUP) and its 0600 mode kept on every file. Floods are never logged line by
 * line: callers count them instead.
 */
import {
  appendFileSync,
  chmodSync,
  closeSync,
  existsSync,
  fstatSync,
  openSync,
  readdirSync,
  renameSync,
  statSync,
  unlinkSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';

export const LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LEVELS)[number];

export const LOG_FORMATS = ['text', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export interface Logger {
  error(msg: string): void;
  warn(msg: string): void;
  info(msg: string): void;
  debug(msg: string): void;
}

/**
 * A logger writing through `write`: `time level message` lines, or with `format` 'json' one
 * object per line, `{"time":…,"level":…,"msg":…}` (journald and log shippers parse it).
 * @throws {RangeError} when level is not one of LEVELS or format not one of LOG_FORMATS
 */
export function makeLogger(
  level: string,
  write: (line: string) => void,
  format: string = 'text',
): Logger {
  const rank = LEVELS.indexOf(level as LogLevel);
  if (rank < 0) throw new RangeError(`log level must be one of ${LEVELS.join(', ')}`);
  if (!LOG_FORMATS.includes(format as LogFormat)) {
    throw new RangeError(`log format must be one of ${LOG_FORMATS.join(', ')}`);
  }
  const json = format === 'json';
  const at =
    (i: number, name: string) =>
    (msg: string): void => {
      if (i > rank) return;
      const time = new Date().toISOString();
      write(json ? JSON.stringify({ time, level: name, msg }) : `${time} ${name} ${msg}`);
    };
  return { error: at(0, 'error'), warn: at(1, 'warn'), info: at(2, 'info'), debug: at(3, 'debug') };
}

/** A logger that drops everything (tests, embedded use). */
export const silentLogger: Logger = { error() {}, warn() {}, info() {}, debug() {} };

export type ReportEvent =
  | 'grant'
  | 'deny'
  | 'queue'
  | 'dequeue'
  | 'release'
  | 'reclaim'
  | 'reap'
  | 'close'
  | 'remove'
  | 'revoke'
  | 'session'
  | 'start'
  | 'stop'
  | 'reread';

/** Sees every report event as it is written (metrics), whether or not a file records it. */
export type ReportListener = (
  event: ReportEvent,
  now: number,
  fields: Record<string, unknown>,
) => void;

export interface ReportRotation {
  /** Rotate before a flush would make the file larger than this (bytes); 0 = never. */
  maxBytes?: number;
  /** Rotate when the UTC day of the first line in the file has passed. */
  daily?: boolean;
  /** Rotated files kept (the oldest are deleted); 0 = keep all. Default 0. */
  keep?: number;
}

/** The rotated files of a report log, oldest first (`<name>.<UTC stamp>`; sortable by name). */
export function rotatedReportFiles(path: string): string[] {
  const dir = dirname(path);
  const prefix = `${basename(path)}.`;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter(
      (n) => n.startsWith(prefix) && /^\d{8}T\d{6}(\d{3})?Z(-\d+)?$/.test(n.slice(prefix.length)),
    )
    .sort()
    .map((n) => join(dir, n));
}

function stamp(now: number): string {
  return new Date(now).toISOString().replace(/[-:]/g, '').replace('.', '');
}

const DAY_MS = 86_400_000;

/**
 * JSON lines, one object per event with `t` (ISO time) and `event`. Lines are buffered and
 * written by `flush()`, which the daemon calls once per tick with its group commit. The file
 * and every rotated file are mode 0600 (whatever the umask, and even when something else
 * recreated the file); a rotated file is `<path>.<UTC time of rotation>`.
 */
export class ReportLog {
  readonly #path: string | undefined;
  readonly #rotation: Required<ReportRotation>;
  readonly #listeners: ReportListener[] = [];
  #lines: string[] = [];
  /** Bytes in the file now (kept in step with our appends; re-read at each rotation). */
  #size = 0;
  /** UTC day (ms since epoch / DAY_MS) of the first line in the current file; -1 = empty. */
  #day = -1;
  #lastNow = 0;

  /**
   * `path` undefined: a report log that records nothing (listeners still see the events).
   * @throws {RangeError} when a rotation setting is negative or not an integer
   * @throws {Error} when the file cannot be created
   */
  constructor(path: string | undefined, rotation: ReportRotation = {}) {
    for (const k of ['maxBytes', 'keep'] as const) {
      const v = rotation[k];
      if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) {
        throw new RangeError(`rotation.${k} must be a non-negative integer`);
      }
    }
    this.#rotation = {
      maxBytes: rotation.maxBytes ?? 0,
      daily: rotation.daily ?? false,
      keep: rotation.keep ?? 0,
    };
    this.#path = path;
    if (path) {
      const fd = openSync(path, 'a', 0o600);
      try {
        const st = fstatSync(fd);
        // A file made by an older floatlmd or an outside tool may be wider; tighten it.
        if ((st.mode & 0o077) !== 0) chmodSync(path, 0o600);
        this.#size = st.size;
        this.#day = st.size > 0 ? Math.floor(st.mtimeMs / DAY_MS) : -1;
      } finally {
        closeSync(fd);
      }
    }
  }

  /** The file written, or undefined. */
  get path(): string | undefined {
    return this.#path;
  }

  /**
   * Calls `listener` with every event written from now on.
   * @throws {TypeError} when listener is not a function
   */
  subscribe(listener: ReportListener): () => void {
    if (typeof listener !== 'function') throw new TypeError('listener must be a function');
    this.#listeners.push(listener);
    return () => {
      const i = this.#listeners.indexOf(listener);
      if (i >= 0) this.#listeners.splice(i, 1);
    };
  }

  write(event: ReportEvent, now: number, fields: Record<string, unknown>): void {
    for (const l of this.#listeners) l(event, now, fields);
    if (!this.#path) return;
    this.#lastNow = now;
    const line = JSON.stringify({ t: new Date(now).toISOString(), event, ...fields }, (_k, v) =>
      typeof v === 'bigint' ? v.toString() : v,
    );
    this.#lines.push(line);
  }

  flush(): void {
    if (!this.#path || this.#lines.length === 0) return;
    const text = `${this.#lines.join('\n')}\n`;
    this.#lines = [];
    const now = this.#lastNow;
    const bytes = Buffer.byteLength(text);
    const { maxBytes, daily } = this.#rotation;
    if (this.#size > 0) {
      const tooBig = maxBytes > 0 && this.#size + bytes > maxBytes;
      const newDay = daily && this.#day >= 0 && Math.floor(now / DAY_MS) > this.#day;
      if (tooBig || newDay) this.rotate(now);
    }
    // `mode` covers a file removed by an outside rotation since: it comes back 0600.
    appendFileSync(this.#path, text, { mode: 0o600 });
    if (this.#size === 0) this.#day = Math.floor(now / DAY_MS);
    this.#size += bytes;
  }

  /**
   * Writes what is buffered to the current file, then renames it to `<path>.<UTC stamp>`
   * (mode 0600 kept) and starts a new file; deletes the oldest rotated files beyond `keep`.
   * An empty file is not rotated. Returns the rotated file's path, or undefined.
   * @throws {Error} when the rename fails
   */
  rotate(now: number = Date.now()): string | undefined {
    if (!this.#path) return undefined;
    if (this.#lines.length > 0) {
      const text = `${this.#lines.join('\n')}\n`;
      this.#lines = [];
      appendFileSync(this.#path, text, { mode: 0o600 });
    }
    let size = 0;
    try {
      size = statSync(this.#path).size;
    } catch {
      // Gone (an outside rotation): nothing to rotate.
    }
    let rotated: string | undefined;
    if (size > 0) {
      rotated = `${this.#path}.${stamp(now)}`;
      for (let i = 1; existsSync(rotated); i++) rotated = `${this.#path}.${stamp(now)}-${i}`;
      renameSync(this.#path, rotated);
      chmodSync(rotated, 0o600);
    }
    closeSync(openSync(this.#path, 'a', 0o600));
    this.#size = 0;
    this.#day = -1;
    const keep = this.#rotation.keep;
    if (keep > 0) {
      const all = rotatedReportFiles(this.#path);
      for (const old of all.slice(0, Math.max(0, all.length - keep))) unlinkSync(old);
    }
    return rotated;
  }
}
