/**
 * Takeover by a fresh server that has only the keyring (empty state dir): it restores
 * sessions from re-presented tokens, rebuilds seats from lease tickets, never beyond the
 * count, refuses a second reclaim of a ticket, and refuses tokens it knows were revoked.
 */
import dgram from 'node:dgram';
import t from 'tap';
import { signDatagram } from '../../lib/auth/sign.ts';
import {
  type AnyDatagram,
  AuthMode,
  decodeDatagram,
  ErrorCode,
  MsgType,
  TAG_LENGTH,
} from '../../lib/wire/index.ts';
import { client, makeSite, startDaemon } from '../helpers/site.ts';

/** Sends one datagram from a socket and waits for the first reply (or undefined). */
async function ask(
  sock: dgram.Socket,
  port: number,
  bytes: Uint8Array,
  ms = 1000,
): Promise<AnyDatagram | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      sock.off('message', on);
      resolve(undefined);
    }, ms);
    const on = (m: Buffer) => {
      clearTimeout(timer);
      sock.off('message', on);
      resolve(decodeDatagram(new Uint8Array(m)));
    };
    sock.on('message', on);
    sock.send(bytes, port, '127.0.0.1');
  });
}

t.test('a fresh server with only the keyring rebuilds seats from tickets, once each', async (t) => {
  const site = makeSite(['FEATURE solver demo 2.5 permanent 2 DUP_GROUP=NONE']);
  const d1 = await startDaemon(site);
  const c = await client(site, d1.address().port, { heartbeatMs: 60_000 });
  const l1 = await c.checkout('solver');
  const l2 = await c.checkout('solver');
  const session = c.auth.session!;
  await c.destroy();
  await d1.close();

  const d2 = await startDaemon({ ...site, stateDir: `${site.stateDir}-new` }, { graceMs: 0 });
  t.teardown(() => d2.close());
  const port = d2.address().port;
  // Re-present the token (mode 2) with a RECLAIM of both tickets, from a new socket on the
  // same host, signed with the session key the client kept.
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => sock.close());
  const reclaim = (tickets: Uint8Array[], requestId: number, seq: number) =>
    signDatagram(
      {
        type: MsgType.RECLAIM,
        flags: 0,
        auth: { mode: AuthMode.TOKEN, token: session.token },
        requestId,
        sessionId: session.sessionId,
        seq,
        timestamp: Date.now(),
        body: { tickets: tickets.map((ticket) => ({ ticket })) },
        tag: new Uint8Array(TAG_LENGTH),
      },
      session.sessionKey,
    );
  const r1 = await ask(sock, port, reclaim([l1.ticket, l2.ticket], 1, 1));
  t.equal(r1?.type, MsgType.RECLAIM_REPLY);
  if (r1?.type !== MsgType.RECLAIM_REPLY) return;
  t.same(
    r1.body.results.map((r) => r.code),
    [ErrorCode.OK, ErrorCode.OK],
    'both leases rebuilt from their tickets',
  );
  t.equal(d2.pool.status().features[0]!.inUse, 2);
  const r2 = await ask(sock, port, reclaim([l1.ticket], 2, 2));
  t.equal(r2?.type, MsgType.RECLAIM_REPLY);
  if (r2?.type === MsgType.RECLAIM_REPLY) {
    t.equal(r2.body.results[0]!.code, ErrorCode.OK, 'the same session again: already its lease');
  }
  t.equal(d2.pool.status().features[0]!.inUse, 2, 'still 2 seats: a ticket is counted once');
  // Checked in, then re-presented: a released ticket is never honoured again.
  const checkin = signDatagram(
    {
      type: MsgType.CHECKIN,
      flags: 0,
      auth: { mode: AuthMode.SESSION },
      requestId: 10,
      sessionId: session.sessionId,
      seq: 10,
      timestamp: Date.now(),
      body: { leaseId: l1.leaseId, feature: 'solver' },
      tag: new Uint8Array(TAG_LENGTH),
    },
    session.sessionKey,
  );
  const ci = await ask(sock, port, checkin);
  t.equal(ci?.type, MsgType.CHECKIN_OK);
  t.equal(d2.pool.status().features[0]!.inUse, 1);
  const r4 = await ask(sock, port, reclaim([l1.ticket], 11, 11));
  if (r4?.type === MsgType.RECLAIM_REPLY) {
    t.equal(r4.body.results[0]!.code, ErrorCode.ALREADY_RECLAIMED, 'a released ticket is burned');
  } else t.fail('RECLAIM_REPLY expected');
  t.equal(d2.pool.status().features[0]!.inUse, 1, 'the released seat stays free');

  // A forged ticket (one bit flipped) is refused.
  const forged = Uint8Array.from(l1.ticket);
  forged[20]! ^= 1;
  const r3 = await ask(sock, port, reclaim([forged], 3, 3));
  if (r3?.type === MsgType.RECLAIM_REPLY) t.equal(r3.body.results[0]!.code, ErrorCode.TICKET_BAD);
  else t.fail('RECLAIM_REPLY expected');
});

