/**
 * The one error class for key and credential files: a stable `code`, the file's path, and a
 * one-line message naming what is wrong and where, for the CLI to print as is.
 */

export const KeyFileErrorCode = {
  /** The file does not exist. */
  MISSING: 'MISSING',
  /** The file exists but cannot be read (permissions of the daemon's user, a directory...). */
  UNREADABLE: 'UNREADABLE',
  /** The file is readable or writable by group or others (mode & 0o077 !== 0). */
  INSECURE: 'INSECURE',
  /** The file is not valid JSON or a field is missing or wrong. */
  MALFORMED: 'MALFORMED',
} as const;
export type KeyFileErrorCode = (typeof KeyFileErrorCode)[keyof typeof KeyFileErrorCode];

/** A key, keyring or credential file refused; `message` is one readable line. */
export class KeyFileError extends Error {
  readonly code: KeyFileErrorCode;
  readonly path: string;

  constructor(code: KeyFileErrorCode, path: string, detail: string) {
    super(`${path}: ${detail}`);
    this.name = 'KeyFileError';
    this.code = code;
    this.path = path;
  }
}
