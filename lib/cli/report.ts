/**
 * `floatlm report`: usage reports from the daemon's report log (`report.jsonl` and its
 * rotated files, oldest first): per feature the peak concurrent use, seat-hours, grants,
 * denials, queue waits (p50/p95) and unmet demand (the peak of seats in use + seats queued +
 * seats denied recently to users who got none, i.e. how many seats would have served
 * everyone); seat-hours by user and by host; denials by reason. Text, JSON or CSV.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { rotatedReportFiles } from '../server/log.ts';
import { CliError, type CliIO, ExitCode } from './io.ts';

/** A denial counts as demand for this long after it happened (ms) unless the user got a seat. */
export const DENIAL_WINDOW_MS = 5 * 60_000;

export interface ReportOptions {
  /** ms UTC; events before only set up the state (leases held at `since`). */
  since?: number;
  until?: number;
  feature?: string;
  /** ms UTC used for leases still open at the end. Default Date.now(). */
  now?: number;
}

export interface FeatureReport {
  feature: string;
  peakInUse: number;
  /** ISO time the peak was first reached, or null. */
  peakAt: string | null;
  seatHours: number;
  grants: number;
  denials: number;
  queued: number;
  waitP50s: number | null;
  waitP95s: number | null;
  unmetDemand: number;
  unmetAt: string | null;
}

export interface UsageReport {
  since: string | null;
  until: string;
  files: string[];
  /** Lines that were not JSON report events (a torn last line after a crash, say). */
  skipped: { count: number; first: string | null };
  features: FeatureReport[];
  byUser: { user: string; feature: string; seatHours: number; grants: number }[];
  byHost: { host: string; feature: string; seatHours: number; grants: number }[];
  denials: { feature: string; reason: string; count: number }[];
}

interface LeaseRec {
  feature: string;
  user: string;
  host: string;
  session: string;
  count: number;
  since: number;
}

interface Ev {
  t: number;
  event: string;
  [k: string]: unknown;
}

const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const num = (v: unknown, d: number): number =>
  typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : d;

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

