/**
 * The daemon's record of a live session, kept small because a license host may hold a
 * million of them: the token's few fields the daemon reads, its bytes (as a latin1 string:
 * a typed array would cost its own ArrayBuffer and an off-heap block, three times the
 * bytes), and nothing keyed until the session talks. The session key, its keyed HMAC, the
 * replay window, the slot for its last HEARTBEAT_ACK and the test_conn state are made on
 * first use; keyed HMACs live in a bounded cache of recently active sessions and are
 * re-derived from the token (keyring + HKDF) when an evicted session talks again.
 */
import { ReplayWindow } from '../auth/replay.ts';
import { KeyedHmac } from '../crypto/hmac.ts';
import { Flags, HEADER_LENGTH, MAGIC, MsgType, TAG_LENGTH, VERSION } from '../wire/index.ts';

/** Bytes of a HEARTBEAT_ACK: header, leases u16, queued u16, heartbeatMs u32, tag. */
export const HEARTBEAT_ACK_LENGTH = HEADER_LENGTH + 8 + TAG_LENGTH;

/**
 * A signed HEARTBEAT_ACK (protocol.md 5.6) with REPLY|FROM_SERVER and the request's mode,
 * request id, session id and seq, encoded directly: the daemon sends one per heartbeat, and
 * the generic encoder costs more than the rest of the reply. Positional, to allocate
 * nothing but the bytes.
 * @throws {RangeError} when a field is out of its range
 */
export function encodeHeartbeatAck(
  requestId: number,
  sessionId: bigint,
  seq: number,
  mode: number,
  timestamp: number,
  leases: number,
  queued: number,
  heartbeatMs: number,
  key: KeyedHmac,
): Uint8Array {
  if (!(u32(requestId) && u32(seq) && u32(heartbeatMs))) {
    throw new RangeError('requestId, seq and heartbeatMs must be in [0, 2^32)');
  }
  if (!(leases >= 0 && leases <= 0xffff && queued >= 0 && queued <= 0xffff)) {
    throw new RangeError('leases and queued must be in [0, 65535]');
  }
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) {
    throw new RangeError('timestamp must be a non-negative safe integer');
  }
  if (!(mode >= 1 && mode <= 4)) throw new RangeError('mode must be 1, 2, 3 or 4');
  if (sessionId < 0n || sessionId > 0xffff_ffff_ffff_ffffn) {
    throw new RangeError('sessionId must be a u64');
  }
  const b = new Uint8Array(HEARTBEAT_ACK_LENGTH);
  const v = new DataView(b.buffer);
  v.setUint16(0, MAGIC);
  b[2] = VERSION;
  b[3] = MsgType.HEARTBEAT_ACK;
  b[4] = Flags.REPLY | Flags.FROM_SERVER;
  b[5] = mode;
  v.setUint16(6, HEARTBEAT_ACK_LENGTH);
  v.setUint32(8, requestId);
  v.setBigUint64(12, sessionId);
  v.setUint32(20, seq);
  v.setUint32(24, Math.floor(timestamp / 0x1_0000_0000));
  v.setUint32(28, timestamp >>> 0);
  v.setUint16(32, leases);
  v.setUint16(34, queued);
  v.setUint32(36, heartbeatMs);
  key.signTrailing(b);
  return b;
}

function u32(v: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff;
}

/** Turns a token into its session key; undefined when its server key is gone. */
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
}

/**
 * Keyed HMACs of the most recently active sessions, at most `max`, and the key derivation
 * that rebuilds an evicted one. Two generations: new and refreshed entries go to the young
 * one; when it holds max/2 the old generation is dropped whole and the young one takes its
 * place. Every operation is O(1), with no Map iteration (V8 walks the deleted entries at a
 * Map's front, so evicting one at a time by iteration grows costly), and a session used
 * within the last max/2 insertions is always kept.
 */
export class HmacCache {
  readonly derive: KeyDeriver;
  readonly #half: number;
  #young = new Map<Session, KeyedHmac>();
  #old = new Map<Session, KeyedHmac>();

  /** @throws {RangeError} when max is not an integer ≥ 2; {TypeError} without derive */
  constructor(max: number, derive: KeyDeriver) {
    if (!Number.isInteger(max) || max < 2) throw new RangeError('max must be an integer ≥ 2');
    if (typeof derive !== 'function') throw new TypeError('derive must be a function');
    this.#half = Math.floor(max / 2);
    this.derive = derive;
  }

  get size(): number {
    return this.#young.size + this.#old.size;
  }

  get(s: Session): KeyedHmac | undefined {
    const h = this.#young.get(s);
    if (h) return h;
    const o = this.#old.get(s);
    if (o) {
      this.#old.delete(s);
      this.set(s, o);
    }
    return o;
  }

  set(s: Session, h: KeyedHmac): void {
    this.#old.delete(s);
    this.#young.set(s, h);
    if (this.#young.size >= this.#half) {
      this.#old = this.#young;
      this.#young = new Map();
    }
  }

  delete(s: Session): void {
    this.#young.delete(s);
    this.#old.delete(s);
  }
}

/**
 * What a session holds once it has talked: its window, and the fields of its last
 * HEARTBEAT_ACK (about 60 bytes, where keeping the 72 bytes themselves would cost an
 * ArrayBuffer and an off-heap block: ~350). u32 values are kept as int32, which V8 holds
 * inline.
 */
