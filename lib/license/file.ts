/**
 * License files (docs/license-format.md): parsing SERVER, VENDOR, FEATURE and INCREMENT
 * lines, the canonical form a vendor signs with Ed25519, signing and verifying whole files,
 * vendor key pairs, and the demo license `npm start` serves.
 *
 * Bad content never throws: every line that fails becomes a `file:line:column: reason`
 * problem and is not served, and the rest of the file is. Only API misuse throws.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToHex, hexToBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import { Limits } from '../wire/index.ts';
import {
  at,
  type LicenseProblem,
  LineProblem,
  type Logical,
  problem,
  scan,
  type Token,
} from './scan.ts';
import { versionKey, versionProblem } from './version.ts';

/** Duplicate grouping: which checkouts share one seat (docs/license-format.md). */
export type DupGroup = 'UHD' | 'UH' | 'U' | 'H' | 'NONE';

/** The options of a FEATURE/INCREMENT line that change how seats are served. */
export interface FeatureOptions {
  dupGroup: DupGroup;
  /** Seats one user may hold in this feature's pool; null = no limit. */
  maxPerUser: number | null;
  /** Seats one host may hold in this feature's pool; null = no limit. */
  maxPerHost: number | null;
  /** Whether a CHECKOUT with WAIT may queue. */
  queue: boolean;
  /** Queue entries allowed for this feature; null = no limit. */
  queueMax: number | null;
  /** Heartbeat interval in seconds for leases of this feature; null = the server's. */
  heartbeat: number | null;
}

/**
 * Seats of one line kept for a user or a host (`RESERVE=` option): only that user, or
 * users on that host, may take them; they may also take unreserved seats.
 */
export interface Reservation {
  type: 'user' | 'host';
  /** The user or host name, compared exactly (case-sensitive). */
  name: string;
  /** Seats reserved, 1..65535. */
  count: number;
}

/** One FEATURE or INCREMENT line whose signature verified. */
export interface FeatureLine {
  keyword: 'FEATURE' | 'INCREMENT';
  name: string;
  vendor: string;
  /** As written, e.g. "2.10". */
  version: string;
  /** The expiry as written, lowercased: "31-dec-2027" or "permanent". */
  expiry: string;
  /** ms UTC from which the line no longer serves (00:00 UTC after the expiry day); null = permanent. */
  expires: number | null;
  /** True when already expired at the `now` given to parseLicense (also reported as a problem). */
  expired: boolean;
  count: number;
  options: FeatureOptions;
  /** The line's `RESERVE=` entries, in the order written; their sum ≤ count. */
  reservations: Reservation[];
  /** Every option but SIGN, keys uppercased, values unquoted. */
  rawOptions: Readonly<Record<string, string>>;
  /** The exact string that was signed (without the domain prefix). */
  canonical: string;
  signature: Uint8Array;
  file: string;
  /** 1-based line of the keyword. */
  line: number;
}

export interface ServerLine {
  host: string;
  /** "ANY" or the host id as written. */
  hostid: string;
  port: number;
  line: number;
}

export interface VendorLine {
  name: string;
  options: Readonly<Record<string, string>>;
  line: number;
}

export type { LicenseProblem } from './scan.ts';

export interface ParsedLicense {
  servers: ServerLine[];
  vendors: VendorLine[];
  /** Lines served, in file order (expired lines included, marked `expired`). */
  features: FeatureLine[];
  problems: LicenseProblem[];
}

export interface ParseOptions {
  /** Ed25519 public keys by vendor name, from the daemon's keys file. */
  vendorKeys: ReadonlyMap<string, Uint8Array>;
  /** ms UTC; lines that expired before it are marked and reported. */
  now: number;
}

/** Prefix of every signed message, so a license signature means nothing anywhere else. */
export const SIGN_DOMAIN = 'floatlm license v1\n';
export const DEFAULT_SERVER_PORT = 27400;

