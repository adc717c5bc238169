/**
 * floatlmd's core: one UDP socket and one message loop that answers every message of
 * protocol.md, the session table, dead-client reaping (`test_conn`), restart grace, and the
 * group commit that puts every grant, release and revocation on disk before its reply
 * leaves. Lifecycle: RUNNING → CLOSING → CLOSED; `close()` is idempotent.
 */
import dgram from 'node:dgram';
import { ServerAuth } from '../auth/server.ts';
import { signDatagram } from '../auth/sign.ts';
import { equalBytes, type KeyedHmac, type Keyring, randomBytes } from '../crypto/index.ts';
import { LicensePool } from '../license/pool.ts';
import { openStore, type Store } from '../store/index.ts';
import {
  decodeToken,
  makeTicket,
  makeToken,
  returnToken,
  sessionKeyFor,
  type Token,
  TokenStore,
  verifyTicket,
} from '../token/index.ts';
import {
  AdminOp,
  type AnyDatagram,
  AuthMode,
  CheckoutStatus,
  type Datagram,
  DecodeError,
  decodeDatagram,
  ERROR_TEXT,
  ErrorCode,
  errorName,
  Flags,
  HEADER_LENGTH,
  looksLikeDatagram,
  MIN_FIRST_CONTACT,
  MsgType,
  ServerState,
  TAG_LENGTH,
  toHex,
} from '../wire/index.ts';
import type { Bodies } from '../wire/messages.ts';
import { ConfigError, type DaemonConfig, type LoadedConfig, loadConfig } from './config.ts';
import { type Logger, ReportLog, silentLogger } from './log.ts';
import { RateLimiter } from './ratelimit.ts';
import { ReplyCache } from './replycache.ts';
import { encodeHeartbeatAck, HmacCache, Session } from './session.ts';
import { buildStatusPages } from './status.ts';

export const SERVER_VERSION = '0.1.0';

export interface DaemonOptions {
  licenseFile: string;
  keysFile: string;
  stateDir: string;
  host?: string;
  port?: number;
  logger?: Logger;
  /** JSON-lines report log; default `<stateDir>/report.jsonl`; `false` for none. */
  reportLog?: string | false;
  now?: () => number;
  /** Heartbeat interval told to clients (ms). Default 10 000. */
  heartbeatMs?: number;
  /** A session quiet this long is pinged (ms). Default 2 × heartbeatMs. */
  quietMs?: number;
  /** Interval between unanswered test_conn pings (ms). Default 5 000. */
  testConnIntervalMs?: number;
  /** Unanswered pings before the session is reaped. Default 3. */
  testConnTries?: number;
  /** Restart grace (ms). Default 90 000. */
  graceMs?: number;
  /** Start in grace even with an empty state dir (taking over from a dead server). */
  takeover?: boolean;
  /** Token lifetime (s). Default 86 400. */
  tokenLifetimeS?: number;
  /** Per-source datagrams/s and burst; `rate: 0` disables. Default 1000/s, burst 2000. */
  rateLimit?: { rate: number; burst: number };
  /** Live sessions per user and per host. Default 64 and 256. */
  maxSessionsPerUser?: number;
  maxSessionsPerHost?: number;
  /** A session holding nothing and quiet this long is forgotten (ms). Default 1 h. */
  idleSessionMs?: number;
  /** Sessions whose keyed HMAC stays in memory (the most recently active). Default 65 536. */
  hmacCacheSize?: number;
  /** Housekeeping timer period (ms): reaping, grace, flushing. Default 1000. */
  tickMs?: number;
  /** Called once the daemon has closed (after an admin shutdown, for example). */
  onClosed?: () => void;
}

/** Counters the operator can read (status, logs, benchmarks). */
export interface Counters {
  received: number;
  malformed: number;
  rateLimited: number;
  badMac: number;
  dropped: number;
  replayed: number;
  retransmits: number;
  answered: number;
  errors: number;
  internal: number;
  reaped: number;
}

type State = 'RUNNING' | 'CLOSING' | 'CLOSED';

interface Outgoing {
  bytes: Uint8Array;
  address: string;
  port: number;
  cacheKey: string | undefined;
  /** A HEARTBEAT_ACK: kept in this session's slot (for `requestId`), not the reply cache. */
  keep?: Session | undefined;
  requestId?: number;
}

/** Bytes of a mode-3 HEARTBEAT: header and tag, no body. */
const HEARTBEAT_LENGTH = HEADER_LENGTH + TAG_LENGTH;
/** How long a reply answers retransmissions (protocol.md section 11). */
const REPLY_TTL_MS = 60_000;

const TICK_MS = 1000;

/** The license daemon. Create with `Daemon.start(options)`. */
export class Daemon {
  readonly counters: Counters = {
    received: 0,
    malformed: 0,
    rateLimited: 0,
    badMac: 0,
    dropped: 0,
    replayed: 0,
    retransmits: 0,
    answered: 0,
    errors: 0,
    internal: 0,
    reaped: 0,
  };
  #state: State = 'RUNNING';
  readonly #opts: DaemonOptions;
  readonly #now: () => number;
  readonly #log: Logger;
  readonly #report: ReportLog;
  readonly #socket: dgram.Socket;
  readonly #store: Store;
  readonly #tokens = new TokenStore();
  readonly #sessions = new Map<bigint, Session>();
  /** Live sessions per vendor+user and per source address, kept with the table. */
  readonly #perUser = new Map<string, number>();
  readonly #perHost = new Map<string, number>();
  readonly #hmacs: HmacCache;
  readonly #replies = new ReplyCache(65_536, REPLY_TTL_MS);
  /** Cache keys of requests whose replies wait for the group commit. */
  readonly #inflight = new Set<string>();
  readonly #rate: RateLimiter | undefined;
  #config: LoadedConfig;
  #keyring: Keyring;
  #auth: ServerAuth;
  #pool: LicensePool;
  #graceUntil = 0;
  /** In a takeover grace nobody knows every holder, so it never ends early. */
  #takeoverGrace = false;
  /** Where the quiet-session sweep resumes on the next tick. */
  #scan: Iterator<Session> | undefined;
  /** Leases loaded from disk that have not been reclaimed yet (grace ends early at zero). */
  readonly #unclaimed = new Set<bigint>();
  readonly #started: number;
  #outgoing: Outgoing[] = [];
  #tickScheduled = false;
  #timer: NodeJS.Timeout | undefined;
  #closed: Promise<void> | undefined;
  /** Bumped on every state change: STATUS pages of one state carry the same snapshot. */
  #generation = 0;
  #sending = 0;
  #drained: (() => void) | undefined;

