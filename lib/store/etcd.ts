/**
 * The site ledger over etcd: seats, sessions, queue, revocations, idempotency records and
 * replay floors shared by every floatlmd of a site. etcd's Raft gives the agreement; this
 * module only ever changes the ledger with etcd transactions whose compares make them
 * succeed on the state they were planned on, never read-then-write.
 *
 * Never over-grant, by construction: a grant is ONE transaction that compares the feature's
 * held counter by mod_revision (and value), creates the lease key with `create_revision == 0`,
 * writes counter + lease together, and also compares that this server's own key (attached to
 * its etcd lease) still exists, so a server whose etcd lease expired cannot grant even if its
 * clock or its beliefs are wrong. A conflict re-plans from the values the failed
 * transaction's else-branch read (one round trip per attempt), a bounded number of times.
 * The grants and releases of one event-loop tick (and every one queued while a transaction
 * is in flight) go out as one transaction: group commit.
 *
 * Liveness without a write per heartbeat: every server holds one etcd lease (TTL
 * `leaseTtlSec`) kept alive by the etcd3 client's keepalive stream; a session's liveness
 * key is attached to the lease of the server that last heard it (`attachSession` moves it
 * by a put), so etcd deletes the liveness keys of a dead or frozen server's sessions when its
 * lease expires. `canGrant()` turns false once the last acknowledged keepalive was *sent*
 * more than TTL minus a margin ago, i.e. before etcd itself can have expired the lease.
 *
 * Records that expire (idempotency records, revocations, burned lease ids, sessions) are
 * attached to shared, never-renewed etcd leases, one per 10 s bucket of expiry time, so
 * etcd deletes them itself; readers also check the expiry inside the value.
 *
 * This backend owns its gRPC connections and timers (all unref'ed): unlike the SQLite store it
 * is not a pure function of its calls, because etcd leases are.
 *
 * Key layout, every key under `floatlm/<site>/` (ids are 16 lower-case hex digits, feature
 * names are encodeURIComponent'ed, JSON values carry u64 as hex and bytes as base64):
 *
 * | key                                   | value                         | etcd lease        |
 * | ------------------------------------- | ----------------------------- | ----------------- |
 * | `server/<serverId>`                   | JSON {serverId, startedAt}    | the server's      |
 * | `feature/<feature>/held`              | seats held site-wide, decimal | none              |
 * | `lease/<leaseId>`                     | JSON lease record             | none              |
 * | `bysession/<tokenId>/<leaseId>`       | same JSON (index)             | none              |
 * | `burned/<leaseId>`                    | JSON {why, until}             | expiry bucket     |
 * | `session/<tokenId>`                   | JSON session record           | expiry bucket     |
 * | `alive/<tokenId>`                     | serverId of the owner         | the owner's       |
 * | `floor/<tokenId>`                     | replay floor, 10 digits       | none / bucket     |
 * | `queue/seq`                           | last queue seq, decimal       | none              |
 * | `queue/entry/<feature>/<seq 16 dec>`  | JSON queue record             | none              |
 * | `queue/by/<tokenId>/<feature>`        | the entry's key               | none              |
 * | `revoked/<tokenId>`                   | expiry, ms decimal            | expiry bucket     |
 * | `reply/<idempotency key hex>`         | JSON {reply, ip, port, exp}   | expiry bucket     |
 *
 * The session id of the wire header is the tokenId: records name it `tokenId` as in
 * lib/store/sqlite.ts, whose record types this backend shares.
 */
import { EventEmitter } from 'node:events';
import {
  Etcd3,
  EtcdLeaseInvalidError,
  GRPCDeadlineExceededError,
  GRPCUnavailableError,
  type ICompare,
  type IKeyValue,
  type IOptions,
  type IRequestOp,
  type ITxnRequest,
  type ITxnResponse,
  isRecoverableError,
  type Lease,
  type Watcher,
} from 'etcd3';
import type { LeaseRecord, QueueRecord, ReplyRecord, SessionRecord } from './sqlite.ts';

/** Stable codes of every way the etcd ledger can refuse or fail. */
export const EtcdStoreErrorCode = {
  /** No etcd member could be reached (connection refused, every circuit open). */
  UNREACHABLE: 'UNREACHABLE',
  /** etcd answered without a leader, or nothing committed within the deadline. */
  NO_MAJORITY: 'NO_MAJORITY',
  /** This server's etcd lease is lost or about to expire: it must not grant. */
  NO_LEASE: 'NO_LEASE',
  /** Revision conflicts past the retry bound, or an id already used by someone else. */
  CONFLICT: 'CONFLICT',
  /** The session was ended site-wide (its token revoked): it cannot be attached again. */
  REVOKED: 'REVOKED',
  /** A value in etcd under our prefix that is not a record of ours. */
  BAD_RECORD: 'BAD_RECORD',
  /** Any other error etcd reported (permissions, too many ops, ...). */
  ETCD: 'ETCD',
  /** A method called after close(). */
  CLOSED: 'CLOSED',
} as const;

export type EtcdStoreErrorCode = (typeof EtcdStoreErrorCode)[keyof typeof EtcdStoreErrorCode];

/** The one error type of the etcd ledger; `message` is one line starting with the code. */
export class EtcdStoreError extends Error {
  readonly code: EtcdStoreErrorCode;

  constructor(code: EtcdStoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(`${code}: ${message.replace(/\s+/g, ' ').trim()}`, options);
    this.name = 'EtcdStoreError';
    this.code = code;
  }
}

/** A grant to make: the lease record plus the feature's licensed seat count. */
export interface GrantRequest extends LeaseRecord {
  /** Seats the license allows for the feature, site-wide. */
  licensed: number;
  /**
   * Name of the site-wide counter the seats are counted in (default: the feature name). A
   * daemon counts each feature pool (name, vendor, version) on its own, as its license does.
   */
  counter?: string;
}

/** A lease as the site ledger stores it: who granted it and which counter holds its seats. */
export type SiteLease = LeaseRecord & { server: string; counter: string };

/** What `grant` decided: the seats are held, or the feature has no room for them. */
export type GrantResult = 'granted' | 'full';

/** How a released lease id is burned (never granted again) and why. */
export interface ReleaseOptions {
  /** 0 released or reaped (default), 1 removed by an admin. */
  why?: 0 | 1;
  /** ms UTC until which the lease id stays burned (default now + 24 h): the ticket's life. */
  burnUntil?: number;
}

/** What `state()` reports, for the log and for PONG. */
export interface EtcdState {
  /** Whether etcd answered this server within the last lease TTL. */
  reachable: boolean;
  /** Member id (hex) of the etcd leader at the last probe(), if one was seen. */
  leader?: string;
  /** ms UTC of the last successful etcd call or keepalive (0: never). */
  lastOkAt: number;
  /** Whether this server may grant now (see canGrant). */
  canGrant: boolean;
  /** This server's etcd lease id (decimal), while it has one. */
  leaseId?: string;
}

export interface EtcdLedgerOptions {
  /** etcd client URLs, `http://host:2379`. */
  endpoints: string[];
  /** Site name: every floatlmd of a site uses the same one. Default 'default'. */
  site?: string;
  /** This server's name, unique in the site (e.g. host name + port). */
  serverId: string;
  /** TTL of this server's etcd lease, s (default 10, at least 2). */
  leaseTtlSec?: number;
  /** Deadline of each etcd operation, ms (default 2000). */
  opTimeoutMs?: number;
  /** Attempts of one transaction on revision conflicts (default 16). */
  maxAttempts?: number;
  /** Clock, ms UTC (default Date.now): record expiries are compared to it. */
  now?: () => number;
}

/** Most grants + releases in one transaction: keeps every op list under etcd's 128. */
const MAX_BATCH = 30;
/** Most operations writeRecords puts in one transaction (etcd's default limit is 128). */
const MAX_OPS = 120;
/** Width of the expiry buckets that share one etcd lease, ms. */
const BUCKET_MS = 10_000;
/** Default time a released lease id stays burned. */
const BURN_MS = 24 * 3600_000;
const U64_MAX = 0xffff_ffff_ffff_ffffn;

type Pending =
  | {
      kind: 'grant';
      rec: GrantRequest;
      resolve: (r: GrantResult) => void;
      reject: (e: unknown) => void;
    }
  | {
      kind: 'release';
      leaseId: bigint;
      why: 0 | 1;
      burnUntil: number;
      resolve: (r: boolean) => void;
      reject: (e: unknown) => void;
    };

interface Counter {
  value: number;
  /** '0' while the key does not exist. */
  mod: string;
}

const enc = (s: string) => Buffer.from(s, 'utf8');
const counterOf = (l: LeaseRecord & { counter?: string }) => l.counter ?? l.feature;
const hex16 = (v: bigint) => v.toString(16).padStart(16, '0');

function u64(name: string, v: unknown): bigint {
  if (typeof v !== 'bigint') throw new TypeError(`${name} must be a bigint`);
  if (v < 0n || v > U64_MAX) throw new RangeError(`${name} must be a u64`);
  return v;
}

