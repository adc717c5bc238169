/**
 * The `floatlm` command: every subcommand registers on one commander program and calls an
 * action; errors become one readable line and a documented exit code (README, "Exit
 * codes"). `buildProgram(io)` is what tests drive, with `exitOverride()` and captured IO.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import {
  type Client,
  connect,
  type Lease,
  type PongInfo,
  parseServer,
  type StatusResult,
} from '../client/client.ts';
import { DeniedError, FloatlmError, TimeoutError } from '../client/errors.ts';
import { KeyFileError } from '../crypto/errors.ts';
import {
  type ClientCredential,
  generateKey,
  loadClientCredential,
  loadDaemonKeys,
  saveClientCredential,
  saveDaemonKeys,
  writeFileAtomic0600,
} from '../crypto/files.ts';
import { randomBytes } from '../crypto/hmac.ts';
import { Keyring } from '../crypto/keyring.ts';
import {
  formatExpiry,
  generateVendorKeyPair,
  signLicenseDetailed,
  verifyLicense,
} from '../license/file.ts';
import {
  AdminOp,
  DEFAULT_PORT,
  ErrorCode,
  fromHex,
  ReservationType,
  SITE_ONLY_FEATURE,
  toHex,
} from '../wire/index.ts';
import { decodeAction, readDatagramArg } from './decode.ts';
import { DEMO_DIR, findFile } from './demo.ts';
import { CliError, type CliIO, ExitCode, intOption } from './io.ts';
import { registerReport } from './report.ts';

const KEYS_HELP = `daemon keys file (default: the first of ./keys.json, ./${DEMO_DIR}/keys.json)`;

interface Globals {
  server?: string[];
  credential?: string;
  admin?: string;
  verbose?: boolean;
  timeout?: number;
}

function loadCred(io: CliIO, g: Globals, kind: 'credential' | 'admin'): ClientCredential {
  const file = findFile(io, kind, kind === 'credential' ? g.credential : g.admin);
  try {
    return loadClientCredential(file);
  } catch (e) {
    if (e instanceof KeyFileError) throw new CliError(`floatlm: ${e.message}`, ExitCode.BAD_FILE);
    throw e;
  }
}

function servers(g: Globals, cred: ClientCredential, positional?: string): string[] {
  if (positional) return [positional];
  if (g.server && g.server.length > 0) return g.server;
  if (cred.servers.length > 0) return cred.servers;
  return [`127.0.0.1:${DEFAULT_PORT}`];
}

function retryFor(g: Globals) {
  const total = (g.timeout ?? 10) * 1000;
  return {
    maxTotalMs: total,
    initialMs: Math.min(500, total),
    maxIntervalMs: Math.max(Math.min(4000, total), Math.min(500, total)),
  };
}

async function open(
  io: CliIO,
  g: Globals,
  opts: { admin?: boolean; hello?: boolean; server?: string } = {},
): Promise<Client> {
  const admin = opts.admin ? loadCred(io, g, 'admin') : undefined;
  // An admin command sends only ADMIN requests (mode 4, the admin key): it needs no client
  // credential, and the library's required one is never used without a HELLO.
  const cred = admin ?? loadCred(io, g, 'credential');
  try {
    return await connect({
      servers: servers(g, cred, opts.server),
      credential: { id: cred.id, key: cred.key },
      ...(admin ? { admin: { id: admin.id, key: admin.key } } : {}),
      noHello: opts.hello === false || admin !== undefined,
      retry: retryFor(g),
      program: 'floatlm',
    });
  } catch (e) {
    throw toCliError(e);
  }
}

/**
 * What silence means: floatlmd never answers a datagram it cannot verify, so a wrong key
 * looks like a dead server from here. The daemon logs which it was (a line per source a
 * minute).
 */
const NO_ANSWER_HINT =
  'either the server is down or unreachable, or it did not recognise our credential (an ' +
  "unknown credential id, or the wrong key for it): the daemon's log says which";

/**
 * Gives the lease back and ends the session within about a second (Client.close), whether
 * or not the server answers; true when the server confirmed the release.
 */
async function releaseWithin(client: Client, lease: Lease): Promise<boolean> {
  await client.close();
  return lease.state === 'released';
}

const UNCONFIRMED = (feature: string) =>
  `floatlm: ${feature}: the server did not confirm the release within a second; it frees the seat once this client stops answering its pings\n`;

/** Maps library errors to one line and an exit code. */
export function toCliError(e: unknown): CliError {
  if (e instanceof CliError) return e;
  // What --verbose adds: the error's class, code (and server reason) and where it came from.
  const detail = e instanceof Error ? verboseDetail(e) : undefined;
  if (e instanceof TimeoutError)
    return new CliError(`floatlm: ${e.message}; ${NO_ANSWER_HINT}`, ExitCode.NO_ANSWER, detail);
  if (e instanceof DeniedError) {
    const auth = e.reason >= ErrorCode.TOKEN_BAD_SIGNATURE && e.reason <= ErrorCode.WRONG_MODE;
    return new CliError(
      `floatlm: ${e.message}`,
      auth || e.reason === ErrorCode.NOT_PERMITTED ? ExitCode.AUTH : ExitCode.DENIED,
      detail,
    );
  }
  if (e instanceof FloatlmError)
    return new CliError(`floatlm: ${e.message}`, ExitCode.ERROR, detail);
  if (e instanceof KeyFileError)
    return new CliError(`floatlm: ${e.message}`, ExitCode.BAD_FILE, detail);
  if (e instanceof RangeError || e instanceof TypeError)
    return new CliError(`floatlm: ${e.message}`, ExitCode.USAGE, detail);
  return new CliError(`floatlm: ${(e as Error)?.message ?? String(e)}`, ExitCode.ERROR, detail);
}

function verboseDetail(e: Error): string {
  const code = (e as { code?: unknown }).code;
  const reason = e instanceof DeniedError ? ` reason=${e.reason}` : '';
  const head = `${e.name}${typeof code === 'string' ? ` code=${code}` : ''}${reason}`;
  const where = (e.stack ?? '').split('\n').slice(1).join('\n');
  return where ? `${head}\n${where}` : head;
}

