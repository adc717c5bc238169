/**
 * floatlmd's lifecycle: start (load, restore, listen), reread (all or nothing, under the
 * same rules as start), close; states RUNNING, GRACE (restart grace: only reclaims are
 * served), CLOSING, CLOSED, with `close()` idempotent. What happens to a datagram is the
 * pipeline's (pipeline.ts, handlers/), what leaves is the outbox's, timers are the reaper's.
 */
import { ServerAuth } from '../auth/server.ts';
import type { Keyring } from '../crypto/index.ts';
import { LicensePool } from '../license/pool.ts';
import { openStore, type StateStore, type Store } from '../store/index.ts';
import type { SiteStore } from '../store/site.ts';
import { decodeToken, sessionKeyOfBytes, TokenStore } from '../token/index.ts';
import { ConfigError, type DaemonConfig, type LoadedConfig, loadConfig } from './config.ts';
import { Core, type Counters, newCounters, poolFeatures, SERVER_VERSION } from './core.ts';
import { type DaemonOptions, RECV_BUFFER_BYTES, resolveOptions } from './defaults.ts';
import { degrade } from './faults.ts';
import { ReportLog, silentLogger } from './log.ts';
import { Metrics, type OperatorSource, type StoreState } from './metrics.ts';
import { Outbox } from './outbox.ts';
import { Pipeline } from './pipeline.ts';
import { RateLimiter } from './ratelimit.ts';
import { Reaper } from './reaper.ts';
import { restore } from './restore.ts';
import { SessionTable } from './sessions.ts';
import { attachSite, openSite, seatRule } from './site.ts';
import { endServed, refused } from './site-sessions.ts';
import { bindUdp, recvBufferShort, type UdpKind, type UdpSocket } from './udp.ts';

export type { DaemonConfig, DaemonOptions };
export { type Counters, SERVER_VERSION };

/**
 * RUNNING and GRACE serve; DEGRADED serves what needs no write (the state cannot be
 * written); CLOSING finishes what is pending; CLOSED is final.
 */
export type State = 'RUNNING' | 'GRACE' | 'DEGRADED' | 'CLOSING' | 'CLOSED';

/** The license daemon. Create with `Daemon.start(options)`. */
export class Daemon implements OperatorSource {
  readonly version = SERVER_VERSION;
  /** Prometheus metrics of this daemon (served by lib/server/http.ts). */
  readonly metrics: Metrics;
  readonly #core: Core;
  #socket: UdpSocket | undefined;
  readonly #reaper: Reaper;
  #timer: NodeJS.Timeout | undefined;
  #closed: Promise<void> | undefined;

  private constructor(core: Core) {
    this.#core = core;
    this.#reaper = new Reaper(core);
    this.metrics = new Metrics(this, { processMetrics: core.opts.processMetrics });
    core.report.subscribe(this.metrics.onReport);
    core.outbox.onCommit = (s) => this.metrics.observeCommit(s);
    core.outbox.onCheckout = (s) => this.metrics.observeCheckout(s);
  }

