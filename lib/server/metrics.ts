/**
 * The daemon's Prometheus metrics (prom-client, one registry per daemon): per-feature seat
 * gauges read from the pool at scrape time, grants, denials by reason and queue waits learnt
 * from the report events, datagram outcomes from the daemon's counters, and the checkout and
 * store-commit latency histograms the daemon feeds through `observeCheckout` and
 * `observeCommit`. Also the narrow view of a daemon (`OperatorSource`) that the HTTP server,
 * the metrics and the history read; nothing here changes the daemon.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { PoolStatus } from '../license/pool.ts';
import type { ReportEvent } from './log.ts';

/** The daemon's datagram counters (lib/server/daemon.ts `Counters`) that metrics read. */
export interface DatagramCounters {
  readonly received: number;
  readonly malformed: number;
  readonly rateLimited: number;
  readonly badMac: number;
  readonly dropped: number;
  readonly replayed: number;
  readonly retransmits: number;
  readonly answered: number;
  readonly errors: number;
  readonly internal: number;
  readonly reaped: number;
}

/** The state store as the operator sees it. */
export interface StoreState {
  /** 'sqlite' or 'etcd'. */
  backend: string;
  /** The store answers (SQLite: the database is open; etcd: a quorum answers). */
  reachable: boolean;
  /** etcd: this server's member leads the cluster. Absent for SQLite. */
  leader?: boolean;
}

/** What the operator's layer reads from a daemon; the Daemon implements it. */
export interface OperatorSource {
  readonly version: string;
  /** 'RUNNING', 'GRACE' (restart grace), 'DEGRADED' (state not writable), 'CLOSING', 'CLOSED'. */
  readonly state: string;
  readonly sessionCount: number;
  readonly counters: DatagramCounters;
  /** Times the socket paused reading under a flood of forged datagrams. */
  readPauses(): number;
  /** ms of restart grace left; 0 outside grace. */
  graceLeft(): number;
  /** The pool's status (LicensePool.status()). */
  poolStatus(): PoolStatus;
  storeState(): StoreState;
}

/** Why the server is not ready, or undefined when it is (RUNNING, out of grace, store up). */
export function notReady(source: OperatorSource): string | undefined {
  if (source.state === 'DEGRADED') return 'the state cannot be written (degraded)';
  if (source.state !== 'RUNNING' && source.state !== 'GRACE') return `state ${source.state}`;
  const grace = source.graceLeft();
  if (grace > 0) return `in restart grace (${Math.ceil(grace / 1000)} s left)`;
  const store = source.storeState();
  if (!store.reachable) return `${store.backend} store not reachable`;
  return undefined;
}

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const WAIT_BUCKETS = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14_400, 28_800];
/** Queue entries remembered for the wait histogram; beyond it the oldest are forgotten. */
const MAX_WAITING = 100_000;

/** Datagram outcomes (label `outcome`) and the counter each reads. */
const OUTCOMES: [string, keyof DatagramCounters][] = [
  ['answered', 'answered'],
  ['bad_tag', 'badMac'],
  ['malformed', 'malformed'],
  ['rate_limited', 'rateLimited'],
  ['replayed', 'replayed'],
  ['refused', 'errors'],
  ['dropped', 'dropped'],
  ['retransmit_answered', 'retransmits'],
];

export interface MetricsOptions {
  /** Also export the process metrics (CPU, memory, event loop lag). Default true. */
  processMetrics?: boolean;
}

/** Per-daemon metrics; `text()` is the scrape. */
export class Metrics {
  readonly registry = new Registry();
  readonly #source: OperatorSource;
  readonly #checkout: Histogram;
  readonly #commit: Histogram;
  readonly #denials: Counter<'feature' | 'reason'>;
  readonly #wait: Histogram<'feature'>;
  /** session → feature → ms UTC it joined the queue. */
  readonly #waiting = new Map<string, Map<string, number>>();
  #waitingSize = 0;
  /** Denials per feature name and reason, for the status page. */
  readonly #denied = new Map<string, Map<string, number>>();

