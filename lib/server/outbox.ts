/**
 * Everything that leaves the daemon: replies signed with the key that verified their request,
 * never larger than the request when its source is not yet known to be the sender's, kept for
 * retransmissions (in memory, and durably for requests that change state), and held back until
 * the group commit has put on disk what they acknowledge. Also the only place that re-sends a
 * kept reply, and it sends it only to the address its request came from.
 */
import { signDatagram } from '../auth/sign.ts';
import type { KeyedHmac } from '../crypto/index.ts';
import type { CommitOutcome, StateStore } from '../store/index.ts';
import {
  type AnyDatagram,
  type AuthMode,
  ERROR_TEXT,
  ErrorCode,
  errorName,
  Flags,
  type Head,
  MsgType,
  Offset,
} from '../wire/index.ts';
import type { Bodies } from '../wire/messages.ts';
import { RECORD_TTL_MS, REPLY_TTL_MS } from './defaults.ts';
import { ERROR_OVERHEAD, errorReply } from './error-reply.ts';
import { clip } from './keys.ts';
import type { Logger } from './log.ts';
import { ReplyCache } from './replycache.ts';
import type { Session } from './session.ts';
import type { UdpSocket } from './udp.ts';

export interface Peer {
  address: string;
  port: number;
}

/** One verified request on its way through the handlers. */
export interface Ctx {
  head: Head;
  mode: AuthMode;
  /** The key that verified the request; replies are signed with it. */
  key: KeyedHmac;
  from: Peer;
  now: number;
  session: Session | undefined;
  /** In-memory cache key: who (authenticated) and which request. */
  cacheKey: string;
  /** Durable record key, for requests that change state; undefined for the others. */
  recordKey: Uint8Array | undefined;
  /** Its seq passed the session's committed replay floor: the reply waits for the commit. */
  floorWait?: boolean;
  /** hrtime (ns) of arrival, for the requests whose latency is measured (CHECKOUT). */
  arrived?: bigint | undefined;
  /** The source is not known to be the sender's: a reply is never larger than the request. */
  capped: boolean;
  credId?: string;
  adminId?: string;
  /** Lease ids this request granted: a site may refuse them at the commit. */
  grants?: bigint[];
}

/**
 * What an ERROR answering a request needs of its header: a Head is one, and so is a copy of
 * these fields with only the request's length (an ERROR to an unknown source is never longer).
 */
type ErrorHead = Pick<Head, 'requestId' | 'sessionId' | 'seq'> & { bytes: { length: number } };

interface Outgoing {
  bytes: Uint8Array;
  to: Peer;
  /** hrtime (ns) when the CHECKOUT this answers arrived: checkout latency is observed. */
  arrived?: bigint | undefined;
  cacheKey: string | undefined;
  /** A HEARTBEAT_ACK: kept in its session's slot (for `requestId`), not in the cache. */
  keep?: Session | undefined;
  requestId?: number;
  /** Lease ids the reply acknowledges; if the commit refuses one, `refusal` is sent instead. */
  leases?: readonly bigint[] | undefined;
  refusal?: (() => Uint8Array | undefined) | undefined;
}

const NONE: ReadonlySet<bigint> = new Set();

/** Records that `ctx`'s request granted lease `leaseId` (its reply depends on the grant). */
export function granted(ctx: Ctx, leaseId: bigint): void {
  if (ctx.grants) ctx.grants.push(leaseId);
  else ctx.grants = [leaseId];
}

/** Retry hint of a grant the site refused at the commit: the mirror is current by then. */
const REFUSED_RETRY_MS = 50;
/** How often one kept reply may be sent again (a client retransmits ~7 times in 30 s). */
const MAX_RESENDS = 8;

