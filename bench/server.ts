/**
 * Child process for the throughput and recovery benchmarks: either a bare `node:dgram` echo
 * server or a floatlmd `Daemon`, on 127.0.0.1 port 0. Prints `port N` once listening; on
 * SIGTERM (or stdin closing) it stops, prints one JSON line of counters, and exits.
 *
 *   node dist/bench/server.js echo
 *   node dist/bench/server.js sink   (reads and drops every datagram; echoes 12-byte probes)
 *   node dist/bench/server.js echo-batch | sink-batch   (the same over the daemon's batched
 *                                                         socket, lib/server/udp.ts)
 *   node dist/bench/server.js daemon '<DaemonOptions as JSON>'
 */
import dgram from 'node:dgram';
import { Daemon, type DaemonOptions } from '../lib/server/daemon.ts';
import { bindUdp } from '../lib/server/udp.ts';

async function main(): Promise<void> {
  const kind = process.argv[2];
  let stop: () => Promise<object>;
  if (kind === 'echo' || kind === 'sink') {
    // sink: the floor under the bad-tag figures, what receiving a datagram costs a Node
    // process that does nothing with it; a 12-byte datagram is a probe, sent back to sync on.
    const echo = kind === 'echo';
    const s = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
    s.setRecvBufferSize(4 << 20);
    let n = 0;
    s.on('message', (msg, rinfo) => {
      n++;
      if (echo || msg.length === 12) s.send(msg, rinfo.port, rinfo.address);
    });
    process.stdout.write(`port ${s.address().port}\n`);
    stop = async () => {
      s.close();
      return { received: n };
    };
  } else if (kind === 'echo-batch' || kind === 'sink-batch') {
    const echo = kind === 'echo-batch';
    let n = 0;
    const s = await bindUdp(
      'batch',
      '127.0.0.1',
      0,
      4 << 20,
      (bytes, address, port) => {
        n++;
        if (echo || bytes.length === 12) s.send(bytes, port, address);
        // Nothing is judged forged: the floor is the socket reading every datagram.
        return false;
      },
      () => {},
    );
    process.stdout.write(`port ${s.port()}\n`);
    stop = async () => {
      s.close();
      return { received: n };
    };
  } else if (kind === 'daemon') {
    const opts = JSON.parse(process.argv[3] ?? '{}') as DaemonOptions;
    const started = performance.now();
    const d = await Daemon.start({
      host: '127.0.0.1',
      port: 0,
      reportLog: false,
      rateLimit: { rate: 0, burst: 1 },
      ...opts,
    });
    const startMs = performance.now() - started;
    process.stdout.write(
      `port ${d.address().port} start_ms ${startMs.toFixed(1)} sessions ${d.sessionCount} udp ${d.udp}\n`,
    );
    stop = async () => {
      const counters = { ...d.counters };
      await d.close();
      return counters;
    };
  } else {
    throw new Error('usage: server.js echo | daemon OPTIONS_JSON');
  }
  let stopping = false;
  const finish = async () => {
    if (stopping) return;
    stopping = true;
    const stats = await stop();
    process.stdout.write(`${JSON.stringify(stats)}\n`, () => process.exit(0));
  };
  process.on('SIGTERM', () => void finish());
  process.stdin.on('end', () => void finish());
  process.stdin.resume();
}

main().catch((e) => {
  process.stderr.write(`bench server: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
