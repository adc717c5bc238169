/** PING → PONG: the server's version, uptime, state and grace. Changes nothing. */
import { MsgType } from '../../wire/index.ts';
import { type Core, SERVER_VERSION } from '../core.ts';
import type { Ctx } from '../outbox.ts';

export function ping(core: Core, ctx: Ctx): void {
  const now = ctx.now;
  core.outbox.reply(ctx, MsgType.PONG, {
    serverVersion: SERVER_VERSION,
    uptimeMs: Math.max(0, now - core.started),
    state: core.serverState(now),
    graceLeftMs: Math.min(core.graceLeft(now), 0xffffffff),
  });
}
