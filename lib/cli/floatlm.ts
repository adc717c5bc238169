/**
 * The `floatlm` command: every subcommand registers on one commander program and calls an
 * action; errors become one readable line and a documented exit code (README, "Exit
 * codes"). `buildProgram(io)` is what tests drive, with `exitOverride()` and captured IO.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir, constants as osConstants } from 'node:os';
import { join, resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { type Client, connect, type Lease } from '../client/client.ts';
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
import { generateVendorKeyPair, signLicense, verifyLicense } from '../license/file.ts';
import {
  AdminOp,
  DEFAULT_PORT,
  ErrorCode,
  fromHex,
  ReservationType,
  toHex,
} from '../wire/index.ts';
import { decodeAction, readDatagramArg } from './decode.ts';
import { DEMO_DIR } from './floatlmd.ts';
import { CliError, type CliIO, ExitCode } from './io.ts';
import { registerReport } from './report.ts';

interface Globals {
  server?: string[];
  credential?: string;
  admin?: string;
  verbose?: boolean;
  timeout?: number;
}

/** Where the client credential comes from, in order (README, "Configuration"). */
export function credentialPath(
  io: CliIO,
  explicit: string | undefined,
  kind: 'credential' | 'admin',
): string {
  if (explicit) return resolve(io.cwd, explicit);
  const env = kind === 'credential' ? io.env.FLOATLM_CREDENTIAL : io.env.FLOATLM_ADMIN;
  if (env) return resolve(io.cwd, env);
  const demo = resolve(io.cwd, DEMO_DIR, `${kind}.json`);
  if (existsSync(demo)) return demo;
  return join(io.env.HOME ?? homedir(), '.config', 'floatlm', `${kind}.json`);
}

function loadCred(io: CliIO, g: Globals, kind: 'credential' | 'admin'): ClientCredential {
  const file = credentialPath(io, kind === 'credential' ? g.credential : g.admin, kind);
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
  const cred = loadCred(io, g, 'credential');
  const admin = opts.admin ? loadCred(io, g, 'admin') : undefined;
  try {
    return await connect({
      servers: servers(g, admin ?? cred, opts.server),
      credential: { id: cred.id, key: cred.key },
      ...(admin ? { admin: { id: admin.id, key: admin.key } } : {}),
      noHello: opts.hello === false,
      retry: retryFor(g),
      program: 'floatlm',
    });
  } catch (e) {
    throw toCliError(e);
  }
}

