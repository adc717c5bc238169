/**
 * The usage history in a real SQLite file: buckets of each tier keep the peaks and sum the
 * denials, series are aligned columns with nulls, the file survives a reopen, old buckets
 * are pruned so the size stays bounded, and sampleStatus turns pool counts into deltas.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { PoolStatus } from '../../lib/license/pool.ts';
import { HistoryStore, sampleStatus } from '../../lib/server/history.ts';

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const s = (feature: string, inUse: number, queued = 0, denied = 0) => ({
  feature,
  inUse,
  queued,
  licensed: 5,
  denied,
});

t.test('peaks, sums, alignment, reopen', async (t) => {
  const file = join(mkdtempSync(join(tmpdir(), 'floatlm-h-')), 'history.db');
  const h = new HistoryStore(file);
  h.record(T0, [s('cad', 1, 0, 1)]);
  h.record(T0 + 2000, [s('cad', 4, 2, 2)]);
  h.record(T0 + 4000, [s('cad', 2, 0, 0), s('sim', 1)]);
  h.record(T0 + 65_000, [s('cad', 3)]);
  h.close();
  const again = new HistoryStore(file);
  t.teardown(() => again.close());
  const hour = again.series('hour', T0 + 65_000);
  t.equal(hour.bucketSeconds, 10);
  t.equal(hour.t.length, 360);
  t.equal(hour.t.at(-1), (T0 + 60_000) / 1000);
  const cad = hour.features.cad!;
  const i0 = hour.t.indexOf(T0 / 1000);
  t.equal(cad.inUse[i0], 4, 'peak in use of the bucket');
  t.equal(cad.queued[i0], 2);
  t.equal(cad.denied[i0], 3, 'denials summed');
  t.equal(cad.inUse[i0 + 1], null, 'no sample: null');
  t.equal(cad.inUse.at(-1), 3);
  const day = again.series('day', T0 + 65_000);
  t.equal(day.bucketSeconds, 60);
  t.equal(day.features.cad!.inUse.at(-2), 4);
  t.equal(day.features.sim!.inUse.at(-2), 1);
  t.equal(again.series('month', T0).t.length, 720);
  t.throws(() => again.series('year', T0), RangeError);
  t.throws(() => new HistoryStore(''), TypeError);
});

t.test('bounded: old buckets are pruned', async (t) => {
  const h = new HistoryStore(join(mkdtempSync(join(tmpdir(), 'floatlm-h-')), 'history.db'));
  t.teardown(() => h.close());
  // Two days at one sample a minute, in bounded steps.
  for (let i = 0; i < 2 * 1440; i++) h.record(T0 + i * 60_000, [s('cad', i % 5)]);
  const n = h.size();
  // 10 s tier: an hour (≈ 61 rows); 1 min tier: a day (≈ 1441); 1 h tier: 48.
  t.ok(n <= 61 + 1441 + 49, `rows bounded (${n})`);
  t.ok(n >= 1400, `recent history kept (${n})`);
});

t.test('sampleStatus sums versions and takes denial deltas', async (t) => {
  const f = (version: string, count: number, inUse: number, denied: number) => ({
    name: 'cad',
    version,
    vendor: 'demo',
    expires: 0,
    count,
    inUse,
    queued: 2,
    issued: 0,
    denied,
    expired: false,
    removed: false,
  });
  const st = (d1: number, d2: number): PoolStatus => ({
    features: [f('1.0', 3, 1, d1), f('2.0', 2, 2, d2)],
    holders: [],
    queue: [],
    reservations: [],
  });
  const a = sampleStatus(st(1, 1), new Map());
  t.same(a.samples, [{ feature: 'cad', inUse: 3, queued: 2, licensed: 5, denied: 0 }]);
  const b = sampleStatus(st(4, 2), a.denied);
  t.equal(b.samples[0]!.denied, 4);
  const c = sampleStatus(st(0, 1), b.denied);
  t.equal(c.samples[0]!.denied, 1, 'counts restarted after a reread');
});
