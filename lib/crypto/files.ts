/**
 * The daemon keys file (server keyring, credential keys, admin keys) and the client
 * credential file: load with refusal of missing, malformed or group/other-accessible files,
 * and atomic 0600 writes (DEVELOPERS.md "Keys").
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { KeyFileError, KeyFileErrorCode } from './errors.ts';
import { KEY_LENGTH, randomBytes } from './hmac.ts';
import { type Keyring, keyringFromJSON } from './keyring.ts';

/** Everything the daemon's keys file holds. */
export interface DaemonKeys {
  keyring: Keyring;
  /** Credential keys by id (`vendor` or `vendor/user`), 32 bytes each. */
  credentials: Map<string, Uint8Array>;
  /** Admin keys by id, 32 bytes each. */
  admin: Map<string, Uint8Array>;
  /** Vendors' Ed25519 public keys by vendor name, for license lines (empty when none). */
  vendors?: Map<string, Uint8Array>;
  /** Caps of credentials that carry them (`maxSessions`, `maxSeats` in the keys file). */
  caps?: Map<string, CredentialCaps>;
}

/**
 * What the sessions opened with one credential may hold together: a vendor-wide credential
 * is shared by every client of the vendor, so its caps bound what anyone holding it can take.
 */
export interface CredentialCaps {
  /** Live sessions. */
  sessions?: number;
  /** Seats held (all features). */
  seats?: number;
}

/** A client's credential file. */
export interface ClientCredential {
  /** `vendor` or `vendor/user`. */
  id: string;
  key: Uint8Array;
  /** `host:port` of each server to try, in order. */
  servers: string[];
}

const HEX64 = /^[0-9a-fA-F]{64}$/;
/** Credential and admin ids: printable, no spaces, at most 64 bytes (the wire's cap). */
const KEY_ID = /^[A-Za-z0-9._-]{1,64}(\/[A-Za-z0-9._@-]{1,64})?$/;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Reads a key file after checking it exists, is a regular file and is not accessible by
 * group or others; returns its parsed JSON.
 * @throws {KeyFileError} MISSING, UNREADABLE, INSECURE, MALFORMED (not JSON)
 */
