/**
 * The server keyring (the notes' server-to-server secret): secrets with activation times,
 * from which every server sharing the file derives the same per-epoch keys at the same time
 * without talking. Owns key ids, the current signing key, grace and retirement, forced
 * rotation, and the JSON form (DEVELOPERS.md "Keys").
 *
 * Key id = secretId << 16 | epoch, epoch = floor((t - activates) / period) capped at 0xffff;
 * key = HKDF-SHA256(ikm = secret, salt = "floatlm keyring v1", info = u32be(keyId), 32).
 * A key signs during its epoch or until a newer secret activates (its "sign end"); it then
 * only verifies until sign end + grace (inclusive), and is retired after that.
 */
import { KeyFileError, KeyFileErrorCode } from './errors.ts';
import { hkdfSha256, KEY_LENGTH, KeyedHmac, label, randomBytes, u32be } from './hmac.ts';

/** Defaults: a new key every 24 h; an old key verifies for 48 h more (≥ token lifetime). */
export const KEYRING_DEFAULTS = { period: 86_400, grace: 172_800 } as const;
export const MAX_EPOCH = 0xffff;
/** How early `lookup` knows a key before its epoch starts: the allowed clock skew. */
export const KEY_LEAD_MS = 300_000;
export const MAX_SECRET_ID = 0xffff;
const SALT = label('floatlm keyring v1');
const CACHE_MAX = 256;

/** One secret of the keyring. */
export interface KeyringSecret {
  /** 1..65535, unique in the keyring. */
  id: number;
  /** 32 bytes. */
  secret: Uint8Array;
  /** Activation time, ms since the epoch (UTC). */
  activates: number;
}

/** A derived server key and its life. */
export interface ServerKey {
  keyId: number;
  key: Uint8Array;
  /** The key, keyed once for reuse. */
  hmac: KeyedHmac;
  /** First ms at which the key signs. */
  start: number;
  /** First ms at which it no longer signs (Infinity for the last epoch of the newest secret). */
  signEnd: number;
  /** Last ms at which it still verifies (signEnd + grace); retired after. */
  retiresAt: number;
}

export type KeyLookup = { ok: true; key: ServerKey } | { ok: false; reason: 'unknown' | 'retired' };

/** The JSON shape of a keyring (the "server" member of the daemon's keys file). */
export interface KeyringJSON {
  version: 1;
  period: number;
  grace: number;
  secrets: { id: number; secret: string; activates: string }[];
}

/** Composes a key id. @throws {RangeError} when a part is out of range */
export function makeKeyId(secretId: number, epoch: number): number {
  if (!Number.isInteger(secretId) || secretId < 1 || secretId > MAX_SECRET_ID) {
    throw new RangeError('secretId must be an integer in [1, 65535]');
  }
  if (!Number.isInteger(epoch) || epoch < 0 || epoch > MAX_EPOCH) {
    throw new RangeError('epoch must be an integer in [0, 65535]');
  }
  return secretId * 0x10000 + epoch;
}

/** Splits a u32 key id into its secret id and epoch. */
export function splitKeyId(keyId: number): { secretId: number; epoch: number } {
  return { secretId: Math.floor(keyId / 0x10000), epoch: keyId & 0xffff };
}

/** The keyring; immutable except for `rotate`, which appends a secret. */
export class Keyring {
  /** Seconds per epoch. */
  readonly period: number;
  /** Seconds an old key keeps verifying after it stops signing. */
  readonly grace: number;
  private list: KeyringSecret[];
  private readonly cache = new Map<number, ServerKey>();

  /**
   * @throws {TypeError|RangeError} naming the option when it is out of range: period an
   *   integer ≥ 1 (s), grace an integer ≥ 0 (s), secrets non-empty with unique ids in
   *   [1, 65535], 32-byte secrets and finite activation times
   */
  constructor(opts: { period: number; grace: number; secrets: readonly KeyringSecret[] }) {
    if (!Number.isInteger(opts.period) || opts.period < 1) {
      throw new RangeError('period must be an integer number of seconds ≥ 1');
    }
    if (!Number.isInteger(opts.grace) || opts.grace < 0) {
      throw new RangeError('grace must be an integer number of seconds ≥ 0');
    }
    if (!Array.isArray(opts.secrets) || opts.secrets.length === 0) {
      throw new RangeError('secrets must be a non-empty array');
    }
    this.period = opts.period;
    this.grace = opts.grace;
    this.list = [];
    for (const s of opts.secrets) this.add(s);
  }

