/**
 * CHECKIN → CHECKIN_OK: releases a lease (its ticket burned), leaves a queue (lease id 0), or
 * ends the whole session (lease id 0 and feature '').
 */
import { MsgType } from '../../wire/index.ts';
import type { Bodies } from '../../wire/messages.ts';
import { type Core, hexId } from '../core.ts';
import type { Ctx } from '../outbox.ts';
import type { Session } from '../session.ts';

export function checkin(core: Core, ctx: Ctx, b: Bodies[typeof MsgType.CHECKIN], s: Session): void {
  const now = ctx.now;
  if (b.leaseId === 0n && b.feature === '') {
    // The client is done with the session (close()): everything goes, the token is revoked.
    // The answer is signed first: when the request verified with the session's cached key,
    // reaping the session disposes of that key (the answer would be lost to an internal error).
    const n = core.pool.leaseCount(s.id);
    core.outbox.reply(ctx, MsgType.CHECKIN_OK, { leaseId: 0n, released: n }, true);
    core.reap(s, now, 'closed by the client', 'close');
    return;
  }
  if (b.leaseId === 0n) {
    const left = core.pool.leaveQueue(s.id, b.feature);
    if (left) {
      core.store.dequeue(s.id, b.feature);
      core.report.write('dequeue', now, { session: hexId(s.id), user: s.user, feature: b.feature });
    }
    core.outbox.reply(ctx, MsgType.CHECKIN_OK, { leaseId: 0n, released: 0 }, left);
    return;
  }
  const r = core.pool.checkin(s.id, b.leaseId);
  if (!r.ok) {
    core.outbox.error(ctx, r.code);
    return;
  }
  core.store.deleteLease(b.leaseId);
  core.burn(b.leaseId, s.id, now);
  core.report.write('release', now, {
    session: hexId(s.id),
    user: s.user,
    host: s.host,
    lease: hexId(b.leaseId),
    feature: r.feature,
  });
  core.afterRelease(now);
  core.outbox.reply(ctx, MsgType.CHECKIN_OK, { leaseId: b.leaseId, released: r.released }, true);
}
