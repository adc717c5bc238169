/**
 * The `floatlmd` command: options, the embedded demo default (`npm start`), signals
 * (SIGINT/SIGTERM close cleanly, SIGHUP rereads), the refusal to serve a license with
 * nothing servable in it, and one-line errors.
 */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { loadConfig } from '../server/config.ts';
import { Daemon, type DaemonOptions } from '../server/daemon.ts';
import { DEFAULTS, MAX_FLOOD_PAUSE_MS } from '../server/defaults.ts';
import { checkHttpFlags, type HttpServer, startHttp } from '../server/http.ts';
import { LEVELS, LOG_FORMATS, makeLogger } from '../server/log.ts';
import { batchUnavailable } from '../server/udp.ts';
import { DEMO_DIR, ensureDemo, pointDemoAt } from './demo.ts';
import { CliError, type CliIO, ExitCode, intOption } from './io.ts';

/** System calls whose failure means the socket could not be set up (exit 1, not 6). */
const SOCKET_SYSCALLS = new Set(['bind', 'getaddrinfo']);

/** Listening on every address: clients on this machine reach the daemon on loopback. */
const LOOPBACK: Record<string, string> = { '0.0.0.0': '127.0.0.1', '::': '::1' };

/**
 * Refuses (exit 6, one line) a license that leaves nothing to serve: every line bad,
 * expired, or none at all. A file or keys problem is left to Daemon.start to report.
 * @throws {CliError} BAD_FILE
 */
function refuseEmptyLicense(licenseFile: string, keysFile: string): void {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(licenseFile, keysFile, Date.now());
  } catch {
    return;
  }
  const { features, problems } = config.license;
  if (features.some((f) => !f.expired)) return;
  const why =
    problems.length > 0
      ? `${problems.length} problem(s), the first: ${problems[0]!.text}`
      : 'no FEATURE or INCREMENT line';
  throw new CliError(
    `floatlmd: ${licenseFile}: no servable feature (${why}); fix it, or start with --allow-empty`,
    ExitCode.BAD_FILE,
  );
}

