/**
 * The receive pipeline, one for every message type: prefilter → header and auth block →
 * key lookup → tag → replay window and skew → body → idempotency → handler. Nothing but the
 * header and the auth block is parsed before the tag has verified, and no state is touched
 * before it either; a refusal is neither kept nor charged to the request's seq; a replay gets
 * only what was kept for it, and only at the address its request came from.
 */
import type { AuthDecision } from '../auth/server.ts';
import { cursor } from '../wire/cursor.ts';
import {
  AdminOp,
  AuthMode,
  DecodeError,
  decodeBody,
  decodeHead,
  ErrorCode,
  type Head,
  looksLikeDatagram,
  MIN_FIRST_CONTACT,
  MsgType,
} from '../wire/index.ts';
import type { Core } from './core.ts';
import { SEQ_RESERVE } from './defaults.ts';
import { dispatch } from './handlers/index.ts';
import { cacheKeyOf, changesState, recordKey } from './keys.ts';
import type { Ctx, Peer } from './outbox.ts';
import type { RateLimiter } from './ratelimit.ts';
import type { Session } from './session.ts';
import { claim } from './site-sessions.ts';

const EMPTY = Object.freeze({});

/** Refused first contacts are logged at most once per source per minute. */
const REFUSAL_LOG_MS = 60_000;

export class Pipeline {
  readonly #core: Core;
  readonly #budget: RateLimiter | undefined;
  readonly #logged = new Map<string, number>();

  constructor(core: Core, budget: RateLimiter | undefined) {
    this.#core = core;
    this.#budget = budget;
  }

  /** Whether unverified work from `address` is still within its budget (charges one). */
  allow = (address: string): boolean => {
    if (!this.#budget || this.#budget.allow(address, this.#core.now())) return true;
    this.#core.counters.rateLimited++;
    return false;
  };

  /**
   * Entry point for every datagram the socket receives (an OnDatagram of udp.ts): true when
   * it was thrown away unauthenticated (malformed, unknown key, bad tag, over budget), which
   * is what the socket's flood pause counts.
   */
  onDatagram = (bytes: Uint8Array, address: string, port: number): boolean => {
    const core = this.#core;
    try {
      return this.#receive(bytes, address, port);
    } catch (e) {
      core.counters.internal++;
      core.log.error(
        `internal error handling a datagram from ${address}:${port}: ${(e as Error).stack ?? e}`,
      );
      return false;
    }
  };

  #receive(bytes: Uint8Array, address: string, port: number): boolean {
    const core = this.#core;
    const c = core.counters;
    c.received++;
    if (core.state !== 'RUNNING') return false;
    if (!looksLikeDatagram(bytes)) {
      c.malformed++;
      return true;
    }
    let head: Head;
    try {
      head = decodeHead(cursor(bytes));
    } catch (e) {
      if (!(e instanceof DecodeError)) throw e;
      c.malformed++;
      return true;
    }
    const from: Peer = { address, port };
    const d = core.auth.authenticate(head, from);
    switch (d.action) {
      case 'drop':
        this.#dropped(head, d.reason, from);
        return true;
      case 'refuse':
        c.refused++;
        if (head.auth.mode === AuthMode.CREDENTIAL && d.code === ErrorCode.NOT_PERMITTED) {
          this.#logRefusal(from, () => `credential ${quote(head)} not permitted`);
        }
        core.outbox.refuse(
          head,
          d.mode,
          d.key,
          d.code,
          d.retryAfterMs,
          from,
          !this.#trusted(head, d.mode, from),
        );
        return false;
      case 'replay':
        this.#replay(head, d.mode, from);
        return false;
      case 'accept':
        this.#accepted(head, d, from);
        return false;
    }
  }