  private add(s: KeyringSecret): void {
    if (!Number.isInteger(s.id) || s.id < 1 || s.id > MAX_SECRET_ID) {
      throw new RangeError('secrets[].id must be an integer in [1, 65535]');
    }
    if (this.list.some((x) => x.id === s.id)) throw new RangeError(`secrets[].id ${s.id} repeats`);
    if (!(s.secret instanceof Uint8Array) || s.secret.length !== KEY_LENGTH) {
      throw new TypeError(`secrets[].secret must be ${KEY_LENGTH} bytes`);
    }
    if (!Number.isSafeInteger(s.activates) || s.activates < 0) {
      throw new RangeError('secrets[].activates must be a non-negative integer (ms)');
    }
    this.list.push({ id: s.id, secret: s.secret.slice(), activates: s.activates });
    // Order of precedence: the newest activation wins; ties go to the higher id.
    this.list.sort((a, b) => a.activates - b.activates || a.id - b.id);
    this.cache.clear();
  }

  /** The secrets, oldest activation first (copies). */
  get secrets(): KeyringSecret[] {
    return this.list.map((s) => ({ ...s, secret: s.secret.slice() }));
  }

  /**
   * The key that signs at `now`: the newest secret with activates ≤ now, at its epoch.
   * @throws {RangeError} when no secret has activated yet at `now`
   */
  current(now: number): ServerKey {
    let idx = -1;
    for (let i = 0; i < this.list.length; i++) if (this.list[i]!.activates <= now) idx = i;
    if (idx < 0) throw new RangeError('now is before the activation of every keyring secret');
    const s = this.list[idx]!;
    const epoch = Math.min(MAX_EPOCH, Math.floor((now - s.activates) / (this.period * 1000)));
    const found = this.lookup(makeKeyId(s.id, epoch), now, 0);
    if (!found.ok) throw new Error('keyring invariant: the current key does not look up');
    return found.key;
  }

  /** When the current key changes next after `now` (ms; Infinity if never). */
  nextChange(now: number): number {
    const cur = this.current(now);
    let next = cur.signEnd;
    for (const s of this.list) if (s.activates > now && s.activates < next) next = s.activates;
    return next;
  }

  /**
   * The key with this id at `now`. `unknown`: no such secret, or an epoch that starts more
   * than `leadMs` after now (a peer whose clock runs ahead by up to the skew may already
   * sign with it), or one superseded before it began; `retired`: its grace has passed
   * (now > retiresAt). Cheap for unknown ids (no derivation), so safe on attacker-chosen ids.
   */
  lookup(keyId: number, now: number, leadMs: number = KEY_LEAD_MS): KeyLookup {
    if (!Number.isInteger(keyId) || keyId < 0 || keyId > 0xffffffff)
      return { ok: false, reason: 'unknown' };
    const { secretId, epoch } = splitKeyId(keyId);
    const idx = this.list.findIndex((s) => s.id === secretId);
    if (idx < 0) return { ok: false, reason: 'unknown' };
    const s = this.list[idx]!;
    const periodMs = this.period * 1000;
    const start = s.activates + epoch * periodMs;
    const next = this.list[idx + 1]?.activates ?? Number.POSITIVE_INFINITY;
    if (now < start - leadMs || start >= next) return { ok: false, reason: 'unknown' };
    const epochEnd = epoch === MAX_EPOCH ? Number.POSITIVE_INFINITY : start + periodMs;
    const signEnd = Math.min(epochEnd, next);
    const retiresAt = signEnd + this.grace * 1000;
    if (now > retiresAt) return { ok: false, reason: 'retired' };
    let key = this.cache.get(keyId);
    if (!key) {
      const raw = hkdfSha256(s.secret, SALT, u32be(keyId), KEY_LENGTH);
      key = { keyId, key: raw, hmac: new KeyedHmac(raw), start, signEnd, retiresAt };
      if (this.cache.size >= CACHE_MAX) this.cache.clear();
      this.cache.set(keyId, key);
    }
    return { ok: true, key };
  }