  private constructor(
    opts: DaemonOptions,
    config: LoadedConfig,
    store: Store,
    socket: dgram.Socket,
  ) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    this.#log = opts.logger ?? silentLogger;
    this.#config = config;
    this.#keyring = config.keys.keyring;
    this.#hmacs = new HmacCache(opts.hmacCacheSize ?? 65_536, this.#deriveKey);
    this.#store = store;
    this.#socket = socket;
    this.#started = this.#now();
    const reportPath =
      opts.reportLog === false ? undefined : (opts.reportLog ?? `${opts.stateDir}/report.jsonl`);
    this.#report = new ReportLog(reportPath);
    const rl = opts.rateLimit ?? { rate: 1000, burst: 2000 };
    this.#rate = rl.rate > 0 ? new RateLimiter(rl) : undefined;
    this.#auth = new ServerAuth({
      keyring: this.#keyring,
      credentials: config.keys.credentials,
      admin: config.keys.admin,
      sessions: { getSession: (id) => this.#sessions.get(id) },
      revoked: { isRevoked: (id) => this.#tokens.isRevoked(id) || this.#store.isRevoked(id) },
      now: this.#now,
    });
    this.#pool = new LicensePool(config.license.features, { now: this.#now });
  }

  /**
   * Loads the license and keys, opens the state, restores what it held, binds the socket.
   * @throws {Error} with a one-line message when a file is missing or bad, the state is
   *   corrupt or foreign, or the port is taken
   */
  static async start(opts: DaemonOptions): Promise<Daemon> {
    const now = (opts.now ?? Date.now)();
    const config = loadConfig(opts.licenseFile, opts.keysFile, now);
    const lifetime = opts.tokenLifetimeS ?? 86_400;
    const grace = config.keys.keyring.toJSON().grace;
    if (lifetime > grace) {
      // A token must outlive neither the key that signed it nor its grace.
      throw new ConfigError(
        `token lifetime ${lifetime} s exceeds the keyring grace ${grace} s in ${opts.keysFile}`,
      );
    }
    const store = openStore(opts.stateDir);
    let socket: dgram.Socket | undefined;
    try {
      const host = opts.host ?? '127.0.0.1';
      socket = dgram.createSocket({ type: host.includes(':') ? 'udp6' : 'udp4' });
      const s = socket;
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.bind(opts.port ?? 27400, host, () => {
          s.off('error', reject);
          resolve();
        });
      });
      try {
        // Bursts of datagrams queue in the kernel while a group commit runs; give them room.
        s.setRecvBufferSize(4 * 1024 * 1024);
      } catch {
        // Some systems cap the size (net.core.rmem_max); the default still works.
      }
      const d = new Daemon(opts, config, store, s);
      d.#restore(store, now);
      s.on('message', (msg, rinfo) => d.#onMessage(msg, rinfo));
      s.on('error', (e) => d.#log.error(`socket: ${e.message}`));
      d.#timer = setInterval(() => d.#tick(), opts.tickMs ?? TICK_MS);
      d.#timer.unref();
      for (const p of config.license.problems) d.#log.warn(`license: ${p.text}`);
      d.#report.write('start', now, { features: config.license.features.length });
      d.#log.info(`floatlmd ${SERVER_VERSION} listening on ${host}:${s.address().port}`);
      return d;
    } catch (e) {
      socket?.close();
      store.close();
      throw e;
    }
  }

  get state(): State {
    return this.#state;
  }

  /** The bound address and port. */
  address(): { address: string; port: number } {
    const a = this.#socket.address();
    return { address: a.address, port: a.port };
  }

  /** Milliseconds of restart grace left (0 outside grace). */
  graceLeft(): number {
    return Math.max(0, this.#graceUntil - this.#now());
  }

  /** Problems found in the license file at the last (re)load. */
  get licenseProblems(): readonly string[] {
    return this.#config.license.problems.map((p) => p.text);
  }

  /** The seat pools (read-only use: status, tests, benchmarks). */
  get pool(): LicensePool {
    return this.#pool;
  }

  /** Sizes of every table that grows with traffic (abuse tests, diagnostics). */
  stateSizes(): { sessions: number; nonces: number; replies: number; inflight: number } {
    return {
      sessions: this.#sessions.size,
      nonces: this.#auth.nonces.size,
      replies: this.#replies.size,
      inflight: this.#inflight.size,
    };
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  /**
   * Rereads the license file and the keys file without dropping held seats.
   * @throws {Error} with a one-line reason when either file cannot be loaded (nothing changes)
   */
  reread(): { features: number; problems: string[] } {
    const now = this.#now();
    const config = loadConfig(this.#opts.licenseFile, this.#opts.keysFile, now);
    this.#config = config;
    this.#keyring = config.keys.keyring;
    this.#auth.setKeys(config.keys.credentials, config.keys.admin);
    this.#auth.setKeyring(config.keys.keyring);
    const { dropped } = this.#pool.reload(config.license.features);
    // A raised count may have granted seats to queued clients: persist them now.
    this.#afterRelease(now);
    for (const e of dropped) {
      this.#store.dequeue(e.sessionId, e.feature);
      this.#report.write('dequeue', now, {
        session: hexId(e.sessionId),
        user: e.user,
        feature: e.feature,
        why: 'feature no longer licensed',
      });
    }
    for (const p of config.license.problems) this.#log.warn(`license: ${p.text}`);
    this.#report.write('reread', now, {
      features: config.license.features.length,
      problems: config.license.problems.length,
    });
    this.#log.info(
      `reread: ${config.license.features.length} feature line(s), ${config.license.problems.length} problem(s)`,
    );
    return {
      features: config.license.features.length,
      problems: config.license.problems.map((p) => p.text),
    };
  }

  /** Closes the socket and the state; pending replies are committed and sent first. */
  close(): Promise<void> {
    if (this.#closed) return this.#closed;
    this.#state = 'CLOSING';
    this.#closed = (async () => {
      if (this.#timer) clearInterval(this.#timer);
      try {
        this.#commitAndSend();
      } catch (e) {
        this.#log.error(`close: ${(e as Error).message}`);
      }
      this.#report.write('stop', this.#now(), {});
      this.#report.flush();
      // Let the last replies (the answer to an admin shutdown, say) leave before closing.
      if (this.#sending > 0) {
        await new Promise<void>((resolve) => {
          this.#drained = resolve;
          setTimeout(resolve, 1000).unref();
        });
      }
      await new Promise<void>((resolve) => this.#socket.close(() => resolve()));
      this.#store.close();
      this.#state = 'CLOSED';
      this.#log.info('floatlmd closed');
      this.#opts.onClosed?.();
    })();
    return this.#closed;
  }

  // ---------------------------------------------------------------- restore

  #restore(store: Store, now: number): void {
    const snap = store.load({ sessions: false });
    // Rows repeat their host, vendor and address; one string each serves every session.
    const names = new Map<string, string>();
    const one = (x: string): string => {
      const known = names.get(x);
      if (known !== undefined) return known;
      names.set(x, x);
      return x;
    };
    let stored = 0;
    for (const s of store.eachSession()) {
      stored++;
      if (s.expires <= now) continue;
      // No decoding and no key derivation here: both wait until the session talks.
      this.#track(
        new Session(
          {
            id: s.tokenId,
            token: s.token,
            user: s.user,
            host: one(s.host),
            vendor: one(s.vendor),
            expires: s.expires,
            address: one(s.ip),
            port: s.port,
            lastSeen: now,
          },
          this.#hmacs,
        ),
      );
    }
    const leases = snap.leases.map((l) => ({
      leaseId: l.leaseId,
      sessionId: l.tokenId,
      feature: l.feature,
      version: l.version,
      count: l.count,
      grantedAt: l.grantedAt,
      user: this.#sessions.get(l.tokenId)?.user ?? '?',
      host: this.#sessions.get(l.tokenId)?.host ?? '?',
    }));
    const queue = snap.queue.map((q) => ({
      sessionId: q.tokenId,
      feature: q.feature,
      version: q.version,
      count: q.count,
      since: q.since,
      user: this.#sessions.get(q.tokenId)?.user ?? '?',
      host: this.#sessions.get(q.tokenId)?.host ?? '?',
    }));
    this.#pool.restore({ leases, queue });
    for (const l of snap.leases) this.#unclaimed.add(l.leaseId);
    const grace = this.#opts.graceMs ?? 90_000;
    // A takeover grace interrupted by a restart goes on: its holders may not have come back.
    const carried = Number(snap.meta.get('takeover_grace_until') ?? 0);
    this.#takeoverGrace = !!this.#opts.takeover || carried > now;
    if ((this.#unclaimed.size > 0 || this.#takeoverGrace) && grace > 0) {
      this.#graceUntil = Math.max(now + grace, carried);
      this.#log.info(
        `restart grace: ${Math.round((this.#graceUntil - now) / 1000)} s for ${this.#takeoverGrace ? 'every holder' : `${this.#unclaimed.size} lease(s)`} to reclaim; new grants wait`,
      );
    } else if (carried > now) {
      this.#graceUntil = carried;
    }
    if (this.#takeoverGrace && this.#graceUntil > now) {
      this.#store.setMeta('takeover_grace_until', String(this.#graceUntil));
      this.#store.commit();
    }
    if (stored || snap.leases.length) {
      this.#log.info(
        `state: restored ${this.#sessions.size} session(s), ${snap.leases.length} lease(s), ${snap.queue.length} queued`,
      );
    }
  }

  #addSession(
    token: Token,
    sessionKey: Uint8Array,
    address: string,
    port: number,
    now: number,
  ): Session {
    const s = new Session(
      {
        id: token.tokenId,
        token: token.bytes,
        user: token.user,
        host: token.host,
        vendor: token.vendor,
        expires: token.expires * 1000,
        address,
        port,
        lastSeen: now,
      },
      this.#hmacs,
      sessionKey,
    );
    this.#track(s);
    return s;
  }

  /** Adds a session to the table and to the per-user and per-host counts (SESSION_LIMIT). */
  #track(s: Session): void {
    this.#sessions.set(s.id, s);
    bump(this.#perUser, `${s.vendor}\0${s.user}`, 1);
    bump(this.#perHost, s.address, 1);
  }

  #untrack(s: Session): void {
    this.#sessions.delete(s.id);
    bump(this.#perUser, `${s.vendor}\0${s.user}`, -1);
    bump(this.#perHost, s.address, -1);
  }

  /** The session key of a token, from the keyring (undefined once its key is retired). */
  readonly #deriveKey = (tokenBytes: Uint8Array): Uint8Array | undefined => {
    try {
      const token = decodeToken(tokenBytes);
      const found = this.#keyring.lookup(token.keyId, this.#now());
      return found.ok ? sessionKeyFor(token, found.key) : undefined;
    } catch {
      return undefined;
    }
  };

  // ---------------------------------------------------------------- message loop

  #onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    try {
      this.#handle(new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength), rinfo);
    } catch (e) {
      this.counters.internal++;
      this.#log.error(
        `internal error handling a datagram from ${rinfo.address}:${rinfo.port}: ${(e as Error).stack ?? e}`,
      );
    }
  }

  #handle(bytes: Uint8Array, rinfo: dgram.RemoteInfo): void {
    this.counters.received++;
    if (this.#state !== 'RUNNING') return;
    const now = this.#now();
    if (this.#rate && !this.#rate.allow(rinfo.address, now)) {
      this.counters.rateLimited++;
      return;
    }
    if (!looksLikeDatagram(bytes)) {
      this.counters.malformed++;
      return;
    }
    if (
      bytes.length === HEARTBEAT_LENGTH &&
      bytes[3] === MsgType.HEARTBEAT &&
      bytes[4] === 0 &&
      bytes[5] === AuthMode.SESSION &&
      this.#heartbeat(bytes, rinfo, now)
    )
      return;
    let d: AnyDatagram;
    try {
      d = decodeDatagram(bytes);
    } catch (e) {
      if (e instanceof DecodeError) {
        this.counters.malformed++;
        return;
      }
      throw e;
    }
    const from = { address: rinfo.address, port: rinfo.port };
    const decision = this.#auth.authenticate(bytes, d, from);
    if (decision.action === 'drop') {
      if (decision.reason === 'replay') {
        // A retransmission whose MAC verified: answer from the cache, never process again.
        if (!this.#answerFromCache(d, cacheKey(d, bytes), bytes, rinfo, now))
          this.counters.replayed++;
      } else if (decision.reason === 'bad-mac' || decision.reason === 'bad-token')
        this.counters.badMac++;
      else this.counters.dropped++;
      return;
    }
    const key = cacheKey(d, bytes);
    // The same request id again (a mode-3 request re-sent in mode 2, or a retransmission
    // that reached us while its first reply waits for the commit): never process twice.
    if (decision.action === 'accept' && decision.mode !== AuthMode.CREDENTIAL) {
      if (this.#inflight.has(key)) return;
      if (this.#answerFromCache(d, key, bytes, rinfo, now)) return;
    }
    if (decision.action === 'refuse') {
      this.#sendError(
        d,
        decision.mode,
        decision.key,
        decision.code,
        decision.retryAfterMs,
        rinfo,
        key,
        bytes.length,
      );
      return;
    }
    let session: Session | undefined;
    if (decision.mode === AuthMode.TOKEN && decision.token && decision.sessionKey) {
      session = this.#sessions.get(decision.sessionId);
      if (!session) {
        session = this.#addSession(
          decision.token,
          decision.sessionKey,
          rinfo.address,
          rinfo.port,
          now,
        );
        if (decision.window) session.window = decision.window;
        this.#store.putSession(this.#sessionRecord(session, now));
        this.#log.debug(
          `session ${hexId(session.id)} restored from its token (${session.user}@${session.host})`,
        );
      }
    } else if (decision.mode === AuthMode.SESSION) {
      session = this.#sessions.get(decision.sessionId);
    }
    if (d.type === MsgType.TEST_CONN_ACK) {
      // Only the answer to the ping outstanding counts: a replayed old ACK keeps nothing alive.
      if (session?.pingNonce && equalBytes(session.pingNonce, d.body.nonce)) {
        session.pingNonce = undefined;
        session.lastSeen = now;
        session.pings = 0;
        this.#moveIfNeeded(session, decision.moved, rinfo);
      }
      return;
    }
    if (session) {
      session.lastSeen = now;
      session.pings = 0;
      session.pingNonce = undefined;
      this.#moveIfNeeded(session, decision.moved, rinfo);
    }
    if (
      decision.mode === AuthMode.TOKEN &&
      (d.type === MsgType.CHECKOUT || d.type === MsgType.STATUS) &&
      bytes.length < MIN_FIRST_CONTACT
    ) {
      // Answered before any processing: its reply could be larger than the request.
      this.#sendError(
        d,
        decision.mode,
        decision.key,
        ErrorCode.NEED_PADDING,
        0,
        rinfo,
        key,
        bytes.length,
      );
      return;
    }
    const ctx: Ctx = {
      d,
      key: decision.key,
      mode: decision.mode,
      rinfo,
      cacheKey: key,
      requestLength: bytes.length,
      now,
      session,
    };
    switch (d.type) {
      case MsgType.HELLO:
        this.#hello(ctx, d, decision.credId ?? '');
        return;
      case MsgType.PING:
        this.#reply(ctx, MsgType.PONG, {
          serverVersion: SERVER_VERSION,
          uptimeMs: now - this.#started,
          state:
            this.#state !== 'RUNNING'
              ? ServerState.CLOSING
              : this.graceLeft() > 0
                ? ServerState.GRACE
                : ServerState.RUNNING,
          graceLeftMs: Math.min(this.graceLeft(), 0xffffffff),
        });
        return;
      case MsgType.STATUS:
        this.#status(ctx, d);
        return;
      case MsgType.ADMIN:
        this.#admin(ctx, d, decision.adminId ?? '');
        return;
      default:
        break;
    }
    if (!session) {
      this.#sendError(
        d,
        decision.mode,
        decision.key,
        ErrorCode.UNKNOWN_SESSION,
        0,
        rinfo,
        key,
        bytes.length,
      );
      return;
    }
    switch (d.type) {
      case MsgType.CHECKOUT:
        this.#checkout(ctx, session, d);
        return;
      case MsgType.HEARTBEAT: {
        const reply = this.#heartbeatAck(session, d.requestId, d.seq, ctx.mode, now, ctx.key);
        this.counters.answered++;
        this.#send(
          {
            bytes: reply,
            address: rinfo.address,
            port: rinfo.port,
            cacheKey: key,
            keep: session,
            requestId: d.requestId,
          },
          this.#store.pending() > 0,
        );
        return;
      }
      case MsgType.CHECKIN:
        this.#checkin(ctx, session, d);
        return;
      case MsgType.RECLAIM:
        this.#reclaim(ctx, session, d);
        return;
      default:
        this.counters.dropped++;
    }
  }

  /** Same IP, new port, MAC verified: the session (and where test_conn goes) moves. */
  #moveIfNeeded(session: Session, moved: boolean | undefined, rinfo: dgram.RemoteInfo): void {
    if (moved && (session.address !== rinfo.address || session.port !== rinfo.port)) {
      // Same text, keep the string the session has: it may be shared with other sessions.
      if (session.address !== rinfo.address) {
        bump(this.#perHost, session.address, -1);
        bump(this.#perHost, rinfo.address, 1);
        session.address = rinfo.address;
      }
      session.port = rinfo.port;
      this.#store.touchSessionAddr(session.id, rinfo.address, rinfo.port);
    }
  }

  /**
   * Resends the cached reply to this request, if any. A reply carries its request's auth
   * mode, so a reply cached for the mode-3 form of a request re-sent in mode 2 is re-signed
   * with the mode byte changed (same session key, nothing else changes).
   */
  #answerFromCache(
    d: AnyDatagram,
    key: string,
    bytes: Uint8Array,
    rinfo: dgram.RemoteInfo,
    now: number,
  ): boolean {
    let cached: Uint8Array | undefined;
    if (d.type === MsgType.HEARTBEAT) {
      const s = this.#sessions.get(d.sessionId);
      if (s) cached = kept(s, d.requestId, now);
    }
    cached ??= this.#replies.get(key, now);
    if (!cached) return false;
    return this.#resend(cached, d.auth.mode, d.sessionId, bytes.length, rinfo);
  }

  /** Sends a cached reply again, in the auth mode of the request now asking for it. */
  #resend(
    cached: Uint8Array,
    mode: AuthMode,
    sessionId: bigint,
    requestLength: number,
    rinfo: dgram.RemoteInfo,
  ): boolean {
    let reply = cached;
    if (reply[5] !== mode) {
      const s = this.#sessions.get(sessionId);
      if (!s) return false;
      reply = new Uint8Array(cached);
      reply[5] = mode;
      s.hmac.signTrailing(reply);
    }
    if ((mode === AuthMode.CREDENTIAL || mode === AuthMode.TOKEN) && reply.length > requestLength) {
      // Never amplify, not even from the cache: the request was answered; stay silent.
      return true;
    }
    this.counters.retransmits++;
    this.#sendRaw(reply, rinfo.port, rinfo.address);
    return true;
  }

  /**
   * The fast path of the commonest datagram, a mode-3 HEARTBEAT (framing already checked),
   * read straight from its bytes: what the general path does for one, without decoding, the
   * reply cache or the generic encoder. Returns false, having changed nothing, for anything
   * out of the ordinary (unknown session, bad tag, replay, clock skew, expiry, a new address
   * or port, a commit pending): the general path then takes the datagram.
   */
  #heartbeat(bytes: Uint8Array, rinfo: dgram.RemoteInfo, now: number): boolean {
    // With a commit pending the reply must wait for it, and only the general path does that.
    if (this.#store.pending() > 0 || this.#outgoing.length > 0) return false;
    const v = new DataView(bytes.buffer, bytes.byteOffset, HEARTBEAT_LENGTH);
    const tsHigh = v.getUint32(24);
    if (tsHigh > 0x1f_ffff) return false; // not a safe integer: the decoder refuses it
    const s = this.#sessions.get(v.getBigUint64(12));
    if (!s) return false;
    const seq = v.getUint32(20);
    const timestamp = tsHigh * 0x1_0000_0000 + v.getUint32(28);
    if (!this.#auth.acceptsAtOnce(s, bytes, MsgType.HEARTBEAT, seq, timestamp, rinfo)) {
      return false;
    }
    // Accepted: the window took the seq, so from here on this path must finish the job.
    const requestId = v.getUint32(8);
    const cached = kept(s, requestId, now);
    if (cached) return this.#resend(cached, AuthMode.SESSION, s.id, bytes.length, rinfo);
    s.lastSeen = now;
    s.pings = 0;
    s.pingNonce = undefined;
    const reply = this.#heartbeatAck(s, requestId, seq, AuthMode.SESSION, now, s.hmac);
    this.counters.answered++;
    s.keepReply(requestId, reply);
    this.#sendRaw(reply, rinfo.port, rinfo.address);
    return true;
  }

  /** The HEARTBEAT_ACK to a HEARTBEAT of session `s`, signed with `key`. */
  #heartbeatAck(
    s: Session,
    requestId: number,
    seq: number,
    mode: AuthMode,
    now: number,
    key: KeyedHmac,
  ): Uint8Array {
    // Leases restored from disk but not yet reclaimed do not count: a client that holds
    // more than this re-presents its tickets (protocol.md, HEARTBEAT_ACK).
    let leases = 0;
    for (const l of this.#pool.leasesOf(s.id)) if (!this.#unclaimed.has(l.leaseId)) leases++;
    const queued = this.#pool.queuedOf(s.id);
    const hb = this.#heartbeatMs();
    return encodeHeartbeatAck(requestId, s.id, seq, mode, now, leases, queued, hb, key);
  }

  #heartbeatMs(): number {
    return this.#opts.heartbeatMs ?? 10_000;
  }

  // ---------------------------------------------------------------- handlers

  #hello(ctx: Ctx, d: Datagram<typeof MsgType.HELLO>, credId: string): void {
    const now = ctx.now;
    const b = d.body;
    const perUser = this.#opts.maxSessionsPerUser ?? 64;
    const perHost = this.#opts.maxSessionsPerHost ?? 256;
    const users = this.#perUser.get(`${b.vendor}\0${b.user}`) ?? 0;
    const hosts = this.#perHost.get(ctx.rinfo.address) ?? 0;
    if (users >= perUser || hosts >= perHost) {
      this.#replyError(ctx, ErrorCode.SESSION_LIMIT, 0);
      return;
    }
    const token = makeToken(
      {
        addr: ctx.rinfo.address,
        port: ctx.rinfo.port,
        host: b.host,
        vendor: b.vendor,
        program: b.program,
        version: b.version,
        user: b.user,
        lifetimeS: this.#opts.tokenLifetimeS ?? 86_400,
      },
      this.#keyring,
      now,
    );
    const serverKey = this.#keyring.lookup(token.keyId, now);
    if (!serverKey.ok) throw new Error('the current server key does not verify');
    const sessionKey = sessionKeyFor(token, serverKey.key);
    const session = this.#addSession(token, sessionKey, ctx.rinfo.address, ctx.rinfo.port, now);
    this.#store.putSession(this.#sessionRecord(session, now));
    const credKey = this.#auth.credentialKey(credId);
    if (!credKey || d.auth.mode !== AuthMode.CREDENTIAL) throw new Error('credential vanished');
    const body = returnToken(token, sessionKey, credKey, d.auth.nonce, this.#heartbeatMs());
    this.#report.write('session', now, {
      session: hexId(token.tokenId),
      user: b.user,
      host: b.host,
      vendor: b.vendor,
      program: b.program,
      addr: ctx.rinfo.address,
    });
    // HELLO_OK is signed with the new session key, and durable before it leaves.
    this.#reply(
      { ...ctx, key: session.hmac, sessionIdOverride: token.tokenId },
      MsgType.HELLO_OK,
      body,
      true,
    );
  }

  #checkout(ctx: Ctx, s: Session, d: Datagram<typeof MsgType.CHECKOUT>): void {
    const now = ctx.now;
    const b = d.body;
    const base = {
      feature: b.feature,
      leaseId: 0n,
      count: 0,
      ticket: new Uint8Array(0),
      heartbeatMs: this.#heartbeatMs(),
      position: 0,
      queueLength: 0,
      reason: 0,
      retryAfterMs: 0,
    };
    const left = this.graceLeft();
    if (left > 0) {
      this.#reply(ctx, MsgType.CHECKOUT_REPLY, {
        ...base,
        status: CheckoutStatus.DENIED,
        reason: ErrorCode.IN_GRACE,
        retryAfterMs: Math.min(left, 0xffffffff),
      });
      return;
    }
    const r = this.#pool.checkout({
      sessionId: s.id,
      user: s.user,
      host: s.host,
      feature: b.feature,
      version: b.version,
      count: b.count,
      wait: (b.options & 1) === 1,
      vendor: s.vendor,
    });
    const who = {
      session: hexId(s.id),
      user: s.user,
      host: s.host,
      feature: b.feature,
      version: b.version,
      count: b.count,
    };
    if (r.status === 'granted') {
      const lease = r.lease;
      if (r.fromQueue) this.#store.dequeue(s.id, b.feature);
      const ticket = this.#leaseTicket(s, lease, now);
      this.#report.write('grant', now, {
        ...who,
        lease: hexId(lease.leaseId),
        granted: lease.version,
        queued: !!r.fromQueue,
      });
      this.#reply(
        ctx,
        MsgType.CHECKOUT_REPLY,
        {
          ...base,
          status: CheckoutStatus.GRANTED,
          leaseId: lease.leaseId,
          count: lease.count,
          ticket,
        },
        true,
      );
      return;
    }
    if (r.status === 'queued') {
      if (r.added) {
        this.#store.enqueue({
          tokenId: s.id,
          feature: b.feature,
          version: b.version,
          count: b.count,
          since: now,
        });
        this.#report.write('queue', now, { ...who, position: r.position });
      }
      this.#reply(
        ctx,
        MsgType.CHECKOUT_REPLY,
        {
          ...base,
          status: CheckoutStatus.QUEUED,
          position: r.position,
          queueLength: r.queueLength,
        },
        r.added === true,
      );
      return;
    }
    this.#report.write('deny', now, { ...who, reason: errorName(r.code) });
    this.#reply(ctx, MsgType.CHECKOUT_REPLY, {
      ...base,
      status: CheckoutStatus.DENIED,
      reason: r.code,
    });
  }

  /** Signs a lease ticket and writes the lease to the store (pending commit). */
  #leaseTicket(
    s: Session,
    lease: {
      leaseId: bigint;
      feature: string;
      version: string;
      count: number;
      grantedAt: number;
      groupKey?: string;
    },
    now: number,
  ): Uint8Array {
    const ticket = makeTicket(
      {
        leaseId: lease.leaseId,
        tokenId: s.id,
        feature: lease.feature,
        version: lease.version,
        count: lease.count,
        grantedAt: lease.grantedAt,
      },
      this.#keyring,
      now,
    );
    this.#store.putLease({
      leaseId: lease.leaseId,
      tokenId: s.id,
      feature: lease.feature,
      version: lease.version,
      count: lease.count,
      groupKey: lease.groupKey ?? '',
      grantedAt: lease.grantedAt,
      ticket: ticket.bytes,
    });
    return ticket.bytes;
  }

  #checkin(ctx: Ctx, s: Session, d: Datagram<typeof MsgType.CHECKIN>): void {
    const now = ctx.now;
    if (d.body.leaseId === 0n && d.body.feature === '') {
      // The client is done with the session (close()): everything goes, the token is revoked.
      const n = this.#pool.leasesOf(s.id).length;
      this.#reap(s, now, 'closed by the client', 'close');
      this.#reply(ctx, MsgType.CHECKIN_OK, { leaseId: 0n, released: n }, true);
      return;
    }
    if (d.body.leaseId === 0n) {
      const left = this.#pool.leaveQueue(s.id, d.body.feature);
      if (left) {
        this.#store.dequeue(s.id, d.body.feature);
        this.#report.write('dequeue', now, {
          session: hexId(s.id),
          user: s.user,
          feature: d.body.feature,
        });
      }
      this.#reply(ctx, MsgType.CHECKIN_OK, { leaseId: 0n, released: 0 }, left);
      return;
    }
    const r = this.#pool.checkin(s.id, d.body.leaseId);
    if (!r.ok) {
      this.#replyError(ctx, r.code, 0);
      return;
    }
    this.#store.deleteLease(d.body.leaseId);
    this.#burn(d.body.leaseId, s.id, now);
    this.#report.write('release', now, {
      session: hexId(s.id),
      user: s.user,
      host: s.host,
      lease: hexId(d.body.leaseId),
      feature: r.feature,
    });
    this.#afterRelease(now);
    this.#reply(ctx, MsgType.CHECKIN_OK, { leaseId: d.body.leaseId, released: r.released }, true);
  }

  #reclaim(ctx: Ctx, s: Session, d: Datagram<typeof MsgType.RECLAIM>): void {
    const now = ctx.now;
    const results: { leaseId: bigint; code: number }[] = [];
    let changed = false;
    for (const { ticket } of d.body.tickets) {
      const v = verifyTicket(ticket, this.#keyring, now, s.id);
      if (!v.ok) {
        results.push({ leaseId: 0n, code: v.code });
        continue;
      }
      const t = v.ticket;
      let code: number = ErrorCode.OK;
      const held = this.#pool.leasesOf(s.id).some((l) => l.leaseId === t.leaseId);
      if (this.#tokens.isRevoked(s.id) || this.#store.isRevoked(s.id))
        code = ErrorCode.TOKEN_REVOKED;
      else if (held && this.#unclaimed.has(t.leaseId)) {
        // Held across a restart of this server: the seat is already counted.
        this.#unclaimed.delete(t.leaseId);
      } else if (held) {
        // Already this session's (a retransmitted or repeated reclaim): nothing changes.
        results.push({ leaseId: t.leaseId, code });
        continue;
      } else if (this.#store.isReclaimed(t.leaseId)) {
        // Released, removed, reaped, or rebuilt here before: a ticket is honoured once.
        code = ErrorCode.ALREADY_RECLAIMED;
      } else {
        const r = this.#pool.reclaim({
          leaseId: t.leaseId,
          sessionId: s.id,
          user: s.user,
          host: s.host,
          feature: t.feature,
          version: t.version,
          count: t.count,
          grantedAt: t.grantedAt,
        });
        if (r.ok) {
          this.#store.putLease({
            leaseId: t.leaseId,
            tokenId: s.id,
            feature: t.feature,
            version: t.version,
            count: t.count,
            groupKey: r.groupKey ?? '',
            grantedAt: t.grantedAt,
            ticket,
          });
        } else code = r.code;
      }
      if (code === ErrorCode.OK) {
        this.#store.markReclaimed(t.leaseId, s.expires);
        changed = true;
        this.#report.write('reclaim', now, {
          session: hexId(s.id),
          user: s.user,
          host: s.host,
          lease: hexId(t.leaseId),
          feature: t.feature,
        });
      }
      results.push({ leaseId: t.leaseId, code });
    }
    this.#maybeEndGrace(now);
    this.#reply(ctx, MsgType.RECLAIM_REPLY, { results }, changed);
  }

  /** Grace ends early once every lease restored from disk is reclaimed or released. */
  #maybeEndGrace(now: number): void {
    if (this.#graceUntil > now && this.#unclaimed.size === 0 && !this.#takeoverGrace) {
      this.#graceUntil = 0;
      this.#log.info('restart grace ended early: every known holder has reclaimed');
    }
  }

  /**
   * A lease that is gone (checked in, removed, reaped, or not reclaimed in grace) has its
   * ticket burned durably, so it can never be re-presented to rebuild the seat, here or
   * after a restart. Kept until its session's token would have expired anyway.
   */
  #burn(leaseId: bigint, sessionId: bigint, now: number): void {
    const expires = this.#sessions.get(sessionId)?.expires ?? now + 2 * 86_400_000;
    this.#store.markReclaimed(leaseId, expires);
    this.#unclaimed.delete(leaseId);
  }

  #status(ctx: Ctx, d: Datagram<typeof MsgType.STATUS>): void {
    const pages = buildStatusPages(this.#pool.status(), d.body.feature, this.#generation);
    const page = pages[d.body.page];
    if (!page) {
      this.#replyError(
        ctx,
        ErrorCode.BAD_REQUEST,
        0,
        `page ${d.body.page} does not exist (${pages.length} pages)`,
      );
      return;
    }
    this.#reply(ctx, MsgType.STATUS_REPLY, page);
  }

  #admin(ctx: Ctx, d: Datagram<typeof MsgType.ADMIN>, adminId: string): void {
    const now = ctx.now;
    const b = d.body;
    if (b.op === AdminOp.REMOVE) {
      const removed = this.#pool.remove({
        ...(b.feature ? { feature: b.feature } : {}),
        ...(b.user ? { user: b.user } : {}),
        ...(b.host ? { host: b.host } : {}),
        ...(b.leaseId !== 0n ? { leaseId: b.leaseId } : {}),
      });
      for (const l of removed) {
        this.#store.deleteLease(l.leaseId);
        this.#burn(l.leaseId, l.sessionId, now);
        this.#report.write('remove', now, {
          by: adminId,
          lease: hexId(l.leaseId),
          session: hexId(l.sessionId),
          user: l.user,
          host: l.host,
          feature: l.feature,
        });
      }
      if (removed.length) this.#afterRelease(now);
      this.#reply(
        ctx,
        MsgType.ADMIN_REPLY,
        { op: b.op, affected: removed.length, message: `removed ${removed.length} lease(s)` },
        true,
      );
      return;
    }
    if (b.op === AdminOp.REREAD) {
      try {
        const r = this.reread();
        this.#reply(ctx, MsgType.ADMIN_REPLY, {
          op: b.op,
          affected: r.features,
          message: clip(
            `reread: ${r.features} feature line(s), ${r.problems.length} problem(s)${r.problems[0] ? `; first: ${r.problems[0]}` : ''}`,
          ),
        });
      } catch (e) {
        this.#replyError(
          ctx,
          ErrorCode.BAD_REQUEST,
          0,
          clip(`reread failed: ${(e as Error).message}`),
        );
      }
      return;
    }
    this.#log.info(`shutdown requested by admin key ${adminId}`);
    this.#reply(
      ctx,
      MsgType.ADMIN_REPLY,
      { op: b.op, affected: 0, message: 'shutting down' },
      true,
    );
    setImmediate(() => void this.close());
  }

  /** After seats free: queued clients whose turn came were assigned seats; persist them. */
  #afterRelease(now: number): void {
    this.#generation = (this.#generation + 1) >>> 0;
    this.#maybeEndGrace(now);
    for (const lease of this.#pool.takeAssigned()) {
      const s = this.#sessions.get(lease.sessionId);
      if (!s) continue;
      // Durable now, so the seat stays with the queued client across a crash; it picks the
      // grant up on its next CHECKOUT poll.
      this.#leaseTicket(s, lease, now);
      this.#store.dequeue(s.id, lease.feature);
      this.#report.write('grant', now, {
        session: hexId(s.id),
        user: s.user,
        host: s.host,
        feature: lease.feature,
        lease: hexId(lease.leaseId),
        queued: true,
      });
    }
  }

  // ---------------------------------------------------------------- replies

  #reply<T extends MsgType>(ctx: Ctx, type: T, body: Bodies[T], durable = false): void {
    const d = {
      type,
      flags: Flags.REPLY | Flags.FROM_SERVER,
      auth: { mode: ctx.mode },
      requestId: ctx.d.requestId,
      sessionId: ctx.sessionIdOverride ?? ctx.d.sessionId,
      seq: ctx.d.seq,
      timestamp: ctx.now,
      body,
      tag: new Uint8Array(32),
    } as unknown as AnyDatagram;
    const bytes = signDatagram(d, ctx.key);
    if (
      (ctx.mode === AuthMode.CREDENTIAL || ctx.mode === AuthMode.TOKEN) &&
      bytes.length > ctx.requestLength
    ) {
      // Never amplify towards an address that may be spoofed: ask for a padded request instead.
      this.#replyError(ctx, ErrorCode.NEED_PADDING, 0);
      return;
    }
    this.counters.answered++;
    this.#send(
      { bytes, address: ctx.rinfo.address, port: ctx.rinfo.port, cacheKey: ctx.cacheKey },
      durable || this.#store.pending() > 0,
    );
  }

  #replyError(ctx: Ctx, code: number, retryAfterMs: number, message?: string): void {
    this.#sendError(
      ctx.d,
      ctx.mode,
      ctx.key,
      code,
      retryAfterMs,
      ctx.rinfo,
      ctx.cacheKey,
      ctx.requestLength,
      message,
    );
  }

  #sendError(
    d: AnyDatagram,
    mode: AuthMode,
    key: KeyedHmac,
    code: number,
    retryAfterMs: number,
    rinfo: dgram.RemoteInfo,
    cacheKey: string,
    requestLength: number,
    message?: string,
  ): void {
    this.counters.errors++;
    let text = message ?? ERROR_TEXT[code as ErrorCode] ?? errorName(code);
    // The error must not be larger than the request either; trim the text, never the code.
    const overhead = 32 + 2 + 4 + 1 + 32;
    if (overhead + Buffer.byteLength(text) > requestLength) text = '';
    const bytes = signDatagram(
      {
        type: MsgType.ERROR,
        flags: Flags.REPLY | Flags.FROM_SERVER,
        auth: { mode } as never,
        requestId: d.requestId,
        sessionId: d.sessionId,
        seq: d.seq,
        timestamp: this.#now(),
        body: { code, retryAfterMs, message: clip(text) },
        tag: new Uint8Array(32),
      },
      key,
    );
    this.#send(
      { bytes, address: rinfo.address, port: rinfo.port, cacheKey },
      this.#store.pending() > 0,
    );
  }

  /**
   * Sends now, or after the next group commit when the reply acknowledges a state change
   * (or must not overtake one that is still pending).
   */
  #send(o: Outgoing, afterCommit: boolean): void {
    if (!afterCommit) {
      this.#keep(o, this.#now());
      this.#sendRaw(o.bytes, o.port, o.address);
      return;
    }
    this.#generation = (this.#generation + 1) >>> 0;
    this.#outgoing.push(o);
    if (o.cacheKey) this.#inflight.add(o.cacheKey);
    if (!this.#tickScheduled) {
      this.#tickScheduled = true;
      setImmediate(() => {
        this.#tickScheduled = false;
        try {
          this.#commitAndSend();
        } catch (e) {
          this.counters.internal++;
          this.#log.error(`commit failed; replies withheld: ${(e as Error).message}`);
        }
      });
    }
  }

  /** Sends one datagram, counting it until the socket has taken it (close waits for that). */
  #sendRaw(bytes: Uint8Array, port: number, address: string): void {
    this.#sending++;
    this.#socket.send(bytes, port, address, () => {
      this.#sending--;
      if (this.#sending === 0) this.#drained?.();
    });
  }

  /** Group commit: everything pending in one transaction, then the replies it covers. */
  #commitAndSend(): void {
    const out = this.#outgoing;
    this.#outgoing = [];
    try {
      if (this.#store.pending() > 0) this.#store.commit();
    } catch (e) {
      // Nothing covered by the failed commit is acknowledged; clients retransmit.
      for (const o of out) if (o.cacheKey) this.#inflight.delete(o.cacheKey);
      throw e;
    }
    this.#report.flush();
    const now = this.#now();
    for (const o of out) {
      this.#keep(o, now);
      if (o.cacheKey) this.#inflight.delete(o.cacheKey);
      if (this.#state !== 'CLOSED') this.#sendRaw(o.bytes, o.port, o.address);
    }
  }

  /** Keeps a reply for retransmissions: in its session's slot, or in the reply cache. */
  #keep(o: Outgoing, now: number): void {
    if (o.keep && o.requestId !== undefined) o.keep.keepReply(o.requestId, o.bytes);
    else if (o.cacheKey) this.#replies.set(o.cacheKey, o.bytes, now);
  }

  // ---------------------------------------------------------------- timers

  #tick(): void {
    try {
      const now = this.#now();
      this.#replies.sweep(now);
      this.#reapQuiet(now);
      if (this.#graceUntil && now >= this.#graceUntil) {
        this.#graceUntil = 0;
        this.#log.info(
          `restart grace over; ${this.#unclaimed.size} lease(s) not reclaimed are released`,
        );
        for (const id of this.#unclaimed) {
          const l = this.#pool.removeLease(id);
          this.#store.deleteLease(id);
          if (l) this.#burn(id, l.sessionId, now);
          if (l)
            this.#report.write('release', now, {
              lease: hexId(id),
              feature: l.feature,
              reason: 'not reclaimed',
            });
        }
        this.#unclaimed.clear();
        this.#afterRelease(now);
      }
      this.#tokens.flushTokens(now, 5000);
      this.#store.flushExpired(now, 100_000, 4);
      if (this.#store.pending() > 0) this.#commitAndSend();
    } catch (e) {
      this.counters.internal++;
      this.#log.error(`timer: ${(e as Error).message}`);
    }
  }

  /** The notes' test_conn: ping quiet holders; reap those that stay silent. */
  #reapQuiet(now: number): void {
    const quiet = this.#opts.quietMs ?? 2 * this.#heartbeatMs();
    const interval = this.#opts.testConnIntervalMs ?? 5000;
    const tries = this.#opts.testConnTries ?? 3;
    const idle = this.#opts.idleSessionMs ?? 3_600_000;
    // Bounded work per tick: a host with a million sessions sweeps them over several ticks.
    let budget = 20_000;
    for (;;) {
      if (budget-- <= 0) return;
      this.#scan ??= this.#sessions.values();
      const next = this.#scan.next();
      if (next.done) {
        this.#scan = undefined;
        return;
      }
      const s = next.value;
      if (now >= s.expires) {
        this.#reap(s, now, 'token expired');
        continue;
      }
      if (now - s.lastSeen < quiet) continue;
      const holds = this.#pool.leasesOf(s.id).length > 0 || this.#pool.queuedOf(s.id) > 0;
      if (!holds) {
        // Holding nothing and idle for long: forget it (not revoked; its token restores it).
        if (now - s.lastSeen >= idle) this.#forget(s);
        continue;
      }
      if (now < s.nextPingAt) continue;
      if (s.pings >= tries) {
        this.#reap(s, now, `no answer to ${tries} test_conn pings`);
        continue;
      }
      s.pings++;
      s.nextPingAt = now + interval;
      // One nonce for all pings of a quiet spell, so a late answer to an earlier one counts.
      s.pingNonce ??= randomBytes(8);
      // Seconds-based, so a restarted server's pings still advance the client's window.
      s.serverSeq = Math.max(s.serverSeq + 1, Math.floor(now / 1000)) >>> 0;
      const bytes = signDatagram(
        {
          type: MsgType.TEST_CONN,
          flags: Flags.FROM_SERVER,
          auth: { mode: AuthMode.SESSION },
          requestId: s.serverSeq,
          sessionId: s.id,
          seq: s.serverSeq,
          timestamp: now,
          body: { nonce: s.pingNonce },
          tag: new Uint8Array(32),
        },
        s.hmac,
      );
      this.#sendRaw(bytes, s.port, s.address);
    }
  }

  #reap(s: Session, now: number, why: string, event: 'reap' | 'close' = 'reap'): void {
    const released = this.#pool.releaseSession(s.id);
    for (const l of released.leases) {
      this.#store.deleteLease(l.leaseId);
      this.#burn(l.leaseId, s.id, now);
    }
    for (const f of released.queued ?? []) this.#store.dequeue(s.id, f);
    this.#tokens.invalidateToken(s.id, Math.ceil(s.expires / 1000));
    s.drop();
    this.#store.revoke(s.id, s.expires);
    this.#store.deleteSession(s.id);
    this.#untrack(s);
    if (event === 'reap') this.counters.reaped++;
    this.#report.write(event, now, {
      session: hexId(s.id),
      user: s.user,
      host: s.host,
      leases: released.leases.length,
      why,
    });
    const line = `${event === 'reap' ? 'reaped' : 'closed'} session ${hexId(s.id)} (${s.user}@${s.host}): ${why}; ${released.leases.length} lease(s) released`;
    if (event === 'reap') this.#log.info(line);
    else this.#log.debug(line);
    if (released.leases.length) this.#afterRelease(now);
  }

  /** Drops an idle session from memory and disk without revoking its token. */
  #forget(s: Session): void {
    s.drop();
    this.#store.deleteSession(s.id);
    this.#untrack(s);
  }

  #sessionRecord(s: Session, now: number) {
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
    };
  }
}

