/**
 * Abuse resistance: a flood of datagrams with bad MACs costs a MAC check each, is counted,
 * leaves no state behind and does not stop service; one user claiming seats over and over
 * cannot starve others beyond its caps; the per-source rate limit drops floods before any
 * MAC work.
 */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import t from 'tap';
import { signDatagram } from '../../lib/auth/sign.ts';
import type { Client } from '../../lib/client/client.ts';
import { AuthMode, MsgType, TAG_LENGTH, toHex } from '../../lib/wire/index.ts';
import { client, makeSite, startDaemon } from '../helpers/site.ts';

const FLOOD = 100_000;
/** Sends argv[3] datagrams (hex argv[4..], round robin) to 127.0.0.1:argv[2]; bounded in time. */
const FLOODER = `
const dgram = require('node:dgram');
const [port, n, ...hex] = process.argv.slice(1);
const bufs = hex.map((h) => Buffer.from(h, 'hex'));
const s = dgram.createSocket('udp4');
let sent = 0;
const deadline = Date.now() + 60000;
function batch() {
  for (let i = 0; i < 100 && sent < +n; i++, sent++) s.send(bufs[sent % bufs.length], +port, '127.0.0.1');
  if (sent < +n && Date.now() < deadline) setTimeout(batch, 1);
  else setTimeout(() => { process.stdout.write(String(sent)); s.close(); }, 100);
}
batch();
`;

