/**
 * A benchmark site in a temp dir: server keyring, a vendor key pair, a signed license, a
 * credential key, and helpers the benchmarks share (child processes, RSS, CPU time of a
 * process, UDP request/response with retransmission). Self-contained: bench/ does not
 * import from test/.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKey, saveDaemonKeys } from '../lib/crypto/files.ts';
import { randomBytes } from '../lib/crypto/hmac.ts';
import { Keyring } from '../lib/crypto/keyring.ts';
import { generateVendorKeyPair, signLicense } from '../lib/license/file.ts';

export interface Site {
  dir: string;
  licenseFile: string;
  keysFile: string;
  stateDir: string;
  credKey: Uint8Array;
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
  const keysFile = join(dir, 'keys.json');
  const keyring = new Keyring({
    period: 86_400,
    grace: 172_800,
    secrets: [{ id: 1, secret: randomBytes(32), activates: Date.now() - 3_600_000 }],
  });
  saveDaemonKeys(keysFile, {
    keyring,
    credentials: new Map([['demo', credKey]]),
    admin: new Map([['admin', generateKey()]]),
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
  return { dir, licenseFile, keysFile, stateDir: join(dir, 'state'), credKey };
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
export async function spawnScript(
  script: string,
  args: string[],
  o: { core?: number; nodeArgs?: string[] } = {},
): Promise<{ child: ChildProcess; ready: string; lines: () => string[] }> {
  const argv = [...(o.nodeArgs ?? []), join(BENCH_DIR, script), ...args];
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

/** The pid of the node process under `taskset` (taskset execs, so it is the same pid). */
export function pidOf(child: ChildProcess): number {
  return child.pid ?? -1;
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

  static async open(port: number): Promise<Requester> {
    const r = new Requester(port);
    await new Promise<void>((resolve) => r.socket.bind(0, '127.0.0.1', resolve));
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