const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const TEXT_OPTIONS = new Set(['ISSUER', 'NOTICE', 'VENDOR_STRING']);
const MAX_COUNT = 1_000_000_000;
/** Most entries in one RESERVE= option. */
export const MAX_RESERVATIONS = 16;
const RESERVE_NAME_RE = /^[^\s:,"\\]+$/;

function quoteValue(v: string): string {
  if (v !== '' && !/[\s"\\=#]/.test(v)) return v;
  return `"${v.replace(/[\\"]/g, '\\$&')}"`;
}

function parseExpiry(t: Token): { expiry: string; expires: number | null } | LineProblem {
  const v = t.value.toLowerCase();
  if (v === 'permanent') return { expiry: v, expires: null };
  const m = /^([0-9]{1,2})-([a-z]{3})-([0-9]{4})$/.exec(v);
  const month = m ? MONTHS.indexOf(m[2]!) : -1;
  if (!m || month < 0) {
    return at(t, `bad expiry "${t.value}": expected a date such as 31-dec-2027, or permanent`);
  }
  const day = Number(m[1]);
  const year = Number(m[3]);
  const d = new Date(Date.UTC(year, month, day));
  if (year < 1970 || d.getUTCDate() !== day || d.getUTCMonth() !== month) {
    return at(t, `bad expiry "${t.value}": no such date`);
  }
  return { expiry: v, expires: Date.UTC(year, month, day + 1) };
}

function positiveInt(t: Token, what: string, max: number): number | LineProblem {
  if (!/^[0-9]{1,10}$/.test(t.value) || Number(t.value) < 1 || Number(t.value) > max) {
    return at(t, `${what} must be an integer from 1 to ${max}, not "${t.value}"`);
  }
  return Number(t.value);
}

/** Why a token is not a feature/vendor name (letters, digits, _ . -), or undefined. */
export function checkName(t: Token, what: string): LineProblem | undefined {
  if (t.key !== undefined || t.raw.includes('"') || !NAME_RE.test(t.value)) {
    return at(t, `bad ${what} "${t.raw}": letters, digits, _ . - only, not starting with . or -`);
  }
  if (t.value.length > Limits.NAME) return at(t, `${what} longer than ${Limits.NAME} characters`);
  return undefined;
}

/**
 * Parses `RESERVE="USER:alice:2,HOST:ws9:1"` (docs/license-format.md); a problem points at
 * the offending entry's column when the value has no escapes, else at the option.
 */
function parseReserve(t: Token, count: number): Reservation[] | LineProblem {
  const eq = t.raw.indexOf('=');
  const quoted = t.raw[eq + 1] === '"';
  const exact = !t.raw.slice(eq + 1).includes('\\');
  // Offsets into the value map to columns only when no escape shifted them.
  const err = (offset: number, message: string) =>
    new LineProblem(
      t.line,
      exact ? t.column + eq + 1 + (quoted ? 1 : 0) + offset : t.column,
      message,
    );
  const out: Reservation[] = [];
  const seen = new Set<string>();
  let offset = 0;
  let sum = 0;
  for (const entry of t.value.split(',')) {
    const parts = entry.split(':');
    const [kind, name, n] = parts as [string, string | undefined, string | undefined];
    if (parts.length !== 3) {
      return err(
        offset,
        `bad RESERVE entry "${entry}": expected USER:name:seats or HOST:name:seats, entries separated by commas`,
      );
    }
    const type = kind.toUpperCase();
    if (type !== 'USER' && type !== 'HOST') {
      return err(offset, `bad RESERVE kind "${kind}": expected USER or HOST`);
    }
    const nameAt = offset + kind.length + 1;
    if (!RESERVE_NAME_RE.test(name!) || name!.length > Limits.NAME) {
      return err(
        nameAt,
        `bad RESERVE name "${name}": 1 to ${Limits.NAME} characters, no spaces, quotes, backslashes, ':' or ','`,
      );
    }
    const nAt = nameAt + name!.length + 1;
    if (!/^[0-9]{1,5}$/.test(n!) || Number(n) < 1 || Number(n) > 0xffff) {
      return err(nAt, `RESERVE seats must be an integer from 1 to 65535, not "${n}"`);
    }
    const key = `${type}:${name}`;
    if (seen.has(key)) return err(offset, `RESERVE ${key} given twice`);
    seen.add(key);
    if (out.length === MAX_RESERVATIONS) {
      return err(offset, `RESERVE has more than ${MAX_RESERVATIONS} entries`);
    }
    sum += Number(n);
    out.push({ type: type === 'USER' ? 'user' : 'host', name: name!, count: Number(n) });
    offset += entry.length + 1;
  }
  if (sum > count) {
    return at(t, `RESERVE reserves ${sum} seats, more than the line's count of ${count}`);
  }
  return out;
}

interface FeatureSyntax {
  keyword: 'FEATURE' | 'INCREMENT';
  name: string;
  vendor: string;
  version: string;
  expiry: string;
  expires: number | null;
  count: number;
  options: FeatureOptions;
  reservations: Reservation[];
  rawOptions: Record<string, string>;
  canonical: string;
  tokens: { keyword: Token; vendor: Token; expiry: Token; sign?: Token };
}

const FIELD_NAMES = ['name', 'vendor', 'version', 'expiry', 'count'] as const;

/** Checks the syntax of a FEATURE/INCREMENT line and builds its canonical form. */
function featureSyntax(l: Logical): FeatureSyntax | LineProblem {
  const [kw, ...rest] = l.tokens;
  const keyword = kw!.value.toUpperCase() as 'FEATURE' | 'INCREMENT';
  const fields: Token[] = [];
  for (const t of rest) {
    if (t.key !== undefined) break;
    fields.push(t);
  }
  if (fields.length < FIELD_NAMES.length) {
    const missing = FIELD_NAMES.slice(fields.length).join(' ');
    const next = rest[fields.length];
    const line = next ? next.line : l.lastLine;
    const column = next ? next.column : l.endColumn;
    return new LineProblem(
      line,
      column,
      `missing ${missing}: expected ${keyword} name vendor version expiry count [KEY=VALUE ...] SIGN=<hex>`,
    );
  }
  const [nameT, vendorT, versionT, expiryT, countT] = fields as [Token, Token, Token, Token, Token];
  const extra = rest.slice(FIELD_NAMES.length).find((t) => t.key === undefined);
  if (extra) return at(extra, `unexpected "${extra.raw}": options are KEY=VALUE`);
  const bad = checkName(nameT, 'feature name') ?? checkName(vendorT, 'vendor name');
  if (bad) return bad;
  const vp = versionTokenProblem(versionT);
  if (vp) return vp;
  const exp = parseExpiry(expiryT);
  if (exp instanceof LineProblem) return exp;
  if (countT.value.toLowerCase() === 'uncounted') {
    return at(countT, 'uncounted licenses are not supported: give a seat count');
  }
  const count = positiveInt(countT, 'count', MAX_COUNT);
  if (count instanceof LineProblem) return count;

  const options: FeatureOptions = {
    dupGroup: 'UHD',
    maxPerUser: null,
    maxPerHost: null,
    queue: true,
    queueMax: null,
    heartbeat: null,
  };
  let reservations: Reservation[] = [];
  const rawOptions: Record<string, string> = {};
  let sign: Token | undefined;
  const seen = new Set<string>();
  for (const t of rest.slice(FIELD_NAMES.length)) {
    const key = t.key!;
    if (seen.has(key)) return at(t, `${key} given twice`);
    seen.add(key);
    const v = t.value;
    switch (key) {
      case 'SIGN':
        sign = t;
        continue;
      case 'DUP_GROUP': {
        const g = v.toUpperCase();
        if (!['UHD', 'UH', 'U', 'H', 'NONE'].includes(g)) {
          return at(t, `DUP_GROUP must be UHD, UH, U, H or NONE, not "${v}"`);
        }
        options.dupGroup = g as DupGroup;
        break;
      }
      case 'MAX_PER_USER':
      case 'MAX_PER_HOST':
      case 'QUEUE_MAX': {
        const n = positiveInt(t, key, 0xffff);
        if (n instanceof LineProblem) return n;
        if (key === 'MAX_PER_USER') options.maxPerUser = n;
        else if (key === 'MAX_PER_HOST') options.maxPerHost = n;
        else options.queueMax = n;
        break;
      }
      case 'QUEUE': {
        const q = v.toLowerCase();
        if (q !== 'yes' && q !== 'no') return at(t, `QUEUE must be yes or no, not "${v}"`);
        options.queue = q === 'yes';
        break;
      }
      case 'HEARTBEAT': {
        const n = positiveInt(t, key, 86_400);
        if (n instanceof LineProblem) return n;
        options.heartbeat = n;
        break;
      }
      case 'RESERVE': {
        const r = parseReserve(t, count);
        if (r instanceof LineProblem) return r;
        reservations = r;
        break;
      }
      default:
        if (!TEXT_OPTIONS.has(key)) {
          return at(
            t,
            `unknown option ${key} (known: DUP_GROUP MAX_PER_USER MAX_PER_HOST QUEUE QUEUE_MAX HEARTBEAT RESERVE ISSUER NOTICE VENDOR_STRING SIGN)`,
          );
        }
        if (v.length > Limits.MESSAGE)
          return at(t, `${key} longer than ${Limits.MESSAGE} characters`);
    }
    rawOptions[key] = v;
  }
  const parts = [keyword, nameT.value, vendorT.value, versionT.value, exp.expiry, String(count)];
  for (const k of Object.keys(rawOptions).sort()) parts.push(`${k}=${quoteValue(rawOptions[k]!)}`);
  return {
    keyword,
    name: nameT.value,
    vendor: vendorT.value,
    version: versionT.value,
    expiry: exp.expiry,
    expires: exp.expires,
    count,
    options,
    reservations,
    rawOptions,
    canonical: parts.join(' '),
    tokens: { keyword: kw!, vendor: vendorT, expiry: expiryT, ...(sign ? { sign } : {}) },
  };
}

function versionTokenProblem(t: Token): LineProblem | undefined {
  const p =
    t.key !== undefined || t.raw.includes('"') ? `bad version "${t.raw}"` : versionProblem(t.value);
  return p === undefined ? undefined : at(t, p);
}

function serverLine(l: Logical): ServerLine | LineProblem {
  const [kw, ...rest] = l.tokens;
  const opt = rest.find((t) => t.key !== undefined);
  if (opt)
    return at(opt, `unexpected "${opt.raw}": SERVER takes host, hostid and an optional port`);
  if (rest.length < 2) {
    return new LineProblem(
      l.lastLine,
      l.endColumn,
      `missing ${rest.length === 0 ? 'host hostid' : 'hostid'}: expected SERVER host hostid|ANY [port]`,
    );
  }
  if (rest.length > 3)
    return at(rest[3]!, `unexpected "${rest[3]!.raw}": expected SERVER host hostid|ANY [port]`);
  const [host, hostid, portT] = rest as [Token, Token, Token | undefined];
  if (host.value === '' || host.value.length > 255) return at(host, 'bad host');
  if (hostid.value === '') return at(hostid, 'bad hostid');
  let port = DEFAULT_SERVER_PORT;
  if (portT) {
    const p = positiveInt(portT, 'port', 65_535);
    if (p instanceof LineProblem) return p;
    port = p;
  }
  void kw;
  const id = hostid.value.toUpperCase() === 'ANY' ? 'ANY' : hostid.value;
  return { host: host.value, hostid: id, port, line: l.line };
}

function vendorLine(l: Logical): VendorLine | LineProblem {
  const [, nameT, ...rest] = l.tokens;
  if (!nameT)
    return new LineProblem(
      l.lastLine,
      l.endColumn,
      'missing vendor name: expected VENDOR name [KEY=VALUE ...]',
    );
  const bad = checkName(nameT, 'vendor name');
  if (bad) return bad;
  const options: Record<string, string> = {};
  for (const t of rest) {
    if (t.key === undefined) return at(t, `unexpected "${t.raw}": VENDOR options are KEY=VALUE`);
    if (t.key in options) return at(t, `${t.key} given twice`);
    options[t.key] = t.value;
  }
  return { name: nameT.value, options, line: l.line };
}

function sameOptions(a: FeatureOptions, b: FeatureOptions): boolean {
  return (
    a.dupGroup === b.dupGroup &&
    a.maxPerUser === b.maxPerUser &&
    a.maxPerHost === b.maxPerHost &&
    a.queue === b.queue &&
    a.queueMax === b.queueMax &&
    a.heartbeat === b.heartbeat
  );
}

/** The bytes an Ed25519 license signature covers. */
export function signedMessage(canonical: string): Uint8Array {
  return utf8ToBytes(SIGN_DOMAIN + canonical);
}

function verifySig(pub: Uint8Array, sig: Uint8Array, canonical: string): boolean {
  try {
    return ed25519.verify(sig, signedMessage(canonical), pub);
  } catch {
    return false;
  }
}

function formatDate(ms: number): string {
  const d = new Date(ms - 86_400_000);
  return `${d.getUTCDate()}-${MONTHS[d.getUTCMonth()]}-${d.getUTCFullYear()}`;
}

function parseImpl(
  text: string,
  file: string,
  keys: ReadonlyMap<string, Uint8Array>,
  now: number | undefined,
): ParsedLicense {
  const out: ParsedLicense = { servers: [], vendors: [], features: [], problems: [] };
  const report = (p: LineProblem) => out.problems.push(problem(file, p));
  /** First FEATURE line (or first line at all) per name+vendor+version. */
  const firstOf = new Map<string, { feature?: FeatureLine; first: FeatureLine }>();
  for (const l of scan(text).logical) {
    if (l.error) {
      report(new LineProblem(l.error.line, l.error.column, l.error.message));
      continue;
    }
    const kw = l.tokens[0]!;
    const keyword = kw.key === undefined && !kw.raw.includes('"') ? kw.value.toUpperCase() : '';
    if (keyword === 'SERVER') {
      const s = serverLine(l);
      if (s instanceof LineProblem) report(s);
      else out.servers.push(s);
      continue;
    }
    if (keyword === 'VENDOR') {
      const v = vendorLine(l);
      if (v instanceof LineProblem) report(v);
      else out.vendors.push(v);
      continue;
    }
    if (keyword !== 'FEATURE' && keyword !== 'INCREMENT') {
      report(at(kw, `unknown keyword "${kw.raw}": expected SERVER, VENDOR, FEATURE or INCREMENT`));
      continue;
    }
    const f = featureSyntax(l);
    if (f instanceof LineProblem) {
      report(f);
      continue;
    }
    const signT = f.tokens.sign;
    if (!signT) {
      report(at(kw, 'missing SIGN=: sign the file with `floatlm license sign`'));
      continue;
    }
    if (!/^[0-9a-fA-F]{128}$/.test(signT.value)) {
      report(at(signT, 'SIGN must be 128 hex digits (an Ed25519 signature)'));
      continue;
    }
    const pub = keys.get(f.vendor);
    if (!pub) {
      report(at(f.tokens.vendor, `no public key for vendor "${f.vendor}" in the keys file`));
      continue;
    }
    const signature = hexToBytes(signT.value.toLowerCase());
    if (!verifySig(pub, signature, f.canonical)) {
      report(
        at(
          signT,
          `signature does not verify: the line was changed after signing, or signed by another key than vendor "${f.vendor}"'s`,
        ),
      );
      continue;
    }
    const expired = now !== undefined && f.expires !== null && now >= f.expires;
    const line: FeatureLine = {
      keyword: f.keyword,
      name: f.name,
      vendor: f.vendor,
      version: f.version,
      expiry: f.expiry,
      expires: f.expires,
      expired,
      count: f.count,
      options: f.options,
      reservations: f.reservations,
      rawOptions: f.rawOptions,
      canonical: f.canonical,
      signature,
      file,
      line: l.line,
    };
    if (expired) {
      // Kept (FEATURE_EXPIRED beats NO_SUCH_FEATURE) but never the "first" line: a renewed
      // FEATURE line below an expired one is served, not a duplicate.
      report(at(f.tokens.expiry, `${f.name} ${f.version} expired on ${formatDate(f.expires!)}`));
      out.features.push(line);
      continue;
    }
    const key = `${f.name}\0${f.vendor}\0${versionKey(f.version)}`;
    const known = firstOf.get(key);
    if (known && f.keyword === 'FEATURE' && known.feature) {
      report(
        at(
          kw,
          `duplicate FEATURE ${f.name} ${f.version} (vendor ${f.vendor}): the one on line ${known.feature.line} is served, this one is ignored (use INCREMENT to add seats)`,
        ),
      );
      continue;
    }
    if (known && !sameOptions(known.first.options, f.options)) {
      report(
        at(
          kw,
          `options differ from line ${known.first.line} for ${f.name} ${f.version}: every line of a feature must have the same DUP_GROUP, MAX_PER_USER, MAX_PER_HOST, QUEUE, QUEUE_MAX and HEARTBEAT`,
        ),
      );
      continue;
    }
    if (known) {
      if (f.keyword === 'FEATURE') known.feature = line;
    } else {
      firstOf.set(key, { first: line, ...(f.keyword === 'FEATURE' ? { feature: line } : {}) });
    }
    out.features.push(line);
  }
  return out;
}

function checkKeys(keys: unknown, name: string): asserts keys is ReadonlyMap<string, Uint8Array> {
  if (!(keys instanceof Map))
    throw new TypeError(`${name} must be a Map of vendor name to public key`);
}

/**
 * Parses and verifies a license file. Never throws on bad content: each failing line is a
 * problem and is not served. Expired lines are served (marked `expired`) so the pool can
 * answer FEATURE_EXPIRED, and also reported as problems.
 * @throws {TypeError} when text or fileName is not a string, vendorKeys is not a Map or
 *   now is not a finite number
 */
export function parseLicense(text: string, fileName: string, options: ParseOptions): ParsedLicense {
  if (typeof text !== 'string') throw new TypeError('text must be a string');
  if (typeof fileName !== 'string') throw new TypeError('fileName must be a string');
  checkKeys(options?.vendorKeys, 'options.vendorKeys');
  if (typeof options.now !== 'number' || !Number.isFinite(options.now)) {
    throw new TypeError('options.now must be a finite number (ms)');
  }
  return parseImpl(text, fileName, options.vendorKeys, options.now);
}

/**
 * Every problem of a license file: syntax, signatures, unknown vendors, duplicates, and
 * expiry when `now` is given.
 * @throws {TypeError} when text or file is not a string or publicKeys is not a Map
 */
export function verifyLicense(
  text: string,
  file: string,
  publicKeys: ReadonlyMap<string, Uint8Array>,
  now?: number,
): LicenseProblem[] {
  if (typeof text !== 'string') throw new TypeError('text must be a string');
  if (typeof file !== 'string') throw new TypeError('file must be a string');
  checkKeys(publicKeys, 'publicKeys');
  if (now !== undefined && (typeof now !== 'number' || !Number.isFinite(now))) {
    throw new TypeError('now must be a finite number (ms) or undefined');
  }
  return parseImpl(text, file, publicKeys, now).problems;
}

function checkPrivateKey(privateKey: unknown): asserts privateKey is Uint8Array {
  if (!(privateKey instanceof Uint8Array) || privateKey.length !== 32) {
    throw new TypeError('privateKey must be a 32-byte Uint8Array (an Ed25519 secret key)');
  }
}

/**
 * Signs every FEATURE/INCREMENT line: fills in SIGN= (replacing one already there, else
 * appending ` SIGN=<hex>` to the line's last physical line). Lines with syntax problems
 * are left as they are and returned as problems. Line endings and comments are kept.
 * @throws {TypeError} when text is not a string or privateKey is not 32 bytes
 */
export function signLicenseDetailed(
  text: string,
  privateKey: Uint8Array,
  file = '<license>',
): { text: string; signed: number; problems: LicenseProblem[] } {
  if (typeof text !== 'string') throw new TypeError('text must be a string');
  checkPrivateKey(privateKey);
  const { physical, logical } = scan(text);
  const endings = text.match(/\r?\n/g) ?? [];
  const problems: LicenseProblem[] = [];
  let signed = 0;
  for (const l of logical) {
    if (l.error) {
      problems.push(problem(file, new LineProblem(l.error.line, l.error.column, l.error.message)));
      continue;
    }
    const kw = l.tokens[0]!;
    const keyword = kw.key === undefined ? kw.value.toUpperCase() : '';
    if (keyword !== 'FEATURE' && keyword !== 'INCREMENT') continue;
    const f = featureSyntax(l);
    if (f instanceof LineProblem) {
      problems.push(problem(file, f));
      continue;
    }
    const sig = bytesToHex(ed25519.sign(signedMessage(f.canonical), privateKey));
    const s = f.tokens.sign;
    if (s) {
      const p = physical[s.line - 1]!;
      physical[s.line - 1] = `${p.slice(0, s.column - 1)}SIGN=${sig}${p.slice(s.end)}`;
    } else {
      const p = physical[l.lastLine - 1]!;
      const body = p.trimEnd();
      physical[l.lastLine - 1] = `${body} SIGN=${sig}${p.slice(body.length)}`;
    }
    signed++;
  }
  let out = '';
  physical.forEach((p, i) => {
    out += p + (endings[i] ?? '');
  });
  return { text: out, signed, problems };
}

/**
 * The license text with SIGN= filled in or replaced on every FEATURE/INCREMENT line
 * (see signLicenseDetailed; lines with syntax problems are left unsigned).
 * @throws {TypeError} when text is not a string or privateKey is not 32 bytes
 */
export function signLicense(text: string, privateKey: Uint8Array): string {
  return signLicenseDetailed(text, privateKey).text;
}

/** A fresh vendor Ed25519 key pair (32-byte secret key, 32-byte public key). */
export function generateVendorKeyPair(): { privateKey: Uint8Array; publicKey: Uint8Array } {
  const { secretKey, publicKey } = ed25519.keygen();
  return { privateKey: secretKey, publicKey };
}

/**
 * The vendor public key of a secret key.
 * @throws {TypeError} when privateKey is not 32 bytes
 */
export function vendorPublicKey(privateKey: Uint8Array): Uint8Array {
  checkPrivateKey(privateKey);
  return ed25519.getPublicKey(privateKey);
}

/**
 * Formats a license expiry date (the last day a line serves) from ms UTC: "31-dec-2027".
 * @throws {RangeError} when ms is not a finite number
 */
export function formatExpiry(ms: number): string {
  if (!Number.isFinite(ms)) throw new RangeError('ms must be a finite number');
  return formatDate(Math.floor(ms / 86_400_000) * 86_400_000 + 86_400_000);
}

/**
 * The demo license `npm start` serves, signed with `privateKey` for vendor `demo`:
 * feature `demo` 1.0, 2 seats, permanent; feature `solver` 2.5, 1 seat, QUEUE=yes,
 * MAX_PER_USER=1, expiring 365 days after `now`.
 * @throws {TypeError} when privateKey is not 32 bytes or now is not a finite number
 */
export function demoLicense(privateKey: Uint8Array, now: number): string {
  checkPrivateKey(privateKey);
  if (typeof now !== 'number' || !Number.isFinite(now))
    throw new TypeError('now must be a finite number (ms)');
  const text = [
    '# floatlm demo license (docs/license-format.md), generated by floatlmd --demo.',
    '# Vendor "demo"; its public key is in the keys file, its private key beside it.',
    `SERVER localhost ANY ${DEFAULT_SERVER_PORT}`,
    'VENDOR demo',
    'FEATURE demo demo 1.0 permanent 2 ISSUER="floatlm demo"',
    `FEATURE solver demo 2.5 ${formatExpiry(now + 365 * 86_400_000)} 1 QUEUE=yes MAX_PER_USER=1 \\`,
    '    ISSUER="floatlm demo"',
    '',
  ].join('\n');
  return signLicense(text, privateKey);
}