t.test(
  `a bad-MAC flood of ${FLOOD} datagrams: counted, no state kept, clients served`,
  async (t) => {
    const site = makeSite(['FEATURE demo demo 1.0 permanent 2']);
    const d = await startDaemon(site);
    t.teardown(() => d.close());
    const port = d.address().port;
    const good = await client(site, port);
    t.teardown(() => good.close());
    await good.checkout('demo');
    const sid = good.auth.session!.sessionId;
    const before = d.stateSizes();
    const received0 = d.counters.received;
    const badMac0 = d.counters.badMac;
    const rssBefore = process.memoryUsage().rss;
    // Well-formed datagrams in every mode whose tags are wrong: each costs one MAC check.
    const wrongKey = new Uint8Array(32).fill(9);
    const forged = [
      signDatagram(
        {
          type: MsgType.HEARTBEAT,
          flags: 0,
          auth: { mode: AuthMode.SESSION },
          requestId: 1,
          sessionId: sid,
          seq: 1000,
          timestamp: Date.now(),
          body: {},
          tag: new Uint8Array(TAG_LENGTH),
        },
        wrongKey,
      ),
      signDatagram(
        {
          type: MsgType.PING,
          flags: 0,
          auth: { mode: AuthMode.CREDENTIAL, credId: 'demo', nonce: new Uint8Array(16) },
          requestId: 2,
          sessionId: 0n,
          seq: 0,
          timestamp: Date.now(),
          body: { payload: new Uint8Array(64) },
          tag: new Uint8Array(TAG_LENGTH),
        },
        wrongKey,
      ),
      signDatagram(
        {
          type: MsgType.ADMIN,
          flags: 0,
          auth: { mode: AuthMode.ADMIN, keyId: 'admin' },
          requestId: 3,
          sessionId: 0n,
          seq: 0,
          timestamp: Date.now(),
          body: { op: 3, feature: '', user: '', host: '', leaseId: 0n },
          tag: new Uint8Array(TAG_LENGTH),
        },
        wrongKey,
      ),
    ];
    // The flood comes from another process, as it would, paced so the kernel keeps up.
    const flooder = spawn(
      process.execPath,
      ['-e', FLOODER, String(port), String(FLOOD), ...forged.map((f) => toHex(f))],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    flooder.stdout.on('data', (b: Buffer) => {
      out += b.toString();
    });
    await new Promise((r) => flooder.once('exit', r));
    const sent = Number(out.trim());
    await new Promise((r) => setTimeout(r, 300));
    t.equal(sent, FLOOD);
    // The kernel drops what the daemon cannot read in time; everything it did read counts.
    const received = d.counters.received - received0;
    t.ok(received >= 10_000, `a real flood reached the daemon (${received} of ${FLOOD})`);
    t.equal(
      d.counters.badMac - badMac0,
      received,
      'every datagram received was counted as a bad MAC',
    );
    t.same(d.stateSizes(), before, 'no table grew: zero state per unauthenticated datagram');
    const grown = (process.memoryUsage().rss - rssBefore) / 1e6;
    t.ok(grown < 64, `memory stays flat (RSS grew ${grown.toFixed(1)} MB)`);
    const pong = await good.ping();
    t.equal(pong.state, 'running', 'the legitimate client is still served');
    const l = await good.checkout('demo');
    t.ok(l.leaseId > 0n);
  },
);

t.test('one user claiming seats over and over cannot starve the others', async (t) => {
  const site = makeSite(['FEATURE demo demo 1.0 permanent 4 DUP_GROUP=NONE MAX_PER_USER=2']);
  const d = await startDaemon(site, { maxSessionsPerUser: 4 });
  t.teardown(() => d.close());
  const port = d.address().port;
  const attacker: Client[] = [];
  for (let i = 0; i < 4; i++)
    attacker.push(await client(site, port, { user: 'mallory', host: `h${i}` }));
  t.teardown(() => Promise.all(attacker.map((c) => c.close())));
  let granted = 0;
  let refused = 0;
  for (let round = 0; round < 20; round++) {
    for (const c of attacker) {
      try {
        await c.checkout('demo');
        granted++;
      } catch {
        refused++;
      }
    }
  }
  t.equal(granted, 2, 'the attacker gets its per-user maximum and no more');
  t.equal(refused, 78);
  await t.rejects(
    client(site, port, { user: 'mallory', host: 'h9' }),
    { name: 'DeniedError', message: /SESSION_LIMIT/ },
    'session cap',
  );
  // The count follows the table: a closed session frees its place under the cap.
  await attacker.pop()!.close();
  const again = await client(site, port, { user: 'mallory', host: 'h9' });
  attacker.push(again);
  t.ok(again.auth.session, 'a new session fits once one has closed');
  const alice = await client(site, port, { user: 'alice' });
  const bob = await client(site, port, { user: 'bob', host: 'ws2' });
  t.teardown(() => Promise.all([alice.close(), bob.close()]));
  t.ok((await alice.checkout('demo')).leaseId > 0n, 'alice is served');
  t.ok((await bob.checkout('demo')).leaseId > 0n, 'bob is served');
});

t.test('the per-source budget stops unverified work, never verified traffic', async (t) => {
  const site = makeSite(['FEATURE demo demo 1.0 permanent 2']);
  const d = await startDaemon(site, { rateLimit: { rate: 100, burst: 100 } });
  t.teardown(() => d.close());
  const c = await client(site, d.address().port);
  t.teardown(() => c.close());
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  // Well-framed mode-2 datagrams with a made-up token: each would cost a token check.
  const junk = signDatagram(
    {
      type: MsgType.PING,
      flags: 0,
      auth: { mode: AuthMode.TOKEN, token: new Uint8Array(120).fill(1) },
      requestId: 1,
      sessionId: 1n,
      seq: 1,
      timestamp: Date.now(),
      body: { payload: new Uint8Array(0) },
      tag: new Uint8Array(TAG_LENGTH),
    },
    new Uint8Array(32),
  );
  for (let i = 0; i < 1000; i++) {
    sock.send(junk, d.address().port, '127.0.0.1');
    if (i % 100 === 99) await new Promise((r) => setTimeout(r, 1));
  }
  await c.heartbeat();
  sock.close();
  t.ok(d.counters.rateLimited > 0, `the flood ran out of budget (${d.counters.rateLimited})`);
  t.ok(d.counters.badMac <= 300, `token checks bounded by the budget (${d.counters.badMac})`);
  t.ok(c.auth.session, 'the live session from the same address is still served');
});