/** Reads the events of `files` in order; lines that are not events are counted, not fatal. */
export function readEvents(files: string[]): { events: Ev[]; skipped: UsageReport['skipped'] } {
  const events: Ev[] = [];
  const skipped = { count: 0, first: null as string | null };
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new CliError(
        `floatlm report: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
        ExitCode.BAD_FILE,
      );
    }
    text.split('\n').forEach((line, i) => {
      if (line.trim() === '') return;
      let o: unknown;
      try {
        o = JSON.parse(line);
      } catch {
        o = undefined;
      }
      const rec = o as { t?: unknown; event?: unknown } | undefined;
      const t = typeof rec?.t === 'string' ? Date.parse(rec.t) : Number.NaN;
      if (!rec || typeof rec.event !== 'string' || Number.isNaN(t)) {
        skipped.count++;
        skipped.first ??= `${file}:${i + 1}:1: not a report event`;
        return;
      }
      events.push({ ...(rec as object), t, event: rec.event } as Ev);
    });
  }
  return { events, skipped };
}

/**
 * The report over `events` (in log order).
 * @throws {RangeError} when since is after until
 */
export function buildReport(
  events: Ev[],
  o: ReportOptions = {},
  files: string[] = [],
  skipped: UsageReport['skipped'] = { count: 0, first: null },
): UsageReport {
  const since = o.since ?? Number.NEGATIVE_INFINITY;
  const until = o.until ?? o.now ?? Date.now();
  if (since > until) throw new RangeError('--since must be before --until');
  const want = (f: string) => o.feature === undefined || f === o.feature;
  const leases = new Map<string, LeaseRec>();
  const bySession = new Map<string, Set<string>>();
  /** session\0feature → queue entry. */
  const queue = new Map<string, { t: number; count: number; user: string; host: string }>();
  const sessions = new Map<string, { user: string; host: string }>();
  const feats = new Map<
    string,
    {
      inUse: number;
      queued: number;
      r: FeatureReport;
      waits: number[];
      /** user\0host → seats held now. */
      holders: Map<string, number>;
      /** user\0host → [time, seats] of the latest denial. */
      denied: Map<string, [number, number]>;
    }
  >();
  const users = new Map<string, { seatHours: number; grants: number }>();
  const hosts = new Map<string, { seatHours: number; grants: number }>();
  const denials = new Map<string, number>();

  const feat = (name: string) => {
    let f = feats.get(name);
    if (!f) {
      f = {
        inUse: 0,
        queued: 0,
        waits: [],
        holders: new Map(),
        denied: new Map(),
        r: {
          feature: name,
          peakInUse: 0,
          peakAt: null,
          seatHours: 0,
          grants: 0,
          denials: 0,
          queued: 0,
          waitP50s: null,
          waitP95s: null,
          unmetDemand: 0,
          unmetAt: null,
        },
      };
      feats.set(name, f);
    }
    return f;
  };
  const inWindow = (t: number) => t >= since && t <= until;
  const addHours = (
    key: string,
    m: Map<string, { seatHours: number; grants: number }>,
    h: number,
    g: number,
  ) => {
    const e = m.get(key) ?? { seatHours: 0, grants: 0 };
    e.seatHours += h;
    e.grants += g;
    m.set(key, e);
  };
  const hoursOf = (l: LeaseRec, end: number) => {
    const a = Math.max(l.since, since);
    const b = Math.min(end, until);
    return b > a ? ((b - a) / 3_600_000) * l.count : 0;
  };
  const end = (id: string, t: number) => {
    const l = leases.get(id);
    if (!l) return;
    leases.delete(id);
    bySession.get(l.session)?.delete(id);
    const f = feat(l.feature);
    f.inUse = Math.max(0, f.inUse - l.count);
    const who = `${l.user}\0${l.host}`;
    const left = (f.holders.get(who) ?? 0) - l.count;
    if (left > 0) f.holders.set(who, left);
    else f.holders.delete(who);
    const h = hoursOf(l, t);
    f.r.seatHours += h;
    addHours(`${l.user}\0${l.feature}`, users, h, 0);
    addHours(`${l.host}\0${l.feature}`, hosts, h, 0);
  };
  const leaveQueue = (session: string, feature: string) => {
    const k = `${session}\0${feature}`;
    const q = queue.get(k);
    if (!q) return undefined;
    queue.delete(k);
    const f = feat(feature);
    f.queued = Math.max(0, f.queued - q.count);
    return q;
  };
  const measure = (name: string, t: number) => {
    if (!inWindow(t)) return;
    const f = feat(name);
    if (f.inUse > f.r.peakInUse) {
      f.r.peakInUse = f.inUse;
      f.r.peakAt = new Date(t).toISOString();
    }
    let unmet = 0;
    for (const [who, [at, seats]] of f.denied) {
      if (t - at > DENIAL_WINDOW_MS || f.holders.has(who)) f.denied.delete(who);
      else unmet += seats;
    }
    const demand = f.inUse + f.queued + unmet;
    if (demand > f.r.unmetDemand) {
      f.r.unmetDemand = demand;
      f.r.unmetAt = new Date(t).toISOString();
    }
  };

  for (const e of events) {
    if (e.t > until) break;
    const session = str(e.session);
    const feature = str(e.feature);
    const known = sessions.get(session);
    const user = str(e.user) || known?.user || '';
    const host = str(e.host) || known?.host || '';
    switch (e.event) {
      case 'session':
        sessions.set(session, { user, host });
        break;
      case 'grant': {
        const lease = str(e.lease);
        // A seat assigned from the queue is logged again when its holder picks it up.
        if (!lease || !want(feature) || leases.has(lease)) break;
        const q = e.queued === true ? leaveQueue(session, feature) : undefined;
        const count = num(e.count, q?.count ?? 1);
        const l: LeaseRec = { feature, user, host, session, count, since: e.t };
        leases.set(lease, l);
        const set = bySession.get(session) ?? new Set<string>();
        bySession.set(session, set);
        set.add(lease);
        const f = feat(feature);
        f.inUse += count;
        const who = `${user}\0${host}`;
        f.holders.set(who, (f.holders.get(who) ?? 0) + count);
        f.denied.delete(who);
        if (inWindow(e.t)) {
          f.r.grants++;
          addHours(`${user}\0${feature}`, users, 0, 1);
          addHours(`${host}\0${feature}`, hosts, 0, 1);
          if (q) f.waits.push((e.t - q.t) / 1000);
        }
        measure(feature, e.t);
        break;
      }
      case 'reclaim': {
        // A lease that survived a restart: it is already held here (or from before the log).
        const lease = str(e.lease);
        if (!lease || leases.has(lease) || !want(feature)) break;
        const l: LeaseRec = { feature, user, host, session, count: num(e.count, 1), since: e.t };
        leases.set(lease, l);
        const f = feat(feature);
        f.inUse += l.count;
        f.holders.set(`${user}\0${host}`, (f.holders.get(`${user}\0${host}`) ?? 0) + l.count);
        measure(feature, e.t);
        break;
      }
      case 'release':
      case 'remove':
        end(str(e.lease), e.t);
        break;
      case 'reap':
      case 'close':
        for (const id of [...(bySession.get(session) ?? [])]) end(id, e.t);
        bySession.delete(session);
        for (const k of [...queue.keys()]) {
          if (k.startsWith(`${session}\0`)) leaveQueue(session, k.slice(session.length + 1));
        }
        break;
      case 'queue': {
        if (!want(feature)) break;
        const count = num(e.count, 1);
        leaveQueue(session, feature);
        queue.set(`${session}\0${feature}`, { t: e.t, count, user, host });
        const f = feat(feature);
        f.queued += count;
        if (inWindow(e.t)) f.r.queued++;
        measure(feature, e.t);
        break;
      }
      case 'dequeue':
        leaveQueue(session, feature);
        break;
      case 'deny': {
        if (!want(feature)) break;
        const f = feat(feature);
        if (inWindow(e.t)) {
          f.r.denials++;
          const reason = str(e.reason) || 'UNKNOWN';
          const k = `${feature}\0${reason}`;
          denials.set(k, (denials.get(k) ?? 0) + 1);
        }
        const who = `${user}\0${host}`;
        if (!f.holders.has(who)) f.denied.set(who, [e.t, num(e.count, 1)]);
        measure(feature, e.t);
        break;
      }
      default:
        break;
    }
  }
  // Leases still held count up to the end of the report.
  for (const l of leases.values()) {
    const h = hoursOf(l, until);
    feat(l.feature).r.seatHours += h;
    addHours(`${l.user}\0${l.feature}`, users, h, 0);
    addHours(`${l.host}\0${l.feature}`, hosts, h, 0);
  }
  for (const f of feats.values()) {
    const w = [...f.waits].sort((a, b) => a - b);
    f.r.waitP50s = percentile(w, 0.5);
    f.r.waitP95s = percentile(w, 0.95);
  }
  const split = (k: string) => k.split('\0') as [string, string];
  const order = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  return {
    since: Number.isFinite(since) ? new Date(since).toISOString() : null,
    until: new Date(until).toISOString(),
    files,
    skipped,
    features: [...feats.values()]
      .map((f) => f.r)
      .filter((r) => want(r.feature))
      .sort((a, b) => order(a.feature, b.feature)),
    byUser: [...users]
      .map(([k, v]) => ({ user: split(k)[0], feature: split(k)[1], ...v }))
      .sort((a, b) => b.seatHours - a.seatHours || order(a.user, b.user)),
    byHost: [...hosts]
      .map(([k, v]) => ({ host: split(k)[0], feature: split(k)[1], ...v }))
      .sort((a, b) => b.seatHours - a.seatHours || order(a.host, b.host)),
    denials: [...denials]
      .map(([k, count]) => ({ feature: split(k)[0], reason: split(k)[1], count }))
      .sort((a, b) => order(a.feature, b.feature) || b.count - a.count),
  };
}

/**
 * A time for --since/--until: ISO 8601 (`2026-01-31`, `2026-01-31T08:00Z`) or an age
 * (`90m`, `24h`, `7d`, `4w`) before `now`.
 * @throws {InvalidArgumentError} when the value is neither
 */
export function parseWhen(value: string, now: number = Date.now()): number {
  const m = /^(\d+)([smhdw])$/.exec(value.trim());
  if (m) {
    const unit = { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7, w: 6.048e8 }[m[2] as 's'];
    return now - Number(m[1]) * unit;
  }
  const t = Date.parse(value);
  if (Number.isNaN(t)) {
    throw new InvalidArgumentError(
      `'${value}' is not a date (2026-01-31, 2026-01-31T08:00Z) or an age (24h, 7d)`,
    );
  }
  return t;
}

const h2 = (n: number) => n.toFixed(2);
const sec = (n: number | null) => (n === null ? '-' : `${n.toFixed(1)}s`);

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return `${rows
    .map((r) =>
      r
        .map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}\n`;
}

function csvCell(v: string | number | null): string {
  const s = v === null ? '' : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

type By = 'feature' | 'user' | 'host';

/** The report as CSV: the table chosen by `by`, a header line first. */
export function reportCsv(r: UsageReport, by: By): string {
  let rows: (string | number | null)[][];
  if (by === 'feature') {
    rows = [
      [
        'feature',
        'peak_in_use',
        'peak_at',
        'seat_hours',
        'grants',
        'denials',
        'queued',
        'wait_p50_s',
        'wait_p95_s',
        'unmet_demand',
        'unmet_at',
      ],
      ...r.features.map((f) => [
        f.feature,
        f.peakInUse,
        f.peakAt,
        h2(f.seatHours),
        f.grants,
        f.denials,
        f.queued,
        f.waitP50s,
        f.waitP95s,
        f.unmetDemand,
        f.unmetAt,
      ]),
    ];
  } else {
    const list =
      by === 'user'
        ? r.byUser.map((u) => ({ key: u.user, ...u }))
        : r.byHost.map((u) => ({ key: u.host, ...u }));
    rows = [
      [by, 'feature', 'seat_hours', 'grants'],
      ...list.map((u) => [u.key, u.feature, h2(u.seatHours), u.grants]),
    ];
  }
  return `${rows.map((row) => row.map(csvCell).join(',')).join('\n')}\n`;
}

/** The report as text tables: features, then seat-hours by user and/or host, then denials. */
export function reportText(r: UsageReport, by: By): string {
  let out = `Usage ${r.since ?? 'from the start of the log'} to ${r.until}\n\n`;
  if (r.features.length === 0) return `${out}no events in this period\n`;
  out += table([
    [
      'FEATURE',
      'PEAK',
      'SEAT-HOURS',
      'GRANTS',
      'DENIED',
      'QUEUED',
      'WAIT P50',
      'WAIT P95',
      'UNMET DEMAND',
    ],
    ...r.features.map((f) => [
      f.feature,
      String(f.peakInUse),
      h2(f.seatHours),
      String(f.grants),
      String(f.denials),
      String(f.queued),
      sec(f.waitP50s),
      sec(f.waitP95s),
      String(f.unmetDemand),
    ]),
  ]);
  if (by !== 'host' && r.byUser.length) {
    out += `\nSeat-hours by user\n${table([['USER', 'FEATURE', 'SEAT-HOURS', 'GRANTS'], ...r.byUser.map((u) => [u.user, u.feature, h2(u.seatHours), String(u.grants)])])}`;
  }
  if (by !== 'user' && r.byHost.length) {
    out += `\nSeat-hours by host\n${table([['HOST', 'FEATURE', 'SEAT-HOURS', 'GRANTS'], ...r.byHost.map((u) => [u.host, u.feature, h2(u.seatHours), String(u.grants)])])}`;
  }
  if (r.denials.length) {
    out += `\nDenials by reason\n${table([['FEATURE', 'REASON', 'COUNT'], ...r.denials.map((d) => [d.feature, d.reason, String(d.count)])])}`;
  }
  return out;
}

interface ReportFlags {
  log: string;
  since?: number;
  until?: number;
  feature?: string;
  by: By;
  json?: boolean;
  csv?: boolean;
}

/**
 * The action of `floatlm report`.
 * @throws {CliError} when a file cannot be read or the options contradict each other
 */
export function reportAction(io: CliIO, o: ReportFlags, now: number = Date.now()): void {
  if (o.json && o.csv)
    throw new CliError('floatlm report: --json and --csv exclude each other', ExitCode.USAGE);
  const path = resolve(io.cwd, o.log);
  const files = [...rotatedReportFiles(path), path];
  const { events, skipped } = readEvents(files);
  let report: UsageReport;
  try {
    report = buildReport(
      events,
      {
        now,
        ...(o.since !== undefined ? { since: o.since } : {}),
        ...(o.until !== undefined ? { until: o.until } : {}),
        ...(o.feature !== undefined ? { feature: o.feature } : {}),
      },
      files,
      skipped,
    );
  } catch (e) {
    throw new CliError(`floatlm report: ${(e as Error).message}`, ExitCode.USAGE);
  }
  if (skipped.count > 0) {
    io.err(
      `floatlm report: skipped ${skipped.count} line(s) that are not report events; first: ${skipped.first}\n`,
    );
  }
  if (o.json) io.out(`${JSON.stringify(report, null, 2)}\n`);
  else if (o.csv) io.out(reportCsv(report, o.by));
  else io.out(reportText(report, o.by));
}

/** Adds `report` to the `floatlm` program. */
export function registerReport(program: Command, io: CliIO): void {
  const when = (v: string) => parseWhen(v);
  program
    .command('report')
    .description(
      'usage report from the report log: peaks, seat-hours, denials, queue waits, unmet demand',
    )
    .option(
      '--log <file>',
      'report log (its rotated files <file>.<time> are read too)',
      'report.jsonl',
    )
    .option(
      '--since <when>',
      'from this time (2026-01-31, 2026-01-31T08:00Z) or age (24h, 7d)',
      when,
    )
    .option('--until <when>', 'up to this time or age (default: now)', when)
    .option('--feature <name>', 'only this feature')
    .addOption(
      new Option('--by <what>', 'seat-hours grouped by')
        .choices(['feature', 'user', 'host'])
        .default('feature'),
    )
    .option('--json', 'the whole report as JSON')
    .option('--csv', 'the table chosen by --by as CSV')
    .addHelpText(
      'after',
      `
Unmet demand is, per feature, the peak of seats in use + seats queued + seats denied in the
last ${DENIAL_WINDOW_MS / 60_000} minutes to users who hold none: the seats that would have served everyone.

Examples:
  floatlm report --log /var/lib/floatlm/report.jsonl --since 7d
  floatlm report --since 2026-01-01 --until 2026-02-01 --by user --csv > january.csv
  floatlm report --feature cad --json`,
    )
    .action((o: ReportFlags) => reportAction(io, o));
}
