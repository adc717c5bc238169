/**
 * The client library: `connect()` gives a Client that gets a token (first contact), signs
 * every datagram in the right auth mode by itself, retransmits on the RFC 5080 schedule,
 * moves on to the next server of its list after a short silence (1 s: failover) or at once
 * when a server says it cannot serve (BUSY; DEGRADED in PONG), heartbeats its leases,
 * answers the server's test_conn, re-presents its token and, when the server counts fewer
 * leases than it holds, its lease tickets to a restarted server or to the next server of its
 * list, and reports what happens to each lease, and to its contact with the servers, as
 * events. It owns one UDP socket and its timers (all unref'd).
 */
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import { hostname, userInfo } from 'node:os';
import { ClientAuth, type SignedRequest } from '../auth/client.ts';
import { decodeTicket } from '../token/index.ts';
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
import { nextDelay, type RetryPolicy, retryPolicy, serverWindow } from './retry.ts';

/** A checkout answered BUSY with a short retry hint is tried again, this many times at most. */
const BUSY_RETRIES = 5;
const BUSY_RETRY_MAX_MS = 1000;

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
  /** 'degraded': the server cannot write its state; it answers but grants nothing. */
  state: 'running' | 'grace' | 'closing' | 'degraded';
  graceLeftMs: number;
}

export interface StatusResult {
  server: string;
  features: Extract<StatusRecordValue, { kind: 1 }>[];
  /** Each with the `program` and `version` its client declared ('' when it sent none). */
  holders: Extract<StatusRecordValue, { kind: 2 }>[];
  queued: Extract<StatusRecordValue, { kind: 3 }>[];
  /** Seats kept for a user or host (RESERVE=), per feature name. */
  reservations: Extract<StatusRecordValue, { kind: 4 }>[];
  /**
   * A site's servers as the answering one knows them (empty from a single server):
   * `state` 1 up, 0 gone (left at `since`), 2 the answering server cut off from etcd;
   * `self` 1 for the one that answered.
   */
  servers: Extract<StatusRecordValue, { kind: 5 }>[];
}

/** A lease's events and their arguments (`lease.on(name, listener)`). */
export interface LeaseEvents {
  /** The seat is gone (reaped, removed, token refused, reclaim refused...): why, in words. */
  lost: [reason: string];
  /** The seat was re-presented to a restarted or new server and is still held. */
  reclaimed: [];
}

/** A client's events and their arguments (`client.on(name, listener)`); see Client. */
export interface ClientEvents {
  queued: [feature: string, position: number, queueLength: number];
  granted: [lease: Lease];
  lost: [lease: Lease, reason: string];
  reclaimed: [lease: Lease];
  /** Another server of the list answered and is now the current one (`host:port`). */
  failover: [server: string];
  /** A request to `server` has had no answer for `retry.failoverMs`. */
  'contact-lost': [server: string];
  /** The first verified reply after 'contact-lost', from `server`. */
  'contact-restored': [server: string];
}

/**
 * A held seat. `version` is the version granted (from the lease ticket), which is the
 * feature's version when the checkout asked for none. Events: 'lost' (reason: string),
 * 'reclaimed'.
 */