function positiveNumber(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0)
      throw new InvalidArgumentError(`${name} must be a positive number`);
    return n;
  };
}

/** A clock offset as "+3" or "-12" (never "-0"). */
function fmtOffset(ms: number): string {
  const r = Math.round(ms) || 0;
  return r >= 0 ? `+${r}` : `${r}`;
}

function fmtTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}

/**
 * A feature's expiry as the license writes it ("31-dec-2027", the last day it serves);
 * the wire carries the instant it stops serving, 00:00 UTC the day after.
 */
export function fmtExpiry(expires: number): string {
  return expires > 0 ? formatExpiry(expires - 1) : 'permanent';
}

/** A duration as people read one: "45s", "12m05s", "3h02m", "2d04h". */
export function fmtDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const two = (n: number) => String(n).padStart(2, '0');
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${two(Math.floor(s / 60) % 60)}m`;
  return `${Math.floor(s / 86_400)}d${two(Math.floor(s / 3600) % 24)}h`;
}

/** A holder's program as `program/version` ('-' when its client sent none). */
function fmtProgram(h: { program: string; version: string }): string {
  if (h.program === '') return '-';
  return h.version === '' ? h.program : `${h.program}/${h.version}`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/**
 * `interrupted` resolves with the signal's name when SIGINT/SIGTERM arrives; `dispose()`
 * removes the handlers (else they outlive the command and swallow a later Ctrl-C).
 */
function untilInterrupted(): { interrupted: Promise<string>; dispose: () => void } {
  let int = () => {};
  let term = () => {};
  const dispose = () => {
    process.off('SIGINT', int);
    process.off('SIGTERM', term);
  };
  const interrupted = new Promise<string>((done) => {
    const on = (sig: string) => () => {
      dispose();
      done(sig);
    };
    int = on('SIGINT');
    term = on('SIGTERM');
    process.on('SIGINT', int);
    process.on('SIGTERM', term);
  });
  return { interrupted, dispose };
}

/** Builds the `floatlm` program over `io`. Actions set `program.exitCode`-style results via the returned holder. */
export function buildProgram(io: CliIO): { program: Command; result: { code: number } } {
  const result = { code: 0 };
  const program = new Command('floatlm');
  program
    .description('floatlm: talk to a floatlmd license server, and manage keys and license files')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) })
    .option(
      '-s, --server <host:port>',
      'server to use (repeat for failover order)',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option(
      '--credential <file>',
      'client credential file (default: $FLOATLM_CREDENTIAL, else the first of ./credential.json, ./.floatlm-demo/credential.json, ~/.config/floatlm/credential.json)',
    )
    .option(
      '--admin <file>',
      'admin credential file for remove/reread/down (default: $FLOATLM_ADMIN, else the first of ./admin.json, ./.floatlm-demo/admin.json, ~/.config/floatlm/admin.json)',
    )
    .option(
      '--timeout <seconds>',
      'give up after this long without an answer',
      positiveNumber('--timeout'),
      10,
    )
    .option('-v, --verbose', 'more detail, including on errors')
    .showHelpAfterError();
  const g = (): Globals => program.opts() as Globals;

  program
    .command('ping')
    .description('debug ping of a server: RTT, server version, clock offset (like ping(8))')
    .argument('[server]', "host[:port] (default: the credential file's first server)")
    .option('-c, --count <n>', 'stop after n replies', positiveNumber('--count'), 1)
    .option('-i, --interval <seconds>', 'wait between pings', positiveNumber('--interval'), 1)
    .option('--json', 'machine-readable output: {"schema":"floatlm.ping/1",...} at the end')
    .addHelpText(
      'after',
      '\nExamples:\n  floatlm ping\n  floatlm ping licsrv:27400 -c 5 -i 0.2\n  floatlm ping --json',
    )
    .action(
      async (
        server: string | undefined,
        o: { count: number; interval: number; json?: boolean },
      ) => {
        const client = await open(io, g(), { hello: false, ...(server ? { server } : {}) });
        const replies: ({ seq: number } & PongInfo)[] = [];
        let site: StatusResult['servers'] | undefined;
        try {
          for (let i = 0; i < o.count; i++) {
            if (i > 0) await new Promise((r) => setTimeout(r, o.interval * 1000));
            try {
              const p = await client.ping();
              replies.push({ seq: i + 1, ...p });
              if (!o.json)
                io.out(
                  `reply from ${p.server}: seq=${i + 1} time=${p.rttMs.toFixed(1)} ms server=floatlmd ${p.serverVersion} offset=${fmtOffset(p.offsetMs)} ms state=${p.state}${p.state === 'grace' ? ` (${Math.ceil(p.graceLeftMs / 1000)} s left)` : ''}\n`,
                );
            } catch (e) {
              if (!(e instanceof TimeoutError)) throw toCliError(e);
              if (!o.json) io.out(`no reply from ${client.server}: seq=${i + 1}\n`);
            }
          }
          // A site's server also says how it stands with etcd (a single server: nothing). A
          // STATUS answer may be larger than a request without a session: ask in one.
          if (replies.length > 0) {
            const viewer = await open(io, g(), { server: client.server }).catch(() => undefined);
            site = (await viewer?.status(SITE_ONLY_FEATURE).catch(() => undefined))?.servers;
            await viewer?.close();
            if (site?.length && !o.json) {
              const self = site.find((x) => x.self === 1);
              const others = site
                .filter((x) => x.self !== 1)
                .map((x) => `${x.name} ${SITE_STATES[x.state] ?? x.state}`);
              io.out(
                `site: ${self?.name ?? '?'} etcd=${self?.state === 2 ? 'no majority (not granting)' : 'ok'}; other servers: ${others.join(', ') || 'none'}\n`,
              );
            }
          }
        } finally {
          await client.close();
        }
        const answered = replies.length;
        const rtts = replies.map((r) => r.rttMs);
        if (o.json) {
          io.out(
            `${JSON.stringify(
              {
                schema: 'floatlm.ping/1',
                server: client.server,
                sent: o.count,
                received: answered,
                replies: replies.map((r) => ({
                  seq: r.seq,
                  rttMs: round1(r.rttMs),
                  serverVersion: r.serverVersion,
                  offsetMs: Math.round(r.offsetMs),
                  uptimeMs: r.uptimeMs,
                  state: r.state,
                  graceLeftMs: r.graceLeftMs,
                })),
                site: site?.length
                  ? site.map((x) => ({
                      id: x.name,
                      state: SITE_STATES[x.state] ?? `${x.state}`,
                      since: new Date(x.since).toISOString(),
                      answered: x.self === 1,
                    }))
                  : null,
              },
              null,
              2,
            )}\n`,
          );
        } else if (o.count > 1 || answered === 0) {
          const loss = Math.round((100 * (o.count - answered)) / o.count);
          const stats = rtts.length
            ? ` rtt min/avg/max = ${Math.min(...rtts).toFixed(1)}/${(rtts.reduce((a, b) => a + b, 0) / rtts.length).toFixed(1)}/${Math.max(...rtts).toFixed(1)} ms`
            : '';
          io.out(`${o.count} sent, ${answered} received, ${loss}% loss${stats}\n`);
        }
        if (answered === 0)
          throw new CliError(
            `floatlm: ping: no answer from ${client.server}; ${NO_ANSWER_HINT}`,
            ExitCode.NO_ANSWER,
          );
      },
    );

  program
    .command('status')
    .description('features, seats in use, queues and holders (what lmstat shows)')
    .option('--json', 'machine-readable output (schema in README, "status --json")')
    .option('-f, --feature <name>', 'only this feature')
    .addHelpText('after', '\nExamples:\n  floatlm status\n  floatlm status --json -f solver')
    .action(async (o: { json?: boolean; feature?: string }) => {
      const client = await open(io, g());
      try {
        const s = await client.status(o.feature ?? '');
        // Version and uptime come from a PONG; status is still worth showing without them.
        const pong = await client.ping().catch(() => undefined);
        if (o.json) {
          io.out(`${JSON.stringify(statusJson(s, pong), null, 2)}\n`);
          return;
        }
        io.out(
          pong
            ? `server ${s.server}: floatlmd ${pong.serverVersion}, up ${fmtDuration(pong.uptimeMs)}, ${pong.state}${pong.state === 'grace' ? ` (${Math.ceil(pong.graceLeftMs / 1000)} s of grace left)` : ''}\n`
            : `server ${s.server}\n`,
        );
        // Durations on the server's clock: since times are the server's.
        const now = Date.now() + (pong?.offsetMs ?? 0);
        if (s.servers.length) {
          const v = [['SITE SERVER', 'STATE', 'SINCE', 'FOR', '']];
          for (const x of s.servers)
            v.push([
              x.name,
              SITE_STATES[x.state] ?? `${x.state}`,
              fmtTime(x.since),
              fmtDuration(now - x.since),
              x.self ? '(answered)' : '',
            ]);
          io.out(`${table(v)}\n\n`);
        }
        if (s.features.length === 0) {
          io.out('no features\n');
          return;
        }
        const rows = [
          [
            'FEATURE',
            'VERSION',
            'VENDOR',
            'EXPIRES',
            'COUNT',
            'IN USE',
            'FREE',
            'QUEUED',
            'GRANTS',
            'DENIALS',
          ],
        ];
        for (const f of s.features)
          rows.push([
            f.name,
            f.version,
            f.vendor,
            fmtExpiry(f.expires),
            `${f.count}`,
            `${f.inUse}`,
            `${Math.max(0, f.count - f.inUse)}`,
            `${f.queued}`,
            `${f.issued}`,
            `${f.denied}`,
          ]);
        io.out(`${table(rows)}\n`);
        if (s.reservations.length) {
          const r = [['RESERVED FOR', 'FEATURE', 'SEATS', 'IN USE']];
          for (const x of s.reservations)
            r.push([
              `${x.type === ReservationType.USER ? 'user' : 'host'} ${x.name}`,
              x.feature,
              `${x.count}`,
              `${x.inUse}`,
            ]);
          io.out(`\n${table(r)}\n`);
        }
        const when = (x: { since: number }) => [fmtTime(x.since), fmtDuration(now - x.since)];
        if (s.holders.length) {
          const h = [
            ['HOLDER', 'HOST', 'FEATURE', 'PROGRAM', 'SEATS', 'SINCE', 'HELD FOR', 'LEASE'],
          ];
          for (const x of s.holders)
            h.push([
              x.user,
              x.host,
              x.feature,
              fmtProgram(x),
              `${x.count}`,
              ...when(x),
              x.leaseId.toString(16),
            ]);
          io.out(`\n${table(h)}\n`);
        }
        if (s.queued.length) {
          const q = [['QUEUED', 'HOST', 'FEATURE', 'POSITION', 'SINCE', 'WAITING']];
          for (const x of s.queued)
            q.push([x.user, x.host, x.feature, `${x.position}`, ...when(x)]);
          io.out(`\n${table(q)}\n`);
        }
      } finally {
        await client.close();
      }
    });

  const seatOptions = (c: Command) =>
    c
      .option('--version <v>', 'minimum feature version', '')
      .option('--count <n>', 'seats', positiveNumber('--count'), 1)
      .option('-w, --wait', 'wait in the queue when no seat is free');

  seatOptions(
    program
      .command('checkout')
      .description('hold a seat until Ctrl-C, printing what happens to it')
      .argument('<feature>'),
  )
    .addHelpText(
      'after',
      '\nExamples:\n  floatlm checkout demo\n  floatlm checkout solver --version 2.0 --wait',
    )
    .action(async (feature: string, o: { version: string; count: number; wait?: boolean }) => {
      const client = await open(io, g());
      const ac = new AbortController();
      const signals = untilInterrupted();
      const interrupted = signals.interrupted.then((sig) => {
        ac.abort();
        return sig;
      });
      try {
        const { lease, waitedMs } = await acquire(client, feature, o, ac.signal, {
          line: (text) => io.out(`${text}\n`),
          redraw: io.tty?.stdout ? io.out : undefined,
        });
        io.out(
          `granted ${feature}: lease ${lease.leaseId.toString(16)}, ${lease.count} seat(s)${waitedMs ? ` after ${fmtDuration(waitedMs)} in the queue` : ''}; Ctrl-C to release\n`,
        );
        const lost = new Promise<string>((r) => lease.once('lost', r));
        lease.on('reclaimed', () =>
          io.out(`reclaimed ${feature} after a server restart or failover\n`),
        );
        client.on('failover', (s: string) => io.out(`failed over to ${s}\n`));
        client.on('contact-lost', (s: string) =>
          io.err(`floatlm: lost contact with ${s}; still holding ${feature}, retrying\n`),
        );
        client.on('contact-restored', (s: string) => io.err(`floatlm: ${s} answers again\n`));
        // The library keeps no handle alive while idle; holding a seat is this command's job.
        const keepAlive = setInterval(() => {}, 1 << 30);
        const why = await Promise.race([interrupted.then(() => ''), lost]).finally(() =>
          clearInterval(keepAlive),
        );
        if (why) throw new CliError(`floatlm: lost ${feature}: ${why}`, ExitCode.LOST);
        // Ctrl-C: give the seat back, but within about a second whatever the server does.
        if (await releaseWithin(client, lease)) io.out(`released ${feature}\n`);
        else {
          io.err(UNCONFIRMED(feature));
          result.code = ExitCode.NO_ANSWER;
        }
      } catch (e) {
        if (ac.signal.aborted && !(e instanceof CliError)) {
          io.out('interrupted\n');
          result.code = ExitCode.INTERRUPTED;
          return;
        }
        throw toCliError(e);
      } finally {
        signals.dispose();
        await client.close();
      }
    });

  seatOptions(
    program
      .command('run')
      .description('run a program while holding a seat; exits with its status')
      .argument('<feature>')
      .argument('<command...>', 'the program and its arguments (after --)'),
  )
    .addOption(
      new Option('--on-loss <action>', 'what to do when the seat is lost')
        .choices(['stop', 'warn'])
        .default('stop'),
    )
    .option('-q, --quiet', "say nothing on stderr but errors and the seat's loss")
    .addHelpText(
      'after',
      '\nExamples:\n  floatlm run demo -- make -j8\n  floatlm run solver --wait --on-loss warn -- ./solve model.dat',
    )
    .action(
      async (
        feature: string,
        command: string[],
        o: { version: string; count: number; wait?: boolean; onLoss: string; quiet?: boolean },
      ) => {
        const client = await open(io, g());
        const ac = new AbortController();
        const signals = untilInterrupted();
        void signals.interrupted.then(() => ac.abort());
        // The program owns stdout: what floatlm has to say goes to stderr.
        const say = (text: string) => {
          if (!o.quiet) io.err(`floatlm: ${text}\n`);
        };
        try {
          let lease: Lease;
          let waitedMs: number;
          try {
            ({ lease, waitedMs } = await acquire(client, feature, o, ac.signal, {
              line: say,
              redraw: io.tty?.stderr && !o.quiet ? io.err : undefined,
            }));
          } catch (e) {
            if (ac.signal.aborted) {
              io.out('interrupted\n');
              result.code = ExitCode.INTERRUPTED;
              return;
            }
            throw toCliError(e);
          }
          signals.dispose();
          if (ac.signal.aborted) {
            // Ctrl-C while the grant was on its way: do not start the program.
            await releaseWithin(client, lease);
            io.out('interrupted\n');
            result.code = ExitCode.INTERRUPTED;
            return;
          }
          const [cmd, ...args] = command;
          say(
            `holding ${feature} (lease ${lease.leaseId.toString(16)}, ${lease.count} seat(s)${waitedMs ? `, after ${fmtDuration(waitedMs)} in the queue` : ''}); running ${cmd}`,
          );
          const child = spawn(cmd!, args, { stdio: 'inherit', cwd: io.cwd, env: io.env });
          const forward = (sig: NodeJS.Signals) => () => child.kill(sig);
          const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGUSR1', 'SIGUSR2'] as const).map(
            (s) => [s, forward(s)] as const,
          );
          for (const [s, h] of handlers) process.on(s, h);
          lease.on('lost', (why: string) => {
            io.err(
              `floatlm: lost the ${feature} seat: ${why}${o.onLoss === 'stop' ? '; stopping the program' : ''}\n`,
            );
            if (o.onLoss === 'stop') child.kill('SIGTERM');
          });
          const status = await new Promise<number>((done) => {
            child.on('error', (e) => {
              io.err(
                `floatlm: cannot run ${cmd}: ${(e as NodeJS.ErrnoException).code ?? e.message}\n`,
              );
              done(127);
            });
            child.on('exit', (code, signal) =>
              done(code ?? (signal ? 128 + (osConstants.signals[signal] ?? 15) : 1)),
            );
          });
          for (const [s, h] of handlers) process.off(s, h);
          if (!(await releaseWithin(client, lease))) io.err(UNCONFIRMED(feature));
          result.code = status;
        } finally {
          signals.dispose();
          await client.close();
        }
      },
    );

  program
    .command('decode')
    .description('dissect a datagram field by field; check its tag with --key')
    .argument('<datagram>', 'hex digits, a file (hex or raw bytes), or - for stdin')
    .option('--key <hex>', 'key that should verify the tag')
    .addHelpText(
      'after',
      '\nExamples:\n  floatlm decode 464c0102...\n  floatlm decode capture.bin --key 00112233...',
    )
    .action((arg: string, o: { key?: string }) => {
      const bytes = readDatagramArg(arg, () => readFileSync(0));
      result.code = decodeAction(bytes, o.key, io.out);
    });

  const keys = program
    .command('keys')
    .description('server keyring and credentials')
    .addHelpText(
      'after',
      '\nExamples:\n  floatlm keys init --vendor acme\n  floatlm keys show --keys keys.json',
    );
  keys
    .command('init')
    .description(
      'create a keys file for floatlmd, a client credential and an admin credential (0600)',
    )
    .option('--keys <file>', 'daemon keys file to create', 'keys.json')
    .option('--credential-out <file>', 'client credential to create', 'credential.json')
    .option('--admin-out <file>', 'admin credential to create', 'admin.json')
    .option('--vendor <name>', 'vendor (credential id)', 'demo')
    .option(
      '--vendor-key <hexOrFile>',
      'vendor Ed25519 public key (hex or a .pub file) for license checking',
    )
    .option(
      '--server <host:port>',
      `server written into the credentials (repeatable, as -s; default 127.0.0.1:${DEFAULT_PORT})`,
    )
    .option(
      '--period <seconds>',
      'automatic key rotation period',
      positiveNumber('--period'),
      86_400,
    )
    .option('--force', 'overwrite existing files')
    .addHelpText(
      'after',
      '\nExamples:\n  floatlm keys init --vendor acme --vendor-key acme.pub --server licsrv:27400',
    )
    .action(
      (o: {
        keys: string;
        credentialOut: string;
        adminOut: string;
        vendor: string;
        vendorKey?: string;
        server?: string;
        period: number;
        force?: boolean;
      }) => {
        const paths = [o.keys, o.credentialOut, o.adminOut].map((p) => resolve(io.cwd, p));
        // `--server` after `keys init` lands in the global -s/--server (commander gives a
        // program option precedence over a subcommand's of the same name): honour both.
        const given = g().server ?? [];
        const list = given.length > 0 ? given : [o.server ?? `127.0.0.1:${DEFAULT_PORT}`];
        const servers = list.map((s) => normalizeServer(s, '--server'));
        for (const p of paths)
          if (existsSync(p) && !o.force)
            throw new CliError(
              `floatlm: keys init: ${p} exists (use --force to overwrite)`,
              ExitCode.BAD_FILE,
            );
        const [keysFile, credFile, adminFile] = paths as [string, string, string];
        const period = Math.floor(o.period);
        const keyring = new Keyring({
          period,
          grace: Math.max(2 * period, 86_400),
          secrets: [{ id: 1, secret: randomBytes(32), activates: Date.now() - 1000 }],
        });
        const credKey = generateKey();
        const adminKey = generateKey();
        saveDaemonKeys(keysFile, {
          keyring,
          credentials: new Map([[o.vendor, credKey]]),
          admin: new Map([['admin', adminKey]]),
          vendors: o.vendorKey
            ? new Map([[o.vendor, readHexArg(io, o.vendorKey, 32, '--vendor-key')]])
            : new Map(),
        });
        saveClientCredential(credFile, { id: o.vendor, key: credKey, servers });
        saveClientCredential(adminFile, { id: 'admin', key: adminKey, servers });
        io.out(
          `wrote ${keysFile} (daemon), ${credFile} (clients), ${adminFile} (operators), all mode 0600; servers ${servers.join(', ')}\n`,
        );
      },
    );
  /** A `keys` subcommand that reads the keys file (found as findFile says). */
  const keysFileCommand = (name: string, description: string, examples: string[]) =>
    keys
      .command(name)
      .description(description)
      .option('--keys <file>', KEYS_HELP)
      .addHelpText('after', `\nExamples:\n${examples.map((e) => `  ${e}\n`).join('')}`);
  keysFileCommand(
    'rotate',
    'force a rotation: append a new server secret active now (older keys verify through the grace)',
    [
      'floatlm keys rotate',
      'floatlm keys rotate --keys /etc/floatlm/keys.json && kill -HUP $(pidof floatlmd)',
    ],
  ).action((o: { keys?: string }) => {
    const file = findFile(io, 'keys', o.keys);
    const parsed = loadDaemonKeys(file);
    const s = parsed.keyring.rotate(Date.now());
    saveDaemonKeys(file, parsed);
    io.out(
      `rotated: secret ${s.id} active from ${new Date(s.activates).toISOString()}; current key id ${parsed.keyring.current(Date.now()).keyId}\n`,
    );
  });
  keysFileCommand(
    'add-credential',
    'add a client credential to the keys file: per user (--user) or vendor-wide, with caps',
    [
      'floatlm keys add-credential --vendor acme --user alice --out alice.json',
      'floatlm keys add-credential --vendor acme --max-sessions 50 --max-seats 20 --out acme.json',
    ],
  )
    .requiredOption('--vendor <name>', 'vendor the credential is for')
    .option('--user <name>', 'the one user it may declare (id vendor/user); omit: vendor-wide')
    .option('--out <file>', 'client credential file to write (0600)')
    .option(
      '--max-sessions <n>',
      'live sessions all holders of this credential may have together',
      intOption('--max-sessions', 1, 0xffffffff),
    )
    .option(
      '--max-seats <n>',
      'seats all holders of this credential may hold together',
      intOption('--max-seats', 1, 0xffffffff),
    )
    .option('--force', 'replace a credential with this id, and overwrite --out')
    .action(
      (o: {
        keys?: string;
        vendor: string;
        user?: string;
        out?: string;
        maxSessions?: number;
        maxSeats?: number;
        force?: boolean;
      }) => {
        const file = findFile(io, 'keys', o.keys);
        const parsed = loadDaemonKeys(file);
        const id = o.user === undefined ? o.vendor : `${o.vendor}/${o.user}`;
        const out = resolve(io.cwd, o.out ?? `${id.replace('/', '-')}.credential.json`);
        if (parsed.credentials.has(id) && !o.force) {
          throw new CliError(
            `floatlm: keys add-credential: ${file} already has credential ${id} (use --force to replace it)`,
            ExitCode.BAD_FILE,
          );
        }
        if (existsSync(out) && !o.force) {
          throw new CliError(
            `floatlm: keys add-credential: ${out} exists (use --force to overwrite)`,
            ExitCode.BAD_FILE,
          );
        }
        const key = generateKey();
        parsed.credentials.set(id, key);
        const caps = parsed.caps ?? new Map();
        const cap = {
          ...(o.maxSessions !== undefined ? { sessions: o.maxSessions } : {}),
          ...(o.maxSeats !== undefined ? { seats: o.maxSeats } : {}),
        };
        if (Object.keys(cap).length > 0) caps.set(id, cap);
        else caps.delete(id);
        parsed.caps = caps;
        saveDaemonKeys(file, parsed);
        const given = g().server ?? [];
        const servers = (given.length > 0 ? given : [`127.0.0.1:${DEFAULT_PORT}`]).map((s) =>
          normalizeServer(s, '--server'),
        );
        saveClientCredential(out, { id, key, servers });
        const what =
          o.user === undefined
            ? 'vendor-wide: its holders may declare any user and host of the vendor'
            : `may declare user ${o.user} only`;
        io.out(
          `added credential ${id} to ${file} (${what}); wrote ${out} (0600); reread the daemon to use it\n`,
        );
      },
    );
  keysFileCommand('show', 'show key ids, activation and retirement times (never the secrets)', [
    'floatlm keys show',
    'floatlm keys show --keys /etc/floatlm/keys.json',
  ]).action((o: { keys?: string }) => {
    const file = findFile(io, 'keys', o.keys);
    const parsed = loadDaemonKeys(file);
    const vendors = parsed.vendors ?? new Map();
    const now = Date.now();
    const cur = parsed.keyring.current(now);
    const k = parsed.keyring.toJSON();
    io.out(`keys file ${file}\nrotation period ${k.period} s, grace ${k.grace} s\n`);
    io.out(
      `current server key id ${cur.keyId} (0x${cur.keyId.toString(16)}), signs until ${Number.isFinite(cur.signEnd) ? new Date(cur.signEnd).toISOString() : 'a newer secret activates'}\n`,
    );
    for (const s of k.secrets) io.out(`secret ${s.id}: activates ${s.activates}\n`);
    io.out(`credentials: ${[...parsed.credentials.keys()].join(', ') || '(none)'}\n`);
    io.out(`admin keys: ${[...parsed.admin.keys()].join(', ') || '(none)'}\n`);
    io.out(`vendor public keys: ${[...vendors.keys()].join(', ') || '(none)'}\n`);
  });

  const license = program
    .command('license')
    .description('vendor keys and signed license files')
    .addHelpText(
      'after',
      '\nExamples:\n  floatlm license keygen acme\n  floatlm license sign site.lic --key acme.key',
    );
  license
    .command('keygen')
    .description('create a vendor Ed25519 key pair: PREFIX.key (private, 0600) and PREFIX.pub')
    .argument('<prefix>', 'file name prefix, e.g. acme')
    .option('--force', 'overwrite existing files')
    .addHelpText('after', '\nExamples:\n  floatlm license keygen acme')
    .action((prefix: string, o: { force?: boolean }) => {
      const priv = resolve(io.cwd, `${prefix}.key`);
      const pub = resolve(io.cwd, `${prefix}.pub`);
      if (!o.force && (existsSync(priv) || existsSync(pub)))
        throw new CliError(
          `floatlm: license keygen: ${priv} or ${pub} exists (use --force)`,
          ExitCode.BAD_FILE,
        );
      const kp = generateVendorKeyPair();
      writeFileAtomic0600(priv, `${toHex(kp.privateKey)}\n`);
      writeFileSync(pub, `${toHex(kp.publicKey)}\n`, { mode: 0o644 });
      io.out(`wrote ${priv} (keep secret) and ${pub}\npublic key ${toHex(kp.publicKey)}\n`);
    });
  license
    .command('sign')
    .description('sign every FEATURE/INCREMENT line of a license file')
    .argument('<file>')
    .requiredOption('--key <file>', 'vendor private key (from license keygen)')
    .option('-o, --out <file>', 'write here instead of in place')
    .addHelpText(
      'after',
      '\nExamples:\n  floatlm license sign site.lic --key acme.key\n  floatlm license sign draft.lic --key acme.key -o site.lic',
    )
    .action((file: string, o: { key: string; out?: string }) => {
      const path = resolve(io.cwd, file);
      const text = readText(path);
      const priv = readHexArg(io, o.key, 32, '--key');
      const signed = signLicenseDetailed(text, priv, file);
      const out = resolve(io.cwd, o.out ?? file);
      writeFileSync(out, signed.text);
      io.out(`signed ${signed.signed} line(s) into ${out}\n`);
      if (signed.problems.length === 0) return;
      for (const p of signed.problems) io.err(`${p.text}\n`);
      throw new CliError(
        `floatlm: license sign: ${signed.problems.length} line(s) with errors left unsigned in ${out}`,
        ExitCode.BAD_FILE,
      );
    });
  license
    .command('verify')
    .description(
      'check every line of a license file; print file:line:column: reason for each problem',
    )
    .argument('<file>')
    .option('--pub <hexOrFile>', 'vendor public key (hex or .pub file)')
    .option('--vendor <name>', "vendor the --pub key belongs to (default: the file's one vendor)")
    .option('--keys <file>', 'take vendor public keys from a daemon keys file')
    .addHelpText(
      'after',
      '\nExamples:\n  floatlm license verify site.lic --pub acme.pub --vendor acme\n  floatlm license verify site.lic --keys /etc/floatlm/keys.json',
    )
    .action((file: string, o: { pub?: string; vendor?: string; keys?: string }) => {
      const path = resolve(io.cwd, file);
      const text = readText(path);
      let vendors = new Map<string, Uint8Array>();
      if (o.keys) vendors = loadDaemonKeys(resolve(io.cwd, o.keys)).vendors ?? vendors;
      if (o.pub)
        vendors.set(o.vendor ?? onlyVendor(text, file), readHexArg(io, o.pub, 32, '--pub'));
      if (vendors.size === 0)
        throw new CliError('floatlm: license verify: give --pub or --keys', ExitCode.USAGE);
      // With the clock: an expired line is a problem too (the daemon would not serve it).
      const problems = verifyLicense(text, file, vendors, Date.now());
      for (const p of problems) io.out(`${p.text}\n`);
      if (problems.length)
        throw new CliError(
          `floatlm: license verify: ${problems.length} problem(s) in ${file}`,
          ExitCode.BAD_FILE,
        );
      io.out(`${file}: every line verifies and is in force\n`);
    });

  const adminCmd = (name: string, desc: string, examples: string[]) =>
    program
      .command(name)
      .description(desc)
      .option('--json', 'machine-readable output: {"schema":"floatlm.admin/1",...}')
      .addHelpText('after', `\nExamples:\n${examples.map((e) => `  ${e}\n`).join('')}`);
  adminCmd('remove', 'release seats held by a user, host or lease (lmremove)', [
    'floatlm remove --feature solver --user alice',
    'floatlm remove --lease 9f3c0a1b --json',
  ])
    .option('--feature <name>')
    .option('--user <name>')
    .option('--host <name>')
    .option('--lease <hexid>')
    .action(
      async (o: {
        feature?: string;
        user?: string;
        host?: string;
        lease?: string;
        json?: boolean;
      }) => {
        if (!o.feature && !o.user && !o.host && !o.lease)
          throw new CliError(
            'floatlm: remove: give at least one of --feature, --user, --host, --lease',
            ExitCode.USAGE,
          );
        let leaseId: bigint | undefined;
        if (o.lease) {
          if (!/^[0-9a-fA-F]{1,16}$/.test(o.lease))
            throw new CliError(
              'floatlm: remove: --lease must be the hex lease id from status',
              ExitCode.USAGE,
            );
          leaseId = BigInt(`0x${o.lease}`);
        }
        const client = await open(io, g(), { admin: true });
        try {
          await adminRun(io, client, AdminOp.REMOVE, !!o.json, {
            ...(o.feature ? { feature: o.feature } : {}),
            ...(o.user ? { user: o.user } : {}),
            ...(o.host ? { host: o.host } : {}),
            ...(leaseId !== undefined ? { leaseId } : {}),
          });
        } finally {
          await client.close();
        }
      },
    );
  adminCmd('reread', 'reload the license and keys files without dropping held seats (lmreread)', [
    'floatlm reread',
    'floatlm reread --json',
  ]).action(async (o: { json?: boolean }) => {
    const client = await open(io, g(), { admin: true });
    try {
      await adminRun(io, client, AdminOp.REREAD, !!o.json, {});
    } finally {
      await client.close();
    }
  });
  adminCmd(
    'down',
    'shut the server down cleanly (lmdown); asks first on a terminal, else needs --yes',
    ['floatlm down', 'floatlm -s licsrv:27400 down --yes'],
  )
    .option('-y, --yes', 'do not ask (required when stdin is not a terminal)')
    .action(async (o: { json?: boolean; yes?: boolean }) => {
      if (!o.yes && !(io.tty?.stdin && io.ask))
        throw new CliError(
          'floatlm: down: not asking on a non-terminal; give --yes to shut the server down',
          ExitCode.USAGE,
        );
      const client = await open(io, g(), { admin: true });
      try {
        if (!o.yes) {
          // Say what stopping it costs: the seats held now (status works with the admin key).
          let held = '';
          try {
            const s = await client.status();
            const seats = s.features.reduce((n, f) => n + f.inUse, 0);
            const users = new Set(s.holders.map((h) => `${h.user}@${h.host}`)).size;
            held = `, ${seats} seat(s) held by ${users} user(s)`;
          } catch {
            // The question is still worth asking without the numbers.
          }
          const answer = await io.ask!(`shut down floatlmd at ${client.server}${held}? [y/N] `);
          if (!/^y(es)?$/i.test(answer.trim())) {
            io.err('floatlm: down: not confirmed; the server keeps running\n');
            result.code = ExitCode.USAGE;
            return;
          }
        }
        await adminRun(io, client, AdminOp.SHUTDOWN, !!o.json, {});
      } finally {
        await client.close();
      }
    });

  registerReport(program, io);
  program.addHelpText(
    'after',
    `
