/**
 * Store errors: the one exception type the durable state layer throws for a state file it
 * refuses or cannot use. Every case has a stable `code` so the daemon can print one readable
 * line and exit with a specific status, and so tests can tell the cases apart.
 */

/** Stable codes for every way opening or using the state file can fail. */
export const StoreErrorCode = {
  /** The file exists but is not an SQLite database (wrong magic, too short). */
  NOT_SQLITE: 'NOT_SQLITE',
  /** An SQLite file of ours that fails its integrity check (truncated, damaged). */
  CORRUPT: 'CORRUPT',
  /** A healthy SQLite database that belongs to some other application. */
  FOREIGN: 'FOREIGN',
  /** Written by a newer floatlm: its schema version is higher than this code knows. */
  NEWER_SCHEMA: 'NEWER_SCHEMA',
  /** Ours, but a schema version this code cannot read or migrate. */
  OLD_SCHEMA: 'OLD_SCHEMA',
  /** Another process holds the state file (a second daemon on the same state dir). */
  LOCKED: 'LOCKED',
  /** Read-only open of a state file that does not exist. */
  MISSING: 'MISSING',
  /** The file or its directory cannot be opened or created (permissions, I/O). */
  CANTOPEN: 'CANTOPEN',
  /** A write method called on a store opened read-only. */
  READONLY: 'READONLY',
  /** The state lacks commits that were acknowledged (a cut or deleted WAL, an old copy). */
  ROLLED_BACK: 'ROLLED_BACK',
  /** Any method called after close(). */
  CLOSED: 'CLOSED',
} as const;

export type StoreErrorCode = (typeof StoreErrorCode)[keyof typeof StoreErrorCode];

/** Raised for a state file the store refuses or cannot use; `message` names the file. */
export class StoreError extends Error {
  readonly code: StoreErrorCode;
  /** The state file concerned. */
  readonly path: string;

  constructor(code: StoreErrorCode, path: string, message: string, options?: { cause?: unknown }) {
    // One line whatever SQLite said: the daemon prints it as is.
    super(`${code}: ${path}: ${message.replace(/\s+/g, ' ').trim()}`, options);
    this.name = 'StoreError';
    this.code = code;
    this.path = path;
  }
}
