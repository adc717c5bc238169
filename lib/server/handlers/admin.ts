/**
 * ADMIN (mode 4) → ADMIN_REPLY: remove leases, reread the license and keys (all or
 * nothing), or shut down. Each op is kept durably for its request, so a captured ADMIN
 * datagram replayed later, even after a restart, is never carried out again.
 */
import { AdminOp, ErrorCode, MsgType } from '../../wire/index.ts';
import type { Bodies } from '../../wire/messages.ts';
import { type Core, hexId } from '../core.ts';
import { clip } from '../keys.ts';
import type { Ctx } from '../outbox.ts';

export function admin(core: Core, ctx: Ctx, b: Bodies[typeof MsgType.ADMIN]): void {
  const now = ctx.now;
  const by = ctx.adminId ?? '';
  if (b.op === AdminOp.REMOVE) {
    const removed = core.pool.remove({
      ...(b.feature ? { feature: b.feature } : {}),
      ...(b.user ? { user: b.user } : {}),
      ...(b.host ? { host: b.host } : {}),
      ...(b.leaseId !== 0n ? { leaseId: b.leaseId } : {}),
    });
    for (const l of removed) {
      core.store.deleteLease(l.leaseId);
      core.burn(l.leaseId, l.sessionId, now, true);
      core.report.write('remove', now, {
        by,
        lease: hexId(l.leaseId),
        session: hexId(l.sessionId),
        user: l.user,
        host: l.host,
        feature: l.feature,
      });
    }
    if (removed.length) core.afterRelease(now);
    core.outbox.reply(
      ctx,
      MsgType.ADMIN_REPLY,
      { op: b.op, affected: removed.length, message: `removed ${removed.length} lease(s)` },
      true,
    );
    return;
  }
  if (b.op === AdminOp.REREAD) {
    try {
      const r = core.lifecycle.reread();
      core.outbox.reply(ctx, MsgType.ADMIN_REPLY, {
        op: b.op,
        affected: r.features,
        message: clip(
          `reread: ${r.features} feature line(s), ${r.problems.length} problem(s)${r.problems[0] ? `; first: ${r.problems[0]}` : ''}`,
        ),
      });
    } catch (e) {
      const why = (e as Error).message;
      core.log.error(`reread refused (by admin key ${by}): ${why}`);
      core.outbox.error(ctx, ErrorCode.BAD_REQUEST, 0, clip(`reread refused: ${why}`));
    }
    return;
  }
  core.log.info(`shutdown requested by admin key ${by}`);
  core.outbox.reply(
    ctx,
    MsgType.ADMIN_REPLY,
    { op: b.op, affected: 0, message: 'shutting down' },
    true,
  );
  setImmediate(() => void core.lifecycle.close());
}
