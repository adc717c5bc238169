/**
 * HEARTBEAT → HEARTBEAT_ACK, a fixed-layout reply built without the generic encoder and kept
 * in the session's slot (not the reply cache): a client has one heartbeat out at a time.
 * Leases restored from disk but not yet reclaimed do not count in it: a client that holds
 * more than the ACK says re-presents its tickets (protocol.md, HEARTBEAT_ACK).
 */
import type { MsgType } from '../../wire/index.ts';
import type { Bodies } from '../../wire/messages.ts';
import type { Core } from '../core.ts';
import { heartbeatAckFor } from '../heartbeat-ack.ts';
import type { Ctx } from '../outbox.ts';
import type { Session } from '../session.ts';

export function heartbeat(
  core: Core,
  ctx: Ctx,
  _body: Bodies[typeof MsgType.HEARTBEAT],
  s: Session,
): void {
  const h = ctx.head;
  const kept = s.keptReply(h.requestId);
  if (kept) {
    core.outbox.resend(kept, s, ctx.mode, ctx.from, s);
    return;
  }
  const reply = heartbeatAckFor(
    h.bytes,
    ctx.mode,
    ctx.now,
    Math.min(core.pool.leaseCount(s.id, core.unclaimed), 0xffff),
    Math.min(core.pool.queuedOf(s.id), 0xffff),
    core.opts.heartbeatMs,
    ctx.key,
  );
  core.outbox.heartbeatAck(s, h.requestId, reply, ctx.from, ctx.floorWait === true);
}
