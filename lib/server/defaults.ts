/**
 * Every daemon option and its default, in one table: the Daemon merges the caller's options
 * over it once at start (`resolveOptions`), and floatlmd's command line takes its defaults
 * from it, so a default is written down in exactly one place.
 */
import type { Logger, ReportRotation } from './log.ts';

/** Options a caller may give `Daemon.start`. Times in ms unless the name says otherwise. */
export interface DaemonOptions {
  licenseFile: string;
  keysFile: string;
  stateDir: string;
  /** The admin's options file (FlexLM-style policy; docs/options-format.md). */
  optionsFile?: string;
  host?: string;
  port?: number;
  logger?: Logger;
  /** JSON-lines report log; default `<stateDir>/report.jsonl`; `false` for none. */
  reportLog?: string | false;
  /** When the report log starts a new file (size, day, how many old files are kept). */
  reportRotation?: ReportRotation;
  /** Process metrics (CPU, memory, event-loop lag) in /metrics. */
  processMetrics?: boolean;
  now?: () => number;
  /** Heartbeat interval told to clients. */
  heartbeatMs?: number;
  /** A session quiet this long is pinged. Default 2 × heartbeatMs. */
  quietMs?: number;
  /** Interval between unanswered test_conn pings. */
  testConnIntervalMs?: number;
  /** Unanswered pings before the session is reaped. */
  testConnTries?: number;
  /** Restart grace. */
  graceMs?: number;
  /** Start in grace even with an empty state dir (taking over from a dead server). */
  takeover?: boolean;
  /** Token lifetime (s). */
  tokenLifetimeS?: number;
  /**
   * Budget per source address for work done on datagrams not yet verified (a bad tag, a
   * token the server holds no key for yet, a HELLO); `rate: 0` disables. Verified session
   * traffic is never charged to it.
   */
  rateLimit?: { rate: number; burst: number };
  /** Live sessions per user and per source address. */
  maxSessionsPerUser?: number;
  maxSessionsPerHost?: number;
  /** A session holding nothing and quiet this long is forgotten. */
  idleSessionMs?: number;
  /** Sessions whose keyed HMAC stays in memory (the most recently active). */
  hmacCacheSize?: number;
  /** Replies kept in memory for retransmissions (beyond them, the durable records). */
  replyCacheSize?: number;
  /** Housekeeping timer period: reaping, grace, flushing. */
  tickMs?: number;
  /** Called once the daemon has closed (after an admin shutdown, for example). */
  onClosed?: () => void;
  /**
   * etcd client URLs of a site (docs/site.md): leases, sessions, queue, revocations and
   * kept replies live there, shared with every floatlmd of the site. Empty: the embedded
   * SQLite state in `stateDir`, one server.
   */
  etcd?: string[];
  /** Site name (every floatlmd of a site uses the same). */
  site?: string;
  /** This server's id in the site; default `<hostname>:<port>`. */
  serverId?: string;
  /** TTL of this server's etcd lease, s: a server cut off from etcd stops granting within it. */
  etcdLeaseTtlS?: number;
  /**
   * The UDP socket (lib/server/udp.ts): `batch`, the native addon's recvmmsg/sendmmsg (IPv4);
   * `dgram`, node:dgram; `auto`, batch where the addon is built and the host is IPv4.
   */
  udp?: 'auto' | 'batch' | 'dgram';
  /**
   * The batched socket stops reading this long after a batch of which more than half failed
   * authentication (a flood of forged datagrams is then read a batch a wake-up, for less CPU
   * each); requests queued behind the flood wait that much longer. 0: never pause.
   */
  floodPauseMs?: number;
}

/** The defaults of every optional option (floatlmd's CLI reads them from here). */
export const DEFAULTS = {
  host: '127.0.0.1',
  port: 27400,
  heartbeatMs: 10_000,
  testConnIntervalMs: 5_000,
  testConnTries: 3,
  graceMs: 90_000,
  takeover: false,
  tokenLifetimeS: 86_400,
  rateLimit: { rate: 1000, burst: 2000 },
  maxSessionsPerUser: 64,
  maxSessionsPerHost: 256,
  idleSessionMs: 3_600_000,
  hmacCacheSize: 65_536,
  replyCacheSize: 65_536,
  tickMs: 1000,
  reportRotation: {},
  processMetrics: false,
  etcd: [] as string[],
  site: 'default',
  serverId: '',
  etcdLeaseTtlS: 5,
  udp: 'auto' as 'auto' | 'batch' | 'dgram',
  floodPauseMs: 1,
} as const;

/**
 * The longest flood pause: while the socket rests, whatever arrives queues in the kernel's
 * receive buffer (4 MiB asked, often capped lower by net.core.rmem_max), and an attacker
 * needs only to keep most of each read forged to keep the pauses coming. A few ms keeps
 * both the queue and the wait of genuine requests small.
 */
export const MAX_FLOOD_PAUSE_MS = 10;

/** The socket's kernel receive buffer: bursts queue there while a group commit runs. */
export const RECV_BUFFER_BYTES = 4 * 1024 * 1024;

/** How long a reply answers retransmissions from memory (protocol.md section 11). */
export const REPLY_TTL_MS = 60_000;
/**
 * How long a durable reply record answers re-sends: past it, a copy of the request fails the
 * skew check anyway (it was accepted within ±skew of its timestamp, so a copy is at most
 * 2 × skew later), with room for a restart and the client's whole retransmission budget.
 */
export const RECORD_TTL_MS = 15 * 60_000;
/**
 * Seqs reserved ahead in a session's durable replay floor: the floor is rewritten once per
 * RESERVE / 2 requests of a session (riding on the group commit), and after a crash the
 * client skips at most this many seqs.
 */
export const SEQ_RESERVE = 4096;

/** Options with every default filled in. */
export type ResolvedOptions = Required<
  Omit<DaemonOptions, 'quietMs' | 'reportLog' | 'logger' | 'now' | 'onClosed' | 'optionsFile'>
> & {
  optionsFile: string | undefined;
  quietMs: number;
  reportLog: string | undefined;
  logger: Logger | undefined;
  now: () => number;
  onClosed: (() => void) | undefined;
};

/**
 * Merges `opts` over DEFAULTS, once.
 * @throws {RangeError} when floodPauseMs is not an integer 0..MAX_FLOOD_PAUSE_MS
 */
export function resolveOptions(opts: DaemonOptions): ResolvedOptions {
  const pause = opts.floodPauseMs;
  if (
    pause !== undefined &&
    !(Number.isInteger(pause) && pause >= 0 && pause <= MAX_FLOOD_PAUSE_MS)
  ) {
    throw new RangeError(
      `options.floodPauseMs must be an integer 0..${MAX_FLOOD_PAUSE_MS}, got ${pause}`,
    );
  }
  const heartbeatMs = opts.heartbeatMs ?? DEFAULTS.heartbeatMs;
  return {
    ...DEFAULTS,
    ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)),
    licenseFile: opts.licenseFile,
    keysFile: opts.keysFile,
    stateDir: opts.stateDir,
    optionsFile: opts.optionsFile,
    heartbeatMs,
    quietMs: opts.quietMs ?? 2 * heartbeatMs,
    rateLimit: opts.rateLimit ?? DEFAULTS.rateLimit,
    reportLog:
      opts.reportLog === false ? undefined : (opts.reportLog ?? `${opts.stateDir}/report.jsonl`),
    logger: opts.logger,
    now: opts.now ?? Date.now,
    onClosed: opts.onClosed,
  } as ResolvedOptions;
}