export function readKeyFileJSON(file: string): unknown {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new KeyFileError(KeyFileErrorCode.MISSING, file, 'no such file');
    throw new KeyFileError(KeyFileErrorCode.UNREADABLE, file, `cannot stat (${code ?? e})`);
  }
  if (!st.isFile()) throw new KeyFileError(KeyFileErrorCode.UNREADABLE, file, 'not a regular file');
  if ((st.mode & 0o077) !== 0) {
    const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
    throw new KeyFileError(
      KeyFileErrorCode.INSECURE,
      file,
      `mode ${mode} lets group or others access it; run chmod 600`,
    );
  }
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new KeyFileError(KeyFileErrorCode.UNREADABLE, file, `cannot read (${code ?? e})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new KeyFileError(
      KeyFileErrorCode.MALFORMED,
      file,
      `not valid JSON (${(e as Error).message})`,
    );
  }
}

/**
 * Writes `text` to `file` with mode 0600 atomically: a temporary file beside it, fsync,
 * rename. A reader sees the old file or the new one, never a partial one.
 * @throws {Error} the fs error when the directory is not writable
 */
export function writeFileAtomic0600(file: string, text: string): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  const fd = fs.openSync(tmp, 'wx', 0o600);
  try {
    fs.writeFileSync(fd, text);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  // The umask cannot widen 0600, but an inherited ACL might: set it explicitly.
  fs.chmodSync(tmp, 0o600);
  fs.renameSync(tmp, file);
}

function parseKeyList(value: unknown, file: string, where: string): Map<string, Uint8Array> {
  const bad = (field: string, what: string): KeyFileError =>
    new KeyFileError(KeyFileErrorCode.MALFORMED, file, `${field}: ${what}`);
  const out = new Map<string, Uint8Array>();
  if (value === undefined) return out;
  if (!Array.isArray(value)) throw bad(where, 'must be an array');
  value.forEach((k: unknown, i: number) => {
    const at = `${where}[${i}]`;
    if (!isRecord(k)) throw bad(at, 'must be an object');
    if (typeof k.id !== 'string' || !KEY_ID.test(k.id)) {
      throw bad(`${at}.id`, 'must be "name" or "name/user" (letters, digits, . _ -; ≤ 64 each)');
    }
    if (out.has(k.id)) throw bad(`${at}.id`, `"${k.id}" repeats`);
    if (typeof k.key !== 'string' || !HEX64.test(k.key))
      throw bad(`${at}.key`, 'must be 64 hex digits');
    out.set(k.id, new Uint8Array(Buffer.from(k.key, 'hex')));
  });
  return out;
}

function parseVendorList(value: unknown, file: string): Map<string, Uint8Array> {
  const bad = (field: string, what: string): KeyFileError =>
    new KeyFileError(KeyFileErrorCode.MALFORMED, file, `${field}: ${what}`);
  const out = new Map<string, Uint8Array>();
  if (value === undefined) return out;
  if (!Array.isArray(value)) throw bad('vendors', 'must be an array');
  value.forEach((v: unknown, i: number) => {
    const at = `vendors[${i}]`;
    if (!isRecord(v)) throw bad(at, 'must be an object');
    if (typeof v.name !== 'string' || v.name === '')
      throw bad(`${at}.name`, 'must be a non-empty string');
    if (out.has(v.name)) throw bad(`${at}.name`, `"${v.name}" repeats`);
    if (typeof v.publicKey !== 'string' || !HEX64.test(v.publicKey)) {
      throw bad(`${at}.publicKey`, 'must be 64 hex digits (an Ed25519 public key)');
    }
    out.set(v.name, new Uint8Array(Buffer.from(v.publicKey, 'hex')));
  });
  return out;
}

/**
 * Parses the JSON value of a daemon keys file.
 * @throws {KeyFileError} MALFORMED naming the field
 */
export function parseDaemonKeys(value: unknown, file = '<keys>'): DaemonKeys {
  if (!isRecord(value))
    throw new KeyFileError(KeyFileErrorCode.MALFORMED, file, 'must be a JSON object');
  if (value.version !== 1)
    throw new KeyFileError(KeyFileErrorCode.MALFORMED, file, 'version: must be 1');
  if (value.server === undefined) {
    throw new KeyFileError(
      KeyFileErrorCode.MALFORMED,
      file,
      'server: missing (the server keyring)',
    );
  }
  return {
    keyring: keyringFromJSON(value.server, file, 'server'),
    credentials: parseKeyList(value.credentials, file, 'credentials'),
    admin: parseKeyList(value.admin, file, 'admin'),
    vendors: parseVendorList(value.vendors, file),
    caps: parseCaps(value.credentials, file),
  };
}

/** `maxSessions` / `maxSeats` of the credentials that have them (positive integers). */
function parseCaps(value: unknown, file: string): Map<string, CredentialCaps> {
  const out = new Map<string, CredentialCaps>();
  if (!Array.isArray(value)) return out;
  value.forEach((k: Record<string, unknown>, i: number) => {
    const caps: CredentialCaps = {};
    for (const [field, name] of [
      ['maxSessions', 'sessions'],
      ['maxSeats', 'seats'],
    ] as const) {
      const v = k[field];
      if (v === undefined) continue;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 0xffffffff) {
        throw new KeyFileError(
          KeyFileErrorCode.MALFORMED,
          file,
          `credentials[${i}].${field}: must be a positive integer`,
        );
      }
      caps[name] = v;
    }
    if (caps.sessions !== undefined || caps.seats !== undefined) out.set(String(k.id), caps);
  });
  return out;
}

/**
 * Loads the daemon keys file.
 * @throws {KeyFileError} MISSING, UNREADABLE, INSECURE, MALFORMED
 */
export function loadDaemonKeys(file: string): DaemonKeys {
  return parseDaemonKeys(readKeyFileJSON(file), file);
}

/** The JSON text of a daemon keys file. */
export function daemonKeysToJSON(keys: DaemonKeys): string {
  const list = (m: Map<string, Uint8Array>, caps?: Map<string, CredentialCaps>) =>
    [...m].map(([id, key]) => {
      const c = caps?.get(id);
      return {
        id,
        key: Buffer.from(key).toString('hex'),
        ...(c?.sessions !== undefined ? { maxSessions: c.sessions } : {}),
        ...(c?.seats !== undefined ? { maxSeats: c.seats } : {}),
      };
    });
  return `${JSON.stringify(
    {
      version: 1,
      server: keys.keyring.toJSON(),
      credentials: list(keys.credentials, keys.caps),
      admin: list(keys.admin),
      vendors: [...(keys.vendors ?? [])].map(([name, pk]) => ({
        name,
        publicKey: Buffer.from(pk).toString('hex'),
      })),
    },
    null,
    2,
  )}\n`;
}

/**
 * Writes the daemon keys file atomically with mode 0600.
 * @throws {Error} the fs error when it cannot be written
 */
export function saveDaemonKeys(file: string, keys: DaemonKeys): void {
  writeFileAtomic0600(file, daemonKeysToJSON(keys));
}

/**
 * Parses the JSON value of a client credential file.
 * @throws {KeyFileError} MALFORMED naming the field
 */
export function parseClientCredential(value: unknown, file = '<credential>'): ClientCredential {
  const bad = (field: string, what: string): KeyFileError =>
    new KeyFileError(KeyFileErrorCode.MALFORMED, file, `${field}: ${what}`);
  if (!isRecord(value))
    throw new KeyFileError(KeyFileErrorCode.MALFORMED, file, 'must be a JSON object');
  if (value.version !== 1) throw bad('version', 'must be 1');
  if (typeof value.id !== 'string' || !KEY_ID.test(value.id)) {
    throw bad('id', 'must be "vendor" or "vendor/user" (letters, digits, . _ -; ≤ 64 each)');
  }
  if (typeof value.key !== 'string' || !HEX64.test(value.key))
    throw bad('key', 'must be 64 hex digits');
  const servers = value.servers ?? [];
  if (!Array.isArray(servers)) throw bad('servers', 'must be an array of "host:port"');
  servers.forEach((s: unknown, i: number) => {
    if (typeof s !== 'string' || !/^(\[[0-9A-Fa-f:.]+\]|[^\s:[\]]+):\d{1,5}$/.test(s)) {
      throw bad(`servers[${i}]`, 'must be "host:port"');
    }
    const port = Number(s.slice(s.lastIndexOf(':') + 1));
    if (port < 1 || port > 65535) throw bad(`servers[${i}]`, 'port must be in [1, 65535]');
  });
  return {
    id: value.id,
    key: new Uint8Array(Buffer.from(value.key, 'hex')),
    servers: servers as string[],
  };
}

/**
 * Loads a client credential file.
 * @throws {KeyFileError} MISSING, UNREADABLE, INSECURE, MALFORMED
 */
export function loadClientCredential(file: string): ClientCredential {
  return parseClientCredential(readKeyFileJSON(file), file);
}

/**
 * Writes a client credential file atomically with mode 0600.
 * @throws {TypeError} when the key is not 32 bytes
 * @throws {Error} the fs error when it cannot be written
 */
export function saveClientCredential(file: string, cred: ClientCredential): void {
  if (!(cred.key instanceof Uint8Array) || cred.key.length !== KEY_LENGTH) {
    throw new TypeError(`cred.key must be ${KEY_LENGTH} bytes`);
  }
  const json = {
    version: 1,
    id: cred.id,
    key: Buffer.from(cred.key).toString('hex'),
    servers: cred.servers,
  };
  writeFileAtomic0600(file, `${JSON.stringify(json, null, 2)}\n`);
}

/** A fresh random 32-byte credential or admin key. */
export function generateKey(): Uint8Array {
  return randomBytes(KEY_LENGTH);
}
