/**
 * RECLAIM → RECLAIM_REPLY: a holder re-presents its lease tickets after a restart or to a
 * new server. A ticket is honoured once: a lease released, removed or reaped has its ticket
 * burned and can never be rebuilt.
 */
import { verifyTicket } from '../../token/index.ts';
import { ErrorCode, MsgType } from '../../wire/index.ts';
import type { Bodies } from '../../wire/messages.ts';
import { type Core, hexId } from '../core.ts';
import { type Ctx, granted } from '../outbox.ts';
import type { Session } from '../session.ts';

export function reclaim(core: Core, ctx: Ctx, b: Bodies[typeof MsgType.RECLAIM], s: Session): void {
  const now = ctx.now;
  // An expired grace is ended first: its unclaimed leases are gone before this is answered.
  core.graceLeft(now);
  const results: { leaseId: bigint; code: number }[] = [];
  let changed = false;
  for (const { ticket } of b.tickets) {
    const v = verifyTicket(ticket, core.keyring, now, s.id);
    if (!v.ok) {
      results.push({ leaseId: 0n, code: v.code });
      continue;
    }
    const t = v.ticket;
    let code: number = ErrorCode.OK;
    const held = core.pool.leasesOf(s.id).some((l) => l.leaseId === t.leaseId);
    const why = held ? undefined : core.store.reclaimedWhy(t.leaseId);
    if (core.tokens.isRevoked(s.id) || core.store.isRevoked(s.id)) code = ErrorCode.TOKEN_REVOKED;
    else if (held && core.unclaimed.has(t.leaseId)) {
      // Held across a restart of this server: the seat is already counted.
      core.unclaimed.delete(t.leaseId);
    } else if (held) {
      // Already this session's (a repeated reclaim): nothing changes.
      results.push({ leaseId: t.leaseId, code });
      continue;
    } else if (why !== undefined) {
      // Released, removed, reaped, or rebuilt here before: a ticket is honoured once.
      code = why === 1 ? ErrorCode.REMOVED : ErrorCode.ALREADY_RECLAIMED;
    } else {
      const r = core.pool.reclaim({
        leaseId: t.leaseId,
        sessionId: s.id,
        user: s.user,
        host: s.host,
        feature: t.feature,
        version: t.version,
        count: t.count,
        grantedAt: t.grantedAt,
        ...core.holder(s),
      });
      if (r.ok) {
        granted(ctx, t.leaseId);
        core.store.putLease({
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
      core.store.markReclaimed(t.leaseId, s.expires);
      changed = true;
      core.report.write('reclaim', now, {
        session: hexId(s.id),
        user: s.user,
        host: s.host,
        lease: hexId(t.leaseId),
        feature: t.feature,
      });
    }
    results.push({ leaseId: t.leaseId, code });
  }
  core.maybeEndGrace(now);
  core.outbox.reply(ctx, MsgType.RECLAIM_REPLY, { results }, changed);
}
