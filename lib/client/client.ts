/**
 * The client library: `connect()` gives a Client that gets a token (first contact), signs
 * every datagram in the right auth mode by itself, retransmits on the RFC 5080 schedule,
 * heartbeats its leases, answers the server's test_conn, re-presents its token and lease
 * tickets to a restarted server or to the next server of its list, and reports what
 * happens to each lease as events. It owns one UDP socket and its timers (all unref'd).
 */
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import { hostname, userInfo } from 'node:os';
import { ClientAuth, type SignedRequest } from '../auth/client.ts';
import {
  AdminOp,
  type AnyDatagram,
  AuthMode,
  type Bodies,
  CheckoutStatus,
  DEFAULT_PORT,
  decodeDatagram,
  ErrorCode,
  MsgType,
  ServerState,
  type StatusRecordValue,
} from '../wire/index.ts';
import { AbortError, ClosedError, DeniedError, FloatlmError, TimeoutError } from './errors.ts';
import { nextDelay, type RetryPolicy, retryPolicy } from './retry.ts';

export interface ConnectOptions {
  /** `host[:port]` of each server, tried in order. */
  servers: readonly string[];
  credential: { id: string; key: Uint8Array };
  /** Admin key for ADMIN requests (operators' tools). */
  admin?: { id: string; key: Uint8Array };
  user?: string;
  host?: string;
  program?: string;
  programVersion?: string;
  /** Vendor; default the credential id up to its '/'. */
  vendor?: string;
  retry?: Partial<RetryPolicy>;
  /** Override the heartbeat interval the server asks for (ms). */
  heartbeatMs?: number;
  /** Poll interval while waiting in a queue (ms). Default 1000. */
  pollMs?: number;
  /** Skip first contact (admin-only clients). */
  noHello?: boolean;
  now?: () => number;
}

export interface CheckoutOptions {
  version?: string;
  count?: number;
  /** Wait in the queue when no seat is free. */
  wait?: boolean;
  signal?: AbortSignal;
  /** Called with the queue position whenever it changes. */
  onQueued?: (position: number, queueLength: number) => void;
}

export interface PongInfo {
  server: string;
  rttMs: number;
  serverVersion: string;
  /** Server clock minus ours, ms (estimated at the midpoint of the round trip). */
  offsetMs: number;
  uptimeMs: number;
  state: 'running' | 'grace' | 'closing';
  graceLeftMs: number;
}

export interface StatusResult {
  server: string;
  features: Extract<StatusRecordValue, { kind: 1 }>[];
  holders: Extract<StatusRecordValue, { kind: 2 }>[];
  queued: Extract<StatusRecordValue, { kind: 3 }>[];
  /** Seats kept for a user or host (RESERVE=), per feature name. */
  reservations: Extract<StatusRecordValue, { kind: 4 }>[];
}

/** A held seat. Events: 'lost' (reason: string), 'reclaimed'. */
export class Lease extends EventEmitter {
  readonly feature: string;
  readonly version: string;
  readonly leaseId: bigint;
  readonly count: number;
  readonly ticket: Uint8Array;
  #client: Client;
  #state: 'held' | 'released' | 'lost' = 'held';

  constructor(
    client: Client,
    feature: string,
    version: string,
    leaseId: bigint,
    count: number,
    ticket: Uint8Array,
  ) {
    super();
    this.#client = client;
    this.feature = feature;
    this.version = version;
    this.leaseId = leaseId;
    this.count = count;
    this.ticket = ticket;
  }

  get state(): 'held' | 'released' | 'lost' {
    return this.#state;
  }