function int(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number') throw new TypeError(`${name} must be a number`);
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    throw new RangeError(`${name} must be an integer in [${min}, ${max}]`);
  }
  return v;
}

function name(what: string, v: unknown): string {
  if (typeof v !== 'string') throw new TypeError(`${what} must be a string`);
  if (v.length === 0 || v.length > 255) throw new RangeError(`${what} must be 1-255 characters`);
  return v;
}

function bytes(what: string, v: unknown): Uint8Array {
  if (!(v instanceof Uint8Array)) throw new TypeError(`${what} must be a Uint8Array`);
  return v;
}

/** The key just past every key starting with `prefix` (etcd's range_end for a prefix). */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

const put = (key: Buffer, value: string, lease?: string): IRequestOp => ({
  request_put: lease === undefined ? { key, value: enc(value) } : { key, value: enc(value), lease },
});
const del = (key: Buffer): IRequestOp => ({ request_delete_range: { key } });
const get = (key: Buffer): IRequestOp => ({ request_range: { key } });
const modIs = (key: Buffer, rev: string): ICompare => ({
  key,
  target: 'Mod',
  result: 'Equal',
  mod_revision: rev,
});
const valueIs = (key: Buffer, value: string): ICompare => ({
  key,
  target: 'Value',
  result: 'Equal',
  value: enc(value),
});
const absent = (key: Buffer): ICompare => ({
  key,
  target: 'Create',
  result: 'Equal',
  create_revision: '0',
});
const createdAt = (key: Buffer, rev: string): ICompare => ({
  key,
  target: 'Create',
  result: 'Equal',
  create_revision: rev,
});

/** The first key-value of range response `i` of a transaction, if the key existed. */
function rangeKv(r: ITxnResponse, i: number): IKeyValue | undefined {
  return r.responses[i]?.response_range?.kvs[0];
}

function encodeLease(l: LeaseRecord & { counter?: string }, server: string): string {
  return JSON.stringify({
    counter: l.counter ?? l.feature,
    leaseId: hex16(l.leaseId),
    tokenId: hex16(l.tokenId),
    feature: l.feature,
    version: l.version,
    count: l.count,
    groupKey: l.groupKey,
    grantedAt: l.grantedAt,
    ticket: Buffer.from(l.ticket).toString('base64'),
    server,
  });
}

function bad(what: string, key: Buffer | string, cause?: unknown): EtcdStoreError {
  return new EtcdStoreError('BAD_RECORD', `${what} at ${String(key)} is not a floatlm record`, {
    cause,
  });
}

function parseJson(kv: IKeyValue, what: string): Record<string, unknown> {
  try {
    const v = JSON.parse(kv.value.toString('utf8')) as unknown;
    if (typeof v !== 'object' || v === null) throw new Error('not an object');
    return v as Record<string, unknown>;
  } catch (e) {
    throw bad(what, kv.key, e);
  }
}

/** Builds a record from `kv`'s JSON; anything missing or mistyped is BAD_RECORD. */
function decode<T>(kv: IKeyValue, what: string, build: (o: Record<string, unknown>) => T): T {
  const o = parseJson(kv, what);
  try {
    return build(o);
  } catch (e) {
    throw bad(what, kv.key, e);
  }
}

const b64 = (o: Record<string, unknown>, k: string) =>
  new Uint8Array(Buffer.from(field<string>(o, k, 'string'), 'base64'));

function hexId(v: unknown): bigint {
  if (typeof v !== 'string' || !/^[0-9a-f]{16}$/.test(v)) throw new Error('bad id');
  return BigInt(`0x${v}`);
}

function field<T>(o: Record<string, unknown>, k: string, type: string): T {
  if (typeof o[k] !== type) throw new Error(`bad ${k}`);
  return o[k] as T;
}

/** @internal decodes a stored record (BAD_RECORD when it is not one of ours). */
export function decodeLease(kv: IKeyValue): SiteLease {
  return decode(kv, 'lease', (o) => ({
    counter: typeof o.counter === 'string' ? o.counter : field(o, 'feature', 'string'),
    leaseId: hexId(o.leaseId),
    tokenId: hexId(o.tokenId),
    feature: field(o, 'feature', 'string'),
    version: field(o, 'version', 'string'),
    count: field(o, 'count', 'number'),
    groupKey: field(o, 'groupKey', 'string'),
    grantedAt: field(o, 'grantedAt', 'number'),
    ticket: b64(o, 'ticket'),
    server: field(o, 'server', 'string'),
  }));
}

/** @internal decodes a stored record (BAD_RECORD when it is not one of ours). */
export function decodeSession(kv: IKeyValue): SessionRecord {
  return decode(kv, 'session', (o) => ({
    tokenId: hexId(o.tokenId),
    token: b64(o, 'token'),
    user: field(o, 'user', 'string'),
    host: field(o, 'host', 'string'),
    vendor: field(o, 'vendor', 'string'),
    created: field(o, 'created', 'number'),
    expires: field(o, 'expires', 'number'),
    ip: field(o, 'ip', 'string'),
    port: field(o, 'port', 'number'),
    credential: field(o, 'credential', 'string'),
  }));
}

/** @internal decodes a stored record (BAD_RECORD when it is not one of ours). */
export function decodeQueue(kv: IKeyValue): QueueRecord {
  return decode(kv, 'queue entry', (o) => ({
    tokenId: hexId(o.tokenId),
    feature: field(o, 'feature', 'string'),
    version: field(o, 'version', 'string'),
    count: field(o, 'count', 'number'),
    since: field(o, 'since', 'number'),
    seq: field(o, 'seq', 'number'),
  }));
}

function decimal(kv: IKeyValue | undefined, what: string): number {
  if (kv === undefined) return 0;
  const s = kv.value.toString('utf8');
  if (!/^\d{1,16}$/.test(s)) throw bad(what, kv.key);
  return Number(s);
}

type Policy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;

/** A fault-handling policy that only runs the call: no retry, no circuit breaker. */
function passThrough(): Policy {
  const noEvent = () => ({ dispose: () => undefined });
  const policy = {
    onSuccess: noEvent,
    onFailure: noEvent,
    execute: async <T>(fn: (c: { signal: AbortSignal }) => PromiseLike<T> | T) =>
      fn({ signal: new AbortController().signal }),
  };
  return policy as unknown as Policy;
}

/** Errors after which the same call may succeed on another member or a moment later. */
function retryable(e: unknown): boolean {
  if (typeof e === 'object' && e !== null && isRecoverableError(e as Error)) return true;
  const msg = e instanceof Error ? e.message : String(e);
  return /etcdserver: (leader changed|no leader|request timed out|too many requests)/.test(msg);
}