  /**
   * Loads the license and keys, opens the state, restores what it held, binds the socket.
   * @throws {Error} with a one-line message when a file is missing or bad, the state is
   *   corrupt or foreign, or the port is taken
   */
  static async start(options: DaemonOptions): Promise<Daemon> {
    const opts = resolveOptions(options);
    const now = opts.now();
    const config = loadConfig(opts.licenseFile, opts.keysFile, now, opts.optionsFile);
    checkLifetime(opts.tokenLifetimeS, config.keys.keyring, opts.keysFile);
    let current = config;
    const site = opts.etcd.length > 0;
    const store: StateStore = site
      ? await openSite(
          opts,
          seatRule(() => current, opts.now),
        )
      : openStore(opts.stateDir);
    let socket: UdpSocket | undefined;
    try {
      const log = opts.logger ?? silentLogger;
      const tokens = new TokenStore();
      let keyring = config.keys.keyring;
      // The session key of a token, from the keyring (undefined once its key is gone).
      const derive = (tokenBytes: Uint8Array): Uint8Array | undefined =>
        sessionKeyOfBytes(tokenBytes, keyring, opts.now());
      const sessions = new SessionTable(opts.hmacCacheSize, derive);
      const counters = newCounters();
      const report = new ReportLog(opts.reportLog, opts.reportRotation);
      const outbox = new Outbox(counters, store, opts.now, log, opts.replyCacheSize, () => {
        report.flush();
        // Committed: nothing of the last ticks needs undoing any more.
        core.fresh.clear();
        core.reaped.length = 0;
        core.site?.claims.clear();
        for (const w of core.floorWrites) w.s.durableSeq = w.floor;
        core.floorWrites.length = 0;
      });
      const core = new Core(opts, opts.now, log, report, store, tokens, sessions, outbox, counters);
      outbox.degraded = () => core.degraded !== undefined;
      outbox.onCommitFailed = (e) => degrade(core, e, opts.now());
      Object.defineProperty(core, 'config', {
        get: () => current,
        set: (c: LoadedConfig) => {
          current = c;
        },
      });
      Object.defineProperty(core, 'keyring', {
        get: () => keyring,
        set: (k: Keyring) => {
          keyring = k;
        },
      });
      core.pool = new LicensePool(poolFeatures(opts, config.license.features), { now: opts.now });
      if (config.options) core.pool.setOptions(config.options);
      const rl = opts.rateLimit;
      const pipeline = new Pipeline(
        core,
        rl.rate > 0 ? new RateLimiter({ rate: rl.rate, burst: rl.burst }) : undefined,
      );
      core.auth = new ServerAuth({
        keyring,
        credentials: config.keys.credentials,
        admin: config.keys.admin,
        sessions,
        revoked: { isRevoked: (id) => tokens.isRevoked(id) || store.isRevoked(id) },
        now: opts.now,
        budget: pipeline.allow,
      });
      const d = new Daemon(core);
      core.lifecycle = { reread: () => d.reread(), close: () => d.close() };
      if (site) {
        const st = attachSite(core, store as SiteStore, now);
        outbox.onRefused = (ids) => refused(core, st, ids);
      } else restore(core, now);
      const s = await bindUdp(
        opts.udp,
        opts.host,
        opts.port,
        RECV_BUFFER_BYTES,
        pipeline.onDatagram,
        (e) => log.error(`socket: ${e.message}`),
        opts.floodPauseMs,
      );
      socket = s;
      d.#socket = s;
      const short = recvBufferShort(RECV_BUFFER_BYTES, s.recvBuffer);
      if (short) log.warn(`socket: ${short}`);
      outbox.attach(s);
      // Uptime and the restart grace count from when the daemon can hear its clients.
      const listening = opts.now();
      core.started = listening;
      if (core.graceUntil > 0) core.graceUntil += listening - now;
      d.#timer = setInterval(() => d.#reaper.tick(), opts.tickMs);
      d.#timer.unref();
      for (const p of config.license.problems) log.warn(`license: ${p.text}`);
      report.write('start', now, { features: config.license.features.length });
      log.info(
        `floatlmd ${SERVER_VERSION} listening on ${opts.host}:${s.port()} (${s.kind} socket)`,
      );
      return d;
    } catch (e) {
      socket?.close();
      await store.close();
      throw e;
    }
  }

  get state(): State {
    const c = this.#core;
    if (c.state !== 'RUNNING') return c.state;
    if (c.degraded !== undefined) return 'DEGRADED';
    return c.graceLeft() > 0 ? 'GRACE' : 'RUNNING';
  }

  /** Counters the operator can read (status, logs, benchmarks). */
  get counters(): Counters {
    return this.#core.counters;
  }

  /** Times the socket paused reading under a flood of forged datagrams (OperatorSource). */
  readPauses(): number {
    return this.#socket?.readPauses() ?? 0;
  }

  /** The kind of UDP socket serving (lib/server/udp.ts). */
  get udp(): UdpKind {
    return this.#socket?.kind ?? 'dgram';
  }

