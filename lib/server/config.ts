/**
 * Loads what the daemon serves from: the keys file (server keyring, credential keys, admin
 * keys, vendor public keys) and the license file, checked against the vendor keys. Every
 * failure is one readable line; a bad license line is a problem, not a failure.
 */
import { readFileSync } from 'node:fs';
import { type DaemonKeys, parseDaemonKeys, readKeyFileJSON } from '../crypto/files.ts';
import { type FeatureLine, type LicenseProblem, parseLicense } from '../license/file.ts';

export interface LoadedConfig {
  keys: DaemonKeys & { vendors: Map<string, Uint8Array> };
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
 * Parses the `vendors` member of the keys file: Ed25519 public keys by vendor name.
 * @throws {ConfigError} when it is present but malformed
 */
export function parseVendorKeys(value: unknown, file: string): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  if (typeof value !== 'object' || value === null || !('vendors' in value)) return out;
  const vendors = (value as { vendors: unknown }).vendors;
  if (!Array.isArray(vendors)) throw new ConfigError(`${file}: "vendors" must be an array`);
  vendors.forEach((v, i) => {
    const name = (v as { name?: unknown })?.name;
    const pk = (v as { publicKey?: unknown })?.publicKey;
    if (typeof name !== 'string' || name === '')
      throw new ConfigError(`${file}: vendors[${i}].name must be a non-empty string`);
    if (typeof pk !== 'string' || !/^[0-9a-fA-F]{64}$/.test(pk)) {
      throw new ConfigError(
        `${file}: vendors[${i}].publicKey must be 64 hex digits (an Ed25519 public key)`,
      );
    }
    out.set(name, new Uint8Array(Buffer.from(pk, 'hex')));
  });
  return out;
}

/**
 * Loads the keys file and the license file.
 * @throws {KeyFileError} when the keys file is missing, insecure or malformed
 * @throws {ConfigError} when the license file cannot be read or vendor keys are malformed
 */
export function loadConfig(licenseFile: string, keysFile: string, now: number): LoadedConfig {
  const json = readKeyFileJSON(keysFile);
  const keys = { ...parseDaemonKeys(json, keysFile), vendors: parseVendorKeys(json, keysFile) };
  let text: string;
  try {
    text = readFileSync(licenseFile, 'utf8');
  } catch (e) {
    throw new ConfigError(
      `${licenseFile}: cannot read license file (${(e as NodeJS.ErrnoException).code ?? String(e)})`,
    );
  }
  const parsed = parseLicense(text, licenseFile, { vendorKeys: keys.vendors, now });
  return { keys, license: { features: parsed.features, problems: parsed.problems } };
}