/** Maps whatever the etcd3 client threw to an EtcdStoreError with a stable code. */
export function classifyEtcdError(e: unknown, what: string): EtcdStoreError {
  if (e instanceof EtcdStoreError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  const cause = { cause: e };
  if (e instanceof EtcdLeaseInvalidError || /lease not found/i.test(msg)) {
    return new EtcdStoreError('NO_LEASE', `${what}: etcd lease not found (expired)`, cause);
  }
  if (/waiting for (name resolution|connection)|ECONNREFUSED|failed to connect/i.test(msg)) {
    // The deadline ran out before any member took the connection: nobody is there.
    return new EtcdStoreError('UNREACHABLE', `${what}: no etcd member reachable: ${msg}`, cause);
  }
  if (
    e instanceof GRPCDeadlineExceededError ||
    /no leader|request timed out|leader changed|deadline exceeded/i.test(msg)
  ) {
    return new EtcdStoreError(
      'NO_MAJORITY',
      `${what}: etcd committed nothing in time (no majority of members, or overloaded): ${msg}`,
      cause,
    );
  }
  if (e instanceof GRPCUnavailableError || /circuit breaker|ECONNREFUSED|unavailable/i.test(msg)) {
    return new EtcdStoreError('UNREACHABLE', `${what}: no etcd member reachable: ${msg}`, cause);
  }
  if (/client was already closed/i.test(msg)) {
    return new EtcdStoreError('CLOSED', `${what}: the ledger is closed`, cause);
  }
  return new EtcdStoreError('ETCD', `${what}: ${msg}`, cause);
}

/**
 * Opens this server's view of the site ledger: connects, takes an etcd lease, registers
 * `server/<serverId>` on it and starts the keepalive.
 * @throws {TypeError|RangeError} on bad options; {EtcdStoreError} UNREACHABLE, NO_MAJORITY,
 * CONFLICT (another live server uses `serverId`: wait one TTL after a crash, or rename)
 */
export async function openEtcdLedger(o: EtcdLedgerOptions): Promise<EtcdLedger> {
  if (typeof o !== 'object' || o === null) throw new TypeError('options must be an object');
  if (!Array.isArray(o.endpoints) || o.endpoints.length === 0) {
    throw new TypeError('options.endpoints must be a non-empty array of URLs');
  }
  for (const e of o.endpoints) {
    if (typeof e !== 'string' || !/^https?:\/\/[^/\s]+\/?$/.test(e)) {
      throw new RangeError(`options.endpoints: not an etcd client URL: ${String(e)}`);
    }
  }
  const site = o.site ?? 'default';
  if (typeof site !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(site)) {
    throw new RangeError('options.site must be 1-64 characters of A-Z a-z 0-9 . _ -');
  }
  if (typeof o.serverId !== 'string' || !/^[A-Za-z0-9._:@-]{1,128}$/.test(o.serverId)) {
    throw new RangeError('options.serverId must be 1-128 characters of A-Z a-z 0-9 . _ : @ -');
  }
  const ledger = new EtcdLedger({
    endpoints: o.endpoints,
    site,
    serverId: o.serverId,
    leaseTtlSec: int('options.leaseTtlSec', o.leaseTtlSec ?? 10, 2, 3600),
    opTimeoutMs: int('options.opTimeoutMs', o.opTimeoutMs ?? 2000, 50, 60_000),
    maxAttempts: int('options.maxAttempts', o.maxAttempts ?? 16, 1, 1000),
    now: o.now ?? Date.now,
  });
  try {
    await ledger.acquireLease();
  } catch (e) {
    await ledger.close({ revoke: false });
    throw e;
  }
  return ledger;
}

/**
 * One server's handle on the site ledger. Events: `grantable` (boolean, when canGrant()
 * flips), `lease-lost` (the server's etcd lease expired: its sessions' liveness keys are
 * gone and must be attached again), `lease-acquired` (lease id, decimal).
 */
export class EtcdLedger extends EventEmitter {
  readonly site: string;
  readonly serverId: string;
  readonly leaseTtlSec: number;
  private readonly client: Etcd3;
  private readonly root: string;
  private readonly opTimeoutMs: number;
  private readonly maxAttempts: number;
  private readonly now: () => number;

  private lease: Lease | undefined;
  private leaseId: string | undefined;
  private serverCreateRev = '0';
  /** Send time of the newest keepalive (or grant) etcd acknowledged. */
  private okSentAt = 0;
  private lastOkAt = 0;
  private leader: string | undefined;
  private grantable = false;
  private grantTimer: NodeJS.Timeout | undefined;
  private reacquireTimer: NodeJS.Timeout | undefined;
  private keepalive: NodeJS.Timeout | undefined;
  /** The lease a keepalive is in flight for (one at a time; a new lease need not wait). */
  private renewing: Lease | undefined;
  private closed = false;

  private pending: Pending[] = [];
  private scheduled = false;
  /** The batch transaction in flight, if any: one at a time, so batches never race. */
  private inflight: Promise<void> | undefined;
  private readonly counters = new Map<string, Counter>();
  private readonly leaseCache = new Map<
    bigint,
    { rec: LeaseRecord & { counter?: string }; mod: string }
  >();
  private readonly buckets = new Map<number, Promise<string>>();
  private queueSeq: Counter = { value: 0, mod: '0' };
  private readonly watchers = new Set<Watcher>();

  /** @internal use openEtcdLedger */
  constructor(o: Required<EtcdLedgerOptions>) {
    super();
    this.site = o.site;
    this.serverId = o.serverId;
    this.leaseTtlSec = o.leaseTtlSec;
    this.opTimeoutMs = o.opTimeoutMs;
    this.maxAttempts = o.maxAttempts;
    this.now = o.now;
    this.root = `floatlm/${o.site}/`;
    this.client = new Etcd3({
      hosts: o.endpoints,
      dialTimeout: o.opTimeoutMs,
      defaultCallOptions: (ctx) =>
        ctx.isStream ? {} : { deadline: Date.now() + this.opTimeoutMs },
      // The client's defaults (3 retries on one shared deadline, a 5 s circuit breaker per
      // member) turn one election into seconds of "unreachable"; call() retries instead.
      faultHandling: { host: () => passThrough(), global: passThrough() },
    });
  }

  private key(rest: string): Buffer {
    return enc(this.root + rest);
  }

  private featureKey(feature: string): Buffer {
    return this.key(`feature/${encodeURIComponent(feature)}/held`);
  }

  private live(): void {
    if (this.closed) throw new EtcdStoreError('CLOSED', 'the etcd ledger is closed');
  }

  private ok(): void {
    this.lastOkAt = this.now();
  }

  /**
   * Runs one etcd call, retried on transient errors (a dead, frozen or leaderless member,
   * an election) until `until`, each attempt bounded by a third of the operation's budget so
   * that one frozen member cannot eat it all. Retrying is safe: every write of this module is
   * compare-guarded or idempotent, so an attempt that committed unanswered is recognized.
   */
  private async call<T>(
    what: string,
    run: (o: { deadline: number }) => Promise<T>,
    until = Date.now() + this.opTimeoutMs,
  ): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      this.live();
      const start = Date.now();
      const attemptMs = Math.max(100, Math.ceil(this.opTimeoutMs / 3));
      try {
        const r = await run({ deadline: Math.min(until, start + attemptMs) });
        this.ok();
        return r;
      } catch (e) {
        if (this.closed) throw new EtcdStoreError('CLOSED', `${what}: the ledger is closed`);
        if (!retryable(e) || Date.now() + 50 > until) throw classifyEtcdError(e, what);
        // A refused connection fails at once: pause a little rather than spin.
        const wait = Math.min(200, 20 * attempt) - (Date.now() - start);
        if (wait > 0) await new Promise((r) => setTimeout(r, wait).unref());
      }
    }
  }

  private txn(req: ITxnRequest, what: string, until?: number): Promise<ITxnResponse> {
    return this.call(what, (o) => this.client.kv.txn(req, o), until);
  }

  // ---------------------------------------------------------------- server lease

  /**
   * A new etcd3 Lease (granted in the background) wired to this ledger's lease state. Its
   * keepalive is this ledger's (startKeepalive), not the client's: etcd3's keepalive loop
   * can start a second stream when a stream's timeout and its error both fire, and the first
   * stream's 1 s interval then runs for ever, renewing a lease this server gave up (and
   * keeping the process alive after close()).
   */
  private newLease(deadline: number): Lease {
    const lease = this.client.lease(this.leaseTtlSec, { deadline, autoKeepAlive: false });
    // The client emits 'lost' for a failed grant too; acquireLease reports that itself.
    // Otherwise 'lost' comes from a keepalive etcd answered with the lease gone.
    lease.on('lost', () => this.onLeaseLost(lease));
    return lease;
  }

  /** @internal Takes a new etcd lease and registers this server on it. */
  async acquireLease(): Promise<void> {
    const until = Date.now() + this.opTimeoutMs;
    let lease: Lease;
    let id: string;
    let sentAt: number;
    for (let attempt = 1; ; attempt++) {
      this.live();
      sentAt = Date.now();
      lease = this.newLease(Math.min(until, sentAt + Math.max(100, this.opTimeoutMs / 3)));
      try {
        id = await lease.grant();
        break;
      } catch (e) {
        lease.release();
        if (!retryable(e) || Date.now() + 50 > until) {
          throw classifyEtcdError(e, 'taking the server etcd lease');
        }
        await new Promise((r) => setTimeout(r, Math.min(200, 20 * attempt)).unref());
      }
    }
    const sk = this.key(`server/${this.serverId}`);
    let r: ITxnResponse;
    try {
      r = await this.txn(
        {
          compare: [absent(sk)],
          success: [
            put(sk, JSON.stringify({ serverId: this.serverId, startedAt: this.now() }), id),
          ],
          failure: [get(sk)],
        },
        'registering the server',
      );
    } catch (e) {
      await lease.revoke().catch(() => undefined);
      throw e;
    }
    // Ours already: an earlier attempt committed unanswered.
    const mine = !r.succeeded && rangeKv(r, 0)?.lease === id;
    if (mine) r.header.revision = rangeKv(r, 0)!.create_revision;
    if (!r.succeeded && !mine) {
      await lease.revoke().catch(() => undefined);
      throw new EtcdStoreError(
        'CONFLICT',
        `server id ${this.serverId} is in use in site ${this.site} (another live floatlmd, or ` +
          `the previous one died less than ${this.leaseTtlSec} s ago)`,
      );
    }
    if (this.closed) {
      // close() ran while this was registering: it could not release a lease it had not seen.
      lease.release();
      this.live();
    }
    this.serverCreateRev = r.header.revision;
    this.lease = lease;
    this.leaseId = id;
    this.okSentAt = sentAt;
    this.updateGrantable();
    this.startKeepalive(lease);
    this.emit('lease-acquired', id);
  }

  /**
   * The server lease's keepalive: a check every TTL/6 sends one keepalive (renew(): a fresh
   * stream, to whichever member answers, retried within the operation timeout) once the last
   * acknowledged one was sent TTL/3 ago, as etcd's own clients do; a frozen or dead member
   * costs one attempt, not the lease. After two TTLs without an acknowledgement the lease is
   * gone at etcd (as the etcd3 client judges it too): this server takes a new one.
   */
  private startKeepalive(lease: Lease): void {
    if (this.keepalive) clearInterval(this.keepalive);
    const ttlMs = this.leaseTtlSec * 1000;
    this.keepalive = setInterval(() => {
      if (lease !== this.lease) return;
      const since = Date.now() - this.okSentAt;
      // Judged before a renew in flight is waited for: that one retries for up to
      // opTimeoutMs, which may be longer than the lease lives.
      if (since >= 2 * ttlMs) {
        lease.release();
        this.onLeaseLost(lease);
        return;
      }
      if (this.renewing === lease || since < ttlMs / 3) return;
      this.renewing = lease;
      this.renew()
        .catch(() => undefined)
        .finally(() => {
          if (this.renewing === lease) this.renewing = undefined;
        });
    }, ttlMs / 6);
    this.keepalive.unref();
  }

  private onLeaseLost(lease: Lease): void {
    if (lease !== this.lease) return;
    if (this.keepalive) clearInterval(this.keepalive);
    this.keepalive = undefined;
    this.lease = undefined;
    this.leaseId = undefined;
    this.serverCreateRev = '0';
    this.updateGrantable();
    this.emit('lease-lost');
    this.scheduleReacquire(100);
  }

  private scheduleReacquire(delayMs: number): void {
    if (this.closed || this.reacquireTimer) return;
    this.reacquireTimer = setTimeout(() => {
      this.reacquireTimer = undefined;
      if (this.closed || this.lease) return;
      this.acquireLease().catch(() => this.scheduleReacquire(Math.min(delayMs * 2, 2000)));
    }, delayMs);
    this.reacquireTimer.unref();
  }

  /** Margin before etcd's lease expiry at which this server stops granting, ms. */
  private get marginMs(): number {
    return Math.min(1000, (this.leaseTtlSec * 1000) / 4);
  }

  /** Until when (Date.now() ms) this server may grant. */
  private grantUntil(): number {
    if (this.lease === undefined) return 0;
    return this.okSentAt + this.leaseTtlSec * 1000 - this.marginMs;
  }

  private updateGrantable(): void {
    const now = Date.now();
    const until = this.grantUntil();
    const g = !this.closed && now < until;
    if (this.grantTimer) clearTimeout(this.grantTimer);
    this.grantTimer = undefined;
    if (g) {
      this.grantTimer = setTimeout(() => this.updateGrantable(), until - now + 1);
      this.grantTimer.unref();
    }
    if (g !== this.grantable) {
      this.grantable = g;
      this.emit('grantable', g);
    }
  }

  /**
   * Whether this server may grant: it holds an etcd lease whose last acknowledged keepalive
   * was sent less than TTL minus a margin ago. False from before etcd can have expired the
   * lease (a server cut off from the majority stops granting within its TTL).
   */
  canGrant(): boolean {
    return !this.closed && this.lease !== undefined && Date.now() < this.grantUntil();
  }

  /** The etcd state, for the log and PONG; `leader` is as of the last probe(). */
  state(): EtcdState {
    const s: EtcdState = {
      reachable: this.lastOkAt > 0 && this.now() - this.lastOkAt < this.leaseTtlSec * 1000,
      lastOkAt: this.lastOkAt,
      canGrant: this.canGrant(),
    };
    if (this.leader !== undefined) s.leader = this.leader;
    if (this.leaseId !== undefined) s.leaseId = this.leaseId;
    return s;
  }

  /**
   * Asks one etcd member for its status, refreshing state().leader and reachability.
   * @throws {EtcdStoreError} UNREACHABLE, NO_MAJORITY, CLOSED
   */
  async probe(): Promise<EtcdState> {
    const s = await this.call('probing etcd', (o) => this.client.maintenance.status(o));
    this.leader = s.leader === '0' ? undefined : BigInt(s.leader).toString(16);
    return this.state();
  }

  /**
   * Sends one keepalive of the server lease now (the keepalive stream does it every TTL/3).
   * @throws {EtcdStoreError} NO_LEASE, UNREACHABLE, NO_MAJORITY, CLOSED
   */
  async renew(): Promise<void> {
    this.live();
    const lease = this.lease;
    if (!lease) throw new EtcdStoreError('NO_LEASE', 'this server holds no etcd lease');
    let sentAt = 0;
    // Not past two TTLs since the last acknowledged keepalive: by then the lease is judged
    // lost (startKeepalive), and a late keepalive would only stretch a lease given up.
    const until = Math.min(
      Date.now() + this.opTimeoutMs,
      this.okSentAt + 2 * this.leaseTtlSec * 1000,
    );
    await this.call(
      'renewing the server lease',
      (o) => {
        sentAt = Date.now();
        return lease.keepaliveOnce(o);
      },
      until,
    );
    if (lease === this.lease && sentAt > this.okSentAt) this.okSentAt = sentAt;
    this.updateGrantable();
  }

  /** The live servers of the site: serverId → JSON record. */
  async servers(): Promise<Map<string, { serverId: string; startedAt: number }>> {
    const out = new Map<string, { serverId: string; startedAt: number }>();
    for (const kv of await this.range('server/', 'listing servers')) {
      const o = parseJson(kv, 'server');
      out.set(String(o.serverId), o as { serverId: string; startedAt: number });
    }
    return out;
  }

  // ---------------------------------------------------------------- seats

  /**
   * Grants `req.count` seats of `req.feature` as lease `req.leaseId` if the site holds at
   * most `req.licensed - req.count` seats of it at the moment of the transaction. Batched
   * with the other grants and releases of this tick. Idempotent for the same lease: retrying
   * after an error with the same leaseId answers 'granted' if an earlier attempt committed.
   * @throws {TypeError|RangeError} on a malformed request; {EtcdStoreError} NO_LEASE or
   * NO_MAJORITY when this server may not grant, CONFLICT when the lease id is held by another
   * session or burned, or on too many revision conflicts; UNREACHABLE; CLOSED
   */
  grant(req: GrantRequest): Promise<GrantResult> {
    this.live();
    if (typeof req !== 'object' || req === null) throw new TypeError('req must be an object');
    u64('req.leaseId', req.leaseId);
    u64('req.tokenId', req.tokenId);
    name('req.feature', req.feature);
    if (typeof req.version !== 'string') throw new TypeError('req.version must be a string');
    if (typeof req.groupKey !== 'string') throw new TypeError('req.groupKey must be a string');
    int('req.count', req.count, 1, 65535);
    int('req.licensed', req.licensed, 0, 0x7fff_ffff);
    if (req.counter !== undefined) name('req.counter', req.counter);
    int('req.grantedAt', req.grantedAt, 0, Number.MAX_SAFE_INTEGER);
    bytes('req.ticket', req.ticket);
    if (!this.canGrant()) return Promise.reject(this.refusal());
    return new Promise((resolve, reject) => {
      this.pending.push({ kind: 'grant', rec: { ...req }, resolve, reject });
      this.schedule();
    });
  }

  private refusal(): EtcdStoreError {
    if (this.lease === undefined) {
      return new EtcdStoreError('NO_LEASE', 'this server holds no etcd lease: not granting');
    }
    const since = new Date(this.okSentAt).toISOString();
    return new EtcdStoreError(
      'NO_MAJORITY',
      `no etcd majority has renewed this server's lease since ${since}: not granting`,
    );
  }

  /**
   * Releases lease `leaseId` (whoever granted it) and burns its id until `burnUntil`.
   * Resolves true when this call released it, false when it was not held.
   * @throws {TypeError|RangeError} on bad arguments; {EtcdStoreError} on etcd failure
   */
  release(leaseId: bigint, o: ReleaseOptions = {}): Promise<boolean> {
    this.live();
    u64('leaseId', leaseId);
    const why = o.why ?? 0;
    if (why !== 0 && why !== 1) throw new RangeError('why must be 0 or 1');
    const burnUntil = int(
      'burnUntil',
      o.burnUntil ?? this.now() + BURN_MS,
      0,
      Number.MAX_SAFE_INTEGER,
    );
    return new Promise((resolve, reject) => {
      this.pending.push({ kind: 'release', leaseId, why, burnUntil, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.inflight) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private flush(): Promise<void> {
    if (this.inflight) return this.inflight;
    if (this.pending.length === 0) return Promise.resolve();
    const batch = this.pending.splice(0, MAX_BATCH);
    this.inflight = this.commitBatch(batch)
      .catch((e) => {
        const err = classifyEtcdError(e, 'committing grants');
        for (const p of batch) p.reject(err);
      })
      .finally(() => {
        this.inflight = undefined;
        if (this.pending.length > 0) this.schedule();
      });
    return this.inflight;
  }

  /** Reads the lease keys of releases this server has not seen, in one transaction. */
  private async loadLeases(ids: bigint[], deadline: number): Promise<void> {
    const r = await this.txn(
      { compare: [], success: ids.map((id) => get(this.key(`lease/${hex16(id)}`))), failure: [] },
      'reading leases',
      deadline,
    );
    ids.forEach((id, i) => {
      const kv = rangeKv(r, i);
      if (kv) this.leaseCache.set(id, { rec: decodeLease(kv), mod: kv.mod_revision });
    });
  }

  private async commitBatch(batch: Pending[]): Promise<void> {
    // A transaction may name a key once: a second operation on the same lease (a retried
    // grant, a release right after its grant) waits for the next batch.
    const seen = new Set<bigint>();
    const later: Pending[] = [];
    let ops = batch.filter((p) => {
      const id = p.kind === 'grant' ? p.rec.leaseId : p.leaseId;
      if (seen.has(id)) {
        later.push(p);
        return false;
      }
      seen.add(id);
      return true;
    });
    if (later.length > 0) {
      this.pending.unshift(...later);
      // Only what this batch carries is settled by it (flush rejects `batch` on an error).
      batch.splice(0, batch.length, ...ops);
    }
    const deadline = Date.now() + this.opTimeoutMs;
    for (let attempt = 0; attempt < this.maxAttempts && ops.length > 0; attempt++) {
      const unknown = ops.flatMap((p) =>
        p.kind === 'release' && !this.leaseCache.has(p.leaseId) ? [p.leaseId] : [],
      );
      if (unknown.length > 0) await this.loadLeases(unknown, deadline);
      const grantDeadline = Math.min(deadline, this.grantUntil());
      ops = ops.filter((p) => {
        if (p.kind === 'release' && !this.leaseCache.has(p.leaseId)) {
          p.resolve(false);
          return false;
        }
        if (p.kind === 'grant' && !this.canGrant()) {
          p.reject(this.refusal());
          return false;
        }
        return true;
      });
      if (ops.length === 0) return;
      const hasGrant = ops.some((p) => p.kind === 'grant');

      // Plan on the values we believe: releases first, then grants in arrival order.
      const plan = new Map<string, number>();
      const at = (f: string) => plan.get(f) ?? this.counters.get(f)?.value ?? 0;
      const features = new Set<string>();
      const accepted = new Set<Pending>();
      for (const p of ops) {
        if (p.kind !== 'release') continue;
        const l = this.leaseCache.get(p.leaseId)!.rec;
        const f = counterOf(l);
        features.add(f);
        plan.set(f, at(f) - l.count);
      }
      for (const p of ops) {
        if (p.kind !== 'grant') continue;
        const f = counterOf(p.rec);
        features.add(f);
        const v = at(f);
        if (v + p.rec.count <= p.rec.licensed) {
          plan.set(f, v + p.rec.count);
          accepted.add(p);
        } else {
          plan.set(f, v);
        }
      }

      const compare: ICompare[] = [];
      const success: IRequestOp[] = [];
      const failure: IRequestOp[] = [];
      const sk = this.key(`server/${this.serverId}`);
      if (hasGrant) {
        compare.push(createdAt(sk, this.serverCreateRev));
        failure.push(get(sk));
      }
      const featureList = [...features];
      for (const f of featureList) {
        const k = this.featureKey(f);
        const c = this.counters.get(f) ?? { value: 0, mod: '0' };
        compare.push(modIs(k, c.mod));
        if (c.mod !== '0') compare.push(valueIs(k, String(c.value)));
        const next = plan.get(f)!;
        if (next !== c.value) success.push(put(k, String(Math.max(0, next))));
        failure.push(get(k));
      }
      const burnLeases = new Map<number, string>();
      for (const p of ops) {
        if (p.kind === 'release' && !burnLeases.has(p.burnUntil)) {
          const id = await this.expiringLease(p.burnUntil, deadline);
          if (id !== undefined) burnLeases.set(p.burnUntil, id);
        }
      }
      for (const p of ops) {
        if (p.kind === 'grant') {
          const lk = this.key(`lease/${hex16(p.rec.leaseId)}`);
          const bk = this.key(`burned/${hex16(p.rec.leaseId)}`);
          // A session ended site-wide (reaped elsewhere meanwhile) gets no seat.
          const rk = this.key(`revoked/${hex16(p.rec.tokenId)}`);
          compare.push(absent(lk), absent(bk), absent(rk));
          failure.push(get(lk), get(bk), get(rk));
          if (accepted.has(p)) {
            const v = encodeLease(p.rec, this.serverId);
            success.push(
              put(lk, v),
              put(this.key(`bysession/${hex16(p.rec.tokenId)}/${hex16(p.rec.leaseId)}`), v),
            );
          }
        } else {
          const c = this.leaseCache.get(p.leaseId)!;
          const lk = this.key(`lease/${hex16(p.leaseId)}`);
          compare.push(modIs(lk, c.mod));
          failure.push(get(lk));
          success.push(
            del(lk),
            del(this.key(`bysession/${hex16(c.rec.tokenId)}/${hex16(p.leaseId)}`)),
          );
          const burn = burnLeases.get(p.burnUntil);
          if (burn !== undefined) {
            success.push(
              put(
                this.key(`burned/${hex16(p.leaseId)}`),
                JSON.stringify({ why: p.why, until: p.burnUntil }),
                burn,
              ),
            );
          }
        }
      }

      const r = await this.txn(
        { compare, success, failure },
        hasGrant ? 'granting' : 'releasing',
        hasGrant ? grantDeadline : deadline,
      );
      if (r.succeeded) {
        const rev = r.header.revision;
        for (const f of featureList) {
          const v = Math.max(0, plan.get(f)!);
          const c = this.counters.get(f) ?? { value: 0, mod: '0' };
          // An unchanged counter keeps its revision: it was not written.
          this.counters.set(f, c.value === v ? c : { value: v, mod: rev });
        }
        for (const p of ops) {
          if (p.kind === 'grant') {
            if (accepted.has(p)) {
              this.leaseCache.set(p.rec.leaseId, { rec: p.rec, mod: rev });
              p.resolve('granted');
            } else {
              p.resolve('full');
            }
          } else {
            this.leaseCache.delete(p.leaseId);
            p.resolve(true);
          }
        }
        return;
      }

      // Conflict: learn the current values from the else-branch and settle what is settled.
      let i = 0;
      if (hasGrant) {
        const kv = rangeKv(r, i++);
        if (kv === undefined || kv.create_revision !== this.serverCreateRev) {
          const lost = this.lease;
          if (lost) this.onLeaseLost(lost);
        }
      }
      for (const f of featureList) {
        const kv = rangeKv(r, i++);
        this.counters.set(f, { value: decimal(kv, 'held counter'), mod: kv?.mod_revision ?? '0' });
      }
      const rest: Pending[] = [];
      for (const p of ops) {
        if (p.kind === 'grant') {
          const lkv = rangeKv(r, i++);
          const bkv = rangeKv(r, i++);
          const rkv = rangeKv(r, i++);
          if (lkv) {
            const l = decodeLease(lkv);
            if (
              l.tokenId === p.rec.tokenId &&
              l.counter === counterOf(p.rec) &&
              l.count === p.rec.count
            ) {
              // An earlier attempt of this very grant committed (its answer was lost).
              this.leaseCache.set(l.leaseId, { rec: l, mod: lkv.mod_revision });
              p.resolve('granted');
            } else {
              p.reject(
                new EtcdStoreError(
                  'CONFLICT',
                  `lease id ${hex16(p.rec.leaseId)} is held by another session`,
                ),
              );
            }
          } else if (bkv) {
            p.reject(
              new EtcdStoreError(
                'CONFLICT',
                `lease id ${hex16(p.rec.leaseId)} was released before and is burned`,
              ),
            );
          } else if (rkv) {
            p.reject(
              new EtcdStoreError(
                'REVOKED',
                `session ${hex16(p.rec.tokenId)} was ended site-wide: no seat granted`,
              ),
            );
          } else {
            rest.push(p);
          }
        } else {
          const kv = rangeKv(r, i++);
          if (kv === undefined) {
            this.leaseCache.delete(p.leaseId);
            p.resolve(false);
          } else {
            this.leaseCache.set(p.leaseId, { rec: decodeLease(kv), mod: kv.mod_revision });
            rest.push(p);
          }
        }
      }
      ops = rest;
    }
    const err = new EtcdStoreError(
      'CONFLICT',
      `gave up after ${this.maxAttempts} revision conflicts (heavy contention on a feature)`,
    );
    for (const p of ops) p.reject(err);
  }

  /** Seats of `feature` held site-wide, read linearizably. */
  async held(feature: string): Promise<number> {
    name('feature', feature);
    const r = await this.txn(
      { compare: [], success: [get(this.featureKey(feature))], failure: [] },
      'reading held',
    );
    const kv = rangeKv(r, 0);
    return decimal(kv, 'held counter');
  }

  /** The leases of session `tokenId`, whichever server granted them. */
  async leasesOf(tokenId: bigint): Promise<SiteLease[]> {
    u64('tokenId', tokenId);
    return (await this.range(`bysession/${hex16(tokenId)}/`, 'listing leases')).map(decodeLease);
  }

  /** One lease, if held. */
  async getLease(leaseId: bigint): Promise<SiteLease | undefined> {
    u64('leaseId', leaseId);
    const kv = await this.getKv(`lease/${hex16(leaseId)}`, 'reading a lease');
    return kv && decodeLease(kv);
  }

  /** Every lease of the site (for status and audits; O(leases)). */
  async allLeases(): Promise<SiteLease[]> {
    return (await this.range('lease/', 'listing leases')).map(decodeLease);
  }

  /** Why lease id `leaseId` is burned, if it is (a released or removed lease). */
  async burnedWhy(leaseId: bigint): Promise<0 | 1 | undefined> {
    u64('leaseId', leaseId);
    const kv = await this.getKv(`burned/${hex16(leaseId)}`, 'reading a burned lease');
    if (!kv) return undefined;
    const o = parseJson(kv, 'burned lease');
    if (typeof o.until === 'number' && o.until <= this.now()) return undefined;
    return o.why === 1 ? 1 : 0;
  }

  private async range(prefix: string, what: string): Promise<IKeyValue[]> {
    const key = this.key(prefix);
    const r = await this.txn(
      {
        compare: [],
        success: [{ request_range: { key, range_end: prefixEnd(key) } }],
        failure: [],
      },
      what,
    );
    return r.responses[0]?.response_range?.kvs ?? [];
  }

  private async getKv(rest: string, what: string): Promise<IKeyValue | undefined> {
    const r = await this.txn({ compare: [], success: [get(this.key(rest))], failure: [] }, what);
    return rangeKv(r, 0);
  }

  // ---------------------------------------------------------------- expiring records

  /**
   * An etcd lease (decimal id) that expires within BUCKET_MS after `expiresAt`, shared by
   * every record of that bucket and never renewed; undefined when `expiresAt` is past.
   */
  private async expiringLease(expiresAt: number, deadline?: number): Promise<string | undefined> {
    const now = this.now();
    if (expiresAt <= now) return undefined;
    for (const b of this.buckets.keys()) if (b * BUCKET_MS < now + 1000) this.buckets.delete(b);
    let b = Math.ceil(expiresAt / BUCKET_MS);
    // Too close to its end: a put could race the lease's expiry.
    if (b * BUCKET_MS - now < 2000) b++;
    let p = this.buckets.get(b);
    if (p === undefined) {
      const ttl = Math.ceil((b * BUCKET_MS - now) / 1000) + 1;
      p = this.call(
        'taking an expiry lease',
        (o) => this.client.leaseClient.leaseGrant({ TTL: ttl }, o),
        deadline,
      ).then((r) => r.ID);
      this.buckets.set(b, p);
      p.catch(() => this.buckets.delete(b));
    }
    return p;
  }

  // ---------------------------------------------------------------- sessions

  /**
   * Makes this server the owner of session `tokenId`: its liveness key moves to this
   * server's etcd lease (and `record`, when given, is stored), in one transaction. Returns
   * the server that owned it before, if any.
   * @throws {TypeError|RangeError} on bad arguments; {EtcdStoreError} NO_LEASE, ...
   */
  async attachSession(tokenId: bigint, record?: SessionRecord): Promise<string | undefined> {
    const ops = await this.sessionOps(tokenId, record);
    const id = hex16(tokenId);
    // A revoked session stays ended: a server that heard it late must not bring it back.
    const r = await this.txn(
      { compare: [absent(this.key(`revoked/${id}`))], success: ops, failure: [] },
      'attaching a session',
    );
    if (!r.succeeded) throw new EtcdStoreError('REVOKED', `session ${id} was ended site-wide`);
    const prev = r.responses[0]?.response_put?.prev_kv;
    return prev ? prev.value.toString('utf8') : undefined;
  }

  /**
   * Attaches session `tokenId` to this server only if no server holds it and it is not
   * revoked (a server that got a new etcd lease takes back only what nobody took over).
   * Resolves to 'attached', 'revoked', or the id of the server that holds it.
   * @throws {TypeError|RangeError} on bad arguments; {EtcdStoreError} NO_LEASE, UNREACHABLE,
   * NO_MAJORITY, CLOSED
   */
  async attachSessionIfFree(tokenId: bigint, record?: SessionRecord): Promise<string> {
    const ops = await this.sessionOps(tokenId, record);
    const id = hex16(tokenId);
    const alive = this.key(`alive/${id}`);
    const revoked = this.key(`revoked/${id}`);
    const r = await this.txn(
      {
        compare: [absent(alive), absent(revoked)],
        success: ops,
        failure: [get(alive), get(revoked)],
      },
      'attaching a free session',
    );
    if (r.succeeded) return 'attached';
    const owner = rangeKv(r, 0);
    if (owner) return owner.value.toString('utf8');
    return 'revoked';
  }

  /**
   * Ends session `tokenId` site-wide if `holder` still holds it: `'self'` when its liveness
   * key is this server's, `'none'` when no server holds it (an orphan). One transaction
   * deletes its record, liveness key and replay floor and, with `revokeUntil`, revokes its
   * token until then, so no server can attach it again. Its leases are the caller's to
   * release after (only once this resolves 'ended'). Resolves to 'ended' (also when it was
   * ended already: a retry whose first attempt committed), to the id of the server that
   * holds it now, or to '' when no server holds it but it is not ended (nothing changed).
   * @throws {TypeError|RangeError} on bad arguments; {EtcdStoreError} UNREACHABLE,
   * NO_MAJORITY, CLOSED
   */
  async endSession(
    tokenId: bigint,
    o: { holder: 'self' | 'none'; revokeUntil?: number },
  ): Promise<string> {
    this.live();
    u64('tokenId', tokenId);
    if (o?.holder !== 'self' && o?.holder !== 'none') {
      throw new TypeError("o.holder must be 'self' or 'none'");
    }
    const id = hex16(tokenId);
    const alive = this.key(`alive/${id}`);
    const record = this.key(`session/${id}`);
    const revoked = this.key(`revoked/${id}`);
    const success = [del(record), del(alive), del(this.key(`floor/${id}`))];
    if (o.revokeUntil !== undefined) {
      int('o.revokeUntil', o.revokeUntil, 0, Number.MAX_SAFE_INTEGER);
      const lease = await this.expiringLease(o.revokeUntil);
      if (lease !== undefined) success.push(put(revoked, String(o.revokeUntil), lease));
    }
    const r = await this.txn(
      {
        compare: [o.holder === 'self' ? valueIs(alive, this.serverId) : absent(alive)],
        success,
        failure: [get(alive), get(record), get(revoked)],
      },
      'ending a session',
    );
    if (r.succeeded) return 'ended';
    const owner = rangeKv(r, 0);
    if (owner) return owner.value.toString('utf8');
    // Nobody holds it and it is already ended (no record; revoked, if a reap was asked):
    // an earlier attempt of this call committed and its answer was lost, or another
    // server ended it. Either way it is ended, and its seats are the caller's to free.
    const ended = !rangeKv(r, 1) && (o.revokeUntil === undefined || !!rangeKv(r, 2));
    return ended ? 'ended' : '';
  }

  /** The puts that attach session `tokenId` to this server (and store `record`). */
  private async sessionOps(tokenId: bigint, record?: SessionRecord): Promise<IRequestOp[]> {
    this.live();
    u64('tokenId', tokenId);
    const lease = this.leaseId;
    if (lease === undefined)
      throw new EtcdStoreError('NO_LEASE', 'this server holds no etcd lease');
    const id = hex16(tokenId);
    const ops: IRequestOp[] = [
      {
        request_put: {
          key: this.key(`alive/${id}`),
          value: enc(this.serverId),
          lease,
          prev_kv: true,
        },
      },
    ];
    if (record !== undefined) {
      if (typeof record !== 'object' || record === null)
        throw new TypeError('record must be an object');
      if (record.tokenId !== tokenId) throw new RangeError('record.tokenId must equal tokenId');
      bytes('record.token', record.token);
      int('record.expires', record.expires, 0, Number.MAX_SAFE_INTEGER);
      const v = JSON.stringify({
        tokenId: id,
        token: Buffer.from(record.token).toString('base64'),
        user: record.user,
        host: record.host,
        vendor: record.vendor,
        created: record.created,
        expires: record.expires,
        ip: record.ip,
        port: record.port,
        credential: record.credential ?? '',
      });
      const exp = await this.expiringLease(record.expires);
      if (exp !== undefined) ops.push(put(this.key(`session/${id}`), v, exp));
    }
    return ops;
  }

  /**
   * Writes what one daemon commit carries besides grants and releases, grouped into as few
   * transactions as etcd takes (each under its op limit): session attachments, kept replies
   * (the first record for a request wins: a chunk that finds one existing is redone with
   * those replies one by one) and revocations. Each key at most once per call.
   * @throws {EtcdStoreError} NO_LEASE (sessions), UNREACHABLE, NO_MAJORITY, CLOSED
   */
  async writeRecords(w: {
    sessions?: SessionRecord[];
    replies?: { key: Uint8Array; rec: ReplyRecord }[];
    revokes?: { tokenId: bigint; expires: number }[];
  }): Promise<void> {
    this.live();
    type Item = {
      ops: IRequestOp[];
      compare?: ICompare;
      reply?: { key: Uint8Array; rec: ReplyRecord };
    };
    const items: Item[] = [];
    for (const r of w.sessions ?? []) {
      items.push({
        ops: await this.sessionOps(r.tokenId, r),
        compare: absent(this.key(`revoked/${hex16(r.tokenId)}`)),
      });
    }
    for (const v of w.revokes ?? []) {
      u64('tokenId', v.tokenId);
      const lease = await this.expiringLease(v.expires);
      if (lease === undefined) continue;
      items.push({ ops: [put(this.key(`revoked/${hex16(v.tokenId)}`), String(v.expires), lease)] });
    }
    for (const x of w.replies ?? []) {
      const op = await this.replyOp(x.key, x.rec);
      if (op) items.push({ ops: [op.put], compare: absent(op.key), reply: x });
    }
    const chunks: Item[][] = [];
    let chunk: Item[] = [];
    let n = 0;
    for (const it of items) {
      if (n + it.ops.length > MAX_OPS && chunk.length > 0) {
        chunks.push(chunk);
        chunk = [];
        n = 0;
      }
      chunk.push(it);
      n += it.ops.length;
    }
    if (chunk.length > 0) chunks.push(chunk);
    await Promise.all(
      chunks.map(async (c) => {
        const compare = c.flatMap((it) => (it.compare ? [it.compare] : []));
        const r = await this.txn(
          { compare, success: c.flatMap((it) => it.ops), failure: [] },
          'writing records',
        );
        if (r.succeeded) return;
        // Another server kept a reply for one of these requests first (keep its record), or
        // a session was ended site-wide (it stays ended): the rest one by one.
        const plain = c.filter((it) => !it.compare).flatMap((it) => it.ops);
        if (plain.length > 0) {
          await this.txn({ compare: [], success: plain, failure: [] }, 'writing records');
        }
        for (const it of c) {
          if (it.reply) await this.putReply(it.reply.key, it.reply.rec);
          else if (it.compare) {
            await this.txn(
              { compare: [it.compare], success: it.ops, failure: [] },
              'attaching a session',
            );
          }
        }
      }),
    );
  }

  /** The server whose lease holds session `tokenId`'s liveness key, if any. */
  async sessionOwner(tokenId: bigint): Promise<string | undefined> {
    u64('tokenId', tokenId);
    const kv = await this.getKv(`alive/${hex16(tokenId)}`, 'reading a session owner');
    return kv?.value.toString('utf8');
  }

  /** Every live session of the site: tokenId → owning serverId. */
  async liveSessions(): Promise<Map<bigint, string>> {
    const out = new Map<bigint, string>();
    const skip = this.key('alive/').length;
    for (const kv of await this.range('alive/', 'listing live sessions')) {
      out.set(BigInt(`0x${kv.key.subarray(skip).toString('utf8')}`), kv.value.toString('utf8'));
    }
    return out;
  }

  /** The stored session record, if present and not expired. */
  async getSession(tokenId: bigint): Promise<SessionRecord | undefined> {
    u64('tokenId', tokenId);
    const kv = await this.getKv(`session/${hex16(tokenId)}`, 'reading a session');
    if (!kv) return undefined;
    const s = decodeSession(kv);
    const floor = await this.getSeqFloor(tokenId);
    s.seqFloor = floor;
    return s.expires > this.now() ? s : undefined;
  }

  /**
   * Removes session `tokenId`'s record, liveness key and replay floor (its leases and queue
   * entries are the caller's to release, as in the SQLite store).
   */
  async deleteSession(tokenId: bigint): Promise<void> {
    u64('tokenId', tokenId);
    const id = hex16(tokenId);
    await this.txn(
      {
        compare: [],
        success: [
          del(this.key(`session/${id}`)),
          del(this.key(`alive/${id}`)),
          del(this.key(`floor/${id}`)),
        ],
        failure: [],
      },
      'deleting a session',
    );
  }

  /**
   * Calls `onGone(tokenId)` whenever a session's liveness key disappears (its server's lease
   * expired, or the session was deleted). Resolves to a function that stops watching.
   */
  async watchSessions(onGone: (tokenId: bigint) => void): Promise<() => Promise<void>> {
    const prefix = this.key('alive/');
    return this.watch(prefix, 'delete', (kv) =>
      onGone(BigInt(`0x${kv.key.subarray(prefix.length).toString('utf8')}`)),
    );
  }

  private async watch(
    prefix: Buffer,
    event: 'put' | 'delete',
    handler: (kv: IKeyValue) => void,
  ): Promise<() => Promise<void>> {
    this.live();
    let w: Watcher;
    try {
      w = await this.client.watch().prefix(prefix).create();
    } catch (e) {
      throw classifyEtcdError(e, 'watching');
    }
    this.watchers.add(w);
    if (event === 'put') w.on('put', handler);
    else w.on('delete', handler);
    // The client reconnects watch streams itself; errors would otherwise be unhandled.
    w.on('error', () => undefined);
    return async () => {
      this.watchers.delete(w);
      await w.cancel();
    };
  }

  /**
   * The whole site as of one revision, then every change after it, in revision order:
   * resolves once `onChange` has been called for every key that exists (as a put), and
   * goes on calling it for each put and delete (the etcd3 client resumes a broken watch
   * stream from its last revision). `rest` is the key below `floatlm/<site>/`.
   * Resolves to a function that stops watching.
   * @throws {EtcdStoreError} UNREACHABLE, NO_MAJORITY, CLOSED
   */
  async watchSite(
    onChange: (kind: 'put' | 'delete', rest: string, kv: IKeyValue) => void,
  ): Promise<() => Promise<void>> {
    this.live();
    const prefix = this.key('');
    const r = await this.call('reading the site', (o) =>
      this.client.kv.range({ key: prefix, range_end: prefixEnd(prefix) }, o),
    );
    const skip = prefix.length;
    for (const kv of r.kvs) onChange('put', kv.key.subarray(skip).toString('utf8'), kv);
    let w: Watcher;
    try {
      w = await this.client
        .watch()
        .prefix(prefix)
        .startRevision(String(BigInt(r.header.revision) + 1n))
        .create();
    } catch (e) {
      throw classifyEtcdError(e, 'watching the site');
    }
    this.watchers.add(w);
    w.on('put', (kv) => onChange('put', kv.key.subarray(skip).toString('utf8'), kv));
    w.on('delete', (kv) => onChange('delete', kv.key.subarray(skip).toString('utf8'), kv));
    w.on('error', () => undefined);
    return async () => {
      this.watchers.delete(w);
      await w.cancel();
    };
  }

  // ---------------------------------------------------------------- replay floors

  /**
   * Raises session `tokenId`'s replay floor to `floor` if it is lower (never lowers it), in
   * one transaction. Resolves to the floor now stored.
   */
  async setSeqFloor(tokenId: bigint, floor: number): Promise<number> {
    u64('tokenId', tokenId);
    int('floor', floor, 0, 0xffff_ffff);
    const k = this.key(`floor/${hex16(tokenId)}`);
    const v = String(floor).padStart(10, '0');
    // Fixed-width decimal: etcd compares values as bytes, so byte order is numeric order.
    const r = await this.txn(
      {
        compare: [absent(k)],
        success: [put(k, v)],
        failure: [
          {
            request_txn: {
              compare: [{ key: k, target: 'Value', result: 'Less', value: enc(v) }],
              success: [put(k, v)],
              failure: [get(k)],
            },
          },
        ],
      },
      'raising a replay floor',
    );
    if (r.succeeded) return floor;
    const inner = r.responses[0]?.response_txn;
    if (!inner || inner.succeeded) return floor;
    return decimal(inner.responses[0]?.response_range?.kvs[0], 'replay floor');
  }

  /** Session `tokenId`'s replay floor, -1 when none was set. */
  async getSeqFloor(tokenId: bigint): Promise<number> {
    u64('tokenId', tokenId);
    const kv = await this.getKv(`floor/${hex16(tokenId)}`, 'reading a replay floor');
    return kv === undefined ? -1 : decimal(kv, 'replay floor');
  }

  // ---------------------------------------------------------------- idempotency records

  /**
   * Keeps the reply for the request `key` names, site-wide, until `r.expires`. The first
   * record written for a key wins: resolves to the record now stored (another server's, if
   * it answered the same request first; send that one).
   */
  async putReply(key: Uint8Array, r: ReplyRecord): Promise<ReplyRecord> {
    const op = await this.replyOp(key, r);
    if (op === undefined) return r;
    const t = await this.txn(
      { compare: [absent(op.key)], success: [op.put], failure: [get(op.key)] },
      'storing a reply',
    );
    if (t.succeeded) return r;
    const kv = rangeKv(t, 0);
    return kv ? decodeReply(kv) : r;
  }

  /** The put of a kept reply (on its expiry bucket's lease); undefined when already expired. */
  private async replyOp(
    key: Uint8Array,
    r: ReplyRecord,
  ): Promise<{ key: Buffer; put: IRequestOp } | undefined> {
    bytes('key', key);
    if (typeof r !== 'object' || r === null) throw new TypeError('record must be an object');
    bytes('record.reply', r.reply);
    int('record.port', r.port, 0, 65535);
    int('record.expires', r.expires, 0, Number.MAX_SAFE_INTEGER);
    if (typeof r.ip !== 'string') throw new TypeError('record.ip must be a string');
    const lease = await this.expiringLease(r.expires);
    if (lease === undefined) return undefined;
    const k = this.key(`reply/${Buffer.from(key).toString('hex')}`);
    const v = JSON.stringify({
      reply: Buffer.from(r.reply).toString('base64'),
      ip: r.ip,
      port: r.port,
      expires: r.expires,
    });
    return { key: k, put: put(k, v, lease) };
  }

  /** The reply kept for `key` by any server of the site, if not expired at `now`. */
  async getReply(key: Uint8Array, now = this.now()): Promise<ReplyRecord | undefined> {
    bytes('key', key);
    const kv = await this.getKv(`reply/${Buffer.from(key).toString('hex')}`, 'reading a reply');
    if (!kv) return undefined;
    const r = decodeReply(kv);
    return r.expires > now ? r : undefined;
  }

  // ---------------------------------------------------------------- revocations

  /** Revokes token `tokenId` site-wide until `expires` (ms; the token's own expiry). */
  async revoke(tokenId: bigint, expires: number): Promise<void> {
    u64('tokenId', tokenId);
    int('expires', expires, 0, Number.MAX_SAFE_INTEGER);
    const lease = await this.expiringLease(expires);
    if (lease === undefined) return;
    await this.txn(
      {
        compare: [],
        success: [put(this.key(`revoked/${hex16(tokenId)}`), String(expires), lease)],
        failure: [],
      },
      'revoking a token',
    );
  }

  /** Whether token `tokenId` is revoked (and the revocation not expired). */
  async isRevoked(tokenId: bigint): Promise<boolean> {
    u64('tokenId', tokenId);
    const kv = await this.getKv(`revoked/${hex16(tokenId)}`, 'reading a revocation');
    return kv !== undefined && decimal(kv, 'revocation') > this.now();
  }

  /** Every unexpired revocation: tokenId → expires (to fill a local cache at start). */
  async revocations(): Promise<Map<bigint, number>> {
    const out = new Map<bigint, number>();
    const skip = this.key('revoked/').length;
    const now = this.now();
    for (const kv of await this.range('revoked/', 'listing revocations')) {
      const exp = decimal(kv, 'revocation');
      if (exp > now) out.set(BigInt(`0x${kv.key.subarray(skip).toString('utf8')}`), exp);
    }
    return out;
  }

  /** Calls `onRevoked(tokenId, expires)` for every revocation made by any server from now on. */
  async watchRevocations(
    onRevoked: (tokenId: bigint, expires: number) => void,
  ): Promise<() => Promise<void>> {
    const prefix = this.key('revoked/');
    return this.watch(prefix, 'put', (kv) => {
      const exp = Number(kv.value.toString('utf8'));
      const id = kv.key.subarray(prefix.length).toString('utf8');
      if (Number.isSafeInteger(exp)) onRevoked(BigInt(`0x${id}`), exp);
    });
  }

  // ---------------------------------------------------------------- queue

  /**
   * Appends (tokenId, feature) to the site-wide FIFO queue with the next seq of the site's
   * counter, in one transaction; an entry already queued keeps its place and seq and takes
   * the new version, count and since. Resolves to the entry's seq.
   */
  async enqueue(e: Omit<QueueRecord, 'seq'>): Promise<number> {
    if (typeof e !== 'object' || e === null) throw new TypeError('entry must be an object');
    u64('entry.tokenId', e.tokenId);
    name('entry.feature', e.feature);
    if (typeof e.version !== 'string') throw new TypeError('entry.version must be a string');
    int('entry.count', e.count, 1, 65535);
    int('entry.since', e.since, 0, Number.MAX_SAFE_INTEGER);
    const seqKey = this.key('queue/seq');
    const byKey = this.key(`queue/by/${hex16(e.tokenId)}/${encodeURIComponent(e.feature)}`);
    const rec = (seq: number) =>
      JSON.stringify({
        tokenId: hex16(e.tokenId),
        feature: e.feature,
        version: e.version,
        count: e.count,
        since: e.since,
        seq,
      });
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      const c = this.queueSeq;
      const seq = c.value + 1;
      const entryKey = `queue/entry/${encodeURIComponent(e.feature)}/${String(seq).padStart(16, '0')}`;
      const compare = [modIs(seqKey, c.mod), absent(byKey)];
      if (c.mod !== '0') compare.push(valueIs(seqKey, String(c.value)));
      const r = await this.txn(
        {
          compare,
          success: [
            put(seqKey, String(seq)),
            put(this.key(entryKey), rec(seq)),
            put(byKey, entryKey),
          ],
          failure: [get(seqKey), get(byKey)],
        },
        'enqueueing',
      );
      if (r.succeeded) {
        this.queueSeq = { value: seq, mod: r.header.revision };
        return seq;
      }
      const skv = rangeKv(r, 0);
      this.queueSeq = { value: decimal(skv, 'queue seq'), mod: skv?.mod_revision ?? '0' };
      const bkv = rangeKv(r, 1);
      if (bkv) {
        // Already queued: keep the place, refresh the request.
        const ek = bkv.value.toString('utf8');
        const old = Number(ek.slice(ek.lastIndexOf('/') + 1));
        const u = await this.txn(
          {
            compare: [modIs(byKey, bkv.mod_revision)],
            success: [put(this.key(ek), rec(old))],
            failure: [],
          },
          'updating a queue entry',
        );
        if (u.succeeded) return old;
      }
    }
    throw new EtcdStoreError('CONFLICT', `gave up enqueueing after ${this.maxAttempts} conflicts`);
  }

  /** Removes (tokenId, feature) from the queue; resolves false if it was not queued. */
  async dequeue(tokenId: bigint, feature: string): Promise<boolean> {
    u64('tokenId', tokenId);
    name('feature', feature);
    const byKey = this.key(`queue/by/${hex16(tokenId)}/${encodeURIComponent(feature)}`);
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      const r = await this.txn({ compare: [], success: [get(byKey)], failure: [] }, 'dequeueing');
      const kv = rangeKv(r, 0);
      if (!kv) return false;
      const d = await this.txn(
        {
          compare: [modIs(byKey, kv.mod_revision)],
          success: [del(byKey), del(this.key(kv.value.toString('utf8')))],
          failure: [],
        },
        'dequeueing',
      );
      if (d.succeeded) return true;
    }
    throw new EtcdStoreError('CONFLICT', `gave up dequeueing after ${this.maxAttempts} conflicts`);
  }

  /** The queue of `feature`, FIFO (ascending seq) site-wide. */
  async queue(feature: string): Promise<QueueRecord[]> {
    name('feature', feature);
    return (await this.range(`queue/entry/${encodeURIComponent(feature)}/`, 'listing a queue')).map(
      decodeQueue,
    );
  }

  /** 1-based place of (tokenId, feature) in its feature's queue, undefined if not queued. */
  async position(tokenId: bigint, feature: string): Promise<number | undefined> {
    u64('tokenId', tokenId);
    name('feature', feature);
    const byKey = this.key(`queue/by/${hex16(tokenId)}/${encodeURIComponent(feature)}`);
    const kv = (await this.txn({ compare: [], success: [get(byKey)], failure: [] }, 'position'))
      .responses[0]?.response_range?.kvs[0];
    if (!kv) return undefined;
    const start = this.key(`queue/entry/${encodeURIComponent(feature)}/`);
    const mine = this.key(kv.value.toString('utf8'));
    const r = await this.txn(
      {
        compare: [],
        success: [
          {
            request_range: {
              key: start,
              range_end: Buffer.concat([mine, Buffer.from([0])]),
              count_only: true,
            },
          },
        ],
        failure: [],
      },
      'position',
    );
    return Number(r.responses[0]?.response_range?.count ?? 0);
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * Stops the keepalive and closes the connections. With `revoke` (default true) the
   * server's etcd lease is revoked first, so its sessions' liveness keys go at once rather
   * than after the TTL. Pending grants are answered first. Idempotent.
   */
  async close(o: { revoke?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    while (this.inflight || this.pending.length > 0) await this.flush();
    const lease = this.lease;
    this.lease = undefined;
    this.leaseId = undefined;
    if (lease) {
      if (o.revoke ?? true) {
        await lease.revoke({ deadline: Date.now() + this.opTimeoutMs }).catch(() => undefined);
      } else {
        lease.release();
      }
    }
    for (const w of this.watchers) await w.cancel().catch(() => undefined);
    this.watchers.clear();
    this.closed = true;
    // A lease taken again while the watchers closed: left to expire, as with revoke false.
    (this.lease as Lease | undefined)?.release();
    this.lease = undefined;
    if (this.grantTimer) clearTimeout(this.grantTimer);
    if (this.reacquireTimer) clearTimeout(this.reacquireTimer);
    if (this.keepalive) clearInterval(this.keepalive);
    this.updateGrantable();
    this.client.close();
  }
}

/** @internal decodes a stored record (BAD_RECORD when it is not one of ours). */
export function decodeReply(kv: IKeyValue): ReplyRecord {
  return decode(kv, 'reply', (o) => ({
    reply: b64(o, 'reply'),
    ip: field(o, 'ip', 'string'),
    port: field(o, 'port', 'number'),
    expires: field(o, 'expires', 'number'),
  }));
}
