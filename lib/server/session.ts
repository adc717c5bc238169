/**
 * The daemon's record of a live session, kept small because a license host may hold a
 * million of them: the token's few fields the daemon reads, its bytes, and nothing keyed
 * until the session talks. The session key, its keyed HMAC and the replay window are made
 * on first use; keyed HMACs live in a bounded cache of recently active sessions and are
 * re-derived from the token (keyring + HKDF) when an evicted session talks again.
 */
import { ReplayWindow } from '../auth/replay.ts';
import { KeyedHmac } from '../crypto/hmac.ts';

/** Turns a token into its session key; undefined when its server key is gone. */
export type KeyDeriver = (token: Uint8Array) => Uint8Array | undefined;

export interface SessionFields {
  id: bigint;
  token: Uint8Array;
  user: string;
  host: string;
  vendor: string;
  /** Token expiry, ms since the epoch. */
  expires: number;
  address: string;
  port: number;
  lastSeen: number;
}

/**
 * Keyed HMACs of the most recently active sessions (insertion order of a Map is the LRU
 * order). One per daemon.
 */
export class HmacCache {
  readonly #max: number;
  readonly #map = new Map<Session, KeyedHmac>();

  /** @throws {RangeError} when max is not a positive integer */
  constructor(max: number) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError('max must be a positive integer');
    this.#max = max;
  }

  get size(): number {
    return this.#map.size;
  }

  get(s: Session): KeyedHmac | undefined {
    const h = this.#map.get(s);
    if (h) {
      this.#map.delete(s);
      this.#map.set(s, h);
    }
    return h;
  }

  set(s: Session, h: KeyedHmac): void {
    this.#map.set(s, h);
    if (this.#map.size > this.#max) {
      const oldest = this.#map.keys().next().value as Session;
      this.#map.delete(oldest);
    }
  }

  delete(s: Session): void {
    this.#map.delete(s);
  }
}

/** A never-verifying key for a session whose server key was retired under it. */
const DEAD_KEY = new KeyedHmac(new Uint8Array(32).fill(0xa5));

export class Session {
  readonly id: bigint;
  readonly token: Uint8Array;
  readonly user: string;
  readonly host: string;
  readonly vendor: string;
  readonly expires: number;
  address: string;
  port: number;
  lastSeen: number;
  serverSeq = 0;
  /** Unanswered test_conn pings. */
  pings = 0;
  nextPingAt = 0;
  pingNonce: Uint8Array | undefined = undefined;
  #window: ReplayWindow | undefined;
  readonly #cache: HmacCache;
  readonly #derive: KeyDeriver;

  constructor(f: SessionFields, cache: HmacCache, derive: KeyDeriver, key?: Uint8Array) {
    this.id = f.id;
    this.token = f.token;
    this.user = f.user;
    this.host = f.host;
    this.vendor = f.vendor;
    this.expires = f.expires;
    this.address = f.address;
    this.port = f.port;
    this.lastSeen = f.lastSeen;
    this.#cache = cache;
    this.#derive = derive;
    if (key) cache.set(this, new KeyedHmac(key));
  }

  /** The session key, keyed once (re-derived from the token after a cache eviction). */
  get hmac(): KeyedHmac {
    let h = this.#cache.get(this);
    if (h) return h;
    const key = this.#derive(this.token);
    if (!key) return DEAD_KEY;
    h = new KeyedHmac(key);
    this.#cache.set(this, h);
    return h;
  }

  /** Replay window over the client's seq, made when the session first talks. */
  get window(): ReplayWindow {
    this.#window ??= new ReplayWindow(1024);
    return this.#window;
  }

  set window(w: ReplayWindow) {
    this.#window = w;
  }

  /** Forget the keyed state (the session is gone). */
  drop(): void {
    this.#cache.delete(this);
  }
}
