/**
 * The C example client (clients/c/example.c, built with ASan and UBSan) as a child process
 * that tests drive one command line at a time, reading its result lines.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { constants } from 'node:os';
import { join } from 'node:path';
import { toHex } from '../../lib/wire/index.ts';
import type { Site } from '../helpers/site.ts';
import { buildC } from './build.ts';

/** Short retransmission budget (initial, cap, total, mode-2 upgrade; ms) so failover is quick. */
export const RETRY = '100,400,3000,1000';

let example: string | undefined;

/** How to start one example client. */
export interface CClientOptions {
  /** Ports of the servers on 127.0.0.1, in failover order. */
  servers: number[];
  /** Options before the positional arguments (`--vendor`, `--user`, `--host`). */
  args?: string[];
  /** Extra environment (over the test's own, with FLOATLM_KEY and FLOATLM_RETRY set). */
  env?: Record<string, string | undefined>;
  /** Credential id (default `demo`). */
  credId?: string;
}

export class CClient {
  readonly child: ChildProcessWithoutNullStreams;
  /** Resolves with the exit code, or 128 + n for a death by signal n (sanitizer aborts show). */
  readonly exited: Promise<number>;
  #buf = '';
  #lines: string[] = [];
  #waiter: (() => void) | undefined;
  #exited = false;
  #stderr = '';

  /** @throws {Error} when the C client does not build */
  constructor(site: Site, o: CClientOptions) {
    example ??= join(buildC(['example-san']), 'example-san');
    this.child = spawn(
      example,
      [...(o.args ?? []), o.credId ?? 'demo', o.servers.map((p) => `127.0.0.1:${p}`).join(',')],
      { env: { ...process.env, FLOATLM_KEY: toHex(site.credKey), FLOATLM_RETRY: RETRY, ...o.env } },
    );
    this.child.stdout.on('data', (b: Buffer) => {
      this.#buf += b.toString();
      const parts = this.#buf.split('\n');
      this.#buf = parts.pop()!;
      this.#lines.push(...parts);
      this.#waiter?.();
    });
    this.child.stderr.on('data', (b: Buffer) => {
      this.#stderr += b.toString();
    });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.#exited = true;
        this.#waiter?.();
        resolve(code ?? 128 + (signal ? constants.signals[signal] : 0));
      });
    });
  }

  /** What the client wrote to stderr so far (usage errors, sanitizer reports). */
  get stderr(): string {
    return this.#stderr;
  }

  /** The next line the client prints (an error after 40 s, so a failure cannot hang). */
  async line(): Promise<string> {
    const deadline = Date.now() + 40_000;
    while (this.#lines.length === 0) {
      if (this.#exited) throw new Error(`the C client exited; stderr: ${this.#stderr}`);
      if (Date.now() > deadline) throw new Error('no answer from the C client in 40 s');
      await new Promise<void>((r) => {
        this.#waiter = r;
        setTimeout(r, 1000).unref();
      });
      this.#waiter = undefined;
    }
    return this.#lines.shift()!;
  }

  /** The lines printed but not yet read, once the client has exited. */
  async rest(): Promise<string[]> {
    await this.exited;
    return this.#lines.splice(0);
  }

  /** Sends a command without waiting for its result (read it later with `line`). */
  send(cmd: string): void {
    this.child.stdin.write(`${cmd}\n`);
  }

  /** Sends one command and returns its result line. */
  async run(cmd: string): Promise<string> {
    this.send(cmd);
    return this.line();
  }

  /** `quit`; returns its result line once the client has exited. */
  async quit(): Promise<string> {
    const l = await this.run('quit');
    await this.exited;
    return l;
  }
}

/** The value of `name=` in a result line ('' when absent). */
export const field = (line: string, name: string): string =>
  new RegExp(`\\b${name}=(\\S+)`).exec(line)?.[1] ?? '';
