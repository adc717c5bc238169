/**
 * A benchmark site in a temp dir: server keyring, a vendor key pair, a signed license,
 * credential and admin keys, and helpers the benchmarks share (child processes, the real
 * floatlmd CLI as a child, RSS and CPU time of a process, UDP request/response with
 * retransmission). Self-contained: bench/ does not import from test/.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { generateKey, saveDaemonKeys } from '../lib/crypto/files.ts';
import { randomBytes } from '../lib/crypto/hmac.ts';
import { Keyring } from '../lib/crypto/keyring.ts';
import { generateVendorKeyPair, signLicense } from '../lib/license/file.ts';

export interface Site {
  dir: string;
  licenseFile: string;
  keysFile: string;
  stateDir: string;
  /** Credential `demo` (the README demo's vendor-wide one). */
  credKey: Uint8Array;
  /** Per-user credentials `demo/user1` … `demo/user16`: other clients, for flood figures. */
  userCreds: { id: string; user: string; key: Uint8Array }[];
  /** Admin key `admin`. */
  adminKey: Uint8Array;
}

/**
 * Creates keys and a signed license with `lines` (FEATURE lines without SIGN) in a new
 * temp dir (or `dir`).
 */
export function makeSite(
  lines: string[],
  dir = mkdtempSync(join(tmpdir(), 'floatlm-bench-')),
): Site {
  const vendor = generateVendorKeyPair();
  const credKey = generateKey();
  const userCreds = Array.from({ length: 16 }, (_, i) => ({
    id: `demo/user${i + 1}`,
    user: `user${i + 1}`,
    key: generateKey(),
  }));
  const adminKey = generateKey();
  const keysFile = join(dir, 'keys.json');
  const keyring = new Keyring({
    period: 86_400,
    grace: 172_800,
    secrets: [{ id: 1, secret: randomBytes(32), activates: Date.now() - 3_600_000 }],
  });
  saveDaemonKeys(keysFile, {
    keyring,
    credentials: new Map([['demo', credKey], ...userCreds.map((c) => [c.id, c.key] as const)]),
    admin: new Map([['admin', adminKey]]),
    vendors: new Map([['demo', vendor.publicKey]]),
  });
  const licenseFile = join(dir, 'site.lic');
  writeFileSync(
    licenseFile,
    signLicense(
      ['SERVER localhost ANY 27400', 'VENDOR demo', ...lines, ''].join('\n'),
      vendor.privateKey,
    ),
  );
  return {
    dir,
    licenseFile,
    keysFile,
    stateDir: join(dir, 'state'),
    credKey,
    userCreds,
    adminKey,
  };
}

/** dist/bench/, where the compiled benchmark scripts live. */
export const BENCH_DIR = new URL('.', import.meta.url).pathname;

/** True when `taskset` exists and there are at least two CPUs to pin to. */
export function canPin(cpus: number): boolean {
  return cpus >= 2 && spawnSync('taskset', ['-c', '0', 'true']).status === 0;
}

/**
 * Spawns `node dist/bench/<script> args` (optionally pinned to `core`), resolving with the
 * child and the first stdout line (the script prints one line once it is ready).
 */
export function spawnScript(
  script: string,
  args: string[],
  o: { core?: number; nodeArgs?: string[] } = {},
): Promise<{ child: ChildProcess; ready: string; lines: () => string[] }> {
  return spawnNode(join(BENCH_DIR, script), args, o);
}

/**
 * The real `floatlmd` command (dist/bin/floatlmd.js) on 127.0.0.1 port 0 over `site`, as a
 * child process (pinned to `core`); `args` are more floatlmd options. Resolves once it
 * listens, with its port.
 * @throws {Error} when it exits before listening
 */
export async function spawnFloatlmd(
  site: Site,
  args: string[],
  o: { core?: number } = {},
): Promise<{ child: ChildProcess; port: number }> {
  const bin = join(BENCH_DIR, '..', 'bin', 'floatlmd.js');
  const { child, ready } = await spawnNode(
    bin,
    [
      '--license',
      site.licenseFile,
      '--keys',
      site.keysFile,
      '--state',
      site.stateDir,
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--log-level',
      'warn',
      ...args,
    ],
    o,
  );
  const port = Number(/listening on [^\s]*:(\d+)/.exec(ready)?.[1]);
  if (!(port > 0)) throw new Error(`floatlmd said "${ready}", not where it listens`);
  return { child, port };
}