export class Outbox {
  readonly replies: ReplyCache;
  /** Cache keys of requests whose replies wait for the group commit. */
  readonly inflight = new Set<string>();
  /** Bumped on every state change: STATUS pages of one state carry the same snapshot. */
  generation = 0;
  /** The daemon's counters: answered, errors and retransmits are counted here. */
  readonly counters: { answered: number; errors: number; retransmits: number };
  #outgoing: Outgoing[] = [];
  #tickScheduled = false;
  #sending = 0;
  /** Set by drain(): sends are counted until the socket has taken them. */
  #counting = false;
  #drained: (() => void) | undefined;
  #socket: UdpSocket | undefined;
  readonly #store: StateStore;
  readonly #now: () => number;
  readonly #log: Logger;
  readonly #afterCommit: () => void;
  closed = false;
  /** Whether the last commit succeeded (the store's state on /readyz and in metrics). */
  lastCommitOk = true;
  /** Observers of commit and checkout latency (seconds); the daemon's metrics. */
  onCommit: ((seconds: number) => void) | undefined;
  onCheckout: ((seconds: number) => void) | undefined;

  constructor(
    counters: { answered: number; errors: number; retransmits: number },
    store: StateStore,
    now: () => number,
    log: Logger,
    cacheSize: number,
    afterCommit: () => void,
  ) {
    this.counters = counters;
    this.#store = store;
    this.#now = now;
    this.#log = log;
    this.replies = new ReplyCache(cacheSize, REPLY_TTL_MS);
    this.#afterCommit = afterCommit;
  }

  /**
   * True while replies wait for a commit (a new reply must not overtake them). Never while
   * `degraded`: nothing commits then, and what is answered does not depend on a commit.
   */
  get busy(): boolean {
    if (this.degraded?.()) return this.#outgoing.length > 0;
    return this.#waiting || this.#store.pendingForeground() > 0 || this.#outgoing.length > 0;
  }

  /**
   * It carries replies or changes they depend on (not only replay floors, which are
   * reserved ahead): new replies must not overtake it.
   */
  #waiting = false;
  /**
   * Called with the lease ids a commit refused (a site ran out of seats first elsewhere):
   * the daemon takes them back out of its pools. Their replies become BUSY refusals.
   */
  onRefused: ((ids: ReadonlySet<bigint>) => void) | undefined;

  /** Whether the daemon is degraded (set by the daemon). */
  degraded: (() => boolean) | undefined;
  /**
   * Called when a commit fails, with the error: the daemon undoes the tick's changes in
   * memory and degrades. The replies of that commit are dropped (clients retransmit).
   */
  onCommitFailed: ((e: Error) => void) | undefined;

  /**
   * Signs and sends the reply to `ctx`; `durable` when it acknowledges a state change, which
   * then commits first. A request that changes state (ctx.recordKey) has its reply kept
   * durably in the same commit.
   */
  reply<T extends MsgType>(ctx: Ctx, type: T, body: Bodies[T], durable = false): void {
    const bytes = this.#sign(ctx, type, body, ctx.key);
    if (ctx.capped && bytes.length > ctx.head.bytes.length) {
      // Never amplify towards an address that may be spoofed: ask for a padded request.
      this.error(ctx, ErrorCode.NEED_PADDING, 0, undefined, true);
      return;
    }
    this.counters.answered++;
    this.#deliver(ctx, bytes, durable);
  }

  /** HELLO_OK: signed with the new session key and carrying the new session id. */
  helloOk(ctx: Ctx, body: Bodies[typeof MsgType.HELLO_OK], key: KeyedHmac, sessionId: bigint) {
    const bytes = this.#sign(ctx, MsgType.HELLO_OK, body, key, sessionId);
    this.counters.answered++;
    this.#deliver(ctx, bytes, true);
  }

