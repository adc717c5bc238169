/**
 * Restart recovery: 10 000 clients hold a seat each on a floatlmd child process; the daemon
 * is stopped and started again on the same state, and every client re-presents its real
 * lease ticket in a real RECLAIM datagram (mode 3: the restarted daemon restored the
 * sessions). Measures from the restart (spawn) to the last RECLAIM_REPLY that verifies.
 * The clients share a few sockets; each signs its own datagrams with its own session key.
 */
import { type AnyDatagram, MsgType } from '../lib/wire/index.ts';
import { type BenchClient, call, openSessions } from './clients.ts';
import { makeSite, pool, Requester, spawnScript, waitExit } from './site.ts';

export interface ReclaimResult {
  clients: number;
  /** Spawn of the restarted daemon until it listens (includes restoring its state). */
  restart_to_listen_ms: number;
  /** First RECLAIM sent until the last verified reply. */
  reclaim_phase_ms: number;
  /** Restart until every client has reclaimed its seat. */
  total_ms: number;
  reclaimed_ok: number;
  /** Seats in use after recovery, as the daemon's STATUS-independent check: HEARTBEAT_ACK leases. */
  sample_leases_after: number;
}

const SOCKETS = 8;
const IN_FLIGHT = 256;

/**
 * @throws {Error} when the daemon fails to start or a client gets no verified reply
 */
export async function reclaim(n = 10_000): Promise<ReclaimResult> {
  const site = makeSite([`FEATURE bench demo 1.0 permanent ${n * 2} DUP_GROUP=NONE`]);
  const opts = JSON.stringify({
    licenseFile: site.licenseFile,
    keysFile: site.keysFile,
    stateDir: site.stateDir,
    maxSessionsPerHost: 10 * n,
    graceMs: 120_000,
  });
  let d = await spawnScript('server.js', ['daemon', opts]);
  let port = Number(/port (\d+)/.exec(d.ready)?.[1]);
  const socks = await Promise.all(Array.from({ length: SOCKETS }, () => Requester.open(port)));
  const sock = (i: number) => socks[i % SOCKETS] as Requester;
  let clients: BenchClient[] = [];
  const tickets: Uint8Array[] = new Array(n);
  try {
    clients = await openSessions(sock(0), port, site.credKey, n, IN_FLIGHT);
    await pool(clients, IN_FLIGHT, async (c, i) => {
      const r = await call(sock(i), c, MsgType.CHECKOUT, {
        feature: 'bench',
        version: '',
        count: 1,
        options: 0,
      });
      if (r.type !== MsgType.CHECKOUT_REPLY || r.body.status !== 0)
        throw new Error(`checkout ${i} was not granted`);
      tickets[i] = r.body.ticket;
    });
  } finally {
    d.child.kill('SIGTERM');
    await waitExit(d.child);
  }

  const t0 = performance.now();
  d = await spawnScript('server.js', ['daemon', opts]);
  const tListen = performance.now();
  port = Number(/port (\d+)/.exec(d.ready)?.[1]);
  for (const s of socks) s.port = port;
  let ok = 0;
  let sample = 0;
  try {
    await pool(clients, IN_FLIGHT, async (c, i) => {
      const r: AnyDatagram = await call(sock(i), c, MsgType.RECLAIM, {
        tickets: [{ ticket: tickets[i] as Uint8Array }],
      });
      if (r.type === MsgType.RECLAIM_REPLY && r.body.results[0]?.code === 0) ok++;
    });
    const tDone = performance.now();
    const hb = await call(sock(0), clients[0] as BenchClient, MsgType.HEARTBEAT, {});
    if (hb.type === MsgType.HEARTBEAT_ACK) sample = hb.body.leases;
    return {
      clients: n,
      restart_to_listen_ms: Math.round(tListen - t0),
      reclaim_phase_ms: Math.round(tDone - tListen),
      total_ms: Math.round(tDone - t0),
      reclaimed_ok: ok,
      sample_leases_after: sample,
    };
  } finally {
    for (const s of socks) s.close();
    d.child.kill('SIGTERM');
    await waitExit(d.child);
  }
}
