/** STATUS → one STATUS_REPLY page of the pools' state. Changes nothing. */
import { ErrorCode, MsgType } from '../../wire/index.ts';
import type { Bodies } from '../../wire/messages.ts';
import type { Core } from '../core.ts';
import type { Ctx } from '../outbox.ts';
import { buildStatusPages } from '../status.ts';

export function status(core: Core, ctx: Ctx, b: Bodies[typeof MsgType.STATUS]): void {
  core.graceLeft(ctx.now);
  const pages = buildStatusPages(core.pool.status(), b.feature, core.outbox.generation);
  const page = pages[b.page];
  if (!page) {
    core.outbox.error(
      ctx,
      ErrorCode.BAD_REQUEST,
      0,
      `page ${b.page} does not exist (${pages.length} pages)`,
    );
    return;
  }
  core.outbox.reply(ctx, MsgType.STATUS_REPLY, page);
}
