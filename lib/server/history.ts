/**
 * Usage history for the status page: per feature name, the peak seats in use, the peak queue
 * length, the seats licensed and the denials, in time buckets of three sizes (10 s kept an
 * hour, 1 min kept a day, 1 h kept 35 days), in its own SQLite file (`<stateDir>/history.db`)
 * so it survives restarts without touching the state store. Bounded: old buckets are pruned,
 * and at most MAX_FEATURES feature names are recorded.
 */
import Database from 'better-sqlite3';
import type { PoolStatus } from '../license/pool.ts';

/** Bucket sizes and how long each is kept (ms). */
export const TIERS = [
  { bucketMs: 10_000, keepMs: 3_600_000 },
  { bucketMs: 60_000, keepMs: 86_400_000 },
  { bucketMs: 3_600_000, keepMs: 35 * 86_400_000 },
] as const;

export const RANGES = {
  hour: { spanMs: 3_600_000, tier: 0 },
  day: { spanMs: 86_400_000, tier: 1 },
  week: { spanMs: 7 * 86_400_000, tier: 2 },
  month: { spanMs: 30 * 86_400_000, tier: 2 },
} as const;
export type HistoryRange = keyof typeof RANGES;

const MAX_FEATURES = 1000;
const PRUNE_EVERY_MS = 60_000;

/** One feature's state at one instant. */
export interface FeatureSample {
  feature: string;
  inUse: number;
  queued: number;
  licensed: number;
  /** Denials since the previous sample. */
  denied: number;
}

/** Columns for a chart: `t` in Unix seconds (bucket starts), one value per bucket or null. */
export interface HistorySeries {
  range: HistoryRange;
  bucketSeconds: number;
  t: number[];
  features: Record<
    string,
    {
      inUse: (number | null)[];
      queued: (number | null)[];
      denied: (number | null)[];
      licensed: (number | null)[];
    }
  >;
}

/** The per-feature-name sample of a pool status; denials as the difference to `previous`. */
export function sampleStatus(
  status: PoolStatus,
  previous: Map<string, number>,
): { samples: FeatureSample[]; denied: Map<string, number> } {
  const by = new Map<string, FeatureSample>();
  const denied = new Map<string, number>();
  for (const f of status.features) {
    const s = by.get(f.name) ?? {
      feature: f.name,
      inUse: 0,
      queued: f.queued,
      licensed: 0,
      denied: 0,
    };
    s.inUse += f.inUse;
    s.licensed += f.count;
    by.set(f.name, s);
    denied.set(f.name, (denied.get(f.name) ?? 0) + f.denied);
  }
  for (const [name, total] of denied) {
    const before = previous.get(name);
    // A reread rebuilds the pools and their counts start again from zero.
    const delta = before === undefined ? 0 : total >= before ? total - before : total;
    by.get(name)!.denied = delta;
  }
  return { samples: [...by.values()], denied };
}

/** The history file. Synchronous (better-sqlite3); a sample is a handful of upserts. */
export class HistoryStore {
  readonly #db: Database.Database;
  readonly #upsert: Database.Statement;
  readonly #select: Database.Statement;
  readonly #prune: Database.Statement;
  readonly #known = new Set<string>();
  #lastPrune = 0;

