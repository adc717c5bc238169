/**
 * Loads what the daemon serves from: the keys file (server keyring, credential keys, admin
 * keys, vendor public keys) and the license file, checked against the vendor keys. Every
 * failure is one readable line; a bad license line is a problem, not a failure.
 */
import { readFileSync } from 'node:fs';
import { type DaemonKeys, parseDaemonKeys, readKeyFileJSON } from '../crypto/files.ts';
import { type FeatureLine, type LicenseProblem, parseLicense } from '../license/file.ts';
import { type ParsedOptions, parseOptions } from '../license/options.ts';

export interface LoadedConfig {
  keys: DaemonKeys;
  license: { features: FeatureLine[]; problems: LicenseProblem[] };
  /** The admin's options file (docs/options-format.md), when one is configured. */
  options?: ParsedOptions;
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
 * @throws {ConfigError} when the license file cannot be read, or the options file (if any)
 *   cannot be read or has any problem
 */
export function loadConfig(
  licenseFile: string,
  keysFile: string,
  now: number,
  optionsFile?: string,
): LoadedConfig {
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
  const config: LoadedConfig = {
    keys,
    license: { features: parsed.features, problems: parsed.problems },
  };
  if (optionsFile !== undefined) {
    let o: string;
    try {
      o = readFileSync(optionsFile, 'utf8');
    } catch (e) {
      throw new ConfigError(
        `${optionsFile}: cannot read options file (${(e as NodeJS.ErrnoException).code ?? String(e)})`,
      );
    }
    const options = parseOptions(o, optionsFile);
    if (options.problems.length > 0) {
      // All or nothing: an options file with any error is not applied at all.
      const n = options.problems.length;
      throw new ConfigError(
        `${n} problem(s) in the options file, none applied: ${options.problems
          .slice(0, 3)
          .map((p) => p.text)
          .join('; ')}`,
      );
    }
    config.options = options;
  }
  return config;
}