/** Maps library errors to one line and an exit code. */
export function toCliError(e: unknown): CliError {
  if (e instanceof CliError) return e;
  // What --verbose adds: the error's class, code (and server reason) and where it came from.
  const detail = e instanceof Error ? verboseDetail(e) : undefined;
  if (e instanceof TimeoutError)
    return new CliError(`floatlm: ${e.message}`, ExitCode.NO_ANSWER, detail);
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
  return ms > 0 ? new Date(ms).toISOString().replace('.000Z', 'Z') : 'permanent';
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
      'client credential file (default: $FLOATLM_CREDENTIAL, ./.floatlm-demo/credential.json, ~/.config/floatlm/credential.json)',
    )
    .option(
      '--admin <file>',
      'admin credential file for remove/reread/down/status (default: $FLOATLM_ADMIN, ./.floatlm-demo/admin.json, ~/.config/floatlm/admin.json)',
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
    .addHelpText('after', '\nExamples:\n  floatlm ping\n  floatlm ping licsrv:27400 -c 5 -i 0.2')
    .action(async (server: string | undefined, o: { count: number; interval: number }) => {
      const client = await open(io, g(), { hello: false, ...(server ? { server } : {}) });
      let answered = 0;
      const rtts: number[] = [];
      try {
        for (let i = 0; i < o.count; i++) {
          if (i > 0) await new Promise((r) => setTimeout(r, o.interval * 1000));
          try {
            const p = await client.ping();
            answered++;
            rtts.push(p.rttMs);
            io.out(
              `reply from ${p.server}: seq=${i + 1} time=${p.rttMs.toFixed(1)} ms server=floatlmd ${p.serverVersion} offset=${fmtOffset(p.offsetMs)} ms state=${p.state}${p.state === 'grace' ? ` (${Math.ceil(p.graceLeftMs / 1000)} s left)` : ''}\n`,
            );
          } catch (e) {
            if (!(e instanceof TimeoutError)) throw e;
            io.out(`no reply from ${client.server}: seq=${i + 1}\n`);
          }
        }
      } finally {
        await client.close();
      }
      if (o.count > 1 || answered === 0) {
        const loss = Math.round((100 * (o.count - answered)) / o.count);
        const stats = rtts.length
          ? ` rtt min/avg/max = ${Math.min(...rtts).toFixed(1)}/${(rtts.reduce((a, b) => a + b, 0) / rtts.length).toFixed(1)}/${Math.max(...rtts).toFixed(1)} ms`
          : '';
        io.out(`${o.count} sent, ${answered} received, ${loss}% loss${stats}\n`);
      }
      if (answered === 0)
        throw new CliError(`floatlm: ping: no answer from ${client.server}`, ExitCode.NO_ANSWER);
    });

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
        if (o.json) {
          io.out(`${JSON.stringify(statusJson(s), null, 2)}\n`);
          return;
        }
        io.out(`server ${s.server}\n`);
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
            'QUEUED',
            'ISSUED',
            'DENIED',
          ],
        ];
        for (const f of s.features)
          rows.push([
            f.name,
            f.version,
            f.vendor,
            fmtTime(f.expires),
            `${f.count}`,
            `${f.inUse}`,
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
        if (s.holders.length) {
          const h = [['HOLDER', 'HOST', 'FEATURE', 'SEATS', 'SINCE', 'LEASE']];
          for (const x of s.holders)
            h.push([
              x.user,
              x.host,
              x.feature,
              `${x.count}`,
              fmtTime(x.since),
              x.leaseId.toString(16),
            ]);
          io.out(`\n${table(h)}\n`);
        }
        if (s.queued.length) {
          const q = [['QUEUED', 'HOST', 'FEATURE', 'POSITION', 'SINCE']];
          for (const x of s.queued)
            q.push([x.user, x.host, x.feature, `${x.position}`, fmtTime(x.since)]);
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
        const lease = await acquire(client, feature, o, ac.signal, io);
        io.out(
          `granted ${feature}: lease ${lease.leaseId.toString(16)}, ${lease.count} seat(s); Ctrl-C to release\n`,
        );
        const lost = new Promise<string>((r) => lease.once('lost', r));
        lease.on('reclaimed', () =>
          io.out(`reclaimed ${feature} after a server restart or failover\n`),
        );
        client.on('failover', (s: string) => io.out(`failed over to ${s}\n`));
        // The library keeps no handle alive while idle; holding a seat is this command's job.
        const keepAlive = setInterval(() => {}, 1 << 30);
        const why = await Promise.race([interrupted.then(() => ''), lost]).finally(() =>
          clearInterval(keepAlive),
        );
        if (why) throw new CliError(`floatlm: lost ${feature}: ${why}`, ExitCode.LOST);
        await lease.checkin();
        io.out(`released ${feature}\n`);
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
    .addHelpText(
      'after',
      '\nExamples:\n  floatlm run demo -- make -j8\n  floatlm run solver --wait --on-loss warn -- ./solve model.dat',
    )
    .action(
      async (
        feature: string,
        command: string[],
        o: { version: string; count: number; wait?: boolean; onLoss: string },
      ) => {
        const client = await open(io, g());
        const ac = new AbortController();
        const signals = untilInterrupted();
        void signals.interrupted.then(() => ac.abort());
        try {
          let lease: Lease;
          try {
            lease = await acquire(client, feature, o, ac.signal, io);
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
            await lease.checkin().catch(() => {});
            io.out('interrupted\n');
            result.code = ExitCode.INTERRUPTED;
            return;
          }
          if (g().verbose)
            io.err(`floatlm: holding ${feature} (lease ${lease.leaseId.toString(16)})\n`);
          const [cmd, ...args] = command;
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
          await lease
            .checkin()
            .catch((e) => io.err(`floatlm: checkin failed: ${(e as Error).message}\n`));
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
      'server written into the credentials',
      `127.0.0.1:${DEFAULT_PORT}`,
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
        server: string;
        period: number;
        force?: boolean;
      }) => {
        const paths = [o.keys, o.credentialOut, o.adminOut].map((p) => resolve(io.cwd, p));
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
        saveClientCredential(credFile, { id: o.vendor, key: credKey, servers: [o.server] });
        saveClientCredential(adminFile, { id: 'admin', key: adminKey, servers: [o.server] });
        io.out(
          `wrote ${keysFile} (daemon), ${credFile} (clients), ${adminFile} (operators), all mode 0600\n`,
        );
      },
    );
  keys
    .command('rotate')
    .description(
      'force a rotation: append a new server secret active now (older keys verify through the grace)',
    )
    .option('--keys <file>', 'daemon keys file', 'keys.json')
    .addHelpText(
      'after',
      '\nExamples:\n  floatlm keys rotate --keys /etc/floatlm/keys.json && kill -HUP $(pidof floatlmd)',
    )
    .action((o: { keys: string }) => {
      const file = resolve(io.cwd, o.keys);
      const parsed = loadDaemonKeys(file);
      const s = parsed.keyring.rotate(Date.now());
      saveDaemonKeys(file, parsed);
      io.out(
        `rotated: secret ${s.id} active from ${new Date(s.activates).toISOString()}; current key id ${parsed.keyring.current(Date.now()).keyId}\n`,
      );
    });
  keys
    .command('show')
    .description('show key ids, activation and retirement times (never the secrets)')
    .option('--keys <file>', 'daemon keys file', 'keys.json')
    .addHelpText('after', '\nExamples:\n  floatlm keys show --keys /etc/floatlm/keys.json')
    .action((o: { keys: string }) => {
      const file = resolve(io.cwd, o.keys);
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
      const signed = signLicense(text, priv);
      const out = resolve(io.cwd, o.out ?? file);
      writeFileSync(out, signed);
      io.out(`signed ${out}\n`);
    });
  license
    .command('verify')
    .description(
      'check every line of a license file; print file:line:column: reason for each problem',
    )
    .argument('<file>')
    .option('--pub <hexOrFile>', 'vendor public key (hex or .pub file)')
    .option('--vendor <name>', 'vendor the --pub key belongs to', 'demo')
    .option('--keys <file>', 'take vendor public keys from a daemon keys file')
    .addHelpText(
      'after',
      '\nExamples:\n  floatlm license verify site.lic --pub acme.pub --vendor acme\n  floatlm license verify site.lic --keys /etc/floatlm/keys.json',
    )
    .action((file: string, o: { pub?: string; vendor: string; keys?: string }) => {
      const path = resolve(io.cwd, file);
      const text = readText(path);
      let vendors = new Map<string, Uint8Array>();
      if (o.keys) vendors = loadDaemonKeys(resolve(io.cwd, o.keys)).vendors ?? vendors;
      if (o.pub) vendors.set(o.vendor, readHexArg(io, o.pub, 32, '--pub'));
      if (vendors.size === 0)
        throw new CliError('floatlm: license verify: give --pub or --keys', ExitCode.USAGE);
      const problems = verifyLicense(text, file, vendors);
      for (const p of problems) io.out(`${p.text}\n`);
      if (problems.length)
        throw new CliError(
          `floatlm: license verify: ${problems.length} problem(s) in ${file}`,
          ExitCode.BAD_FILE,
        );
      io.out(`${file}: every line verifies\n`);
    });

  const adminCmd = (name: string, desc: string, example: string) =>
    program.command(name).description(desc).addHelpText('after', `\nExamples:\n  ${example}`);
  adminCmd(
    'remove',
    'release seats held by a user, host or lease (lmremove)',
    'floatlm remove --feature solver --user alice',
  )
    .option('--feature <name>')
    .option('--user <name>')
    .option('--host <name>')
    .option('--lease <hexid>')
    .action(async (o: { feature?: string; user?: string; host?: string; lease?: string }) => {
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
      await adminRun(io, g(), AdminOp.REMOVE, {
        ...(o.feature ? { feature: o.feature } : {}),
        ...(o.user ? { user: o.user } : {}),
        ...(o.host ? { host: o.host } : {}),
        ...(leaseId !== undefined ? { leaseId } : {}),
      });
    });
  adminCmd(
    'reread',
    'reload the license and keys files without dropping held seats (lmreread)',
    'floatlm reread',
  ).action(async () => {
    await adminRun(io, g(), AdminOp.REREAD, {});
  });
  adminCmd('down', 'shut the server down cleanly (lmdown)', 'floatlm down').action(async () => {
    await adminRun(io, g(), AdminOp.SHUTDOWN, {});
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

async function adminRun(
  io: CliIO,
  g: Globals,
  op: AdminOp,
  target: Parameters<Client['admin']>[1],
): Promise<void> {
  const client = await open(io, g, { admin: true, hello: false });
  try {
    const r = await client.admin(op, target);
    io.out(`${r.message}\n`);
  } catch (e) {
    throw toCliError(e);
  } finally {
    await client.close();
  }
}

async function acquire(
  client: Client,
  feature: string,
  o: { version: string; count: number; wait?: boolean },
  signal: AbortSignal,
  io: CliIO,
): Promise<Lease> {
  return client.checkout(feature, {
    version: o.version,
    count: o.count,
    wait: !!o.wait,
    signal,
    onQueued: (pos, len) => io.out(`queued for ${feature}: position ${pos} of ${len}\n`),
  });
}

/** The stable `status --json` schema (README documents it). */
export function statusJson(s: Awaited<ReturnType<Client['status']>>) {
  return {
    schema: 'floatlm.status/1',
    server: s.server,
    features: s.features.map((f) => ({
      name: f.name,
      version: f.version,
      vendor: f.vendor,
      expires: f.expires > 0 ? new Date(f.expires).toISOString() : null,
      count: f.count,
      inUse: f.inUse,
      queued: f.queued,
      issued: f.issued,
      denied: f.denied,
      holders: s.holders
        .filter((h) => h.feature === f.name)
        .map((h) => ({
          user: h.user,
          host: h.host,
          seats: h.count,
          since: new Date(h.since).toISOString(),
          lease: h.leaseId.toString(16),
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