  /**
   * Opens (creating) the history file.
   * @throws {TypeError} when path is not a non-empty string
   * @throws {Error} when the file cannot be opened or is not a history file
   */
  constructor(path: string) {
    if (typeof path !== 'string' || path === '') throw new TypeError('path must be a file path');
    this.#db = new Database(path);
    // History is a convenience: a lost last second after a crash is fine, fsyncs are not.
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = NORMAL');
    this.#db.exec(`CREATE TABLE IF NOT EXISTS usage (
      tier INTEGER NOT NULL,
      bucket INTEGER NOT NULL,
      feature TEXT NOT NULL,
      in_use INTEGER NOT NULL,
      queued INTEGER NOT NULL,
      licensed INTEGER NOT NULL,
      denied INTEGER NOT NULL,
      PRIMARY KEY (tier, bucket, feature)
    ) WITHOUT ROWID`);
    this.#upsert =
      this.#db.prepare(`INSERT INTO usage (tier, bucket, feature, in_use, queued, licensed, denied)
      VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (tier, bucket, feature) DO UPDATE SET
        in_use = max(in_use, excluded.in_use),
        queued = max(queued, excluded.queued),
        licensed = max(licensed, excluded.licensed),
        denied = denied + excluded.denied`);
    this.#select = this.#db.prepare(
      'SELECT bucket, feature, in_use, queued, licensed, denied FROM usage WHERE tier = ? AND bucket >= ? ORDER BY bucket',
    );
    this.#prune = this.#db.prepare('DELETE FROM usage WHERE tier = ? AND bucket < ?');
    for (const r of this.#db.prepare('SELECT DISTINCT feature FROM usage').all() as {
      feature: string;
    }[])
      this.#known.add(r.feature);
  }

  /**
   * Adds one sample of every feature at `now` (ms UTC) to each tier's bucket.
   * @throws {RangeError} when now is not a finite number
   */
  record(now: number, samples: readonly FeatureSample[]): void {
    if (!Number.isFinite(now)) throw new RangeError('now must be a time in ms');
    const tx = this.#db.transaction(() => {
      for (const s of samples) {
        if (!this.#known.has(s.feature)) {
          if (this.#known.size >= MAX_FEATURES) continue;
          this.#known.add(s.feature);
        }
        TIERS.forEach((tier, i) => {
          const bucket = Math.floor(now / tier.bucketMs) * tier.bucketMs;
          this.#upsert.run(i, bucket, s.feature, s.inUse, s.queued, s.licensed, s.denied);
        });
      }
      if (now - this.#lastPrune >= PRUNE_EVERY_MS) {
        this.#lastPrune = now;
        TIERS.forEach((tier, i) => {
          this.#prune.run(i, now - tier.keepMs);
        });
      }
    });
    tx();
  }

  /**
   * Every bucket of `range` up to `now`, oldest first; buckets without a sample are null.
   * @throws {RangeError} when range is not one of RANGES
   */
  series(range: string, now: number): HistorySeries {
    const r = RANGES[range as HistoryRange];
    if (!r) throw new RangeError(`range must be one of ${Object.keys(RANGES).join(', ')}`);
    const { bucketMs } = TIERS[r.tier];
    const last = Math.floor(now / bucketMs) * bucketMs;
    const first = last - Math.ceil(r.spanMs / bucketMs) * bucketMs + bucketMs;
    const n = Math.round((last - first) / bucketMs) + 1;
    const t = Array.from({ length: n }, (_, i) => (first + i * bucketMs) / 1000);
    const features: HistorySeries['features'] = {};
    const rows = this.#select.all(r.tier, first) as {
      bucket: number;
      feature: string;
      in_use: number;
      queued: number;
      licensed: number;
      denied: number;
    }[];
    for (const row of rows) {
      const i = Math.round((row.bucket - first) / bucketMs);
      if (i < 0 || i >= n) continue;
      let f = features[row.feature];
      if (!f) {
        const empty = () => new Array<number | null>(n).fill(null);
        f = { inUse: empty(), queued: empty(), denied: empty(), licensed: empty() };
        features[row.feature] = f;
      }
      f.inUse[i] = row.in_use;
      f.queued[i] = row.queued;
      f.denied[i] = row.denied;
      f.licensed[i] = row.licensed;
    }
    return { range: range as HistoryRange, bucketSeconds: bucketMs / 1000, t, features };
  }

  /** Rows kept (bounded by the tiers' retention times the features). */
  size(): number {
    return (this.#db.prepare('SELECT count(*) AS n FROM usage').get() as { n: number }).n;
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }
}