  /** The bound address and port. */
  address(): { address: string; port: number } {
    return { address: this.#core.opts.host, port: this.#socket?.port() ?? 0 };
  }

  /** Milliseconds of restart grace left (0 outside grace). */
  graceLeft(): number {
    return this.#core.graceLeft();
  }

  /** Problems found in the license file at the last (re)load. */
  get licenseProblems(): readonly string[] {
    return this.#core.config.license.problems.map((p) => p.text);
  }

  /** The seat pools (read-only use: status, tests, benchmarks). */
  get pool(): LicensePool {
    return this.#core.pool;
  }

  /** The pools' status (OperatorSource). */
  poolStatus(): ReturnType<LicensePool['status']> {
    return this.#core.pool.status();
  }

  /** Whether the state store answers (OperatorSource: /readyz and metrics). */
  storeState(): StoreState {
    const c = this.#core;
    const up = c.state !== 'CLOSED' && c.outbox.lastCommitOk && c.degraded === undefined;
    return { backend: c.store.backend, reachable: up };
  }

  /** Starts a new report log file (SIGHUP); returns the rotated file's name, if any. */
  rotateReport(): string | undefined {
    const c = this.#core;
    c.report.flush();
    return c.report.rotate(c.now());
  }

  /** The state store (read-only use: tests and diagnostics). */
  get store(): Store {
    return this.#core.store as Store;
  }

  /** The site store when serving a site (tests and diagnostics), else undefined. */
  get siteStore(): SiteStore | undefined {
    return this.#core.site?.store;
  }

  /** Sizes of every table that grows with traffic (abuse tests, diagnostics). */
  stateSizes(): { sessions: number; replies: number; inflight: number; slabBytes: number } {
    const c = this.#core;
    return {
      sessions: c.sessions.size,
      replies: c.outbox.replies.size,
      inflight: c.outbox.inflight.size,
      slabBytes: c.sessions.slabBytes,
    };
  }

  get sessionCount(): number {
    return this.#core.sessions.size;
  }

  /**
   * Rereads the license file and the keys file without dropping held seats: all or
   * nothing, under the rules `start` applies. A license with any problem is refused whole
   * (the one being served stays); sessions whose server key the new keyring lacks end.
   * @throws {Error} with a one-line reason when either file cannot be used (nothing changes)
   */
  reread(): { features: number; problems: string[] } {
    const c = this.#core;
    const o = c.opts;
    const now = c.now();
    let config: LoadedConfig;
    try {
      config = loadConfig(o.licenseFile, o.keysFile, now, o.optionsFile);
      checkLifetime(o.tokenLifetimeS, config.keys.keyring, o.keysFile);
      const n = config.license.problems.length;
      if (n > 0) {
        const first = config.license.problems
          .slice(0, 3)
          .map((p) => p.text)
          .join('; ');
        throw new ConfigError(
          `${n} problem(s) in the license, nothing changed (the license already served stays): ${first}`,
        );
      }
    } catch (e) {
      c.log.error(`reread refused: ${(e as Error).message}`);
      throw e;
    }
    c.config = config;
    c.keyring = config.keys.keyring;
    c.auth.setKeys(config.keys.credentials, config.keys.admin);
    c.auth.setKeyring(config.keys.keyring);
    this.#endKeylessSessions(now);
    const { dropped } = c.pool.reload(poolFeatures(c.opts, config.license.features));
    // Options go with the license: a reread without an options file lifts the old policy.
    dropped.push(...c.pool.setOptions(config.options ?? null).dropped);
    // A raised count may have granted seats to queued clients: persist them now.
    c.afterRelease(now);
    for (const e of dropped) {
      c.store.dequeue(e.sessionId, e.feature);
      c.report.write('dequeue', now, {
        session: e.sessionId.toString(16).padStart(16, '0'),
        user: e.user,
        feature: e.feature,
        why: 'feature no longer licensed or no longer permitted',
      });
    }
    c.report.write('reread', now, { features: config.license.features.length, problems: 0 });
    c.log.info(`reread: ${config.license.features.length} feature line(s)`);
    if (c.store.pending() > 0) c.outbox.schedule();
    return { features: config.license.features.length, problems: [] };
  }

  /** Sessions whose token's server key is no longer in the keyring end, seats released. */
  #endKeylessSessions(now: number): void {
    const c = this.#core;
    const gone = [];
    for (const s of c.sessions.values()) {
      let keyId: number;
      try {
        keyId = decodeToken(s.token).keyId;
      } catch {
        gone.push(s);
        continue;
      }
      if (!c.keyring.lookup(keyId, now).ok) gone.push(s);
    }
    // On a site only what this server serves, and only while etcd says it does.
    for (const s of gone) endServed(c, s, now, 'its server key was removed from the keyring');
    if (gone.length)
      c.log.warn(`reread: ${gone.length} session(s) ended: their server key is gone`);
  }

  /** Closes the socket and the state; pending replies are committed and sent first. */
  close(): Promise<void> {
    if (this.#closed) return this.#closed;
    const c = this.#core;
    c.state = 'CLOSING';
    this.#closed = (async () => {
      if (this.#timer) clearInterval(this.#timer);
      // Count the last replies (the answer to an admin shutdown, say) until they have left.
      const drained = c.outbox.drain(1000);
      try {
        c.saveTallies();
        c.outbox.commitAndSend();
      } catch (e) {
        c.log.error(`close: ${(e as Error).message}`);
      }
      c.report.write('stop', c.now(), {});
      c.report.flush();
      await drained;
      c.outbox.closed = true;
      await c.outbox.settled();
      this.#socket?.close();
      await c.store.close();
      c.state = 'CLOSED';
      c.log.info('floatlmd closed');
      c.opts.onClosed?.();
    })();
    return this.#closed;
  }
}

/** A token must outlive neither the key that signed it nor its grace. */
function checkLifetime(lifetimeS: number, keyring: Keyring, keysFile: string): void {
  const grace = keyring.toJSON().grace;
  if (lifetimeS > grace) {
    throw new ConfigError(
      `token lifetime ${lifetimeS} s exceeds the keyring grace ${grace} s in ${keysFile}`,
    );
  }
}