t.test(
  'never beyond the count: a takeover server with fewer seats refuses the extra reclaim',
  async (t) => {
    const site = makeSite(['FEATURE demo demo 1.0 permanent 2 DUP_GROUP=NONE']);
    const d1 = await startDaemon(site);
    const a = await client(site, d1.address().port, { user: 'a', heartbeatMs: 60_000 });
    const b = await client(site, d1.address().port, { user: 'b', heartbeatMs: 60_000 });
    await a.checkout('demo');
    const lb = await b.checkout('demo');
    const lostB = new Promise<string>((r) => lb.once('lost', r));
    const port = d1.address().port;
    await d1.close();
    // The new server's license has only one seat: the first reclaim wins, the second is refused.
    site.writeLicense(['FEATURE demo demo 1.0 permanent 1 DUP_GROUP=NONE']);
    const d2 = await startDaemon(
      { ...site, stateDir: `${site.stateDir}-new` },
      { graceMs: 0, port },
    );
    t.teardown(() => Promise.all([d2.close(), a.close(), b.close()]));
    await a.status(); // a's session is restored and it re-presents its ticket
    await new Promise((r) => setTimeout(r, 300));
    await b.status();
    t.match(await lostB, /NO_SEATS/, 'the lease that does not fit is reported lost');
    t.equal(d2.pool.status().features[0]!.inUse, 1);
  },
);

t.test('a token revoked by the server that reaped it is refused after a restart', async (t) => {
  const site = makeSite(['FEATURE demo demo 1.0 permanent 1']);
  const d1 = await startDaemon(site, {
    heartbeatMs: 100,
    quietMs: 100,
    testConnIntervalMs: 50,
    testConnTries: 1,
    tickMs: 25,
  });
  const c = await client(site, d1.address().port, { heartbeatMs: 60_000 });
  await c.checkout('demo');
  const session = c.auth.session!;
  await c.destroy();
  while (d1.counters.reaped === 0) await new Promise((r) => setTimeout(r, 25));
  await d1.close();
  const d2 = await startDaemon(site);
  t.teardown(() => d2.close());
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => sock.close());
  const hb = signDatagram(
    {
      type: MsgType.HEARTBEAT,
      flags: 0,
      auth: { mode: AuthMode.TOKEN, token: session.token },
      requestId: 9,
      sessionId: session.sessionId,
      seq: 50,
      timestamp: Date.now(),
      body: {},
      tag: new Uint8Array(TAG_LENGTH),
    },
    session.sessionKey,
  );
  const r = await ask(sock, d2.address().port, hb);
  t.equal(r?.type, MsgType.ERROR);
  if (r?.type === MsgType.ERROR)
    t.equal(r.body.code, ErrorCode.TOKEN_REVOKED, 'revocation survived the restart');
});
