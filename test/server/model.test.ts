/**
 * A randomized model test (fast-check commands) over real daemons and real clients on
 * 127.0.0.1: interleaved checkouts, checkins, heartbeats, restarts, takeovers by a server
 * with an empty state dir, and replayed reclaims. After every step: seats held ≤ count on
 * the serving daemon, the client never believes it holds more than the count, and a
 * reclaimed ticket is never honoured twice.
 */
import dgram from 'node:dgram';
import fc from 'fast-check';
import t from 'tap';
import type { Client, Lease } from '../../lib/client/client.ts';
import type { Daemon } from '../../lib/server/daemon.ts';
import { ErrorCode, MsgType } from '../../lib/wire/index.ts';
import { client, makeSite, type Site, startDaemon } from '../helpers/site.ts';

const COUNT = 2;

/** One datagram out, the first reply back (or undefined after 500 ms). */
async function ask(port: number, bytes: Uint8Array): Promise<Uint8Array | undefined> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  try {
    return await new Promise((resolve) => {
      const timer = setTimeout(() => resolve(undefined), 500);
      sock.once('message', (m) => {
        clearTimeout(timer);
        resolve(new Uint8Array(m));
      });
      sock.send(bytes, port, '127.0.0.1');
    });
  } finally {
    sock.close();
  }
}
const CLIENTS = 3;

interface Real {
  site: Site;
  daemon: Daemon;
  port: number;
  generation: number;
  clients: Client[];
  leases: Lease[][];
}

type Model = Record<string, never>;

let steps = 0;
const seen = new Set<string>();

function check(r: Real): void {
  const f = r.daemon.pool.status().features.find((x) => x.name === 'demo')!;
  if (f.inUse > COUNT) throw new Error(`held ${f.inUse} > count ${COUNT}`);
  r.daemon.pool.assertInvariant();
  const believed = r.leases.flat().filter((l) => l.state === 'held').length;
  // Clients may briefly believe in leases a new server has not rebuilt yet, but never in
  // more than could ever have been granted together.
  if (believed > COUNT) throw new Error(`clients believe they hold ${believed} > ${COUNT}`);
}

class Checkout implements fc.AsyncCommand<Model, Real> {
  constructor(readonly i: number) {}
  check = () => true;
  async run(_m: Model, r: Real): Promise<void> {
    try {
      r.leases[this.i]!.push(await r.clients[this.i]!.checkout('demo'));
    } catch (e) {
      const reason = (e as { reason?: number }).reason;
      if (reason !== ErrorCode.NO_SEATS && reason !== ErrorCode.IN_GRACE) throw e;
    }
    check(r);
  }
  toString = () => `checkout(${this.i})`;
}

class Checkin implements fc.AsyncCommand<Model, Real> {
  constructor(readonly i: number) {}
  check = () => true;
  async run(_m: Model, r: Real): Promise<void> {
    const l = r.leases[this.i]!.find((x) => x.state === 'held');
    if (l) await l.checkin();
    check(r);
  }
  toString = () => `checkin(${this.i})`;
}

class Heartbeat implements fc.AsyncCommand<Model, Real> {
  constructor(readonly i: number) {}
  check = () => true;
  async run(_m: Model, r: Real): Promise<void> {
    await r.clients[this.i]!.heartbeat();
    check(r);
  }
  toString = () => `heartbeat(${this.i})`;
}

class Restart implements fc.AsyncCommand<Model, Real> {
  constructor(readonly takeover: boolean) {}
  check = () => true;
  async run(_m: Model, r: Real): Promise<void> {
    await r.daemon.close();
    r.generation++;
    const site = this.takeover
      ? { ...r.site, stateDir: `${r.site.stateDir}-${r.generation}` }
      : r.site;
    if (this.takeover) r.site = site;
    // Grace outlasts a client's way back (its mode-3 budget, then mode 2), as in production
    // (90 s against 15 s).
    r.daemon = await startDaemon(site, { port: r.port, graceMs: 1500, takeover: this.takeover });
    check(r);
  }
  toString = () => (this.takeover ? 'takeover' : 'restart');
}

class ReplayReclaim implements fc.AsyncCommand<Model, Real> {
  constructor(readonly i: number) {}
  check = () => true;
  async run(_m: Model, r: Real): Promise<void> {
    const c = r.clients[this.i]!;
    const l = r.leases[this.i]!.find((x) => x.state === 'held');
    if (!l || !c.auth.session) return;
    const before = r.daemon.pool.status().features[0]!.inUse;
    const known = r.daemon.pool
      .leasesOf(c.auth.session.sessionId)
      .some((x) => x.leaseId === l.leaseId);
    // The same ticket again, through the client's own session.
    const req = c.auth.request(
      `127.0.0.1:${r.port}`,
      MsgType.RECLAIM,
      { tickets: [{ ticket: l.ticket }] },
      0x7fff0000 + r.generation * 64 + this.i,
    );
    const raw = await ask(r.port, req.bytes);
    const reply = raw ? c.auth.verifyReply(`127.0.0.1:${r.port}`, raw, req) : null;
    if (known && reply?.type === MsgType.RECLAIM_REPLY) {
      const code = reply.body.results[0]!.code;
      if (code === ErrorCode.OK && r.daemon.pool.status().features[0]!.inUse > before) {
        throw new Error('a held lease was reclaimed a second time');
      }
    }
    check(r);
  }
  toString = () => `replayReclaim(${this.i})`;
}

t.test(
  'model: held ≤ count through checkouts, checkins, restarts, takeovers and reclaims',
  async (t) => {
    const idx = fc.integer({ min: 0, max: CLIENTS - 1 });
    const commands = [
      idx.map((i) => new Checkout(i)),
      idx.map((i) => new Checkin(i)),
      idx.map((i) => new Heartbeat(i)),
      idx.map((i) => new ReplayReclaim(i)),
      fc.boolean().map((b) => new Restart(b)),
    ];
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 16, size: 'max' }), async (cmds) => {
        runs++;
        const site = makeSite([`FEATURE demo demo 1.0 permanent ${COUNT} DUP_GROUP=NONE`]);
        const daemon = await startDaemon(site, { graceMs: 400 });
        const port = daemon.address().port;
        const real: Real = { site, daemon, port, generation: 0, clients: [], leases: [] };
        try {
          for (let i = 0; i < CLIENTS; i++) {
            real.clients.push(
              await client(site, port, {
                user: `u${i}`,
                host: `h${i}`,
                heartbeatMs: 60_000,
                retry: { initialMs: 40, maxIntervalMs: 100, maxTotalMs: 600 },
              }),
            );
            real.leases.push([]);
          }
          for (const c of cmds) seen.add(String(c).replace(/\(.*$/, ''));
          steps += [...cmds].length;
          await fc.asyncModelRun(() => ({ model: {}, real }), cmds);
        } finally {
          await Promise.all(real.clients.map((c) => c.destroy()));
          await real.daemon.close();
        }
      }),
      { numRuns: 25, interruptAfterTimeLimit: 90_000 },
    );
    t.ok(runs >= 20, `${runs} random runs`);
    t.ok(steps >= 60, `${steps} steps checked`);
    t.same(
      [...seen].sort(),
      ['checkin', 'checkout', 'heartbeat', 'replayReclaim', 'restart', 'takeover'],
      'every kind of step ran',
    );
  },
);