  /**
   * Forced rotation: appends a new secret activating at `now` (random unless given).
   * @throws {RangeError} when the secret ids are exhausted or `secret` is not 32 bytes
   */
  rotate(now: number, secret: Uint8Array = randomBytes(KEY_LENGTH)): KeyringSecret {
    const maxId = Math.max(...this.list.map((s) => s.id));
    if (maxId >= MAX_SECRET_ID) throw new RangeError('keyring secret ids exhausted');
    const s = { id: maxId + 1, secret, activates: now };
    this.add(s);
    return { ...s, secret: s.secret.slice() };
  }

  /** The JSON form (DEVELOPERS.md), secrets in hex, times ISO 8601 UTC. */
  toJSON(): KeyringJSON {
    return {
      version: 1,
      period: this.period,
      grace: this.grace,
      secrets: this.list.map((s) => ({
        id: s.id,
        secret: Buffer.from(s.secret).toString('hex'),
        activates: new Date(s.activates).toISOString(),
      })),
    };
  }

  /**
   * A new keyring with one random secret activating at `now`.
   * @throws {RangeError} as the constructor
   */
  static generate(now: number, opts: { period?: number; grace?: number } = {}): Keyring {
    return new Keyring({
      period: opts.period ?? KEYRING_DEFAULTS.period,
      grace: opts.grace ?? KEYRING_DEFAULTS.grace,
      secrets: [{ id: 1, secret: randomBytes(KEY_LENGTH), activates: now }],
    });
  }
}

const HEX64 = /^[0-9a-fA-F]{64}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})$/;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Parses the JSON value of a keyring. `where` names its position in the file for messages.
 * @throws {KeyFileError} MALFORMED naming the field, e.g. `server.secrets[1].secret`
 */
export function keyringFromJSON(value: unknown, path = '<keyring>', where = 'server'): Keyring {
  const bad = (field: string, what: string): KeyFileError =>
    new KeyFileError(KeyFileErrorCode.MALFORMED, path, `${field}: ${what}`);
  if (!isRecord(value)) throw bad(where, 'must be an object');
  if (value.version !== 1) throw bad(`${where}.version`, 'must be 1');
  const period = value.period ?? KEYRING_DEFAULTS.period;
  const grace = value.grace ?? KEYRING_DEFAULTS.grace;
  if (typeof period !== 'number' || !Number.isInteger(period) || period < 1) {
    throw bad(`${where}.period`, 'must be an integer number of seconds ≥ 1');
  }
  if (typeof grace !== 'number' || !Number.isInteger(grace) || grace < 0) {
    throw bad(`${where}.grace`, 'must be an integer number of seconds ≥ 0');
  }
  if (!Array.isArray(value.secrets) || value.secrets.length === 0) {
    throw bad(`${where}.secrets`, 'must be a non-empty array');
  }
  const secrets: KeyringSecret[] = [];
  const seen = new Set<number>();
  value.secrets.forEach((s: unknown, i: number) => {
    const at = `${where}.secrets[${i}]`;
    if (!isRecord(s)) throw bad(at, 'must be an object');
    if (typeof s.id !== 'number' || !Number.isInteger(s.id) || s.id < 1 || s.id > MAX_SECRET_ID) {
      throw bad(`${at}.id`, 'must be an integer in [1, 65535]');
    }
    if (seen.has(s.id)) throw bad(`${at}.id`, `${s.id} repeats`);
    seen.add(s.id);
    if (typeof s.secret !== 'string' || !HEX64.test(s.secret)) {
      throw bad(`${at}.secret`, 'must be 64 hex digits');
    }
    const t =
      typeof s.activates === 'string' && ISO.test(s.activates)
        ? Date.parse(s.activates)
        : Number.NaN;
    if (!Number.isFinite(t) || t < 0)
      throw bad(`${at}.activates`, 'must be an ISO 8601 time with a zone');
    secrets.push({ id: s.id, secret: new Uint8Array(Buffer.from(s.secret, 'hex')), activates: t });
  });
  return new Keyring({ period, grace, secrets });
}
