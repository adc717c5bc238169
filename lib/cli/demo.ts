/**
 * The demo state `floatlmd --demo` (`npm start`) creates in ./.floatlm-demo, and where both
 * CLIs look for the files they need when no option names them: the current directory
 * first (where `floatlm keys init` writes), then the demo, then ~/.config/floatlm. Kept apart
 * from the daemon so `floatlm` never loads the server and its SQLite binding.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  generateKey,
  loadClientCredential,
  saveClientCredential,
  saveDaemonKeys,
  writeFileAtomic0600,
} from '../crypto/files.ts';
import { randomBytes } from '../crypto/hmac.ts';
import { Keyring } from '../crypto/keyring.ts';
import { demoLicense, generateVendorKeyPair } from '../license/file.ts';
import { DEFAULT_PORT, toHex } from '../wire/index.ts';
import { CliError, type CliIO, ExitCode } from './io.ts';

export const DEMO_DIR = '.floatlm-demo';

/** The files of a demo directory. */
export interface DemoPaths {
  license: string;
  keys: string;
  state: string;
  credential: string;
  admin: string;
}

/** The paths of the demo files in `dir` (nothing is created). */
export function demoPaths(dir: string): DemoPaths {
  return {
    license: join(dir, 'demo.lic'),
    keys: join(dir, 'keys.json'),
    state: join(dir, 'state'),
    credential: join(dir, 'credential.json'),
    admin: join(dir, 'admin.json'),
  };
}

/**
 * Creates (once) the demo state: keys, a signed demo license, a client credential and an
 * admin credential in `dir`, the credentials naming 127.0.0.1:`port` (27400 for 0).
 * Returns the paths.
 * @throws {Error} the fs error when `dir` cannot be written
 */
export function ensureDemo(dir: string, port: number): DemoPaths {
  const paths = demoPaths(dir);
  if (existsSync(paths.keys) && existsSync(paths.license)) return paths;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const now = Date.now();
  const vendor = generateVendorKeyPair();
  const credKey = generateKey();
  const adminKey = generateKey();
  const keyring = new Keyring({
    period: 86_400,
    grace: 172_800,
    secrets: [{ id: 1, secret: randomBytes(32), activates: now - 1000 }],
  });
  saveDaemonKeys(paths.keys, {
    keyring,
    credentials: new Map([['demo', credKey]]),
    admin: new Map([['admin', adminKey]]),
    vendors: new Map([['demo', vendor.publicKey]]),
  });
  writeFileAtomic0600(join(dir, 'vendor-demo.key'), `${toHex(vendor.privateKey)}\n`);
  writeFileSync(paths.license, demoLicense(vendor.privateKey, now), { mode: 0o644 });
  // Port 0 (any free port) is not a port a credential can name: pointDemoAt fixes it once bound.
  const servers = [`127.0.0.1:${port || DEFAULT_PORT}`];
  saveClientCredential(paths.credential, { id: 'demo', key: credKey, servers });
  saveClientCredential(paths.admin, { id: 'admin', key: adminKey, servers });
  return paths;
}

/**
 * Points the demo's client and admin credentials at `server` (the daemon may have been
 * started on another port than the one they were created with). Returns the files changed.
 * @throws {KeyFileError} when a credential file is missing, insecure or malformed
 */
export function pointDemoAt(paths: DemoPaths, server: string): string[] {
  const changed: string[] = [];
  for (const file of [paths.credential, paths.admin]) {
    const cred = loadClientCredential(file);
    if (cred.servers.length === 1 && cred.servers[0] === server) continue;
    saveClientCredential(file, { ...cred, servers: [server] });
    changed.push(file);
  }
  return changed;
}

/** What a command looks for when no option names the file. */
export type Looked = 'credential' | 'admin' | 'keys';

const ENV: Record<Looked, string | undefined> = {
  credential: 'FLOATLM_CREDENTIAL',
  admin: 'FLOATLM_ADMIN',
  keys: undefined,
};
const OPTION: Record<Looked, string> = {
  credential: '--credential',
  admin: '--admin',
  keys: '--keys',
};
const WHAT: Record<Looked, string> = {
  credential: 'client credential',
  admin: 'admin credential',
  keys: 'keys file',
};

/**
 * Where `kind` is read from: the option's value, else its environment variable, else the
 * first of ./<kind>.json, ./.floatlm-demo/<kind>.json and (credentials only)
 * ~/.config/floatlm/<kind>.json that exists.
 * @throws {CliError} BAD_FILE listing every place tried when none exists
 */
export function findFile(io: CliIO, kind: Looked, explicit: string | undefined): string {
  if (explicit) return resolve(io.cwd, explicit);
  const envName = ENV[kind];
  const env = envName ? io.env[envName] : undefined;
  if (env) return resolve(io.cwd, env);
  const tried = [resolve(io.cwd, `${kind}.json`), resolve(io.cwd, DEMO_DIR, `${kind}.json`)];
  if (kind !== 'keys')
    tried.push(join(io.env.HOME ?? homedir(), '.config', 'floatlm', `${kind}.json`));
  const found = tried.find((f) => existsSync(f));
  if (found) return found;
  const how = envName
    ? `give ${OPTION[kind]} FILE or set $${envName}`
    : `give ${OPTION[kind]} FILE`;
  throw new CliError(
    `floatlm: no ${WHAT[kind]} found; tried ${tried.join(', ')} (${how})`,
    ExitCode.BAD_FILE,
  );
}