interface Ctx {
  d: AnyDatagram;
  key: KeyedHmac;
  mode: AuthMode;
  rinfo: dgram.RemoteInfo;
  cacheKey: string;
  requestLength: number;
  now: number;
  session: Session | undefined;
  sessionIdOverride?: bigint;
}

/**
 * The reply-cache key: who (authenticated) and which request. Modes 2 and 3 (the hot path)
 * take the header's request id and session id as six UTF-16 units after an `s`: no number
 * formatting per datagram, and never equal to a mode 1 or 4 key, which are longer.
 */
function cacheKey(d: AnyDatagram, bytes: Uint8Array): string {
  switch (d.auth.mode) {
    case AuthMode.CREDENTIAL:
      return `c:${d.flags === 0 ? d.auth.credId : ''}:${toHex(d.auth.nonce)}`;
    case AuthMode.ADMIN:
      return `a:${d.flags === 0 ? d.auth.keyId : ''}:${toHex(bytes.subarray(bytes.length - 32, bytes.length - 16))}`;
    default:
      // Header bytes 8..11 request id, 12..19 session id (DEVELOPERS.md "Datagram").
      return String.fromCharCode(
        0x73,
        (bytes[8]! << 8) | bytes[9]!,
        (bytes[10]! << 8) | bytes[11]!,
        (bytes[12]! << 8) | bytes[13]!,
        (bytes[14]! << 8) | bytes[15]!,
        (bytes[16]! << 8) | bytes[17]!,
        (bytes[18]! << 8) | bytes[19]!,
      );
  }
}

/** The session's kept reply to `requestId`, while it may still answer retransmissions. */
function kept(s: Session, requestId: number, now: number): Uint8Array | undefined {
  const r = s.keptReply(requestId);
  // A reply's timestamp is the server's clock when it was made (header bytes 24..31).
  if (!r) return undefined;
  const v = new DataView(r.buffer, r.byteOffset, r.byteLength);
  const made = v.getUint32(24) * 0x1_0000_0000 + v.getUint32(28);
  return now - made < REPLY_TTL_MS ? r : undefined;
}

function bump(counts: Map<string, number>, key: string, delta: number): void {
  const n = (counts.get(key) ?? 0) + delta;
  if (n > 0) counts.set(key, n);
  else counts.delete(key);
}

function hexId(id: bigint): string {
  return id.toString(16).padStart(16, '0');
}

function clip(s: string): string {
  const b = Buffer.from(s, 'utf8');
  if (b.length <= 200) return s;
  const head = b
    .subarray(0, 197)
    .toString('utf8')
    .replace(/\uFFFD$/, '');
  return `${head}...`;
}

export type { DaemonConfig };