async function spawnNode(
  file: string,
  args: string[],
  o: { core?: number; nodeArgs?: string[] },
): Promise<{ child: ChildProcess; ready: string; lines: () => string[] }> {
  const script = basename(file);
  const argv = [...(o.nodeArgs ?? []), file, ...args];
  const child =
    o.core === undefined
      ? spawn(process.execPath, argv, { stdio: ['pipe', 'pipe', 'inherit'] })
      : spawn('taskset', ['-c', String(o.core), process.execPath, ...argv], {
          stdio: ['pipe', 'pipe', 'inherit'],
        });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => {
    out += b.toString();
  });
  const ready = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} did not start`)), 600_000);
    timer.unref();
    const check = () => {
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        child.stdout!.off('data', check);
        resolve(out.slice(0, nl));
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited ${code} before it was ready`));
    });
  });
  return { child, ready, lines: () => out.split('\n').filter(Boolean) };
}

/** Waits for a child to exit, killing it after `ms`. */
export function waitExit(child: ChildProcess, ms = 10_000): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), ms);
    child.once('exit', (code) => {
      clearTimeout(t);
      resolve(code);
    });
  });
}

/** CPU seconds (user + system) a process has used, from /proc (Linux); NaN elsewhere. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
  } catch {
    return Number.NaN;
  }
}

/**
 * CPU seconds (every thread) of a process, with nanosecond resolution: the sum of its
 * threads' run time from /proc/PID/task/TID/schedstat (Linux). Threads that have exited are
 * missing, so compare only across intervals in which the process keeps its threads (a
 * daemon under load does). Falls back to `cpuSeconds` (10 ms ticks).
 */
export function cpuSecondsFine(pid: number): number {
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    }
    return ns / 1e9;
  } catch {
    return cpuSeconds(pid);
  }
}

/** Resident set size of a process in bytes, from /proc (Linux); NaN elsewhere. */
export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/**
 * Datagrams the kernel dropped for the UDP socket bound to 127.0.0.1:`port` (its receive
 * buffer was full), from /proc/net/udp; NaN when not found.
 */
export function udpDrops(port: number): number {
  try {
    const want = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
    for (const line of readFileSync('/proc/net/udp', 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[1] === want) return Number(f[12]);
    }
  } catch {
    // not Linux
  }
  return Number.NaN;
}

/** A UDP socket on 127.0.0.1 that matches replies to requests by request id. */
export class Requester {
  readonly socket = dgram.createSocket('udp4');
  readonly #waiting = new Map<number, (b: Uint8Array) => void>();
  #port: number;

  private constructor(port: number) {
    this.#port = port;
    this.socket.on('message', (msg) => {
      if (msg.length < 12) return;
      const rid = msg.readUInt32BE(8);
      const w = this.#waiting.get(rid);
      if (w) {
        this.#waiting.delete(rid);
        w(new Uint8Array(msg.buffer, msg.byteOffset, msg.length));
      }
    });
  }

  /** A socket bound to `host` (a loopback address), talking to 127.0.0.1:`port`. */
  static async open(port: number, host = '127.0.0.1'): Promise<Requester> {
    const r = new Requester(port);
    await new Promise<void>((resolve) => r.socket.bind(0, host, resolve));
    r.socket.setRecvBufferSize(4 << 20);
    r.socket.setSendBufferSize(4 << 20);
    return r;
  }

  set port(p: number) {
    this.#port = p;
  }

  /**
   * Sends `bytes` (request id `rid`) and resolves with the reply; retransmits the same bytes
   * every `retryMs`, rejecting after `tries`.
   */
  request(bytes: Uint8Array, rid: number, retryMs = 250, tries = 20): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      let n = 0;
      let timer: NodeJS.Timeout | undefined;
      const send = () => {
        if (n++ >= tries) {
          this.#waiting.delete(rid);
          reject(new Error(`no reply to request ${rid}`));
          return;
        }
        this.socket.send(bytes, this.#port, '127.0.0.1');
        timer = setTimeout(send, retryMs);
      };
      this.#waiting.set(rid, (b) => {
        clearTimeout(timer);
        resolve(b);
      });
      send();
    });
  }

  close(): void {
    this.socket.close();
  }
}

/** Runs `fn` over `items` with at most `width` promises in flight. */
export async function pool<T>(items: T[], width: number, fn: (x: T, i: number) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
}
