/**
 * A license site in a temp dir for tests: server keys, a vendor key pair, a signed license
 * built from feature lines, client and admin credentials, and a state dir; plus helpers to
 * start a daemon in-process or as a child process and to connect a client.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Client, type ConnectOptions, connect } from '../../lib/client/client.ts';
import { generateKey, saveDaemonKeys } from '../../lib/crypto/files.ts';
import { randomBytes } from '../../lib/crypto/hmac.ts';
import { Keyring } from '../../lib/crypto/keyring.ts';
import { generateVendorKeyPair, signLicense } from '../../lib/license/file.ts';
import { Daemon, type DaemonOptions } from '../../lib/server/daemon.ts';

export interface Site {
  dir: string;
  licenseFile: string;
  keysFile: string;
  stateDir: string;
  credKey: Uint8Array;
  adminKey: Uint8Array;
  vendorPrivate: Uint8Array;
  /** Rewrites the license file from feature lines (signed). */
  writeLicense(lines: string[]): void;
}

/** Feature lines as in a license file, without SIGN; they are signed here. */
export function makeSite(
  lines: string[],
  dir = mkdtempSync(join(tmpdir(), 'floatlm-site-')),
): Site {
  const vendor = generateVendorKeyPair();
  const credKey = generateKey();
  const adminKey = generateKey();
  const keysFile = join(dir, 'keys.json');
  const keyring = new Keyring({
    period: 86_400,
    grace: 172_800,
    secrets: [{ id: 1, secret: randomBytes(32), activates: Date.now() - 3_600_000 }],
  });
  saveDaemonKeys(keysFile, {
    keyring,
    credentials: new Map([['demo', credKey]]),
    admin: new Map([['admin', adminKey]]),
    vendors: new Map([['demo', vendor.publicKey]]),
  });
  const licenseFile = join(dir, 'site.lic');
  const site: Site = {
    dir,
    licenseFile,
    keysFile,
    stateDir: join(dir, 'state'),
    credKey,
    adminKey,
    vendorPrivate: vendor.privateKey,
    writeLicense(ls: string[]) {
      writeFileSync(
        licenseFile,
        signLicense(
          ['SERVER localhost ANY 27400', 'VENDOR demo', ...ls, ''].join('\n'),
          vendor.privateKey,
        ),
      );
    },
  };
  site.writeLicense(lines);
  return site;
}

/**
 * The daemons this test file started, in-process and as children. An internal error is a
 * bug whatever the test asserted (it once hid behind every client close()): the file fails
 * if any logged one.
 */
const started: Daemon[] = [];
/** The output so far of each daemon child this file spawned (spawnDaemon). */
const spawned: (() => string)[] = [];
process.on('exit', () => {
  let n = started.reduce((sum, d) => sum + d.counters.internal, 0);
  for (const out of spawned) n += out().match(/internal error handling a datagram/g)?.length ?? 0;
  if (n === 0) return;
  process.stderr.write(
    `${n} internal error(s) logged by this file's daemons (see "internal error" above): a bug\n`,
  );
  process.exitCode = 1;
});

/** Starts a daemon in-process on 127.0.0.1:0 with fast timers (checked at exit, above). */
export async function startDaemon(site: Site, o: Partial<DaemonOptions> = {}): Promise<Daemon> {
  const d = await Daemon.start({
    licenseFile: site.licenseFile,
    keysFile: site.keysFile,
    stateDir: site.stateDir,
    host: '127.0.0.1',
    port: 0,
    reportLog: join(site.dir, 'report.jsonl'),
    rateLimit: { rate: 0, burst: 1 },
    ...o,
  });
  started.push(d);
  return d;
}