  /** Gives the seat back. Idempotent. @throws {FloatlmError} when no server confirms */
  async checkin(): Promise<void> {
    if (this.#state !== 'held') return;
    await this.#client._checkin(this);
    this.#state = 'released';
  }

  /** @internal */
  _lost(reason: string): void {
    if (this.#state !== 'held') return;
    this.#state = 'lost';
    this.emit('lost', reason);
  }
}

interface Pending {
  req: SignedRequest;
  server: string;
  resolve: (d: AnyDatagram) => void;
}

/**
 * Connects: first contact with the first server that answers.
 * @throws {TimeoutError} when no server answers
 * @throws {TypeError|RangeError} on bad options
 */
export async function connect(opts: ConnectOptions): Promise<Client> {
  const c = new Client(opts);
  try {
    await c.ready();
  } catch (e) {
    await c.close();
    throw e;
  }
  return c;
}

/** Parses `host[:port]` (IPv6 as `[addr]:port`). @throws {RangeError} */
export function parseServer(s: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(s) ?? /^([^:]+)(?::(\d+))?$/.exec(s);
  if (!m) throw new RangeError(`server must be host[:port], got "${s}"`);
  const port = m[2] === undefined ? DEFAULT_PORT : Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new RangeError(`bad port in "${s}"`);
  return { host: m[1]!, port };
}

/**
 * A connected client. Events: 'queued' (feature, position, queueLength), 'granted' (lease),
 * 'lost' (lease, reason), 'reclaimed' (lease), 'failover' (server); 'error' is never emitted.
 */
export class Client extends EventEmitter {
  readonly auth: ClientAuth;
  readonly #servers: { name: string; host: string; port: number }[];
  readonly #policy: RetryPolicy;
  readonly #opts: ConnectOptions;
  readonly #now: () => number;
  readonly #socket: dgram.Socket;
  readonly #pending = new Map<number, Pending>();
  readonly #leases = new Map<bigint, Lease>();
  #current = 0;
  #requestId = (Math.random() * 0x7fffffff) >>> 0;
  #heartbeatMs = 10_000;
  #heartbeatTimer: NodeJS.Timeout | undefined;
  #beating = false;
  #closed = false;
  #ready: Promise<void>;
  #bound: Promise<void>;
  #reclaiming: Promise<void> | undefined;

  /** @throws {TypeError|RangeError} naming the bad option */
  constructor(opts: ConnectOptions) {
    super();
    if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
    if (!Array.isArray(opts.servers) || opts.servers.length === 0) {
      throw new TypeError('opts.servers must be a non-empty array of "host[:port]"');
    }
    const cred = opts.credential as ConnectOptions['credential'] | undefined;
    if (typeof cred?.id !== 'string' || cred.id === '')
      throw new TypeError('opts.credential.id must be a non-empty string');
    if (!(cred.key instanceof Uint8Array) || cred.key.length !== 32)
      throw new TypeError('opts.credential.key must be a 32-byte Uint8Array');
    for (const k of ['heartbeatMs', 'pollMs'] as const) {
      const v = opts[k];
      if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v > 0))
        throw new RangeError(`opts.${k} must be a positive number of milliseconds`);
    }
    this.#opts = opts;
    this.#servers = opts.servers.map((s) => {
      const p = parseServer(s);
      return { name: `${p.host}:${p.port}`, ...p };
    });
    this.#policy = retryPolicy(opts.retry);
    this.#now = opts.now ?? Date.now;
    this.auth = new ClientAuth({
      credId: opts.credential.id,
      credKey: opts.credential.key,
      ...(opts.admin ? { admin: opts.admin } : {}),
      now: this.#now,
    });
    const v6 = this.#servers[0]!.host.includes(':');
    this.#socket = dgram.createSocket(v6 ? 'udp6' : 'udp4');
    this.#socket.on('message', (m, r) => this.#onMessage(m, r));
    this.#socket.on('error', () => {});
    this.#bound = new Promise((resolve) => this.#socket.bind(0, () => resolve()));
    this.#socket.unref();
    this.#ready = opts.noHello ? this.#bound : this.#bound.then(() => this.#hello());
    this.#ready.catch(() => {});
  }

  /** Resolves once first contact succeeded. */
  ready(): Promise<void> {
    return this.#ready;
  }

  /** The server currently in use (`host:port`). */
  get server(): string {
    return this.#servers[this.#current]!.name;
  }

  /** Leases currently held. */
  get leases(): Lease[] {
    return [...this.#leases.values()];
  }

  // ------------------------------------------------------------ public API

  /**
   * Borrows a seat. With `wait`, queues and polls until granted or aborted; an aborted wait
   * leaves the queue before rejecting.
   * @throws {DeniedError} with the server's reason code; {TimeoutError}; {AbortError}
   * @throws {TypeError|RangeError} naming a bad `feature`, `options.version` or `options.count`
   */
  async checkout(feature: string, o: CheckoutOptions = {}): Promise<Lease> {
    if (typeof feature !== 'string' || feature === '')
      throw new TypeError('feature must be a non-empty string');
    if (o.version !== undefined && typeof o.version !== 'string')
      throw new TypeError('options.version must be a string');
    const version = o.version ?? '';
    const count = o.count ?? 1;
    if (!Number.isInteger(count) || count < 1 || count > 0xffff)
      throw new RangeError('options.count must be an integer in [1, 65535]');
    let lastPosition = -1;
    for (;;) {
      this.#checkOpen('checkout');
      if (o.signal?.aborted) throw await this.#abandon(feature, !!o.wait);
      let d: AnyDatagram;
      try {
        d = await this.#call(
          MsgType.CHECKOUT,
          { feature, version, count, options: o.wait ? 1 : 0 },
          `checkout ${feature}`,
          o.signal,
        );
      } catch (e) {
        // Aborted with the CHECKOUT in flight: the server may have queued us all the same.
        if (e instanceof AbortError) throw await this.#abandon(feature, !!o.wait);
        throw e;
      }
      if (d.type === MsgType.ERROR)
        throw new DeniedError(
          `checkout ${feature}`,
          d.body.code,
          d.body.retryAfterMs,
          d.body.message,
        );
      if (d.type !== MsgType.CHECKOUT_REPLY)
        throw new FloatlmError('EPROTO', `checkout ${feature}: unexpected reply type ${d.type}`);
      const b = d.body;
      if (b.status === CheckoutStatus.GRANTED) {
        const lease = new Lease(this, feature, version, b.leaseId, b.count, b.ticket);
        this.#leases.set(b.leaseId, lease);
        if (b.heartbeatMs > 0) this.#setHeartbeat(b.heartbeatMs);
        this.emit('granted', lease);
        return lease;
      }
      let waitMs = this.#opts.pollMs ?? 1000;
      if (b.status === CheckoutStatus.QUEUED) {
        if (b.position !== lastPosition) {
          lastPosition = b.position;
          o.onQueued?.(b.position, b.queueLength);
          this.emit('queued', feature, b.position, b.queueLength);
        }
      } else if (b.reason === ErrorCode.IN_GRACE && o.wait) {
        waitMs = Math.min(Math.max(b.retryAfterMs, 100), 5000);
      } else {
        throw new DeniedError(`checkout ${feature}`, b.reason, b.retryAfterMs);
      }
      await sleep(waitMs, o.signal);
    }
  }

  /** The debug ping. @throws {TimeoutError} */
  async ping(server?: string): Promise<PongInfo> {
    const target = server ? this.#serverIndex(server) : this.#current;
    const t0 = this.#now();
    const d = await this.#callOn(target, MsgType.PING, { payload: new Uint8Array(64) }, 'ping');
    const t1 = this.#now();
    if (d.type !== MsgType.PONG)
      throw new FloatlmError('EPROTO', `ping: unexpected reply type ${d.type}`);
    const states = {
      [ServerState.RUNNING]: 'running',
      [ServerState.GRACE]: 'grace',
      [ServerState.CLOSING]: 'closing',
    } as const;
    return {
      server: this.#servers[target]!.name,
      rttMs: t1 - t0,
      serverVersion: d.body.serverVersion,
      offsetMs: d.timestamp - (t0 + t1) / 2,
      uptimeMs: d.body.uptimeMs,
      state: states[d.body.state],
      graceLeftMs: d.body.graceLeftMs,
    };
  }

  /** Every page of the server's status. @throws {TimeoutError|DeniedError} */
  async status(feature = ''): Promise<StatusResult> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const out: StatusResult = {
        server: this.server,
        features: [],
        holders: [],
        queued: [],
        reservations: [],
      };
      let pages = 1;
      let snapshot: number | undefined;
      let consistent = true;
      for (let page = 0; page < pages; page++) {
        const d = await this.#call(MsgType.STATUS, { page, feature }, 'status');
        if (d.type === MsgType.ERROR)
          throw new DeniedError('status', d.body.code, d.body.retryAfterMs, d.body.message);
        if (d.type !== MsgType.STATUS_REPLY)
          throw new FloatlmError('EPROTO', `status: unexpected reply type ${d.type}`);
        pages = d.body.pages;
        snapshot ??= d.body.snapshot;
        if (d.body.snapshot !== snapshot) consistent = false;
        for (const r of d.body.records) {
          if (r.kind === 1) out.features.push(r);
          else if (r.kind === 2) out.holders.push(r);
          else if (r.kind === 3) out.queued.push(r);
          else out.reservations.push(r);
        }
      }
      // The server that answered (a failover may have happened during the first page).
      out.server = this.server;
      if (consistent || pages === 1 || attempt === 2) return out;
    }
    throw new FloatlmError('EPROTO', 'status: unreachable');
  }

  /**
   * An ADMIN request (needs `opts.admin`).
   * @throws {DeniedError|TimeoutError}
   */
  async admin(
    op: AdminOp,
    target: { feature?: string; user?: string; host?: string; leaseId?: bigint } = {},
  ): Promise<Bodies[typeof MsgType.ADMIN_REPLY]> {
    const d = await this.#call(
      MsgType.ADMIN,
      {
        op,
        feature: target.feature ?? '',
        user: target.user ?? '',
        host: target.host ?? '',
        leaseId: target.leaseId ?? 0n,
      },
      'admin',
    );
    if (d.type === MsgType.ERROR)
      throw new DeniedError('admin', d.body.code, d.body.retryAfterMs, d.body.message);
    if (d.type !== MsgType.ADMIN_REPLY)
      throw new FloatlmError('EPROTO', `admin: unexpected reply type ${d.type}`);
    return d.body;
  }

  /** Checks in every lease (best effort) and closes the socket. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await Promise.allSettled([...this.#leases.values()].map((l) => l.checkin()));
    if (this.auth.session) {
      // End the session on the server too (CHECKIN of lease 0 with no feature), so it does
      // not count against the user's session cap. Best effort, with a short budget.
      const rid = this.#nextRequestId();
      const server = this.#servers[this.#current]!;
      try {
        const req = this.auth.request(
          server.name,
          MsgType.CHECKIN,
          { leaseId: 0n, feature: '' },
          rid,
        );
        await this.#exchange(this.#current, req, undefined, {
          ...this.#policy,
          maxTotalMs: Math.min(1000, this.#policy.maxTotalMs),
        });
      } catch {
        // Closing anyway: the server forgets idle sessions by itself.
      }
    }
    await this.destroy();
  }

  /**
   * Closes at once without checking anything in, as a crashed process would: the server
   * reaps the seats after its test_conn pings go unanswered. Idempotent.
   */
  async destroy(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#heartbeatTimer) clearInterval(this.#heartbeatTimer);
    for (const p of this.#pending.values()) p.resolve(closedMarker);
    this.#pending.clear();
    await this.#bound;
    await new Promise<void>((resolve) => {
      try {
        this.#socket.close(() => resolve());
      } catch {
        resolve();
      }
    });
  }

  /** @internal Lease.checkin. */
  async _checkin(lease: Lease): Promise<void> {
    const d = await this.#call(
      MsgType.CHECKIN,
      { leaseId: lease.leaseId, feature: lease.feature },
      `checkin ${lease.feature}`,
    );
    this.#leases.delete(lease.leaseId);
    if (d.type === MsgType.ERROR && d.body.code !== ErrorCode.NOT_HOLDER) {
      throw new DeniedError(
        `checkin ${lease.feature}`,
        d.body.code,
        d.body.retryAfterMs,
        d.body.message,
      );
    }
  }

  // ------------------------------------------------------------ internals

  #checkOpen(what: string): void {
    if (this.#closed) throw new ClosedError(what);
  }

  #serverIndex(name: string): number {
    const p = parseServer(name);
    const i = this.#servers.findIndex((s) => s.host === p.host && s.port === p.port);
    if (i >= 0) return i;
    this.#servers.push({ name: `${p.host}:${p.port}`, ...p });
    return this.#servers.length - 1;
  }

  async #hello(): Promise<void> {
    const u = this.#opts.user ?? safeUser();
    const fields = {
      vendor: this.#opts.vendor ?? this.#opts.credential.id.split('/')[0]!,
      program: this.#opts.program ?? 'floatlm-client',
      version: this.#opts.programVersion ?? '0.1.0',
      user: u,
      host: this.#opts.host ?? hostname(),
    };
    const tried: string[] = [];
    for (let n = 0; n < this.#servers.length; n++) {
      const i = (this.#current + n) % this.#servers.length;
      const server = this.#servers[i]!;
      tried.push(server.name);
      const rid = this.#nextRequestId();
      const req = this.auth.hello(server.name, fields, rid);
      const d = await this.#exchange(i, req, undefined);
      if (d === undefined) continue;
      if (d === closedMarker) throw new ClosedError('connect');
      if (d.type === MsgType.ERROR)
        throw new DeniedError('connect', d.body.code, d.body.retryAfterMs, d.body.message);
      this.#current = i;
      if (d.type === MsgType.HELLO_OK)
        this.#setHeartbeat(this.#opts.heartbeatMs ?? d.body.heartbeatMs);
      return;
    }
    throw new TimeoutError('connect', tried);
  }

  #nextRequestId(): number {
    this.#requestId = (this.#requestId + 1) >>> 0 || 1;
    return this.#requestId;
  }

  /**
   * One request with failover: on the current server, then each other one in turn (the
   * token is re-presented there, then the leases' tickets).
   */
  async #call<T extends MsgType>(
    type: T,
    body: Bodies[T],
    what: string,
    signal?: AbortSignal,
  ): Promise<AnyDatagram> {
    this.#checkOpen(what);
    await this.#ready;
    const tried: string[] = [];
    for (let n = 0; n < this.#servers.length; n++) {
      // An abort is not a dead server: no failover, no retransmissions elsewhere.
      if (signal?.aborted) throw new AbortError(what);
      const i = (this.#current + n) % this.#servers.length;
      tried.push(this.#servers[i]!.name);
      const d = await this.#attempt(i, type, body, signal);
      if (d === closedMarker) throw new ClosedError(what);
      if (d === undefined) continue;
      if (i !== this.#current) {
        this.#current = i;
        this.emit('failover', this.#servers[i]!.name);
        this.#scheduleReclaim();
      }
      return d;
    }
    if (signal?.aborted) throw new AbortError(what);
    throw new TimeoutError(what, tried);
  }

  async #callOn<T extends MsgType>(
    index: number,
    type: T,
    body: Bodies[T],
    what: string,
  ): Promise<AnyDatagram> {
    this.#checkOpen(what);
    await this.#ready;
    const d = await this.#attempt(index, type, body, undefined);
    if (d === closedMarker) throw new ClosedError(what);
    if (d === undefined) throw new TimeoutError(what, [this.#servers[index]!.name]);
    return d;
  }

  /**
   * One request to one server. A session request unanswered for half the budget is sent
   * again in mode 2 (the server may have lost the session: restart without state, or a
   * new server), under the same request id.
   */
  async #attempt<T extends MsgType>(
    index: number,
    type: T,
    body: Bodies[T],
    signal?: AbortSignal,
  ): Promise<AnyDatagram | undefined> {
    const server = this.#servers[index]!;
    const session = this.auth.session;
    if (session && this.#now() >= session.expires) {
      // The token ran out: its leases went with it; start a new session.
      this.auth.dropSession();
      for (const l of [...this.#leases.values()]) this.#loseLease(l, 'token expired');
    }
    if (type !== MsgType.ADMIN && !this.auth.session && !this.#opts.noHello) await this.#hello();
    const rid = this.#nextRequestId();
    const first = this.auth.request(server.name, type, body, rid);
    const half = { ...this.#policy, maxTotalMs: this.#policy.maxTotalMs / 2 };
    let d = await this.#exchange(
      index,
      first,
      signal,
      first.mode === AuthMode.SESSION ? half : this.#policy,
    );
    let restored = first.mode === AuthMode.TOKEN;
    if (d === undefined && first.mode === AuthMode.SESSION && !signal?.aborted) {
      restored = true;
      this.auth.forgetServer(server.name);
      d = await this.#exchange(
        index,
        this.auth.request(server.name, type, body, rid),
        signal,
        half,
      );
    }
    if (restored && d && d !== closedMarker && type !== MsgType.RECLAIM) {
      // The server did not know the session (restart without state, or a new server):
      // re-present every lease ticket there, before any new request of ours is processed
      // (a request answered NEED_PADDING was not processed, and is sent again below).
      this.#scheduleReclaim();
      if (d.type === MsgType.ERROR && d.body.code === ErrorCode.NEED_PADDING)
        await this.#reclaiming;
    }
    if (d && d !== closedMarker && d.type === MsgType.ERROR) {
      const code = d.body.code;
      if (code === ErrorCode.REPLAY) {
        // A restarted server's replay floor: the same request (same id, so a copy it
        // processed before the restart gets that outcome) again above the floor.
        return this.#exchange(index, this.auth.request(server.name, type, body, rid), signal);
      }
      if (code === ErrorCode.NEED_PADDING || code === ErrorCode.UNKNOWN_SESSION) {
        // NEED_PADDING answers a mode-2 request unprocessed, but the session is now restored
        // there; UNKNOWN_SESSION made the auth layer forget the server. Either way the auth
        // layer picks the right mode for a fresh request.
        return this.#exchange(
          index,
          this.auth.request(server.name, type, body, this.#nextRequestId()),
          signal,
        );
      }
      if (
        !this.auth.session &&
        this.#leases.size > 0 &&
        code >= ErrorCode.TOKEN_BAD_SIGNATURE &&
        code <= ErrorCode.TOKEN_MALFORMED
      ) {
        for (const l of [...this.#leases.values()])
          this.#loseLease(l, `token refused: ${d.body.message}`);
      }
    }
    return d;
  }

  /** Sends `req` and retransmits it byte for byte until a verified reply or the budget ends. */
  #exchange(
    index: number,
    req: SignedRequest,
    signal?: AbortSignal,
    policy = this.#policy,
  ): Promise<AnyDatagram | undefined | typeof closedMarker> {
    const server = this.#servers[index]!;
    return new Promise((resolve) => {
      if (this.#closed) {
        resolve(closedMarker);
        return;
      }
      // An already-aborted signal never fires 'abort' again.
      if (signal?.aborted) {
        resolve(undefined);
        return;
      }
      const started = this.#now();
      let attempt = 0;
      let timer: NodeJS.Timeout | undefined;
      const finish = (d: AnyDatagram | undefined | typeof closedMarker) => {
        if (timer) clearTimeout(timer);
        this.#pending.delete(req.requestId);
        if (this.#pending.size === 0 && !this.#closed) this.#socket.unref();
        signal?.removeEventListener('abort', onAbort);
        resolve(d);
      };
      const onAbort = () => finish(undefined);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#pending.set(req.requestId, {
        req,
        server: server.name,
        resolve: finish as (d: AnyDatagram) => void,
      });
      // An awaited request keeps the process alive; an idle client (heartbeats only) does not.
      this.#socket.ref();
      const send = () => {
        if (this.#closed) {
          finish(closedMarker);
          return;
        }
        this.#socket.send(req.bytes, server.port, server.host);
        const delay = nextDelay(policy, attempt++, this.#now() - started);
        if (delay === undefined) {
          finish(undefined);
          return;
        }
        timer = setTimeout(() => {
          if (this.#now() - started >= policy.maxTotalMs) finish(undefined);
          else send();
        }, delay);
        timer.unref();
      };
      send();
    });
  }

  #onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    try {
      const bytes = new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength);
      if (bytes.length < 8) return;
      const type = bytes[3];
      if (type === MsgType.TEST_CONN) {
        const ack = this.auth.answerTestConn(bytes, this.#leases.size);
        if (ack) this.#socket.send(ack, rinfo.port, rinfo.address);
        return;
      }
      const requestId =
        ((bytes[8]! << 24) | (bytes[9]! << 16) | (bytes[10]! << 8) | bytes[11]!) >>> 0;
      const p = this.#pending.get(requestId);
      if (!p) return;
      if (p.req.bytes[3] === MsgType.HELLO && bytes[3] === MsgType.HELLO_OK) {
        // HELLO_OK is signed with the new session key, which only the credential unwraps.
        if (this.auth.acceptHelloOk(bytes, requestId)) p.resolve(decodeDatagram(bytes));
        return;
      }
      const d = this.auth.verifyReply(p.server, bytes, p.req);
      if (d) p.resolve(d);
    } catch {
      // A hostile or broken datagram must never take the application down.
    }
  }

  #setHeartbeat(ms: number): void {
    const interval = Math.max(50, this.#opts.heartbeatMs ?? ms);
    if (this.#heartbeatTimer && interval === this.#heartbeatMs) return;
    this.#heartbeatMs = interval;
    if (this.#heartbeatTimer) clearInterval(this.#heartbeatTimer);
    this.#heartbeatTimer = setInterval(() => void this.#heartbeat(), interval);
    this.#heartbeatTimer.unref();
  }

  async #heartbeat(): Promise<void> {
    // One at a time: against a dead server a heartbeat outlives the interval, and piling
    // them up would multiply retransmissions and failovers.
    if (this.#closed || this.#leases.size === 0 || this.#beating) return;
    this.#beating = true;
    try {
      const d = await this.#call(MsgType.HEARTBEAT, {}, 'heartbeat');
      if (d.type === MsgType.HEARTBEAT_ACK && d.body.leases < this.#leases.size)
        this.#scheduleReclaim();
    } catch {
      // Keep the leases: the next heartbeat tries again (and fails over); the server reaps.
    } finally {
      this.#beating = false;
    }
  }

  /**
   * Sends a heartbeat now (the timer does this every heartbeat interval) and, when the
   * server counts fewer leases than this client holds, re-presents their tickets and waits
   * for that to finish. Resolves with the number of leases the server acknowledged.
   * @throws {TimeoutError|ClosedError}
   */
  async heartbeat(): Promise<number> {
    const d = await this.#call(MsgType.HEARTBEAT, {}, 'heartbeat');
    if (d.type !== MsgType.HEARTBEAT_ACK) {
      throw new FloatlmError('EPROTO', `heartbeat: unexpected reply type ${d.type}`);
    }
    if (d.body.leases < this.#leases.size) {
      this.#scheduleReclaim();
      await this.#reclaiming;
    }
    return d.body.leases;
  }

  /** Re-presents every lease's ticket (after a restart or failover). One at a time. */
  #scheduleReclaim(): void {
    if (this.#reclaiming || this.#leases.size === 0) return;
    this.#reclaiming = this.#reclaim().finally(() => {
      this.#reclaiming = undefined;
    });
    this.#reclaiming.catch(() => {});
  }

  async #reclaim(): Promise<void> {
    // Batches of at most 8 tickets that fit one datagram with the token attached.
    const batches: Lease[][] = [];
    let batch: Lease[] = [];
    let bytes = 0;
    for (const l of this.#leases.values()) {
      if (
        batch.length === 8 ||
        (batch.length > 0 && bytes + l.ticket.length + 2 > RECLAIM_TICKET_BUDGET)
      ) {
        batches.push(batch);
        batch = [];
        bytes = 0;
      }
      batch.push(l);
      bytes += l.ticket.length + 2;
    }
    if (batch.length) batches.push(batch);
    for (const b of batches) {
      const d = await this.#call(
        MsgType.RECLAIM,
        { tickets: b.map((l) => ({ ticket: l.ticket })) },
        'reclaim',
      );
      if (d.type !== MsgType.RECLAIM_REPLY) {
        // A refused token ends the session (and so the leases); anything else (BUSY,
        // CLOCK_SKEW...) is transient: the leases stay and the next heartbeat tries again.
        if (d.type === MsgType.ERROR && isTokenError(d.body.code)) {
          for (const l of b) this.#loseLease(l, d.body.message);
        }
        continue;
      }
      b.forEach((l, j) => {
        const code = d.body.results[j]?.code ?? ErrorCode.INTERNAL;
        if (code === ErrorCode.OK) {
          l.emit('reclaimed');
          this.emit('reclaimed', l);
        } else this.#loseLease(l, `reclaim refused: ${errorNameSafe(code)}`);
      });
    }
  }

  #loseLease(l: Lease, reason: string): void {
    this.#leases.delete(l.leaseId);
    l._lost(reason);
    this.emit('lost', l, reason);
  }

  /**
   * An aborted checkout: a waiting one leaves the queue of `feature` first (best effort; the
   * server answers OK whether or not it had queued us), so no seat is kept for nobody.
   */
  async #abandon(feature: string, wait: boolean): Promise<AbortError> {
    if (wait && !this.#closed) {
      await this.#call(MsgType.CHECKIN, { leaseId: 0n, feature }, `leave queue ${feature}`).catch(
        () => {},
      );
    }
    return new AbortError(`checkout ${feature}`);
  }
}

/** Ticket bytes per RECLAIM: 1200 minus header, tag, the largest token and its prefixes. */
const RECLAIM_TICKET_BUDGET = 1200 - 32 - 32 - 2 - 512 - 1;

function isTokenError(code: number): boolean {
  return code >= ErrorCode.TOKEN_BAD_SIGNATURE && code <= ErrorCode.TOKEN_MALFORMED;
}

const closedMarker = Symbol('closed') as unknown as AnyDatagram & symbol;

function errorNameSafe(code: number): string {
  return new DeniedError('', code).code;
}

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return process.env.USER ?? 'unknown';
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    // Ref'd: someone awaits this wait (a queued checkout), so the process must stay up.
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

export { AdminOp };
