/**
 * Dispatch: which handler answers which verified request. Every handler lives in its own
 * file and gets the Core, the request's context and its decoded body.
 */
import { equalBytes } from '../../crypto/index.ts';
import { decodeBody, ErrorCode, type Head, MsgType } from '../../wire/index.ts';
import type { Bodies } from '../../wire/messages.ts';
import type { Core } from '../core.ts';
import type { Ctx, Peer } from '../outbox.ts';
import type { Session } from '../session.ts';
import { admin } from './admin.ts';
import { checkin } from './checkin.ts';
import { checkout } from './checkout.ts';
import { heartbeat } from './heartbeat.ts';
import { hello } from './hello.ts';
import { ping } from './ping.ts';
import { reclaim } from './reclaim.ts';
import { status } from './status.ts';

type Handler<T extends MsgType> = (core: Core, ctx: Ctx, body: Bodies[T], s: Session) => void;

/** Handlers of requests that need a session (modes 2 and 3). */
const SESSION_HANDLERS: { [T in MsgType]?: Handler<T> } = {
  [MsgType.CHECKOUT]: checkout,
  [MsgType.HEARTBEAT]: heartbeat,
  [MsgType.CHECKIN]: checkin,
  [MsgType.RECLAIM]: reclaim,
};

export const dispatch = {
  /** A verified, fresh request with its decoded body. */
  request(core: Core, ctx: Ctx, body: unknown): void {
    const type = ctx.head.type;
    switch (type) {
      case MsgType.HELLO:
        hello(core, ctx, body as Bodies[typeof MsgType.HELLO]);
        return;
      case MsgType.PING:
        ping(core, ctx);
        return;
      case MsgType.STATUS:
        status(core, ctx, body as Bodies[typeof MsgType.STATUS]);
        return;
      case MsgType.ADMIN:
        admin(core, ctx, body as Bodies[typeof MsgType.ADMIN]);
        return;
      default:
        break;
    }
    const handler = SESSION_HANDLERS[type] as Handler<MsgType> | undefined;
    if (!handler) {
      core.counters.dropped++;
      return;
    }
    if (!ctx.session) {
      core.outbox.error(ctx, ErrorCode.UNKNOWN_SESSION);
      return;
    }
    handler(core, ctx, body as never, ctx.session);
  },

  /**
   * The client's answer to a TEST_CONN. Only the answer to the ping outstanding counts (a
   * replayed old ACK keeps nothing alive), and it is never answered.
   */
  testConnAck(core: Core, s: Session, head: Head, moved: boolean, from: Peer, now: number): void {
    let body: Bodies[typeof MsgType.TEST_CONN_ACK];
    try {
      body = decodeBody(head as Head & { type: typeof MsgType.TEST_CONN_ACK });
    } catch {
      core.counters.malformed++;
      return;
    }
    if (!s.pingNonce || !equalBytes(s.pingNonce, body.nonce)) return;
    s.heard();
    s.lastSeen = now;
    if (moved) core.move(s, from.address, from.port);
  },
};