/** A client of the site; fast retransmissions so failing tests fail quickly. */
export function client(
  site: Site,
  port: number | number[],
  o: Partial<ConnectOptions> = {},
): Promise<Client> {
  const ports = Array.isArray(port) ? port : [port];
  return connect({
    servers: ports.map((p) => `127.0.0.1:${p}`),
    credential: { id: 'demo', key: site.credKey },
    admin: { id: 'admin', key: site.adminKey },
    user: 'alice',
    host: 'ws1',
    retry: { initialMs: 100, maxIntervalMs: 400, maxTotalMs: 3000 },
    pollMs: 50,
    ...o,
  });
}

/** Lines of the report log, parsed. */
export function reportEvents(site: Site): Record<string, unknown>[] {
  try {
    return readFileSync(join(site.dir, 'report.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  } catch {
    return [];
  }
}

export const ROOT = new URL('../../', import.meta.url).pathname;
/** tsx's loader by absolute URL: children run from temp dirs, outside node_modules' reach. */
export const TSX = new URL('node_modules/tsx/dist/loader.mjs', new URL('../../', import.meta.url))
  .href;

/** A daemon child process (`node --import tsx bin/floatlmd.ts`); resolves once it listens. */
export async function spawnDaemon(
  site: Site,
  args: string[] = [],
): Promise<{ child: ChildProcess; port: number; stderr: () => string }> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      TSX,
      join(ROOT, 'bin/floatlmd.ts'),
      '--license',
      site.licenseFile,
      '--keys',
      site.keysFile,
      '--state',
      site.stateDir,
      '--port',
      '0',
      '--rate-limit',
      '0',
      ...args,
    ],
    { cwd: site.dir, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let err = '';
  child.stderr!.on('data', (b: Buffer) => {
    err += b.toString();
  });
  child.stdout!.on('data', (b: Buffer) => {
    err += b.toString();
  });
  spawned.push(() => err);
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`daemon did not start: ${err}`)), 20_000);
    const onData = () => {
      const m = /listening on [^\s]+:(\d+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        child.stderr!.off('data', onData);
        child.stdout!.off('data', onData);
        resolve(Number(m[1]));
      }
    };
    child.stderr!.on('data', onData);
    child.stdout!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`daemon exited ${code}: ${err}`));
    });
  });
  return { child, port, stderr: () => err };
}

/**
 * A UDP relay between a client and a daemon on 127.0.0.1: records every datagram the client
 * sends and can drop the daemon's replies (a lossy path, without waiting on real loss).
 */
export interface Relay {
  /** The port clients send to. */
  port: number;
  /** Datagrams from the client, in arrival order. */
  fromClient: Buffer[];
  /** While true, nothing from the daemon reaches the client. */
  dropReplies: boolean;
  /** Datagrams from the daemon dropped so far. */
  dropped: number;
  /** Called with each datagram from the client, before it is forwarded. */
  onRequest: ((bytes: Buffer) => void) | undefined;
  close(): Promise<void>;
}

/** Starts a relay to the daemon on 127.0.0.1:`target`. */
export async function udpRelay(target: number): Promise<Relay> {
  const front = dgram.createSocket('udp4');
  const back = dgram.createSocket('udp4');
  let client: { port: number; address: string } | undefined;
  await Promise.all([
    new Promise<void>((r) => front.bind(0, '127.0.0.1', () => r())),
    new Promise<void>((r) => back.bind(0, '127.0.0.1', () => r())),
  ]);
  const relay: Relay = {
    port: front.address().port,
    fromClient: [],
    dropReplies: false,
    dropped: 0,
    onRequest: undefined,
    close: async () => {
      await Promise.all([
        new Promise<void>((r) => front.close(() => r())),
        new Promise<void>((r) => back.close(() => r())),
      ]);
    },
  };
  front.on('message', (m, rinfo) => {
    client = { port: rinfo.port, address: rinfo.address };
    relay.fromClient.push(m);
    relay.onRequest?.(m);
    back.send(m, target, '127.0.0.1');
  });
  back.on('message', (m) => {
    if (relay.dropReplies) relay.dropped++;
    else if (client) front.send(m, client.port, client.address);
  });
  return relay;
}