Examples:
  floatlm ping
  floatlm status --json
  floatlm checkout demo
  floatlm run demo -- ./simulate --steps 1000

Exit codes: 0 ok; 1 error; 2 usage; 3 no answer; 4 denied; 5 authentication refused;
6 bad file or input; 7 seat lost; 130 interrupted. 'run' exits with the program's status.`,
  );
  return { program, result };

  function readText(path: string): string {
    try {
      return readFileSync(path, 'utf8');
    } catch (e) {
      throw new CliError(
        `floatlm: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`,
        ExitCode.BAD_FILE,
      );
    }
  }
}

/**
 * The one vendor a license file names (VENDOR lines and the vendor field of FEATURE and
 * INCREMENT lines), for `verify --pub` without `--vendor`.
 * @throws {CliError} USAGE when the file names none or several
 */
function onlyVendor(text: string, file: string): string {
  const names = new Set<string>();
  for (const line of text.split(/\r?\n/)) {
    const m =
      /^\s*VENDOR\s+(\S+)/i.exec(line) ?? /^\s*(?:FEATURE|INCREMENT)\s+\S+\s+(\S+)/i.exec(line);
    if (m) names.add(m[1]!);
  }
  if (names.size === 1) return [...names][0]!;
  throw new CliError(
    names.size === 0
      ? `floatlm: license verify: ${file} names no vendor; give --vendor`
      : `floatlm: license verify: ${file} names vendors ${[...names].join(', ')}; give --vendor for --pub`,
    ExitCode.USAGE,
  );
}

