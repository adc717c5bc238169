/**
 * The session table: every live session by id, the shared parts sessions draw on (the keyed
 * HMAC cache and the slab of windows), and the live-session counts per user and per source
 * address that HELLO's caps read, kept with the table so no request scans it.
 */
import type { SessionLookup } from '../auth/server.ts';
import type { SessionRecord } from '../store/index.ts';
import {
  HmacCache,
  type KeyDeriver,
  Session,
  type SessionFields,
  SessionShared,
} from './session.ts';

export class SessionTable implements SessionLookup {
  readonly #map = new Map<bigint, Session>();
  /**
   * vendor → user → live sessions. Keyed by the session's own strings: a joined key would be
   * a new string per session (~64 bytes each once hashed, with a million distinct users).
   */
  readonly #perUser = new Map<string, Map<string, number>>();
  readonly #perHost = new Map<string, number>();
  readonly #perCredential = new Map<string, number>();
  readonly #shared: SessionShared;

  constructor(hmacCacheSize: number, derive: KeyDeriver) {
    this.#shared = new SessionShared(new HmacCache(hmacCacheSize, derive));
  }

  get size(): number {
    return this.#map.size;
  }

  /** Bytes of the slab every talking session's window lives in. */
  get slabBytes(): number {
    return this.#shared.slab.windows.bytes;
  }

  get(id: bigint): Session | undefined {
    return this.#map.get(id);
  }

  getSession(id: bigint): Session | undefined {
    return this.#map.get(id);
  }

  values(): IterableIterator<Session> {
    return this.#map.values();
  }

  /** Adds a session (with its raw session key when the caller has it). */
  add(f: SessionFields, key?: Uint8Array): Session {
    const s = new Session(f, this.#shared, key);
    this.#map.set(s.id, s);
    this.#bumpUser(s, 1);
    bump(this.#perHost, s.address, 1);
    if (s.credential) bump(this.#perCredential, s.credential, 1);
    return s;
  }

  /** Puts a session removed before back into the table (undoing a failed tick's reap). */
  readd(s: Session): void {
    if (this.#map.has(s.id)) return;
    this.#map.set(s.id, s);
    this.#bumpUser(s, 1);
    bump(this.#perHost, s.address, 1);
    if (s.credential) bump(this.#perCredential, s.credential, 1);
  }

  /** Takes a session out of the table and frees what it held in the shared parts. */
  remove(s: Session): void {
    if (this.#map.get(s.id) !== s) return;
    this.#map.delete(s.id);
    this.#bumpUser(s, -1);
    bump(this.#perHost, s.address, -1);
    if (s.credential) bump(this.#perCredential, s.credential, -1);
    s.drop();
  }

  /** The session's source moved (same IP, new port; or a verified new address). */
  move(s: Session, address: string, port: number): void {
    if (s.address !== address) {
      bump(this.#perHost, s.address, -1);
      bump(this.#perHost, address, 1);
      // Same text, keep the string the session has: it may be shared with other sessions.
      s.address = address;
    }
    s.port = port;
  }

  /** Live sessions of this vendor's user. */
  users(vendor: string, user: string): number {
    return this.#perUser.get(vendor)?.get(user) ?? 0;
  }

  #bumpUser(s: Session, delta: number): void {
    let users = this.#perUser.get(s.vendor);
    if (!users) {
      if (delta <= 0) return;
      users = new Map();
      this.#perUser.set(s.vendor, users);
    }
    bump(users, s.user, delta);
    if (users.size === 0) this.#perUser.delete(s.vendor);
  }

  /** Live sessions from this source address. */
  hosts(address: string): number {
    return this.#perHost.get(address) ?? 0;
  }

  /** Live sessions opened with this credential (its `sessions` cap). */
  credentialSessions(credId: string): number {
    return this.#perCredential.get(credId) ?? 0;
  }

  /** The stored form of a session. */
  record(s: Session, now: number): SessionRecord {
    return {
      tokenId: s.id,
      token: s.token,
      user: s.user,
      host: s.host,
      vendor: s.vendor,
      created: now,
      expires: s.expires,
      ip: s.address,
      port: s.port,
      seqFloor: s.reservedSeq,
      credential: s.credential,
    };
  }
}

function bump(counts: Map<string, number>, key: string, delta: number): void {
  const n = (counts.get(key) ?? 0) + delta;
  if (n > 0) counts.set(key, n);
  else counts.delete(key);
}
