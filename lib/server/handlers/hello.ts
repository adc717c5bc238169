/**
 * HELLO (mode 1) → HELLO_OK: checks that the credential covers the vendor and user the
 * client declares and the session caps (per user, per source address, per credential), then
 * makes a token, a session and its key, and answers once the session is durable.
 */
import { credentialCovers } from '../../auth/server.ts';
import { makeToken, returnToken, sessionKeyFor } from '../../token/index.ts';
import { AuthMode, ErrorCode, type MsgType } from '../../wire/index.ts';
import type { Bodies } from '../../wire/messages.ts';
import { type Core, hexId } from '../core.ts';
import { SEQ_RESERVE } from '../defaults.ts';
import type { Ctx } from '../outbox.ts';

export function hello(core: Core, ctx: Ctx, b: Bodies[typeof MsgType.HELLO]): void {
  const now = ctx.now;
  const credId = ctx.credId ?? '';
  if (!credentialCovers(credId, b.vendor, b.user)) {
    core.outbox.error(ctx, ErrorCode.NOT_PERMITTED);
    return;
  }
  const cap = core.config.keys.caps?.get(credId)?.sessions;
  if (
    core.sessions.users(b.vendor, b.user) >= core.opts.maxSessionsPerUser ||
    core.sessions.hosts(ctx.from.address) >= core.opts.maxSessionsPerHost ||
    (cap !== undefined && core.sessions.credentialSessions(credId) >= cap)
  ) {
    core.outbox.error(ctx, ErrorCode.SESSION_LIMIT);
    return;
  }
  const token = makeToken(
    {
      addr: ctx.from.address,
      port: ctx.from.port,
      host: b.host,
      vendor: b.vendor,
      program: b.program,
      version: b.version,
      user: b.user,
      lifetimeS: core.opts.tokenLifetimeS,
    },
    core.keyring,
    now,
  );
  const serverKey = core.keyring.lookup(token.keyId, now);
  if (!serverKey.ok) throw new Error('the current server key does not verify');
  const sessionKey = sessionKeyFor(token, serverKey.key);
  const credKey = core.auth.credentialKey(credId);
  if (!credKey || ctx.head.auth.mode !== AuthMode.CREDENTIAL)
    throw new Error('credential vanished');
  const body = returnToken(token, sessionKey, credKey, ctx.head.auth.nonce, core.opts.heartbeatMs);
  const session = core.sessions.add(
    {
      id: token.tokenId,
      token: token.bytes,
      user: token.user,
      host: token.host,
      vendor: token.vendor,
      expires: token.expires * 1000,
      address: ctx.from.address,
      port: ctx.from.port,
      lastSeen: now,
      credential: credId,
    },
    sessionKey,
  );
  sessionKey.fill(0);
  core.fresh.add(session);
  // The session's first replay floor is written with it (HELLO_OK waits for that commit),
  // so its first SEQ_RESERVE datagrams are answered without waiting for the disk.
  session.reservedSeq = SEQ_RESERVE;
  core.floorWrites.push({ s: session, floor: SEQ_RESERVE });
  core.store.putSession(core.sessions.record(session, now));
  core.report.write('session', now, {
    session: hexId(token.tokenId),
    user: b.user,
    host: b.host,
    vendor: b.vendor,
    program: b.program,
    addr: ctx.from.address,
  });
  const key = session.hmac;
  if (!key) throw new Error('the new session has no key');
  // Signed with the new session key, and durable before it leaves.
  core.outbox.helloOk(ctx, body, key, token.tokenId);
}
