/**
 * CHECKOUT → CHECKOUT_REPLY: granted (with a lease ticket, durable before the reply leaves),
 * queued, or denied with a reason. Every outcome is kept durably for its (session, request
 * id), so a re-send after a restart or eviction gets this same answer.
 */

import { sha256 } from '../../crypto/index.ts';
import { CheckoutStatus, ErrorCode, errorName, MsgType } from '../../wire/index.ts';
import type { Bodies } from '../../wire/messages.ts';
import { type Core, hexId } from '../core.ts';
import type { Ctx } from '../outbox.ts';
import type { Session } from '../session.ts';

/** A lease id (u64, never 0) derived from a request's durable record key. */
export function leaseIdOf(recordKey: Uint8Array): bigint {
  const h = sha256(new TextEncoder().encode('floatlm lease id\0'), recordKey);
  const v = new DataView(h.buffer, h.byteOffset, 8).getBigUint64(0);
  return v === 0n ? 1n : v;
}

export function checkout(
  core: Core,
  ctx: Ctx,
  b: Bodies[typeof MsgType.CHECKOUT],
  s: Session,
): void {
  const now = ctx.now;
  const base = {
    feature: b.feature,
    leaseId: 0n,
    count: 0,
    ticket: new Uint8Array(0),
    heartbeatMs: core.opts.heartbeatMs,
    position: 0,
    queueLength: 0,
    reason: 0,
    retryAfterMs: 0,
  };
  const left = core.graceLeft(now);
  if (left > 0) {
    core.report.write('deny', now, {
      session: hexId(s.id),
      user: s.user,
      host: s.host,
      feature: b.feature,
      version: b.version,
      count: b.count,
      reason: 'IN_GRACE',
    });
    core.outbox.reply(ctx, MsgType.CHECKOUT_REPLY, {
      ...base,
      status: CheckoutStatus.DENIED,
      reason: ErrorCode.IN_GRACE,
      retryAfterMs: Math.min(left, 0xffffffff),
    });
    return;
  }
  // On a site the lease id is the request's: the same CHECKOUT retried at another server,
  // or after a commit that failed half-way, finds the lease it may already have made.
  const leaseId = core.site && ctx.recordKey ? leaseIdOf(ctx.recordKey) : undefined;
  const had =
    leaseId === undefined ? undefined : core.pool.leasesOf(s.id).find((l) => l.leaseId === leaseId);
  if (had) {
    core.outbox.reply(
      ctx,
      MsgType.CHECKOUT_REPLY,
      {
        ...base,
        status: CheckoutStatus.GRANTED,
        leaseId: had.leaseId,
        count: had.count,
        ticket: core.ticketFor(s, had, now).bytes,
      },
      true,
    );
    return;
  }
  const r = core.pool.checkout({
    ...(leaseId !== undefined && !core.pool.holdsLease(leaseId) ? { leaseId } : {}),
    sessionId: s.id,
    user: s.user,
    host: s.host,
    feature: b.feature,
    version: b.version,
    count: b.count,
    wait: (b.options & 1) === 1,
    vendor: s.vendor,
    ...core.holder(s),
  });
  const who = {
    session: hexId(s.id),
    user: s.user,
    host: s.host,
    feature: b.feature,
    version: b.version,
    count: b.count,
  };
  if (r.status === 'granted') {
    const lease = r.lease;
    let ticket: Uint8Array;
    if (r.fromQueue) {
      // Assigned from the queue when a seat freed (afterRelease wrote lease and grant event
      // then); this poll only hands over the ticket.
      core.store.dequeue(s.id, b.feature);
      ticket = core.leaseTicket(s, lease, now);
    } else {
      ticket = core.leaseTicket(s, lease, now, ctx);
      core.report.write('grant', now, {
        ...who,
        lease: hexId(lease.leaseId),
        granted: lease.version,
        queued: false,
      });
    }
    core.outbox.reply(
      ctx,
      MsgType.CHECKOUT_REPLY,
      {
        ...base,
        status: CheckoutStatus.GRANTED,
        leaseId: lease.leaseId,
        count: lease.count,
        ticket,
      },
      true,
    );
    return;
  }
  if (r.status === 'queued') {
    if (r.added) {
      core.store.enqueue({
        tokenId: s.id,
        feature: b.feature,
        version: b.version,
        count: b.count,
        since: now,
      });
      core.report.write('queue', now, { ...who, position: r.position });
    }
    core.outbox.reply(
      ctx,
      MsgType.CHECKOUT_REPLY,
      { ...base, status: CheckoutStatus.QUEUED, position: r.position, queueLength: r.queueLength },
      r.added === true,
    );
    return;
  }
  core.report.write('deny', now, { ...who, reason: errorName(r.code) });
  core.outbox.reply(ctx, MsgType.CHECKOUT_REPLY, {
    ...base,
    status: CheckoutStatus.DENIED,
    reason: r.code,
  });
}