/** Builds the `floatlmd` program; `run` resolves with the exit code once the daemon stops. */
export function buildDaemonProgram(io: CliIO, started: (d: Daemon) => void = () => {}): Command {
  const program = new Command('floatlmd');
  program
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) })
    .description('floatlm license daemon: lends seats of licensed features over signed UDP')
    .option('--license <file>', 'license file (FEATURE/INCREMENT lines signed by the vendor)')
    .option(
      '--keys <file>',
      'keys file: server keyring, credential, admin and vendor keys (mode 0600)',
    )
    .option('--state <dir>', 'state directory (SQLite database, report log)')
    .option('--options <file>', "the admin's options file (docs/options-format.md)")
    .option('--host <addr>', 'address to listen on', DEFAULTS.host)
    .option('--port <n>', 'UDP port', intOption('--port', 0, 65535), DEFAULTS.port)
    .addOption(
      new Option('--log-level <level>', 'what to log to stderr').choices(LEVELS).default('info'),
    )
    .addOption(
      new Option('--log-format <format>', 'operator log format (json for journald and shippers)')
        .choices(LOG_FORMATS)
        .default('text'),
    )
    .option(
      '--http <addr>',
      'serve /metrics, /healthz, /readyz and the status page on host:port (docs/http.md)',
    )
    .option('--http-token <token>', 'bearer token for --http; required beyond loopback')
    .option(
      '--report-max-size <bytes>',
      'start a new report log file past this size (0: never)',
      intOption('--report-max-size', 0, Number.MAX_SAFE_INTEGER),
    )
    .option('--report-daily', 'start a new report log file every UTC day')
    .option(
      '--report-keep <n>',
      'rotated report log files kept (0: all)',
      intOption('--report-keep', 0, 100_000),
    )
    .option(
      '--heartbeat <seconds>',
      'heartbeat interval asked of clients',
      intOption('--heartbeat', 1, 3600),
      DEFAULTS.heartbeatMs / 1000,
    )
    .option(
      '--test-conn-interval <seconds>',
      'interval between test_conn pings of a quiet client',
      intOption('--test-conn-interval', 1, 3600),
      DEFAULTS.testConnIntervalMs / 1000,
    )
    .option(
      '--test-conn-tries <n>',
      'unanswered pings before a client loses its seats',
      intOption('--test-conn-tries', 1, 100),
      DEFAULTS.testConnTries,
    )
    .option(
      '--grace <seconds>',
      'restart grace in which only reclaims are served',
      intOption('--grace', 0, 86_400),
      DEFAULTS.graceMs / 1000,
    )
    .option(
      '--token-lifetime <seconds>',
      'session token lifetime; a lease lives at most this long (keep it ≤ the keyring grace)',
      intOption('--token-lifetime', 60, 30 * 86_400),
      DEFAULTS.tokenLifetimeS,
    )
    .option(
      '--takeover',
      'single server only: start in grace with an empty state dir (replacing a dead server)',
    )
    .option(
      '--etcd <urls>',
      'serve a site: comma-separated etcd client URLs (docs/site.md); leases live there',
    )
    .option('--site <name>', 'site name, the same on every server of the site', DEFAULTS.site)
    .option('--server-id <id>', "this server's id in the site (default <hostname>:<port>)")
    .option(
      '--etcd-lease-ttl <seconds>',
      'TTL of the etcd lease: cut off from etcd, the server stops granting within it',
      intOption('--etcd-lease-ttl', 2, 3600),
      DEFAULTS.etcdLeaseTtlS,
    )
    .option(
      '--rate-limit <n>',
      'datagrams per second per source address (0: off)',
      intOption('--rate-limit', 0, 10_000_000),
      DEFAULTS.rateLimit.rate,
    )
    .addOption(
      new Option(
        '--udp <kind>',
        'UDP socket: batch (recvmmsg/sendmmsg, IPv4), dgram (node:dgram), auto (batch if built)',
      )
        .choices(['auto', 'batch', 'dgram'])
        .default(DEFAULTS.udp),
    )
    .option(
      '--flood-pause <ms>',
      'after a read that emptied the socket and was mostly forged datagrams, rest this long (batch socket; 0: never)',
      intOption('--flood-pause', 0, MAX_FLOOD_PAUSE_MS),
      DEFAULTS.floodPauseMs,
    )
    .option('--report <file>', 'JSON-lines report log (default <state>/report.jsonl)')
    .option(
      '--allow-empty',
      'start even when the license has no servable feature (to fix it and reread later)',
    )
    .option('--demo', `embedded default: create (once) and serve a demo in ./${DEMO_DIR}`)
    .addHelpText(
      'after',
      `
Examples:
  floatlmd --demo
  floatlmd --license site.lic --keys /etc/floatlm/keys.json --state /var/lib/floatlm
  floatlmd --license site.lic --keys keys.json --state state --host 0.0.0.0 --grace 120
  floatlmd --license site.lic --keys keys.json --state state \\
           --etcd http://lic1:2379,http://lic2:2379,http://lic3:2379 --site lab

Signals: SIGINT/SIGTERM stop cleanly; SIGHUP rereads the license and keys files.
Exit codes: 0 stopped cleanly, 1 runtime error, 2 usage error, 6 bad license/keys/state file
(including a license with no servable feature, unless --allow-empty).`,
    );
  program.action(async (o) => {
    let { license, keys, state } = o as { license?: string; keys?: string; state?: string };
    const port = o.port as number;
    const demo = o.demo ? ensureDemo(resolve(io.cwd, DEMO_DIR), port) : undefined;
    if (demo) {
      license ??= demo.license;
      keys ??= demo.keys;
      state ??= demo.state;
    }
    if (!license || !keys || !state) {
      throw new CliError(
        'floatlmd: --license, --keys and --state are required (or --demo)',
        ExitCode.USAGE,
      );
    }
    let listen: ReturnType<typeof checkHttpFlags> | undefined;
    try {
      listen = o.http
        ? checkHttpFlags(o.http as string, o.httpToken as string | undefined)
        : undefined;
    } catch (e) {
      throw new CliError(`floatlmd: ${(e as Error).message}`, ExitCode.USAGE);
    }
    const etcd = o.etcd
      ? String(o.etcd)
          .split(',')
          .map((u) => u.trim())
          .filter((u) => u !== '')
      : [];
    for (const u of etcd) {
      if (!/^https?:\/\/[^/\s]+\/?$/.test(u)) {
        throw new CliError(`floatlmd: --etcd: not an etcd client URL: ${u}`, ExitCode.USAGE);
      }
    }
    if (o.takeover && etcd.length > 0) {
      throw new CliError(
        'floatlmd: --takeover is for a single server; a site needs no takeover (every server knows every lease)',
        ExitCode.USAGE,
      );
    }
    if (o.httpToken && !o.http) {
      throw new CliError('floatlmd: --http-token needs --http', ExitCode.USAGE);
    }
    const noBatch = o.udp === 'batch' ? batchUnavailable(o.host as string) : undefined;
    if (noBatch) throw new CliError(`floatlmd: --udp batch: ${noBatch}`, ExitCode.ERROR);
    const logger = makeLogger(
      o.logLevel as string,
      (line) => io.err(`${line}\n`),
      o.logFormat as 'text' | 'json',
    );
    const opts: DaemonOptions = {
      licenseFile: resolve(io.cwd, license),
      keysFile: resolve(io.cwd, keys),
      stateDir: resolve(io.cwd, state),
      host: o.host as string,
      port,
      logger,
      heartbeatMs: (o.heartbeat as number) * 1000,
      testConnIntervalMs: (o.testConnInterval as number) * 1000,
      testConnTries: o.testConnTries as number,
      graceMs: (o.grace as number) * 1000,
      takeover: !!o.takeover,
      etcd,
      site: o.site as string,
      ...(o.serverId ? { serverId: o.serverId as string } : {}),
      etcdLeaseTtlS: o.etcdLeaseTtl as number,
      udp: o.udp as 'auto' | 'batch' | 'dgram',
      floodPauseMs: o.floodPause as number,
      tokenLifetimeS: o.tokenLifetime as number,
      rateLimit: { rate: o.rateLimit as number, burst: Math.max(1, (o.rateLimit as number) * 2) },
      ...(o.report ? { reportLog: resolve(io.cwd, o.report as string) } : {}),
      ...(o.options ? { optionsFile: resolve(io.cwd, o.options as string) } : {}),
      processMetrics: listen !== undefined,
      reportRotation: {
        ...(o.reportMaxSize !== undefined ? { maxBytes: o.reportMaxSize as number } : {}),
        ...(o.reportDaily ? { daily: true } : {}),
        ...(o.reportKeep !== undefined ? { keep: o.reportKeep as number } : {}),
      },
    };
    let daemon: Daemon;
    let closed!: () => void;
    const stopped = new Promise<void>((r) => {
      closed = r;
    });
    if (!o.allowEmpty) refuseEmptyLicense(opts.licenseFile, opts.keysFile);
    try {
      mkdirSync(opts.stateDir, { recursive: true, mode: 0o700 });
      daemon = await Daemon.start({ ...opts, onClosed: () => closed() });
    } catch (e) {
      // A socket that cannot be bound (port in use, address not ours) is not a bad file,
      // nor is an etcd that does not answer.
      const socket = SOCKET_SYSCALLS.has((e as NodeJS.ErrnoException).syscall ?? '');
      const etcd = (e as Error).name === 'EtcdStoreError';
      throw new CliError(
        etcd
          ? `floatlmd: etcd ${(opts.etcd ?? []).join(',')}: ${(e as Error).message}`
          : `floatlmd: ${(e as Error).message}`,
        socket || etcd ? ExitCode.ERROR : ExitCode.BAD_FILE,
      );
    }
    let http: HttpServer | undefined;
    if (listen) {
      try {
        http = await startHttp({
          source: daemon,
          metrics: daemon.metrics,
          ...listen,
          historyFile: join(opts.stateDir, 'history.db'),
          logger,
        });
      } catch (e) {
        await daemon.close();
        throw new CliError(`floatlmd: --http: ${(e as Error).message}`, ExitCode.ERROR);
      }
      const h = http.address();
      io.out(`floatlmd http on ${h.address}:${h.port}\n`);
    }
    const addr = daemon.address();
    // Always on stdout, whatever the log level: scripts and tests read the bound port here.
    io.out(`floatlmd listening on ${addr.address}:${addr.port}\n`);
    if (demo) {
      // A demo created on another port (`npm start -- --port N` later): follow the daemon.
      const host = LOOPBACK[addr.address] ?? addr.address;
      const server = host.includes(':') ? `[${host}]:${addr.port}` : `${host}:${addr.port}`;
      try {
        for (const f of pointDemoAt(demo, server)) logger.info(`demo: ${f} now names ${server}`);
      } catch (e) {
        logger.warn(`demo: cannot update the credentials: ${(e as Error).message}`);
      }
      io.out(
        `demo state in ./${DEMO_DIR}\n` +
          'Try it from another terminal:\n' +
          '  npx floatlm ping\n' +
          '  npx floatlm status\n' +
          '  npx floatlm checkout demo            # holds a seat until Ctrl-C\n' +
          '  npx floatlm run demo -- sleep 5      # runs a program while holding a seat\n' +
          'Stop with Ctrl-C.\n',
      );
    }
    started(daemon);
    let closeError: Error | undefined;
    const stop = (sig: string) => {
      logger.info(`${sig}: shutting down`);
      // Never an unhandled rejection from a signal handler: report it and exit 1.
      daemon.close().catch((e: unknown) => {
        closeError = e instanceof Error ? e : new Error(String(e));
        closed();
      });
    };
    const onInt = () => stop('SIGINT');
    const onTerm = () => stop('SIGTERM');
    const onHup = () => {
      try {
        daemon.reread();
      } catch (e) {
        logger.error(
          `SIGHUP: reread failed, keeping the old configuration: ${(e as Error).message}`,
        );
      }
      try {
        const rotated = daemon.rotateReport();
        if (rotated) logger.info(`SIGHUP: report log rotated to ${rotated}`);
      } catch (e) {
        logger.error(`SIGHUP: report log rotation failed: ${(e as Error).message}`);
      }
    };
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
    process.on('SIGHUP', onHup);
    await stopped;
    await http?.close();
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
    process.off('SIGHUP', onHup);
    if (closeError) throw new CliError(`floatlmd: closing: ${closeError.message}`, ExitCode.ERROR);
  });
  return program;
}

/** Runs `floatlmd` over argv; resolves with the exit code once the daemon has stopped. */
export async function runDaemonCli(
  argv: readonly string[],
  io: CliIO,
  started?: (d: Daemon) => void,
): Promise<number> {
  const program = buildDaemonProgram(io, started);
  program.exitOverride();
  program.configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
  try {
    await program.parseAsync(argv as string[], { from: 'user' });
    return ExitCode.OK;
  } catch (e) {
    const err = e as { code?: string };
    if (typeof err.code === 'string' && err.code.startsWith('commander.')) {
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.help'
        ? ExitCode.OK
        : ExitCode.USAGE;
    }
    if (e instanceof CliError) {
      io.err(`${e.message}\n`);
      return e.exitCode;
    }
    io.err(`floatlmd: ${(e as Error)?.message ?? String(e)}\n`);
    return ExitCode.ERROR;
  }
}
