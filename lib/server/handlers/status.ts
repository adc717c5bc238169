/** STATUS → one STATUS_REPLY page of the pools' state. Changes nothing. */
import { decodeToken } from '../../token/index.ts';
import { ErrorCode, MsgType } from '../../wire/index.ts';
import type { Bodies } from '../../wire/messages.ts';
import type { Core } from '../core.ts';
import type { Ctx } from '../outbox.ts';
import { buildStatusPages, type ProgramInfo } from '../status.ts';

export function status(core: Core, ctx: Ctx, b: Bodies[typeof MsgType.STATUS]): void {
  core.graceLeft(ctx.now);
  const pages = buildStatusPages(
    core.pool.status(),
    b.feature,
    core.outbox.generation,
    (id) => programOf(core, id),
    core.site?.serverRecords(ctx.now),
  );
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

/**
 * The program and version a session's HELLO declared, read back from its token: sessions
 * keep no copy of them (a session's memory counts when there are a million).
 */
function programOf(core: Core, sessionId: bigint): ProgramInfo | undefined {
  const s = core.sessions.get(sessionId);
  if (!s) return undefined;
  try {
    const t = decodeToken(s.token);
    return { program: t.program, version: t.version };
  } catch {
    // A token the daemon issued always decodes; a listing must not fail on one that does not.
    return undefined;
  }
}