export class Lease extends EventEmitter<LeaseEvents> {
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
    return this._checkinWithin(undefined);
  }

  /** @internal checkin with a budget (close()). */
  async _checkinWithin(budgetMs: number | undefined): Promise<void> {
    if (this.#state !== 'held') return;
    await this.#client._checkin(this, budgetMs);
    this.#state = 'released';
  }

  /** @internal */
  _lost(reason: string): void {
    if (this.#state !== 'held') return;
    this.#state = 'lost';
    this.emit('lost', reason);
  }
}

/** A verified reply, the server (index in the list) that sent it and the datagram it answers. */
interface Answer {
  d: AnyDatagram;
  index: number;
  req: SignedRequest;
}

/** One request in flight: the datagram last sent to each server, by index in the list. */
interface Flight {
  sent: Map<number, SignedRequest>;
  answer: (a: Answer) => void;
}

/** How a request is sent (internal). */
interface CallOptions {
  signal?: AbortSignal | undefined;
  /** Total budget, ms; default the policy's `maxTotalMs`. */
  budgetMs?: number;
  /** Index of the server to start with; default the current one. */
  start?: number;
  /** This server only: no failover, and the current server stays as it is. */
  only?: boolean;
  /** A second form of a request that was answered "not processed": no third. */
  again?: boolean;
  /** Request id to use (a re-send that must find the first one's outcome). */
  rid?: number;
  /** Already sent elsewhere after a server answered BUSY or SHUTTING_DOWN: not again. */
  away?: boolean;
}

/** close(): the time for checking in and ending the session when the server is silent. */
const CLOSE_MS = 1000;
/** Leaving a queue after an abort, when the server is silent. */
const ABANDON_MS = 500;
/**
 * How long a server that said it cannot serve (ERROR BUSY or SHUTTING_DOWN, PONG DEGRADED or
 * CLOSING) is tried after the other servers of the list, unless it shows it serves again.
 */
const UNWELL_MS = 30_000;

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
 * A connected client. Events:
 * - 'queued' (feature, position, queueLength): a waiting checkout's place changed;
 * - 'granted' (lease), 'lost' (lease, reason), 'reclaimed' (lease);
 * - 'failover' (server): another server of the list answered and is now the current one;
 * - 'contact-lost' (server): a request to `server` has had no answer for
 *   `retry.failoverMs` (1 s by default), once until contact is back; the client goes on
 *   retransmitting and trying the other servers of its list;
 * - 'contact-restored' (server): the first verified reply after 'contact-lost', from
 *   `server` (the same one, or the one it failed over to).
 *
 * 'error' is never emitted.
 */
export class Client extends EventEmitter<ClientEvents> {
  readonly auth: ClientAuth;
  readonly #servers: { name: string; host: string; port: number }[];
  readonly #policy: RetryPolicy;
  readonly #opts: ConnectOptions;
  readonly #now: () => number;
  readonly #socket: dgram.Socket;
  /** Flights by request id (a HELLO flight is listed under each server's request id). */
  readonly #pending = new Map<number, Flight>();
  readonly #leases = new Map<bigint, Lease>();
  #current = 0;
  #requestId = (Math.random() * 0x7fffffff) >>> 0;
  #heartbeatMs = 10_000;
  #heartbeatTimer: NodeJS.Timeout | undefined;
  /** The heartbeat in flight, shared by the timer and `heartbeat()`. */
  #beat: Promise<number> | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  #destroyed: Promise<void> | undefined;
  #ready: Promise<void>;
  #bound: Promise<void>;
  #helloing: Promise<void> | undefined;
  #reclaiming: Promise<void> | undefined;
  /** The lease count check after a failover or a restored session (a HEARTBEAT). */
  #checking: Promise<void> | undefined;
  /** Servers (by index) that said they cannot serve, until when (`UNWELL_MS`). */
  readonly #unwell = new Map<number, number>();
  /** The server named by the last 'contact-lost', until a verified reply comes. */
  #silent: string | undefined;

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
   * leaves the queue before rejecting (giving the server half a second to confirm).
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
    let busy = 0;
    // A request answered BUSY was not processed: its retry keeps the id.
    let rid: number | undefined;
    for (;;) {
      this.#checkOpen('checkout');
      if (o.signal?.aborted) throw await this.#abandon(feature, !!o.wait);
      let d: AnyDatagram;
      try {
        ({ d } = await this.#call(
          MsgType.CHECKOUT,
          { feature, version, count, options: o.wait ? 1 : 0 },
          `checkout ${feature}`,
          rid === undefined ? { signal: o.signal } : { signal: o.signal, rid },
        ));
      } catch (e) {
        // Aborted with the CHECKOUT in flight: the server may have queued us all the same.
        if (e instanceof AbortError) throw await this.#abandon(feature, !!o.wait);
        throw e;
      }
      if (retryableBusy(d) && busy++ < BUSY_RETRIES) {
        // Not processed, retry soon (a site server whose grant another server beat to the
        // last seat: its next answer is the site's), as the same request.
        rid = d.requestId;
        await sleep(d.body.retryAfterMs, o.signal);
        continue;
      }
      rid = undefined;
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
        const lease = new Lease(
          this,
          feature,
          grantedVersion(b.ticket, version),
          b.leaseId,
          b.count,
          b.ticket,
        );
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

  /**
   * The debug ping, to `server` or the current one (no failover).
   * @throws {TimeoutError}; {DeniedError} when the server answers with an ERROR (e.g. BUSY)
   */
  async ping(server?: string): Promise<PongInfo> {
    const target = server ? this.#serverIndex(server) : this.#current;
    const t0 = this.#now();
    const { d } = await this.#call(MsgType.PING, { payload: new Uint8Array(64) }, 'ping', {
      start: target,
      only: true,
    });
    const t1 = this.#now();
    if (d.type === MsgType.ERROR)
      throw new DeniedError('ping', d.body.code, d.body.retryAfterMs, d.body.message);
    if (d.type !== MsgType.PONG)
      throw new FloatlmError('EPROTO', `ping: unexpected reply type ${d.type}`);
    // A server that says it cannot serve is tried last from now on; one that serves, as usual.
    this.#setUnwell(
      target,
      d.body.state === ServerState.DEGRADED || d.body.state === ServerState.CLOSING,
    );
    const states = {
      [ServerState.RUNNING]: 'running',
      [ServerState.GRACE]: 'grace',
      [ServerState.CLOSING]: 'closing',
      [ServerState.DEGRADED]: 'degraded',
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
        servers: [],
      };
      let pages = 1;
      let snapshot: number | undefined;
      let consistent = true;
      for (let page = 0; page < pages; page++) {
        const { d } = await this.#call(MsgType.STATUS, { page, feature }, 'status');
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
          else if (r.kind === 4) out.reservations.push(r);
          else out.servers.push(r);
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
    const { d } = await this.#call(
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

  /**
   * Sends a heartbeat now (the timer does this every heartbeat interval) and, when the
   * server counts fewer leases than this client holds, re-presents their tickets and waits
   * for that to finish. A heartbeat already in flight (the timer's) is shared, not doubled.
   * Resolves with the number of leases the server acknowledged.
   * @throws {TimeoutError|ClosedError|DeniedError}
   */
  heartbeat(): Promise<number> {
    if (!this.#beat) {
      const beat = this.#heartbeatOnce();
      this.#beat = beat;
      const clear = () => {
        if (this.#beat === beat) this.#beat = undefined;
      };
      beat.then(clear, clear);
    }
    return this.#beat;
  }

  /**
   * Checks in every lease and ends the session on the server, giving up after `timeoutMs`
   * (default 1000, or `retry.maxTotalMs` when that is shorter) when the server does not answer, then closes the socket: whatever the
   * server does, it resolves within about `timeoutMs` (the server reaps what was not
   * checked in). Requests still in flight then reject with ClosedError. Idempotent.
   * @throws {RangeError} when `options.timeoutMs` is not a positive number
   */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    const ms = options.timeoutMs ?? Math.min(CLOSE_MS, this.#policy.maxTotalMs);
    if (!(typeof ms === 'number' && ms > 0 && Number.isFinite(ms)))
      throw new RangeError('options.timeoutMs must be a positive number of milliseconds');
    this.#closing ??= this.#shutdown(ms);
    return this.#closing;
  }

  /**
   * Closes at once without checking anything in, as a crashed process would: the server
   * reaps the seats after its test_conn pings go unanswered. Idempotent.
   */
  destroy(): Promise<void> {
    this.#destroyed ??= this.#teardown();
    return this.#destroyed;
  }

  /**
   * @internal Lease.checkin. A BUSY answer with a short hint (a site server whose etcd is
   * electing a leader, a daemon whose state cannot be written for a moment) was not
   * processed: the seat is still held, so the same request goes again after the hint, within
   * the budget; if the server stays busy the lease stays held here too (heartbeated, and
   * checked in again by close()).
   */
  async _checkin(lease: Lease, budgetMs?: number): Promise<void> {
    const deadline = budgetMs === undefined ? undefined : this.#now() + budgetMs;
    let busy = 0;
    let rid: number | undefined;
    for (;;) {
      const o: CallOptions = rid === undefined ? {} : { rid };
      if (deadline !== undefined) {
        o.budgetMs = Math.max(1, deadline - this.#now());
        o.only = true;
      }
      const { d } = await this.#call(
        MsgType.CHECKIN,
        { leaseId: lease.leaseId, feature: lease.feature },
        `checkin ${lease.feature}`,
        o,
      );
      if (
        retryableBusy(d) &&
        busy++ < BUSY_RETRIES &&
        (deadline === undefined || this.#now() + d.body.retryAfterMs < deadline)
      ) {
        rid = d.requestId;
        await sleep(d.body.retryAfterMs);
        continue;
      }
      // Not processed (BUSY, SHUTTING_DOWN): the server still counts the lease, so it stays
      // held (and heartbeated) here; anything else ends it.
      if (d.type !== MsgType.ERROR || !cannotServe(d.body.code)) this.#leases.delete(lease.leaseId);
      if (d.type === MsgType.ERROR && d.body.code !== ErrorCode.NOT_HOLDER) {
        throw new DeniedError(
          `checkin ${lease.feature}`,
          d.body.code,
          d.body.retryAfterMs,
          d.body.message,
        );
      }
      return;
    }
  }

  // ------------------------------------------------------------ internals

  async #shutdown(ms: number): Promise<void> {
    if (this.#closed) return;
    const deadline = this.#now() + ms;
    const left = () => deadline - this.#now();
    // Whatever is still waiting at the deadline (these checkins, a checkout, a reclaim)
    // ends with ClosedError when the socket goes.
    const stop = setTimeout(() => void this.destroy(), ms);
    stop.unref();
    try {
      if (this.auth.session) {
        await Promise.allSettled(
          [...this.#leases.values()].map((l) => l._checkinWithin(Math.max(1, left()))),
        );
      }
      if (this.auth.session && !this.#closed && left() > 0) {
        // End the session on the server too (CHECKIN of lease 0 with no feature), so it
        // does not count against the user's session cap.
        await this.#call(MsgType.CHECKIN, { leaseId: 0n, feature: '' }, 'close', {
          budgetMs: left(),
          only: true,
        }).catch(() => {});
      }
    } finally {
      clearTimeout(stop);
      await this.destroy();
    }
  }

  async #teardown(): Promise<void> {
    this.#closed = true;
    if (this.#heartbeatTimer) clearInterval(this.#heartbeatTimer);
    for (const f of new Set(this.#pending.values())) f.answer(closedAnswer);
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

  /**
   * Every server of the list once, starting with `start`, except that servers which said
   * they cannot serve (`#unwell`) come after the others.
   */
  #order(start: number): number[] {
    const n = this.#servers.length;
    const all = Array.from({ length: n }, (_, k) => (start + k) % n);
    if (this.#unwell.size === 0) return all;
    const now = this.#now();
    const sick = (i: number) => {
      const until = this.#unwell.get(i);
      if (until === undefined) return false;
      if (until > now) return true;
      this.#unwell.delete(i);
      return false;
    };
    return [...all.filter((i) => !sick(i)), ...all.filter(sick)];
  }

  /** Marks server `index` as unable to serve (for `UNWELL_MS`), or as serving. */
  #setUnwell(index: number, unwell: boolean): void {
    if (unwell) this.#unwell.set(index, this.#now() + UNWELL_MS);
    else this.#unwell.delete(index);
  }

  #hello(): Promise<void> {
    this.#helloing ??= this.#helloOnce().finally(() => {
      this.#helloing = undefined;
    });
    return this.#helloing;
  }

  async #helloOnce(away = false): Promise<void> {
    const u = this.#opts.user ?? safeUser();
    const fields = {
      vendor: this.#opts.vendor ?? this.#opts.credential.id.split('/')[0]!,
      program: this.#opts.program ?? 'floatlm-client',
      version: this.#opts.programVersion ?? '0.1.0',
      user: u,
      host: this.#opts.host ?? hostname(),
    };
    const order = this.#order(this.#current);
    // Each server gets its own HELLO (own request id and nonce); a server visited again gets
    // the same bytes, which its replay cache answers.
    const a = await this.#fly(
      order,
      (i, last) => last ?? this.auth.hello(this.#servers[i]!.name, fields, this.#nextRequestId()),
    );
    if (a === closedAnswer) throw new ClosedError('connect');
    if (a === undefined)
      throw new TimeoutError(
        'connect',
        order.map((i) => this.#servers[i]!.name),
      );
    const { d } = a;
    if (d.type === MsgType.ERROR && cannotServe(d.body.code)) {
      // Not processed there (no session was opened): the other servers first, once.
      this.#setUnwell(a.index, true);
      if (!away && this.#servers.length > 1) return this.#helloOnce(true);
    }
    if (d.type === MsgType.ERROR)
      throw new DeniedError('connect', d.body.code, d.body.retryAfterMs, d.body.message);
    this.#setUnwell(a.index, false);
    this.#current = a.index;
    if (d.type === MsgType.HELLO_OK)
      this.#setHeartbeat(this.#opts.heartbeatMs ?? d.body.heartbeatMs);
  }

  #nextRequestId(): number {
    this.#requestId = (this.#requestId + 1) >>> 0 || 1;
    return this.#requestId;
  }

  /**
   * One request, with failover (protocol.md section 11): one request id throughout, sent to
   * the current server, then after `failoverMs` unanswered to the next of the list (in mode
   * 2 where that server does not know the session), round the list until the budget is
   * spent; servers that said they cannot serve come last. An ERROR BUSY or SHUTTING_DOWN
   * (not processed) sends the request, same id, to the other servers at once, once. A server
   * that answers becomes the current one; when it did not know the session or is not the one
   * we had, a HEARTBEAT asks it how many of our leases it counts, and the tickets are
   * re-presented when it counts fewer than we hold.
   */
  async #call<T extends MsgType>(
    type: T,
    body: Bodies[T],
    what: string,
    o: CallOptions = {},
  ): Promise<Answer> {
    this.#checkOpen(what);
    await this.#ready;
    const session = this.auth.session;
    if (session && this.#now() >= session.expires) {
      // The token ran out: its leases went with it; start a new session.
      this.auth.dropSession();
      for (const l of [...this.#leases.values()]) this.#loseLease(l, 'token expired');
    }
    if (type !== MsgType.ADMIN && !this.auth.session && !this.#opts.noHello) await this.#hello();
    this.#checkOpen(what);
    const start = o.start ?? this.#current;
    const order = o.only ? [start] : this.#order(start);
    const rid = o.rid ?? this.#nextRequestId();
    const a = await this.#fly(
      order,
      (i, last) => {
        const name = this.#servers[i]!.name;
        if (last?.mode === AuthMode.SESSION) {
          // Unanswered in mode 3 for a whole window: the server may have lost the session.
          this.auth.forgetServer(name);
        } else if (last) return last;
        return this.auth.request(name, type, body, rid);
      },
      o,
    );
    if (a === closedAnswer) throw new ClosedError(what);
    if (a === undefined) {
      if (o.signal?.aborted) throw new AbortError(what);
      throw new TimeoutError(
        what,
        order.map((i) => this.#servers[i]!.name),
      );
    }
    const { d, index } = a;
    if (d.type === MsgType.ERROR && cannotServe(d.body.code)) {
      // BUSY (a server that cannot write its state, or shedding load) or SHUTTING_DOWN: the
      // request was not processed there. With other servers listed, the same request (same
      // id: exactly once wherever it lands) goes to them first, at once, rather than waiting
      // out retryAfterMs; this server comes last. Once: a second refusal is the answer.
      this.#setUnwell(index, true);
      if (!o.only && !o.away && this.#servers.length > 1) {
        const next = (index + 1) % this.#servers.length;
        return this.#call(type, body, what, { ...o, start: next, rid, away: true });
      }
      return a;
    }
    if (d.type !== MsgType.ERROR && changesState(type)) this.#setUnwell(index, false);
    let moved = false;
    if (!o.only && index !== this.#current) {
      this.#current = index;
      moved = true;
      this.emit('failover', this.#servers[index]!.name);
    }
    const restored = a.req.mode === AuthMode.TOKEN;
    if (
      (restored || moved) &&
      type !== MsgType.RECLAIM &&
      type !== MsgType.HEARTBEAT &&
      index === this.#current
    ) {
      // A server that may not know our leases (a new server, a restart, a takeover; or a
      // server of a site, which does): a HEARTBEAT there says how many it counts, and the
      // tickets are re-presented if that is fewer than we hold, before any new request of
      // ours is processed (a request answered NEED_PADDING was not processed, and is sent
      // again below). A HEARTBEAT's own ACK does that check (#heartbeatOnce).
      this.#scheduleLeaseCheck();
      if (d.type === MsgType.ERROR && d.body.code === ErrorCode.NEED_PADDING) await this.#checking;
    }
    if (d.type === MsgType.ERROR) {
      const code = d.body.code;
      if (!o.again && code === ErrorCode.REPLAY) {
        // A restarted server's replay floor (the auth layer moved our seq above it): the same
        // request again, with the same id, so a copy processed before the restart gets that
        // outcome, to the server that answered.
        return this.#call(type, body, what, { ...o, start: index, only: true, again: true, rid });
      }
      if (!o.again && code === ErrorCode.NEED_PADDING) {
        // A mode-2 request answered unprocessed, but the session is now restored there: the
        // same request (same id: a site server then finds what an attempt elsewhere did) in
        // the mode the auth layer now picks, to the server that answered.
        return this.#call(type, body, what, { ...o, start: index, again: true, rid });
      }
      if (!o.again && code === ErrorCode.UNKNOWN_SESSION) {
        // The auth layer forgot the server: a fresh request (a new id, maybe a new session).
        const fresh: CallOptions = { ...o, start: index, again: true };
        delete fresh.rid;
        return this.#call(type, body, what, fresh);
      }
      if (!this.auth.session && this.#leases.size > 0 && isTokenError(code)) {
        for (const l of [...this.#leases.values()])
          this.#loseLease(l, `token refused: ${d.body.message}`);
      }
    }
    return a;
  }

  /**
   * Sends a request and retransmits it until a verified reply, an abort, close() or the end
   * of the budget (then undefined). `build(index, last)` gives the datagram for server
   * `index` on each visit, given the one last sent there: the same bytes for a byte-identical
   * retransmission, or a new form. Every datagram goes to the server it was built for.
   */
  #fly(
    order: number[],
    build: (index: number, last: SignedRequest | undefined) => SignedRequest,
    o: CallOptions = {},
  ): Promise<Answer | undefined> {
    return new Promise((resolve, reject) => {
      const signal = o.signal;
      if (this.#closed) {
        resolve(closedAnswer);
        return;
      }
      // An already-aborted signal never fires 'abort' again.
      if (signal?.aborted) {
        resolve(undefined);
        return;
      }
      const policy = this.#policy;
      const budget = o.budgetMs ?? policy.maxTotalMs;
      const started = this.#now();
      const sent = new Map<number, SignedRequest>();
      let timer: NodeJS.Timeout | undefined;
      let done = false;
      let visit = 0;
      const cleanup = () => {
        done = true;
        if (timer) clearTimeout(timer);
        clearTimeout(contact);
        for (const req of sent.values())
          if (this.#pending.get(req.requestId) === flight) this.#pending.delete(req.requestId);
        if (this.#pending.size === 0 && !this.#closed) this.#socket.unref();
        signal?.removeEventListener('abort', onAbort);
      };
      const finish = (a: Answer | undefined) => {
        if (done) return;
        cleanup();
        if (a && a !== closedAnswer) this.#contactBack(this.#servers[a.index]!.name);
        resolve(a);
      };
      const flight: Flight = { sent, answer: finish };
      const onAbort = () => finish(undefined);
      signal?.addEventListener('abort', onAbort, { once: true });
      const contact = setTimeout(
        () => this.#contactLost(this.#servers[order[0]!]!.name),
        Math.min(policy.failoverMs, budget),
      );
      contact.unref();
      // An awaited request keeps the process alive; an idle client (heartbeats only) does not.
      this.#socket.ref();
      const nextVisit = () => {
        if (done) return;
        if (this.#closed) {
          finish(closedAnswer);
          return;
        }
        const elapsed = this.#now() - started;
        if (elapsed >= budget) {
          finish(undefined);
          return;
        }
        const index = order[visit % order.length]!;
        let req: SignedRequest;
        try {
          req = build(index, sent.get(index));
        } catch (e) {
          cleanup();
          reject(e);
          return;
        }
        sent.set(index, req);
        this.#pending.set(req.requestId, flight);
        const window = serverWindow(
          policy,
          order.length,
          visit++,
          req.mode === AuthMode.SESSION,
          budget,
          budget - elapsed,
        );
        const server = this.#servers[index]!;
        const from = this.#now();
        const schedule = { ...policy, maxTotalMs: window };
        let attempt = 0;
        const send = () => {
          if (done) return;
          if (this.#closed) {
            finish(closedAnswer);
            return;
          }
          this.#socket.send(req.bytes, server.port, server.host);
          const spent = this.#now() - from;
          const delay = nextDelay(schedule, attempt++, spent);
          if (delay === undefined) {
            nextVisit();
            return;
          }
          // A wait cut short by the window's end is the last one there: no extra datagram
          // a millisecond before the window closes (clock granularity).
          const last = delay >= window - spent;
          timer = setTimeout(() => {
            if (last || this.#now() - from >= window) nextVisit();
            else send();
          }, delay);
          timer.unref();
        };
        send();
      };
      nextVisit();
    });
  }

  #contactLost(server: string): void {
    if (this.#silent !== undefined || this.#closed) return;
    this.#silent = server;
    this.emit('contact-lost', server);
  }

  #contactBack(server: string): void {
    if (this.#silent === undefined) return;
    this.#silent = undefined;
    this.emit('contact-restored', server);
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
      const flight = this.#pending.get(requestId);
      if (!flight) return;
      for (const [index, req] of this.#senders(flight, requestId, rinfo)) {
        if (req.bytes[3] === MsgType.HELLO && type === MsgType.HELLO_OK) {
          // HELLO_OK is signed with the new session key, which only the credential unwraps.
          if (this.auth.acceptHelloOk(bytes, requestId)) {
            flight.answer({ d: decodeDatagram(bytes), index, req });
            return;
          }
          continue;
        }
        const d = this.auth.verifyReply(this.#servers[index]!.name, bytes, req);
        if (d) {
          flight.answer({ d, index, req });
          return;
        }
      }
    } catch {
      // A hostile or broken datagram must never take the application down.
    }
  }

  /**
   * The servers of a flight that were sent `requestId`, the one at the reply's source
   * address first (a host name or a multi-homed server may answer from another address;
   * the tag decides, the address only says which server answered).
   */
  #senders(flight: Flight, requestId: number, rinfo: dgram.RemoteInfo): [number, SignedRequest][] {
    const rank = (i: number) => {
      const s = this.#servers[i]!;
      if (s.port !== rinfo.port) return 2;
      return s.host === rinfo.address ? 0 : 1;
    };
    return [...flight.sent]
      .filter(([, req]) => req.requestId === requestId)
      .sort(([a], [b]) => rank(a) - rank(b));
  }

  #setHeartbeat(ms: number): void {
    const interval = Math.max(50, this.#opts.heartbeatMs ?? ms);
    if (this.#heartbeatTimer && interval === this.#heartbeatMs) return;
    this.#heartbeatMs = interval;
    if (this.#heartbeatTimer) clearInterval(this.#heartbeatTimer);
    this.#heartbeatTimer = setInterval(() => {
      // One at a time (shared with heartbeat()): against a dead server a heartbeat outlives
      // the interval, and piling them up would multiply retransmissions and failovers.
      if (this.#closed || this.#leases.size === 0) return;
      // Keep the leases on failure: the next heartbeat tries again; the server reaps.
      this.heartbeat().catch(() => {});
    }, interval);
    this.#heartbeatTimer.unref();
  }

  async #heartbeatOnce(): Promise<number> {
    const { d, index } = await this.#call(MsgType.HEARTBEAT, {}, 'heartbeat');
    if (d.type === MsgType.ERROR)
      throw new DeniedError('heartbeat', d.body.code, d.body.retryAfterMs, d.body.message);
    if (d.type !== MsgType.HEARTBEAT_ACK) {
      throw new FloatlmError('EPROTO', `heartbeat: unexpected reply type ${d.type}`);
    }
    if (d.body.leases < this.#leases.size) {
      this.#scheduleReclaim(index);
      await this.#reclaiming;
    }
    return d.body.leases;
  }

  /**
   * After a failover or a session restored in mode 2: a HEARTBEAT to the current server,
   * whose ACK re-presents the tickets when the server counts fewer leases than we hold (a
   * takeover or restarted server), and nothing when it counts them all (a server of a site
   * that shares the ledger). One at a time; failures are left to the next heartbeat.
   */
  #scheduleLeaseCheck(): void {
    if (this.#checking || this.#leases.size === 0 || this.#closed) return;
    const check: Promise<void> = this.heartbeat()
      .then(
        () => {},
        () => {},
      )
      .finally(() => {
        if (this.#checking === check) this.#checking = undefined;
      });
    this.#checking = check;
  }

  /**
   * Re-presents every lease's ticket (after a restart or failover) to server `index`, in
   * batches one at a time; a batch goes where the previous one was answered.
   */
  #scheduleReclaim(index: number): void {
    if (this.#reclaiming || this.#leases.size === 0 || this.#closed) return;
    this.#reclaiming = this.#reclaim(index).finally(() => {
      this.#reclaiming = undefined;
    });
    this.#reclaiming.catch(() => {});
  }

  async #reclaim(index: number): Promise<void> {
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
    let at = index;
    for (const b of batches) {
      const a = await this.#call(
        MsgType.RECLAIM,
        { tickets: b.map((l) => ({ ticket: l.ticket })) },
        'reclaim',
        { start: at },
      );
      at = a.index;
      const d = a.d;
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
   * An aborted checkout: a waiting one leaves the queue of `feature` first (best effort,
   * for at most ABANDON_MS: the server answers OK whether or not it had queued us, and
   * reaps a silent client anyway), so no seat is kept for nobody.
   */
  async #abandon(feature: string, wait: boolean): Promise<AbortError> {
    if (wait && !this.#closed) {
      await this.#call(MsgType.CHECKIN, { leaseId: 0n, feature }, `leave queue ${feature}`, {
        budgetMs: ABANDON_MS,
        only: true,
      }).catch(() => {});
    }
    return new AbortError(`checkout ${feature}`);
  }
}

/** Ticket bytes per RECLAIM: 1200 minus header, tag, the largest token and its prefixes. */
const RECLAIM_TICKET_BUDGET = 1200 - 32 - 32 - 2 - 512 - 1;

/** An ERROR saying the server cannot serve now; the request was not processed. */
function cannotServe(code: number): boolean {
  return code === ErrorCode.BUSY || code === ErrorCode.SHUTTING_DOWN;
}

/** Request types whose success needs the server to write its state. */
function changesState(type: MsgType): boolean {
  return type === MsgType.CHECKOUT || type === MsgType.CHECKIN || type === MsgType.RECLAIM;
}

function isTokenError(code: number): boolean {
  return code >= ErrorCode.TOKEN_BAD_SIGNATURE && code <= ErrorCode.TOKEN_MALFORMED;
}

/** What a flight ends with when the client is closed under it. */
const closedAnswer = Symbol('closed') as unknown as Answer;

/** The version in a lease ticket (what was granted); `asked` if the ticket does not decode. */
function grantedVersion(ticket: Uint8Array, asked: string): string {
  try {
    return decodeTicket(ticket).version;
  } catch {
    return asked;
  }
}

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

/** An ERROR BUSY whose hint is short enough to wait for and send the same request again. */
function retryableBusy(d: AnyDatagram): d is Extract<AnyDatagram, { type: typeof MsgType.ERROR }> {
  return (
    d.type === MsgType.ERROR &&
    d.body.code === ErrorCode.BUSY &&
    d.body.retryAfterMs > 0 &&
    d.body.retryAfterMs <= BUSY_RETRY_MAX_MS
  );
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