class Live {
  window: ReplayWindow;
  requestId = -1;
  seq = 0;
  mode = 0;
  stamp = 0;
  counts = 0;
  heartbeatMs = 0;

  constructor(window: ReplayWindow) {
    this.window = window;
  }
}

/** test_conn state, for the sessions the daemon has had to ping. */
class Probe {
  serverSeq = 0;
  pings = 0;
  nextPingAt = 0;
  nonce: Uint8Array | undefined = undefined;
}

/** A never-verifying key for a session whose server key was retired under it. */
const DEAD_KEY = new KeyedHmac(new Uint8Array(32).fill(0xa5));

export class Session {
  readonly id: bigint;
  readonly user: string;
  readonly host: string;
  readonly vendor: string;
  address: string;
  port: number;
  lastSeen: number;
  readonly #token: string;
  /** Seconds, a small integer where ms would take a heap number per session. */
  readonly #expiresS: number;
  /** Made when the session first talks: an idle session holds none. */
  #live: Live | undefined;
  #probe: Probe | undefined;
  readonly #cache: HmacCache;

  constructor(f: SessionFields, cache: HmacCache, key?: Uint8Array) {
    this.id = f.id;
    this.#token = Buffer.from(f.token.buffer, f.token.byteOffset, f.token.byteLength).toString(
      'latin1',
    );
    this.user = f.user;
    this.host = f.host;
    this.vendor = f.vendor;
    // Tokens expire on a whole second; anything else would be rounded up to one.
    this.#expiresS = Math.ceil(f.expires / 1000);
    this.address = f.address;
    this.port = f.port;
    this.lastSeen = f.lastSeen;
    this.#cache = cache;
    if (key) cache.set(this, new KeyedHmac(key));
  }

  /** The token's bytes exactly as issued (a fresh copy per call). */
  get token(): Uint8Array {
    const b = Buffer.from(this.#token, 'latin1');
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  }

  /** Token expiry, ms since the epoch. */
  get expires(): number {
    return this.#expiresS * 1000;
  }

  /** The session key, keyed once (re-derived from the token after a cache eviction). */
  get hmac(): KeyedHmac {
    let h = this.#cache.get(this);
    if (h) return h;
    const key = this.#cache.derive(this.token);
    if (!key) return DEAD_KEY;
    h = new KeyedHmac(key);
    this.#cache.set(this, h);
    return h;
  }

  /** Replay window over the client's seq, made when the session first talks. */
  get window(): ReplayWindow {
    this.#live ??= new Live(new ReplayWindow(1024));
    return this.#live.window;
  }

  set window(w: ReplayWindow) {
    if (this.#live) this.#live.window = w;
    else this.#live = new Live(w);
  }

  /**
   * The HEARTBEAT_ACK kept for `requestId`, if it answered the session's last kept request,
   * rebuilt byte for byte. HEARTBEAT_ACKs are kept here instead of the daemon's reply cache:
   * a client has one heartbeat out at a time, so the last reply is the one a retransmission
   * asks for.
   */
  keptReply(requestId: number): Uint8Array | undefined {
    const l = this.#live;
    if (!l || l.mode === 0 || !u32(requestId) || l.requestId !== (requestId | 0)) return undefined;
    return encodeHeartbeatAck(
      l.requestId >>> 0,
      this.id,
      l.seq >>> 0,
      l.mode,
      l.stamp,
      l.counts >>> 16,
      l.counts & 0xffff,
      l.heartbeatMs >>> 0,
      this.hmac,
    );
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
    this.#live ??= new Live(new ReplayWindow(1024));
    const l = this.#live;
    const v = new DataView(reply.buffer, reply.byteOffset, HEARTBEAT_ACK_LENGTH);
    l.requestId = requestId | 0;
    l.seq = v.getInt32(20);
    l.mode = reply[5]!;
    l.stamp = v.getUint32(24) * 0x1_0000_0000 + v.getUint32(28);
    l.counts = v.getInt32(32);
    l.heartbeatMs = v.getInt32(36);
  }

  /** The server's seq in its last TEST_CONN to this session. */
  get serverSeq(): number {
    return this.#probe?.serverSeq ?? 0;
  }

  set serverSeq(v: number) {
    this.#probing().serverSeq = v;
  }

  /** Unanswered test_conn pings. */
  get pings(): number {
    return this.#probe?.pings ?? 0;
  }

  set pings(v: number) {
    // Every request resets it: no state for a session that was never pinged.
    if (this.#probe) this.#probe.pings = v;
    else if (v !== 0) this.#probing().pings = v;
  }

  /** When the next test_conn ping is due (ms). */
  get nextPingAt(): number {
    return this.#probe?.nextPingAt ?? 0;
  }

  set nextPingAt(v: number) {
    this.#probing().nextPingAt = v;
  }

  /** The nonce of the outstanding test_conn pings, if any. */
  get pingNonce(): Uint8Array | undefined {
    return this.#probe?.nonce;
  }

  set pingNonce(v: Uint8Array | undefined) {
    if (this.#probe) this.#probe.nonce = v;
    else if (v) this.#probing().nonce = v;
  }

  #probing(): Probe {
    this.#probe ??= new Probe();
    return this.#probe;
  }

  /** Forget the keyed state (the session is gone). */
  drop(): void {
    this.#cache.delete(this);
  }
}