/**
 * `host[:port]` as a credential file stores it (`host:port`, IPv6 in brackets).
 * @throws {CliError} USAGE naming the option
 */
function normalizeServer(s: string, option: string): string {
  try {
    const { host, port } = parseServer(s);
    return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  } catch (e) {
    throw new CliError(`floatlm: ${option}: ${(e as Error).message}`, ExitCode.USAGE);
  }
}

function readHexArg(io: CliIO, v: string, bytes: number, name: string): Uint8Array {
  let text = v;
  if (!new RegExp(`^[0-9a-fA-F]{${bytes * 2}}$`).test(v)) {
    try {
      text = readFileSync(resolve(io.cwd, v), 'utf8').trim();
    } catch (e) {
      throw new CliError(
        `floatlm: ${name}: not ${bytes * 2} hex digits and not a readable file (${(e as NodeJS.ErrnoException).code ?? e})`,
        ExitCode.BAD_FILE,
      );
    }
  }
  if (!new RegExp(`^[0-9a-fA-F]{${bytes * 2}}$`).test(text))
    throw new CliError(`floatlm: ${name}: expected ${bytes * 2} hex digits`, ExitCode.BAD_FILE);
  return fromHex(text);
}

const ADMIN_OPS: Record<AdminOp, string> = {
  [AdminOp.REMOVE]: 'remove',
  [AdminOp.REREAD]: 'reread',
  [AdminOp.SHUTDOWN]: 'shutdown',
};

