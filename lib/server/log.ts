/**
 * Two outputs of the daemon: the operator log (levelled, one line each, to stderr) and the
 * report log (JSON lines of grants, denials, queue events, releases, reclaims and reaps,
 * for usage reports). Floods are never logged line by line: callers count them instead.
 */
import { appendFileSync, closeSync, openSync } from 'node:fs';

export const LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LEVELS)[number];

export interface Logger {
  error(msg: string): void;
  warn(msg: string): void;
  info(msg: string): void;
  debug(msg: string): void;
}

/**
 * A logger writing `time level message` lines through `write`.
 * @throws {RangeError} when level is not one of LEVELS
 */
export function makeLogger(level: string, write: (line: string) => void): Logger {
  const rank = LEVELS.indexOf(level as LogLevel);
  if (rank < 0) throw new RangeError(`log level must be one of ${LEVELS.join(', ')}`);
  const at =
    (i: number, name: string) =>
    (msg: string): void => {
      if (i <= rank) write(`${new Date().toISOString()} ${name} ${msg}`);
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

/**
 * JSON lines, one object per event with `t` (ISO time) and `event`. Lines are buffered and
 * written by `flush()`, which the daemon calls once per tick with its group commit.
 */
export class ReportLog {
  readonly #path: string | undefined;
  #lines: string[] = [];

  /** `path` undefined: a report log that records nothing. */
  constructor(path: string | undefined) {
    this.#path = path;
    if (path) closeSync(openSync(path, 'a', 0o600));
  }

  write(event: ReportEvent, now: number, fields: Record<string, unknown>): void {
    if (!this.#path) return;
    const line = JSON.stringify({ t: new Date(now).toISOString(), event, ...fields }, (_k, v) =>
      typeof v === 'bigint' ? v.toString() : v,
    );
    this.#lines.push(line);
  }

  flush(): void {
    if (!this.#path || this.#lines.length === 0) return;
    const text = `${this.#lines.join('\n')}\n`;
    this.#lines = [];
    appendFileSync(this.#path, text);
  }
}