  /**
   * An ERROR as the outcome of a processed request (kept like any reply). With `padding`
   * the code is NEED_PADDING whatever `code` says (the request was not processed: not kept).
   */
  error(ctx: Ctx, code: ErrorCode, retryAfterMs = 0, message?: string, padding = false): void {
    const c = padding ? ErrorCode.NEED_PADDING : code;
    const bytes = this.#errorBytes(
      ctx.head,
      ctx.mode,
      ctx.key,
      c,
      retryAfterMs,
      message,
      ctx.head.seq,
      ctx.capped,
    );
    this.counters.errors++;
    if (ctx.capped && bytes.length > ctx.head.bytes.length) return;
    if (padding) this.send(bytes, ctx.from);
    else this.#deliver(ctx, bytes, false);
  }

  /**
   * A refusal by the auth layer (skew, wrong host, ...): the request was not processed, so
   * the answer is neither kept nor durable, and it is sent only if it is no larger than the
   * request when the source is not known to be the sender's.
   */
  refuse(
    head: Head,
    mode: AuthMode,
    key: KeyedHmac,
    code: ErrorCode,
    retryAfterMs: number,
    to: Peer,
    capped: boolean,
    seq?: number,
  ): void {
    const bytes = this.#errorBytes(head, mode, key, code, retryAfterMs, undefined, seq, capped);
    if (capped && bytes.length > head.bytes.length) return;
    this.counters.errors++;
    this.send(bytes, to, this.busy);
  }

  /**
   * Sends a kept reply again to `to`, in the auth mode of the request now asking for it (a
   * reply cached for the mode-3 form of a request re-sent in mode 2 is re-signed with the
   * mode byte changed), if `to` is where its request came from. True when it was sent.
   */
  resend(kept: Uint8Array, keptTo: Peer, mode: AuthMode, to: Peer, session?: Session): boolean {
    if (keptTo.address !== to.address || keptTo.port !== to.port) return false;
    let reply = kept;
    if (reply[Offset.MODE] !== mode) {
      const h = session?.hmac;
      if (!h) return false;
      reply = new Uint8Array(kept);
      reply[Offset.MODE] = mode;
      h.signTrailing(reply);
    }
    this.counters.retransmits++;
    this.send(reply, to, this.busy);
    return true;
  }

  /** The reply kept for a request (memory first, then the durable record), sent again. */
  answerKept(ctx: Pick<Ctx, 'cacheKey' | 'recordKey' | 'mode' | 'from' | 'session'>, now: number) {
    const c = this.replies.get(ctx.cacheKey, now);
    if (c) {
      if (c.resent >= MAX_RESENDS) return true;
      this.replies.resent(ctx.cacheKey);
      this.resend(c.bytes, c, ctx.mode, ctx.from, ctx.session);
      return true;
    }
    if (!ctx.recordKey) return false;
    const r = this.#store.getReply(ctx.recordKey, now);
    if (!r) return false;
    this.replies.set(ctx.cacheKey, r.reply, r.ip, r.port, now);
    this.resend(r.reply, { address: r.ip, port: r.port }, ctx.mode, ctx.from, ctx.session);
    return true;
  }

  /** A HEARTBEAT_ACK: kept in the session's slot; after the commit when one is pending. */
  heartbeatAck(s: Session, requestId: number, bytes: Uint8Array, to: Peer, wait = false): void {
    this.counters.answered++;
    if (wait || this.busy) {
      this.#queue({ bytes, to, cacheKey: undefined, keep: s, requestId }, true);
      return;
    }
    s.keepReply(requestId, bytes);
    this.sendRaw(bytes, to);
  }

  #deliver(ctx: Ctx, bytes: Uint8Array, durable: boolean): void {
    if (ctx.recordKey) {
      this.#store.putReply(
        ctx.recordKey,
        {
          reply: bytes,
          ip: ctx.from.address,
          port: ctx.from.port,
          expires: ctx.now + RECORD_TTL_MS,
        },
        ctx.grants,
      );
    }
    const o: Outgoing = { bytes, to: ctx.from, cacheKey: ctx.cacheKey, arrived: ctx.arrived };
    if (ctx.grants?.length) {
      o.leases = ctx.grants;
      // Not processed after all, as far as the client can tell: a refusal, neither kept
      // nor durable, that it retries (the pools then know the site is full).
      // Signed when the commit refuses, maybe many datagrams later: with the session's key
      // as the cache has it then (the one verified may have been evicted and disposed).
      // Only what the refusal needs is kept, not ctx: its head is a view into the block the
      // socket copied the datagram into (64 KB, lib/server/udp.ts), kept while it waits.
      const { session, key: verified, mode, capped } = ctx;
      const h: ErrorHead = {
        requestId: ctx.head.requestId,
        sessionId: ctx.head.sessionId,
        seq: ctx.head.seq,
        bytes: { length: ctx.head.bytes.length },
      };
      o.refusal = () => {
        const key = session ? session.hmac : verified;
        if (!key) return undefined; // its server key is gone: the client's retry is refused
        return this.#errorBytes(
          h,
          mode,
          key,
          ErrorCode.BUSY,
          REFUSED_RETRY_MS,
          'another server of the site took the last seat first; retry',
          h.seq,
          capped,
        );
      };
    }
    this.#queue(o, durable || ctx.recordKey !== undefined || ctx.floorWait === true || this.busy);
  }

  #sign<T extends MsgType>(
    ctx: Ctx,
    type: T,
    body: Bodies[T],
    key: KeyedHmac,
    sessionId = ctx.head.sessionId,
  ): Uint8Array {
    const h = ctx.head;
    return signDatagram(
      {
        type,
        flags: Flags.REPLY | Flags.FROM_SERVER,
        auth: { mode: ctx.mode },
        requestId: h.requestId,
        sessionId,
        seq: h.seq,
        timestamp: ctx.now,
        body,
        tag: new Uint8Array(32),
      } as unknown as AnyDatagram,
      key,
    );
  }

  #errorBytes(
    head: ErrorHead,
    mode: AuthMode,
    key: KeyedHmac,
    code: number,
    retryAfterMs: number,
    message?: string,
    seq = head.seq,
    capped = true,
  ): Uint8Array {
    let text = message ?? ERROR_TEXT[code as ErrorCode] ?? errorName(code);
    // Towards an unknown source the error must not be larger than the request: trim the
    // text, never the code.
    if (capped && ERROR_OVERHEAD + Buffer.byteLength(text) > head.bytes.length) text = '';
    return errorReply(
      head.requestId,
      head.sessionId,
      seq,
      mode,
      this.#now(),
      code,
      retryAfterMs,
      clip(text),
      key,
    );
  }

  /** Sends now, or after the next group commit. */
  send(bytes: Uint8Array, to: Peer, afterCommit = false): void {
    this.#queue({ bytes, to, cacheKey: undefined }, afterCommit);
  }

  #queue(o: Outgoing, afterCommit: boolean): void {
    if (!afterCommit) {
      this.#keep(o, this.#now());
      this.sendRaw(o.bytes, o.to);
      if (o.arrived !== undefined) this.#observe(o.arrived);
      return;
    }
    this.generation = (this.generation + 1) >>> 0;
    this.#outgoing.push(o);
    if (o.cacheKey) this.inflight.add(o.cacheKey);
    this.schedule();
  }

  /** Makes sure a group commit runs on the next turn of the event loop. */
  schedule(): void {
    if (this.#tickScheduled) return;
    this.#tickScheduled = true;
    setImmediate(() => {
      this.#tickScheduled = false;
      try {
        this.commitAndSend();
      } catch (e) {
        this.#log.error(`commit failed; replies withheld: ${(e as Error).message}`);
      }
    });
  }

  /**
   * Group commit: everything pending in one transaction, then the replies it covers. A
   * site's commit is asynchronous: replies of later turns wait for the next one, which
   * starts when this one has settled.
   */
  commitAndSend(): void {
    // An asynchronous commit (a site's) is in flight: the next starts when it settles.
    if (this.#settling) return;
    const out = this.#outgoing;
    this.#outgoing = [];
    let r: number | Promise<CommitOutcome> = 0;
    const t0 = process.hrtime.bigint();
    const foreground = out.length > 0 || this.#store.pendingForeground() > 0;
    try {
      if (this.#store.pending() > 0) r = this.#store.commit();
    } catch (e) {
      this.#failed(out, e as Error);
      return;
    }
    if (typeof r === 'number') {
      if (r > 0) this.onCommit?.(Number(process.hrtime.bigint() - t0) / 1e9);
      this.#finish(out, NONE);
      return;
    }
    this.#waiting = foreground;
    this.#settling = r
      .then(
        (c) => {
          this.#waiting = false;
          this.onCommit?.(Number(process.hrtime.bigint() - t0) / 1e9);
          this.#finish(out, c.refused);
        },
        (e: unknown) => {
          this.#waiting = false;
          // Replies queued meanwhile may depend on changes the failure discards: drop them
          // too (their clients retransmit), so nothing uncommitted is acknowledged.
          const later = this.#outgoing;
          this.#outgoing = [];
          this.#failed([...out, ...later], e instanceof Error ? e : new Error(String(e)));
        },
      )
      .finally(() => {
        this.#settling = undefined;
        if (this.#outgoing.length > 0 || this.#store.pending() > 0) this.schedule();
      });
  }

  #settling: Promise<void> | undefined;

  /** Resolves when no commit is in flight (close waits for a site's last one). */
  async settled(): Promise<void> {
    while (this.#settling) await this.#settling;
  }

  #failed(out: Outgoing[], e: Error): void {
    // Nothing covered by the failed commit is acknowledged; clients retransmit.
    this.lastCommitOk = false;
    for (const o of out) if (o.cacheKey) this.inflight.delete(o.cacheKey);
    if (this.onCommitFailed) {
      this.onCommitFailed(e);
      return;
    }
    throw e;
  }

  #finish(out: Outgoing[], refused: ReadonlySet<bigint>): void {
    this.lastCommitOk = true;
    if (refused.size > 0) this.onRefused?.(refused);
    this.#afterCommit();
    const now = this.#now();
    for (const o of out) {
      if (o.cacheKey) this.inflight.delete(o.cacheKey);
      if (o.leases?.some((id) => refused.has(id)) && o.refusal) {
        this.counters.answered--;
        this.counters.errors++;
        const refusal = this.closed ? undefined : o.refusal();
        if (refusal) this.sendRaw(refusal, o.to);
        continue;
      }
      this.#keep(o, now);
      if (!this.closed) this.sendRaw(o.bytes, o.to);
      if (o.arrived !== undefined) this.#observe(o.arrived);
    }
  }

  #observe(arrived: bigint): void {
    this.onCheckout?.(Number(process.hrtime.bigint() - arrived) / 1e9);
  }

  #keep(o: Outgoing, now: number): void {
    if (o.keep && o.requestId !== undefined) o.keep.keepReply(o.requestId, o.bytes);
    else if (o.cacheKey) this.replies.set(o.cacheKey, o.bytes, o.to.address, o.to.port, now);
  }

  /** The bound socket replies go out of (nothing is sent before the daemon listens). */
  attach(socket: UdpSocket): void {
    this.#socket = socket;
  }

  /** Sends one datagram, counting it until the socket has taken it (close waits for that). */
  sendRaw(bytes: Uint8Array, to: Peer): void {
    const socket = this.#socket;
    if (!socket) return;
    if (!this.#counting) {
      // No completion callback on the hot path: it costs a JS call per datagram.
      socket.send(bytes, to.port, to.address);
      return;
    }
    this.#sending++;
    socket.send(bytes, to.port, to.address, () => {
      this.#sending--;
      if (this.#sending === 0) this.#drained?.();
    });
  }

  /**
   * From now on counts every datagram until the socket has taken it; resolves once those
   * sent from now on (the last replies before a close) and any earlier ones have left, at
   * most `ms` later.
   */
  drain(ms: number): Promise<void> {
    this.#counting = true;
    return new Promise<void>((resolve) => {
      // Earlier sends, made without a callback, are behind a turn of the event loop.
      setImmediate(() => {
        if (this.#sending === 0) resolve();
        else {
          this.#drained = resolve;
          setTimeout(resolve, ms).unref();
        }
      });
    });
  }
}