/** Sends one ADMIN request and prints the server's answer (text, or the JSON object). */
async function adminRun(
  io: CliIO,
  client: Client,
  op: AdminOp,
  json: boolean,
  target: Parameters<Client['admin']>[1],
): Promise<void> {
  let r: Awaited<ReturnType<Client['admin']>>;
  try {
    r = await client.admin(op, target);
  } catch (e) {
    throw toCliError(e);
  }
  if (json)
    io.out(
      `${JSON.stringify({ schema: 'floatlm.admin/1', server: client.server, op: ADMIN_OPS[op], affected: r.affected, message: r.message }, null, 2)}\n`,
    );
  else io.out(`${r.message}\n`);
}

/** Where `acquire` reports the wait: whole lines, and (on a terminal) a line redrawn in place. */
interface WaitReport {
  line: (text: string) => void;
  redraw: ((text: string) => void) | undefined;
}

/**
 * Checks out a seat, reporting the queue position as the Client's 'queued' events change it:
 * one line per change, or on a terminal one line redrawn each second with the time waited.
 * Resolves with the lease and how long it waited in the queue (0 when it did not queue).
 */
async function acquire(
  client: Client,
  feature: string,
  o: { version: string; count: number; wait?: boolean },
  signal: AbortSignal,
  report: WaitReport,
): Promise<{ lease: Lease; waitedMs: number }> {
  const t0 = Date.now();
  let queued: { position: number; length: number } | undefined;
  let ticker: NodeJS.Timeout | undefined;
  const draw = () =>
    report.redraw?.(
      `\r\x1b[Kqueued for ${feature}: position ${queued!.position} of ${queued!.length}, waiting ${fmtDuration(Date.now() - t0)}`,
    );
  const onQueued = (f: string, position: number, length: number) => {
    if (f !== feature) return;
    queued = { position, length };
    if (!report.redraw)
      return report.line(`queued for ${feature}: position ${position} of ${length}`);
    draw();
    if (!ticker) {
      ticker = setInterval(draw, 1000);
      ticker.unref();
    }
  };
  client.on('queued', onQueued);
  try {
    const lease = await client.checkout(feature, {
      version: o.version,
      count: o.count,
      wait: !!o.wait,
      signal,
    });
    return { lease, waitedMs: queued ? Date.now() - t0 : 0 };
  } finally {
    client.off('queued', onQueued);
    clearInterval(ticker);
    if (queued) report.redraw?.('\r\x1b[K');
  }
}