  /** @throws {TypeError} when source is missing */
  constructor(source: OperatorSource, opts: MetricsOptions = {}) {
    if (!source || typeof source.poolStatus !== 'function') {
      throw new TypeError('source must be an OperatorSource');
    }
    this.#source = source;
    const registers = [this.registry];
    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    const src = this.#source;
    new Gauge({
      name: 'floatlm_build_info',
      help: 'Version of the floatlmd serving these metrics (always 1).',
      labelNames: ['version'],
      registers,
      collect() {
        this.reset();
        this.set({ version: src.version }, 1);
      },
    });
    const featureGauge = (
      name: string,
      help: string,
      value: (f: PoolStatus['features'][number], s: PoolStatus) => number,
    ) =>
      new Gauge({
        name,
        help,
        labelNames: ['feature', 'version', 'vendor'],
        registers,
        collect() {
          this.reset();
          const s = src.poolStatus();
          for (const f of s.features) {
            this.set({ feature: f.name, version: f.version, vendor: f.vendor }, value(f, s));
          }
        },
      });
    featureGauge(
      'floatlm_feature_licensed_seats',
      'Seats licensed now (unexpired lines), per feature pool.',
      (f) => f.count,
    );
    featureGauge(
      'floatlm_feature_in_use_seats',
      'Seats held now, per feature pool.',
      (f) => f.inUse,
    );
    featureGauge(
      'floatlm_feature_reserved_seats',
      'Seats reserved for users or hosts (RESERVE), per feature pool.',
      (f, s) =>
        s.reservations
          .filter((r) => r.feature === f.name && r.version === f.version && r.vendor === f.vendor)
          .reduce((a, r) => a + r.count, 0),
    );
    featureGauge(
      'floatlm_feature_expires_timestamp_seconds',
      'When the last line of the pool stops serving (Unix seconds); 0 = never.',
      (f) => f.expires / 1000,
    );
    new Gauge({
      name: 'floatlm_feature_queued_requests',
      help: 'Requests waiting in the queue of a feature name (one queue serves every version).',
      labelNames: ['feature'],
      registers,
      collect() {
        this.reset();
        for (const [name, n] of queuedPerName(src.poolStatus())) this.set({ feature: name }, n);
      },
    });
    new Counter({
      name: 'floatlm_feature_grants_total',
      help: 'Checkouts granted since the daemon started (or the license was reread), per pool.',
      labelNames: ['feature', 'version', 'vendor'],
      registers,
      collect() {
        this.reset();
        for (const f of src.poolStatus().features) {
          if (f.issued > 0) {
            this.inc({ feature: f.name, version: f.version, vendor: f.vendor }, f.issued);
          }
        }
      },
    });
    this.#denials = new Counter({
      name: 'floatlm_feature_denials_total',
      help: 'Checkouts denied, per feature name and reason (NO_SEATS, USER_MAX, QUEUE_FULL, ...).',
      labelNames: ['feature', 'reason'],
      registers,
    });
    this.#wait = new Histogram({
      name: 'floatlm_feature_queue_wait_seconds',
      help: 'Time from joining the queue to being granted a seat, per feature name.',
      labelNames: ['feature'],
      buckets: WAIT_BUCKETS,
      registers,
    });
    new Counter({
      name: 'floatlm_datagrams_received_total',
      help: 'Datagrams received on the UDP port.',
      registers,
      collect() {
        this.reset();
        this.inc(src.counters.received);
      },
    });
    new Counter({
      name: 'floatlm_datagrams_total',
      help: 'Datagrams by outcome: answered, bad_tag, malformed, rate_limited, replayed, refused (answered with an error), dropped, retransmit_answered.',
      labelNames: ['outcome'],
      registers,
      collect() {
        this.reset();
        for (const [outcome, key] of OUTCOMES) this.inc({ outcome }, src.counters[key]);
      },
    });
    new Counter({
      name: 'floatlm_udp_read_pauses_total',
      help: 'Times the UDP socket stopped reading for floodPauseMs after a read that emptied it and of which most datagrams failed authentication (a flood of forged datagrams).',
      registers,
      collect() {
        this.reset();
        this.inc(src.readPauses());
      },
    });
    new Counter({
      name: 'floatlm_internal_errors_total',
      help: 'Internal errors (a bug or a failing store); each is also logged.',
      registers,
      collect() {
        this.reset();
        this.inc(src.counters.internal);
      },
    });
    new Counter({
      name: 'floatlm_sessions_reaped_total',
      help: 'Sessions reaped after unanswered test_conn pings or token expiry.',
      registers,
      collect() {
        this.reset();
        this.inc(src.counters.reaped);
      },
    });
    new Gauge({
      name: 'floatlm_sessions',
      help: 'Client sessions the server knows now.',
      registers,
      collect() {
        this.set(src.sessionCount);
      },
    });
    this.#checkout = new Histogram({
      name: 'floatlm_checkout_duration_seconds',
      help: 'From a CHECKOUT datagram received to its reply sent (including the group commit).',
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#commit = new Histogram({
      name: 'floatlm_store_commit_duration_seconds',
      help: 'Duration of one group commit of the state store.',
      buckets: LATENCY_BUCKETS,
      registers,
    });
    new Gauge({
      name: 'floatlm_grace_remaining_seconds',
      help: 'Restart grace left (only reclaims are served meanwhile); 0 outside grace.',
      registers,
      collect() {
        this.set(src.graceLeft() / 1000);
      },
    });
    new Gauge({
      name: 'floatlm_ready',
      help: '1 when the server grants seats: running, out of restart grace, store reachable.',
      registers,
      collect() {
        this.set(notReady(src) === undefined ? 1 : 0);
      },
    });
    new Gauge({
      name: 'floatlm_store_up',
      help: 'The state store answers (1) or not (0).',
      labelNames: ['backend'],
      registers,
      collect() {
        this.reset();
        const s = src.storeState();
        this.set({ backend: s.backend }, s.reachable ? 1 : 0);
      },
    });
    new Gauge({
      name: 'floatlm_store_leader',
      help: 'This server leads the store cluster (etcd); absent for SQLite.',
      labelNames: ['backend'],
      registers,
      collect() {
        this.reset();
        const s = src.storeState();
        if (s.leader !== undefined) this.set({ backend: s.backend }, s.leader ? 1 : 0);
      },
    });
  }

  /**
   * A CHECKOUT's latency, receive to reply.
   * @throws {RangeError} when seconds is negative or not finite
   */
  observeCheckout(seconds: number): void {
    this.#checkout.observe(checkSeconds(seconds));
  }

  /**
   * A group commit's duration.
   * @throws {RangeError} when seconds is negative or not finite
   */
  observeCommit(seconds: number): void {
    this.#commit.observe(checkSeconds(seconds));
  }

  /** Feeds one report event (ReportLog.subscribe): denials, queue waits. */
  readonly onReport = (event: ReportEvent, now: number, f: Record<string, unknown>): void => {
    const session = typeof f.session === 'string' ? f.session : undefined;
    const feature = typeof f.feature === 'string' ? f.feature : undefined;
    switch (event) {
      case 'deny': {
        if (!feature) return;
        const reason = typeof f.reason === 'string' ? f.reason : 'UNKNOWN';
        this.#denials.inc({ feature, reason });
        const per = this.#denied.get(feature) ?? new Map<string, number>();
        per.set(reason, (per.get(reason) ?? 0) + 1);
        this.#denied.set(feature, per);
        return;
      }
      case 'queue':
        if (session && feature) this.#enqueue(session, feature, now);
        return;
      case 'grant': {
        if (!session || !feature || f.queued !== true) return;
        const since = this.#unqueue(session, feature);
        if (since !== undefined) this.#wait.observe({ feature }, Math.max(0, now - since) / 1000);
        return;
      }
      case 'dequeue':
        if (session && feature) this.#unqueue(session, feature);
        return;
      case 'reap':
      case 'close':
        if (session) this.#dropSession(session);
        return;
      default:
        return;
    }
  };

  /** Denials seen since start, per feature name and reason. */
  denials(): { feature: string; reason: string; count: number }[] {
    const out: { feature: string; reason: string; count: number }[] = [];
    for (const [feature, per] of [...this.#denied].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      for (const [reason, count] of per) out.push({ feature, reason, count });
    }
    return out;
  }

  /** The scrape, in the Prometheus text format. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  #enqueue(session: string, feature: string, now: number): void {
    let per = this.#waiting.get(session);
    if (!per) {
      if (this.#waitingSize >= MAX_WAITING) {
        const oldest = this.#waiting.keys().next().value;
        if (oldest !== undefined) this.#dropSession(oldest);
      }
      per = new Map();
      this.#waiting.set(session, per);
    }
    if (!per.has(feature)) this.#waitingSize++;
    per.set(feature, now);
  }

  #unqueue(session: string, feature: string): number | undefined {
    const per = this.#waiting.get(session);
    const since = per?.get(feature);
    if (per && since !== undefined) {
      per.delete(feature);
      this.#waitingSize--;
      if (per.size === 0) this.#waiting.delete(session);
    }
    return since;
  }

  #dropSession(session: string): void {
    const per = this.#waiting.get(session);
    if (!per) return;
    this.#waitingSize -= per.size;
    this.#waiting.delete(session);
  }
}

/** Queue length per feature name (the pool repeats it on every version's row). */
export function queuedPerName(s: PoolStatus): Map<string, number> {
  const out = new Map<string, number>();
  for (const f of s.features) out.set(f.name, f.queued);
  return out;
}

function checkSeconds(seconds: number): number {
  if (!Number.isFinite(seconds) || seconds < 0) {
    throw new RangeError('seconds must be a finite non-negative number');
  }
  return seconds;
}
