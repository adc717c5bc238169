/**
 * The daemon's record of a live session, kept small because a license host may hold a
 * million of them: the token's few fields the daemon reads, its bytes (as a latin1 string:
 * a typed array would cost its own ArrayBuffer and an off-heap block, three times the
 * bytes), and nothing keyed until the session talks. The session key, its keyed HMAC, the
 * replay window and the fields of its last HEARTBEAT_ACK (a slot in a slab shared by all
 * sessions) and the test_conn state are made on first use; keyed HMACs live in a bounded cache of recently active sessions and are
 * re-derived from the token (keyring + HKDF) when an evicted session talks again.
 */
import { WindowSlab } from '../auth/replay.ts';
import type { KeyedHmac } from '../crypto/hmac.ts';
import { HEADER_LENGTH, Offset } from '../wire/index.ts';
import { encodeHeartbeatAck, HEARTBEAT_ACK_LENGTH, u32 } from './heartbeat-ack.ts';
import type { HmacCache } from './hmac-cache.ts';

export { encodeHeartbeatAck, HEARTBEAT_ACK_LENGTH } from './heartbeat-ack.ts';
export { HmacCache } from './hmac-cache.ts';

/**
 * Turns a token into its session key; undefined when its server key is gone. It must return
 * a fresh buffer each call: the session wipes it once the key is keyed.
 */
export type KeyDeriver = (token: Uint8Array) => Uint8Array | undefined;

export interface SessionFields {
  id: bigint;
  token: Uint8Array;
  user: string;
  host: string;
  vendor: string;
  /** Token expiry, ms since the epoch (a whole second: tokens carry seconds). */
  expires: number;
  address: string;
  port: number;
  lastSeen: number;
  /** Restart replay floor: every seq at or below it counts as seen. */
  floor?: number;
  /** Id of the credential the session was opened with. */
  credential?: string;
}

/**
 * What sessions hold once they have talked, in shared columns indexed by a slot number: the
 * replay window (in a WindowSlab), the fields of the last HEARTBEAT_ACK, and the seq up to
 * which the session's replay floor is durable. An object per session cost its header and
 * fields (~80 bytes) on top of the window's own ArrayBuffer (~400); a slot costs ~60 bytes
 * while its window is compact (WindowSlab) and no object.
 */
export class LiveSlab {
  readonly windows = new WindowSlab(1024);
  #requestId = new Int32Array(1024);
  #seq = new Int32Array(1024);
  #mode = new Uint8Array(1024);
  #stamp = new Float64Array(1024);
  #counts = new Int32Array(1024);
  #heartbeatMs = new Int32Array(1024);
  // Seq floors are u32 (protocol.md): 4 bytes each, not 8.
  #reserved = new Uint32Array(1024);
  #durable = new Uint32Array(1024);
  // When the session was last told its floor: every restored session is, once, after a
  // restart; a column here, not a Probe object (and its heap number) per session.
  #resyncAt = new Float64Array(1024);