/** The stable `status --json` schema (README documents it). */
/** SERVER status record states as `floatlm status` names them. */
const SITE_STATES: Record<number, string> = { 0: 'gone', 1: 'up', 2: 'no etcd majority' };

export function statusJson(s: Awaited<ReturnType<Client['status']>>, pong?: PongInfo) {
  return {
    schema: 'floatlm.status/1',
    server: s.server,
    serverVersion: pong?.serverVersion ?? null,
    uptimeMs: pong?.uptimeMs ?? null,
    servers: s.servers.map((x) => ({
      id: x.name,
      state: SITE_STATES[x.state] ?? `${x.state}`,
      since: new Date(x.since).toISOString(),
      answered: x.self === 1,
    })),
    features: s.features.map((f) => ({
      name: f.name,
      version: f.version,
      vendor: f.vendor,
      // `expiry`: the date the license writes (the last day served); `expires`: the instant
      // it stops serving (00:00 UTC the day after).
      expiry: fmtExpiry(f.expires),
      expires: f.expires > 0 ? new Date(f.expires).toISOString() : null,
      count: f.count,
      inUse: f.inUse,
      free: Math.max(0, f.count - f.inUse),
      queued: f.queued,
      grants: f.issued,
      denials: f.denied,
      holders: s.holders
        .filter((h) => h.feature === f.name)
        .map((h) => ({
          user: h.user,
          host: h.host,
          seats: h.count,
          since: new Date(h.since).toISOString(),
          lease: h.leaseId.toString(16),
          program: h.program,
          version: h.version,
        })),
      queue: s.queued
        .filter((q) => q.feature === f.name)
        .map((q) => ({
          user: q.user,
          host: q.host,
          position: q.position,
          since: new Date(q.since).toISOString(),
        })),
      reservations: s.reservations
        .filter((r) => r.feature === f.name)
        .map((r) => ({
          type: r.type === ReservationType.USER ? ('user' as const) : ('host' as const),
          name: r.name,
          seats: r.count,
          inUse: r.inUse,
        })),
    })),
  };
}

/**
 * Runs the program over argv and returns the exit code; errors become one line on stderr
 * (with detail under --verbose).
 */
export async function runCli(argv: readonly string[], io: CliIO): Promise<number> {
  const { program, result } = buildProgram(io);
  program.exitOverride();
  try {
    await program.parseAsync(argv as string[], { from: 'user' });
    return result.code;
  } catch (e) {
    const err = e as { code?: string; exitCode?: number };
    if (typeof err.code === 'string' && err.code.startsWith('commander.')) {
      // `--help` exits 0; help shown because a command is missing (`floatlm`, `floatlm
      // keys`) is a usage error.
      if (err.exitCode === 0) return ExitCode.OK;
      return ExitCode.USAGE;
    }
    const c = toCliError(e);
    io.err(`${c.message}\n`);
    if ((program.opts() as Globals).verbose && c.detail) io.err(`${c.detail}\n`);
    return c.exitCode;
  }
}
