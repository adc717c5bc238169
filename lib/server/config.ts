/**
 * Loads what the daemon serves from: the keys file (server keyring, credential keys, admin
 * keys, vendor public keys) and the license file, checked against the vendor keys. Every
 * failure is one readable line; a bad license line is a problem, not a failure.
 */
import { readFileSync } from 'node:fs';
import { type DaemonKeys, parseDaemonKeys, readKeyFileJSON } from '../crypto/files.ts';
import { type FeatureLine, type LicenseProblem, parseLicense } from '../license/file.ts';

export interface LoadedConfig {
  keys: DaemonKeys;
  license: { features: FeatureLine[]; problems: LicenseProblem[] };
}

export type DaemonConfig = LoadedConfig;

/** A configuration problem that stops the daemon (or a reread) with one line. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/**
 * Loads the keys file and the license file.
 * @throws {KeyFileError} when the keys file is missing, insecure or malformed
 * @throws {ConfigError} when the license file cannot be read
 */
export function loadConfig(licenseFile: string, keysFile: string, now: number): LoadedConfig {
  const json = readKeyFileJSON(keysFile);
  const keys = parseDaemonKeys(json, keysFile);
  let text: string;
  try {
    text = readFileSync(licenseFile, 'utf8');
  } catch (e) {
    throw new ConfigError(
      `${licenseFile}: cannot read license file (${(e as NodeJS.ErrnoException).code ?? String(e)})`,
    );
  }
  const parsed = parseLicense(text, licenseFile, { vendorKeys: keys.vendors ?? new Map(), now });
  return { keys, license: { features: parsed.features, problems: parsed.problems } };
}