  /**
   * Whether `from` is known to be the sender's: the address of the session's earlier verified
   * traffic (modes 2 and 3), or an admin's. A copy from anywhere else is answered, if at all,
   * with no more bytes than it has.
   */
  #trusted(head: Head, mode: AuthMode, from: Peer): boolean {
    if (mode === AuthMode.ADMIN) return true;
    if (mode !== AuthMode.SESSION && mode !== AuthMode.TOKEN) return false;
    const s = this.#core.sessions.get(head.sessionId);
    return s !== undefined && s.address === from.address && s.port === from.port;
  }

  #dropped(head: Head, reason: string, from: Peer): void {
    const c = this.#core.counters;
    if (reason === 'bad-mac' || reason === 'bad-token') {
      c.badMac++;
      this.allow(from.address);
      if (head.auth.mode === AuthMode.CREDENTIAL) {
        this.#logRefusal(from, () => `bad tag for credential ${quote(head)} (wrong key?)`);
      }
    } else if (reason === 'unknown-credential') {
      c.dropped++;
      this.#logRefusal(from, () => `unknown credential id ${quote(head)}`);
    } else if (reason === 'unknown-admin-key') {
      c.dropped++;
      this.#logRefusal(from, () => 'unknown admin key id');
    } else if (reason !== 'over-budget') c.dropped++;
  }

  /** A verified datagram whose nonce or seq was seen: what was kept for it, or nothing. */
  #replay(head: Head, mode: AuthMode, from: Peer): void {
    const core = this.#core;
    core.counters.replayed++;
    const session =
      mode === AuthMode.TOKEN || mode === AuthMode.SESSION
        ? core.sessions.get(head.sessionId)
        : undefined;
    const now = core.now();
    if (head.type === MsgType.HEARTBEAT && session) {
      const kept = session.keptReply(head.requestId);
      if (kept && core.outbox.resend(kept, session, mode, from, session)) return;
    } else {
      const ctx = {
        cacheKey: cacheKeyOf(head),
        recordKey: changesState(head.type) ? recordKey(head) : undefined,
        mode,
        from,
        session,
      };
      if (core.outbox.answerKept(ctx, now)) return;
    }
    if (session) this.#resync(head, session, mode, from, now);
  }

  /**
   * A seq at or below a restored session's floor, unanswered: the client has not learnt
   * of the floor yet (its server restarted). Tell it, at its own IP only and at most once a
   * second: ERROR REPLAY with the floor as the header's seq.
   */
  #resync(head: Head, s: Session, mode: AuthMode, from: Peer, now: number): void {
    if (s.floor < 0 || head.seq > s.floor || now - s.resyncAt < 1000) return;
    // The session's own IP only (any port of it: NAT rebinding, or a socket the client
    // changed), at most once a second: 7 bytes more than a HEARTBEAT, to an address whose
    // traffic verified before.
    if (s.address !== from.address) return;
    const key = s.hmac;
    if (!key) return;
    s.resyncAt = now;
    this.#core.outbox.refuse(head, mode, key, ErrorCode.REPLAY, 0, from, false, s.reservedSeq);
  }

  #accepted(head: Head, d: Extract<AuthDecision, { action: 'accept' }>, from: Peer): void {
    const core = this.#core;
    const now = core.now();
    let session: Session | undefined;
    let floorWait = false;
    if (d.mode === AuthMode.TOKEN || d.mode === AuthMode.SESSION) {
      session = core.sessions.get(d.sessionId);
      if (!session && d.token && d.sessionKey) {
        if (!this.allow(from.address)) return;
        if (core.degraded) {
          // A restored session must be written down, and nothing can be now.
          core.outbox.refuse(head, d.mode, d.key, ErrorCode.BUSY, 1000, from, true);
          return;
        }
        session = core.sessions.add(
          {
            id: d.token.tokenId,
            token: d.token.bytes,
            user: d.token.user,
            host: d.token.host,
            vendor: d.token.vendor,
            expires: d.token.expires * 1000,
            address: from.address,
            port: from.port,
            lastSeen: now,
          },
          d.sessionKey,
        );
        d.sessionKey.fill(0);
        core.fresh.add(session);
        session.acceptSeq(head.seq);
        core.store.putSession(core.sessions.record(session, now));
        core.log.debug(
          `session ${session.id.toString(16)} restored from its token (${session.user}@${session.host})`,
        );
      }
      if (!session) return;
      if (core.site) {
        // Being ended site-wide right now: nothing more is granted or answered for it.
        if (core.site.ending.has(session.id)) {
          core.outbox.refuse(head, d.mode, d.key, ErrorCode.BUSY, 1000, from, true);
          return;
        }
        claim(core, core.site, session);
      }
      if (head.type === MsgType.TEST_CONN_ACK) {
        dispatch.testConnAck(core, session, head, d.moved === true, from, now);
        return;
      }
      if (d.moved) core.move(session, from.address, from.port);
      floorWait = this.#reserve(session, head.seq);
      session.lastSeen = now;
      session.heard();
      // The first seq above the floor: the client knows it now.
      if (session.floor >= 0 && head.seq > session.floor) session.floor = -1;
    }
    let body: unknown = EMPTY;
    // HEARTBEAT has no body: checking that it is empty is all its decoding.
    if (head.type !== MsgType.HEARTBEAT || head.bodyStart !== head.bodyEnd) {
      try {
        body = decodeBody(head);
      } catch (e) {
        if (!(e instanceof DecodeError)) throw e;
        core.counters.malformed++;
        return;
      }
    }
    const hb = head.type === MsgType.HEARTBEAT;
    const ctx: Ctx = {
      head,
      mode: d.mode,
      key: d.key,
      from,
      now,
      session,
      // A HEARTBEAT_ACK is kept in its session's slot, never under a cache key.
      cacheKey: hb ? '' : cacheKeyOf(head),
      recordKey: changesState(head.type) ? recordKey(head) : undefined,
      capped: capped(d.mode),
      floorWait,
      arrived: head.type === MsgType.CHECKOUT ? process.hrtime.bigint() : undefined,
      ...(d.credId !== undefined ? { credId: d.credId } : {}),
      ...(d.adminId !== undefined ? { adminId: d.adminId } : {}),
    };
    if (!hb) {
      // Exactly once: a request already answered (or whose answer waits for the commit)
      // gets that answer, never a second processing, whatever the cache evicted.
      if (core.outbox.inflight.has(ctx.cacheKey)) return;
      if (core.outbox.answerKept(ctx, now)) return;
    }
    if (core.degraded && changesState(head.type) && !readOnlyAdmin(head.type, body)) {
      // Nothing that changes state can be made durable now: say so, with a retry hint.
      core.outbox.refuse(head, d.mode, d.key, ErrorCode.BUSY, 1000, from, ctx.capped);
      return;
    }
    if (
      d.mode === AuthMode.TOKEN &&
      (head.type === MsgType.CHECKOUT || head.type === MsgType.STATUS) &&
      head.bytes.length < MIN_FIRST_CONTACT
    ) {
      // Answered before any processing: its reply could be larger than the request.
      core.outbox.error(ctx, ErrorCode.NEED_PADDING, 0, undefined, true);
      return;
    }
    dispatch.request(core, ctx, body);
  }

  /**
   * Keeps the session's durable replay floor ahead of its seqs: raised (with the next group
   * commit) once per SEQ_RESERVE / 2 requests, in the background. True when `seq` is above
   * the committed floor: its reply must then wait for the commit, or a copy of it could be
   * acted on after a crash.
   */
  #reserve(s: Session, seq: number): boolean {
    const core = this.#core;
    // While the state cannot be written the floor waits (the reply cannot wait for it).
    if (core.degraded) return false;
    if (seq > s.reservedSeq - SEQ_RESERVE / 2) {
      const floor = Math.min(seq + SEQ_RESERVE, 0xffff_ffff);
      s.reservedSeq = floor;
      core.store.setSeqFloor(s.id, floor);
      core.floorWrites.push({ s, floor });
      core.outbox.schedule();
    }
    return seq > s.durableSeq;
  }

  /** Logs `what()` (built only when it is logged: a flood costs no strings). */
  #logRefusal(from: Peer, what: () => string): void {
    const now = this.#core.now();
    const last = this.#logged.get(from.address);
    if (last !== undefined && now - last < REFUSAL_LOG_MS) return;
    if (this.#logged.size >= 4096) this.#logged.clear();
    this.#logged.set(from.address, now);
    this.#core.log.warn(`first contact from ${from.address}:${from.port} refused: ${what()}`);
  }
}

/** ADMIN REREAD and SHUTDOWN change no durable state and are served while degraded. */
function readOnlyAdmin(type: number, body: unknown): boolean {
  if (type !== MsgType.ADMIN) return false;
  const op = (body as { op: number }).op;
  return op === AdminOp.REREAD || op === AdminOp.SHUTDOWN;
}

/** Replies to modes 1 and 2 are never larger than the request (the source may be spoofed). */
function capped(mode: AuthMode): boolean {
  return mode === AuthMode.CREDENTIAL || mode === AuthMode.TOKEN;
}

function quote(head: Head): string {
  const id =
    head.auth.mode === AuthMode.CREDENTIAL
      ? head.auth.credId
      : head.auth.mode === AuthMode.ADMIN
        ? head.auth.keyId
        : '';
  return JSON.stringify(id);
}