  /** A slot whose window counts every seq ≤ floor as seen (-1: a fresh window). */
  alloc(floor: number): number {
    const slot = this.windows.alloc(floor);
    if (slot >= this.#seq.length) this.#grow(slot + 1);
    this.#mode[slot] = 0;
    this.#reserved[slot] = Math.max(floor, 0);
    this.#durable[slot] = Math.max(floor, 0);
    this.#resyncAt[slot] = 0;
    return slot;
  }

  /** When the slot's session was last told its restart floor (ms), 0 when never. */
  resyncAt(slot: number): number {
    return this.#resyncAt[slot]!;
  }

  setResyncAt(slot: number, ms: number): void {
    this.#resyncAt[slot] = ms;
  }

  release(slot: number): void {
    this.windows.release(slot);
  }

  /** The seq the durable replay floor covers (every seq ≤ it is safe to answer). */
  reserved(slot: number): number {
    return this.#reserved[slot]!;
  }

  setReserved(slot: number, seq: number): void {
    this.#reserved[slot] = seq;
  }

  /** The floor the store has committed for this slot's session. */
  durable(slot: number): number {
    return this.#durable[slot]!;
  }

  setDurable(slot: number, seq: number): void {
    if (seq > this.#durable[slot]!) this.#durable[slot] = seq;
  }

  keep(slot: number, requestId: number, reply: Uint8Array): void {
    const v = new DataView(reply.buffer, reply.byteOffset, HEARTBEAT_ACK_LENGTH);
    this.#requestId[slot] = requestId | 0;
    this.#seq[slot] = v.getInt32(Offset.SEQ);
    this.#mode[slot] = reply[Offset.MODE]!;
    this.#stamp[slot] =
      v.getUint32(Offset.TIMESTAMP) * 0x1_0000_0000 + v.getUint32(Offset.TIMESTAMP + 4);
    this.#counts[slot] = v.getInt32(HEADER_LENGTH);
    this.#heartbeatMs[slot] = v.getInt32(HEADER_LENGTH + 4);
  }

  kept(slot: number, sessionId: bigint, requestId: number, key: KeyedHmac): Uint8Array | undefined {
    if (this.#mode[slot] === 0 || this.#requestId[slot] !== (requestId | 0)) return undefined;
    const counts = this.#counts[slot]!;
    return encodeHeartbeatAck(
      requestId >>> 0,
      sessionId,
      this.#seq[slot]! >>> 0,
      this.#mode[slot]!,
      this.#stamp[slot]!,
      counts >>> 16,
      counts & 0xffff,
      this.#heartbeatMs[slot]! >>> 0,
      key,
    );
  }

  #grow(min: number): void {
    let n = this.#seq.length;
    while (n < min) n *= 2;
    const grow = <T extends Int32Array | Uint32Array | Uint8Array | Float64Array>(a: T): T => {
      const b = new (a.constructor as new (n: number) => T)(n);
      b.set(a);
      return b;
    };
    this.#requestId = grow(this.#requestId);
    this.#seq = grow(this.#seq);
    this.#mode = grow(this.#mode);
    this.#stamp = grow(this.#stamp);
    this.#counts = grow(this.#counts);
    this.#heartbeatMs = grow(this.#heartbeatMs);
    this.#reserved = grow(this.#reserved);
    this.#durable = grow(this.#durable);
    this.#resyncAt = grow(this.#resyncAt);
  }
}

/** test_conn state, for the sessions the daemon has had to ping. */
class Probe {
  serverSeq = 0;
  pings = 0;
  nextPingAt = 0;
  nonce: Uint8Array | undefined = undefined;
}

/** A (vendor, credential) pair, interned: every session of it points at one. */
interface Origin {
  readonly vendor: string;
  readonly credential: string;
  readonly shared: SessionShared;
}

/**
 * What the sessions of one table share: the keyed-HMAC cache and derivation, the slab, the
 * test_conn state of the sessions that were pinged (few: a field each would cost every
 * session 8 bytes), and their (vendor, credential) pairs, one object each.
 */
export class SessionShared {
  readonly probes = new Map<Session, Probe>();
  readonly #origins = new Map<string, Origin>();

  constructor(
    readonly hmacs: HmacCache,
    readonly slab: LiveSlab = new LiveSlab(),
  ) {}

  /** The interned pair (there are as many as credentials, not sessions). */
  origin(vendor: string, credential: string): Origin {
    const k = `${vendor}\0${credential}`;
    let o = this.#origins.get(k);
    if (!o) {
      o = { vendor, credential, shared: this };
      this.#origins.set(k, o);
    }
    return o;
  }
}

/**
 * A token's bytes while its session key is derived (a restored session's first datagram):
 * written from the latin1 string and zeroed after, where `token` makes two objects a call.
 * Tokens are at most a datagram long.
 */
const TOKEN_SCRATCH = Buffer.alloc(2048);

/** The first session's lastSeen (ms): every session's is kept relative to it. */
let SEEN_EPOCH = Number.NaN;

export class Session {
  readonly id: bigint;
  readonly user: string;
  readonly host: string;
  /** Vendor, credential and the table's shared parts: one pointer, not three. */
  readonly #origin: Origin;
  address: string;
  port: number;
  /**
   * lastSeen less SEEN_EPOCH: a small integer (an smi, held in the field) for ~24 days after
   * the first session, where ms since 1970 would take a 16-byte heap number per session.
   */
  #seen: number;
  readonly #token: string;
  /** Seconds, a small integer where ms would take a heap number per session. */
  readonly #expiresS: number;
  /** Every seq at or below this was (or may have been) used before a restart. */
  floor: number;
  /** Slot in the shared LiveSlab once the session has talked; -1 before. */
  #slot = -1;

  constructor(f: SessionFields, shared: SessionShared, key?: Uint8Array) {
    this.id = f.id;
    this.#token = Buffer.from(f.token.buffer, f.token.byteOffset, f.token.byteLength).toString(
      'latin1',
    );
    this.user = f.user;
    this.host = f.host;
    this.#origin = shared.origin(f.vendor, f.credential ?? '');
    // Tokens expire on a whole second; anything else would be rounded up to one.
    this.#expiresS = Math.ceil(f.expires / 1000);
    this.address = f.address;
    this.port = f.port;
    if (Number.isNaN(SEEN_EPOCH)) SEEN_EPOCH = f.lastSeen;
    this.#seen = f.lastSeen - SEEN_EPOCH;
    this.floor = f.floor ?? -1;
    if (key) shared.hmacs.make(this, key);
  }

  get vendor(): string {
    return this.#origin.vendor;
  }

  /** Id of the credential the session was opened with ('' when none was recorded). */
  get credential(): string {
    return this.#origin.credential;
  }

  /** When the session last sent a request that verified, ms (the daemon's clock). */
  get lastSeen(): number {
    return SEEN_EPOCH + this.#seen;
  }

  set lastSeen(v: number) {
    this.#seen = v - SEEN_EPOCH;
  }

  /** The token's bytes exactly as issued (a fresh copy per call). */
  get token(): Uint8Array {
    const b = Buffer.from(this.#token, 'latin1');
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  }

  /** True when `bytes` are this session's token. */
  tokenIs(bytes: Uint8Array): boolean {
    if (bytes.length !== this.#token.length) return false;
    for (let i = 0; i < bytes.length; i++) if (bytes[i] !== this.#token.charCodeAt(i)) return false;
    return true;
  }

  /** Token expiry, ms since the epoch. */
  get expires(): number {
    return this.#expiresS * 1000;
  }

  /**
   * The session key, keyed once (re-derived from the token after a cache eviction);
   * undefined when the keyring no longer holds the server key its token was made with: such
   * a session is unknown in every mode (there is no fallback key).
   */
  get hmac(): KeyedHmac | undefined {
    const cache = this.#origin.shared.hmacs;
    let h = cache.get(this);
    if (h) return h;
    const t = this.#token;
    let key: Uint8Array | undefined;
    if (t.length <= TOKEN_SCRATCH.length) {
      const n = TOKEN_SCRATCH.write(t, 0, 'latin1');
      try {
        key = cache.derive(TOKEN_SCRATCH.subarray(0, n));
      } finally {
        TOKEN_SCRATCH.fill(0, 0, n);
      }
    } else key = cache.derive(this.token);
    if (!key) return undefined;
    h = cache.make(this, key);
    key.fill(0);
    return h;
  }

  /** The slot of the session's window and kept reply, made on first use. */
  get slot(): number {
    // Seq 0 is never a mode-2/3 seq (protocol.md §10): counted seen, so that a new session's
    // window stays compact (a gap at seq 0 would spill it after 64 datagrams).
    if (this.#slot < 0) this.#slot = this.#origin.shared.slab.alloc(Math.max(this.floor, 0));
    return this.#slot;
  }

  /** True when the replay window would accept `seq`. */
  checkSeq(seq: number): boolean {
    return this.#origin.shared.slab.windows.check(this.slot, seq);
  }

  /** Marks `seq` seen (after its datagram verified and was accepted). */
  acceptSeq(seq: number): void {
    this.#origin.shared.slab.windows.update(this.slot, seq);
  }

  /** Highest seq accepted, or the restart floor (0 for a new session: seq 0 counts as seen). */
  get highestSeq(): number {
    return this.#origin.shared.slab.windows.highest(this.slot);
  }

  /** The seq up to which the durable floor covers this session. */
  get reservedSeq(): number {
    return this.#slot < 0 ? Math.max(this.floor, 0) : this.#origin.shared.slab.reserved(this.#slot);
  }

  /** The floor the store has committed (seqs up to it are answered without waiting). */
  get durableSeq(): number {
    return this.#slot < 0 ? Math.max(this.floor, 0) : this.#origin.shared.slab.durable(this.#slot);
  }

  set durableSeq(v: number) {
    this.#origin.shared.slab.setDurable(this.slot, v);
  }

  set reservedSeq(v: number) {
    this.#origin.shared.slab.setReserved(this.slot, v);
  }

  /**
   * The HEARTBEAT_ACK kept for `requestId`, if it answered the session's last heartbeat,
   * rebuilt byte for byte. A client has one heartbeat out at a time, so the last reply is
   * the one a retransmission asks for.
   */
  keptReply(requestId: number): Uint8Array | undefined {
    const h = this.#slot < 0 || !u32(requestId) ? undefined : this.hmac;
    if (!h) return undefined;
    return this.#origin.shared.slab.kept(this.#slot, this.id, requestId, h);
  }

  /**
   * Keeps `reply`, a HEARTBEAT_ACK of this session (from `encodeHeartbeatAck`, signed with
   * the session key), as the answer to `requestId`, replacing the one kept before.
   * @throws {RangeError} when `reply` is not HEARTBEAT_ACK_LENGTH bytes
   */
  keepReply(requestId: number, reply: Uint8Array): void {
    if (reply.length !== HEARTBEAT_ACK_LENGTH) {
      throw new RangeError(`reply must be ${HEARTBEAT_ACK_LENGTH} bytes`);
    }
    this.#origin.shared.slab.keep(this.slot, requestId, reply);
  }

  /** The server's seq in its last TEST_CONN to this session. */
  get serverSeq(): number {
    return this.#probe()?.serverSeq ?? 0;
  }

  set serverSeq(v: number) {
    this.#probing().serverSeq = v;
  }

  /** When the session was last told its restart floor (ERROR REPLAY). */
  get resyncAt(): number {
    return this.#slot < 0 ? 0 : this.#origin.shared.slab.resyncAt(this.#slot);
  }

  set resyncAt(v: number) {
    this.#origin.shared.slab.setResyncAt(this.slot, v);
  }

  /** Unanswered test_conn pings. */
  get pings(): number {
    return this.#probe()?.pings ?? 0;
  }

  set pings(v: number) {
    // Every request resets it: no state for a session that was never pinged.
    const p = this.#probe();
    if (p) p.pings = v;
    else if (v !== 0) this.#probing().pings = v;
  }

  /** When the next test_conn ping is due (ms). */
  get nextPingAt(): number {
    return this.#probe()?.nextPingAt ?? 0;
  }

  set nextPingAt(v: number) {
    this.#probing().nextPingAt = v;
  }

  /** The nonce of the outstanding test_conn pings, if any. */
  get pingNonce(): Uint8Array | undefined {
    return this.#probe()?.nonce;
  }

  set pingNonce(v: Uint8Array | undefined) {
    const p = this.#probe();
    if (p) p.nonce = v;
    else if (v) this.#probing().nonce = v;
  }

  /**
   * A verified request or test_conn answer: no ping is outstanding any more. One map lookup,
   * none while no session is being pinged (the receive path calls it per datagram).
   */
  heard(): void {
    const p = this.#probe();
    if (p) {
      p.pings = 0;
      p.nonce = undefined;
    }
  }

  #probe(): Probe | undefined {
    const probes = this.#origin.shared.probes;
    return probes.size === 0 ? undefined : probes.get(this);
  }

  #probing(): Probe {
    const probes = this.#origin.shared.probes;
    let p = probes.get(this);
    if (!p) {
      p = new Probe();
      probes.set(this, p);
    }
    return p;
  }

  /** Forget the keyed state and the slot (the session is gone). */
  drop(): void {
    this.#origin.shared.hmacs.delete(this);
    this.#origin.shared.probes.delete(this);
    if (this.#slot >= 0) this.#origin.shared.slab.release(this.#slot);
    this.#slot = -1;
  }
}
