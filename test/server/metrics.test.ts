/**
 * Metrics fed by a real ReportLog's events: denials by reason, queue waits from the report
 * log's own timestamps, forgetting queue entries of sessions that went away; the hooks'
 * argument checks; readiness reasons.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { PoolStatus } from '../../lib/license/pool.ts';
import { ReportLog } from '../../lib/server/log.ts';
import {
  Metrics,
  notReady,
  type OperatorSource,
  type StoreState,
} from '../../lib/server/metrics.ts';

function source(
  over: Partial<{ state: string; grace: number; store: StoreState; pauses: number }> = {},
) {
  const status: PoolStatus = { features: [], holders: [], queue: [], reservations: [] };
  const counters = {
    received: 0,
    malformed: 0,
    rateLimited: 0,
    badMac: 0,
    dropped: 0,
    replayed: 0,
    retransmits: 0,
    answered: 0,
    errors: 0,
    internal: 0,
    reaped: 0,
  };
  const s: OperatorSource = {
    version: '9.9.9',
    state: over.state ?? 'RUNNING',
    sessionCount: 0,
    counters,
    graceLeft: () => over.grace ?? 0,
    readPauses: () => over.pauses ?? 0,
    poolStatus: () => status,
    storeState: () => over.store ?? { backend: 'sqlite', reachable: true },
  };
  return s;
}

function value(text: string, line: string): number | undefined {
  const l = text.split('\n').find((x) => x.startsWith(`${line} `));
  return l === undefined ? undefined : Number(l.slice(line.length + 1));
}

t.test('denials and queue waits come from the report events', async (t) => {
  const m = new Metrics(source(), { processMetrics: false });
  const log = new ReportLog(join(mkdtempSync(join(tmpdir(), 'floatlm-m-')), 'report.jsonl'));
  log.subscribe(m.onReport);
  const t0 = Date.UTC(2026, 0, 1);
  log.write('deny', t0, { session: 'a', feature: 'cad', reason: 'NO_SEATS' });
  log.write('deny', t0, { session: 'b', feature: 'cad', reason: 'NO_SEATS' });
  log.write('deny', t0, { session: 'b', feature: 'cad', reason: 'USER_MAX' });
  log.write('queue', t0, { session: 'a', feature: 'cad', position: 1 });
  log.write('queue', t0, { session: 'b', feature: 'cad', position: 2 });
  log.write('queue', t0, { session: 'c', feature: 'cad', position: 3 });
  log.write('grant', t0 + 42_000, { session: 'a', feature: 'cad', queued: true });
  log.write('reap', t0 + 50_000, { session: 'b' });
  log.write('grant', t0 + 60_000, { session: 'b', feature: 'cad', queued: true });
  log.write('dequeue', t0 + 61_000, { session: 'c', feature: 'cad' });
  log.write('grant', t0 + 62_000, { session: 'c', feature: 'cad', queued: true });
  const text = await m.text();
  t.equal(value(text, 'floatlm_feature_denials_total{feature="cad",reason="NO_SEATS"}'), 2);
  t.equal(value(text, 'floatlm_feature_denials_total{feature="cad",reason="USER_MAX"}'), 1);
  t.equal(value(text, 'floatlm_feature_queue_wait_seconds_count{feature="cad"}'), 1, 'one wait');
  t.equal(value(text, 'floatlm_feature_queue_wait_seconds_sum{feature="cad"}'), 42);
  t.equal(value(text, 'floatlm_feature_queue_wait_seconds_bucket{le="30",feature="cad"}'), 0);
  t.equal(value(text, 'floatlm_feature_queue_wait_seconds_bucket{le="60",feature="cad"}'), 1);
  t.same(m.denials(), [
    { feature: 'cad', reason: 'NO_SEATS', count: 2 },
    { feature: 'cad', reason: 'USER_MAX', count: 1 },
  ]);
  t.equal(value(text, 'floatlm_build_info{version="9.9.9"}'), 1);
});

t.test("the socket's flood pauses are a counter", async (t) => {
  const m = new Metrics(source({ pauses: 7 }), { processMetrics: false });
  t.equal(value(await m.registry.metrics(), 'floatlm_udp_read_pauses_total'), 7);
});

t.test('hooks check their argument; notReady names the reason', async (t) => {
  const m = new Metrics(source(), { processMetrics: false });
  t.throws(() => m.observeCheckout(-1), RangeError);
  t.throws(() => m.observeCommit(Number.NaN), RangeError);
  t.throws(() => new Metrics(undefined as unknown as OperatorSource), TypeError);
  t.equal(notReady(source()), undefined);
  t.equal(notReady(source({ state: 'CLOSING' })), 'state CLOSING');
  t.match(notReady(source({ grace: 12_300 })), /in restart grace \(13 s left\)/);
  t.match(
    notReady(source({ store: { backend: 'etcd', reachable: false, leader: false } })),
    /etcd store not reachable/,
  );
  const etcd = new Metrics(source({ store: { backend: 'etcd', reachable: true, leader: true } }), {
    processMetrics: false,
  });
  t.equal(value(await etcd.text(), 'floatlm_store_leader{backend="etcd"}'), 1);
  t.equal(value(await m.text(), 'floatlm_store_leader{backend="sqlite"}'), undefined);
});
