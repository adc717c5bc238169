/**
 * `floatlm report` over a report log written by a real daemon (real checkouts, a denial, a
 * queued client granted after a checkin), and over a hand-written log with known times for
 * exact peaks, seat-hours, waits and unmet demand; rotated files, torn lines, CSV, options.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { runCli } from '../../lib/cli/floatlm.ts';
import type { CliIO } from '../../lib/cli/io.ts';
import { parseWhen } from '../../lib/cli/report.ts';
import { DeniedError } from '../../lib/client/errors.ts';
import { client, makeSite, startDaemon } from '../helpers/site.ts';

function capture(cwd: string): CliIO & { stdout: () => string; stderr: () => string } {
  let out = '';
  let err = '';
  return {
    out: (s) => {
      out += s;
    },
    err: (s) => {
      err += s;
    },
    env: {},
    cwd,
    stdout: () => out,
    stderr: () => err,
  };
}

const T0 = Date.UTC(2026, 0, 5, 8, 0, 0);
const at = (min: number) => new Date(T0 + min * 60_000).toISOString();
const ev = (min: number, event: string, f: Record<string, unknown>) =>
  JSON.stringify({ t: at(min), event, ...f });

t.test('a real daemon: grants, a denial, a queue wait, a release', async (t) => {
  const site = makeSite([
    'FEATURE solver demo 2.5 permanent 1 QUEUE=yes',
    'FEATURE cad demo 1.0 permanent 1',
  ]);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const a = await client(site, d.address().port);
  t.teardown(() => a.close());
  const b = await client(site, d.address().port, { user: 'bob', host: 'ws2' });
  t.teardown(() => b.close());
  const held = await a.checkout('solver');
  await a.checkout('cad');
  await t.rejects(b.checkout('cad'), DeniedError);
  const waiting = b.checkout('solver', { wait: true });
  // Bob is in the queue once the pool says so (no sleeps).
  while (d.pool.status().queue.length === 0) await new Promise((r) => setImmediate(r));
  await held.checkin();
  const bobs = await waiting;
  await bobs.checkin();
  await a.close();
  await d.close();

  const io = capture(site.dir);
  t.equal(await runCli(['report', '--log', 'report.jsonl', '--json'], io), 0, io.stderr());
  const r = JSON.parse(io.stdout());
  const solver = r.features.find((f: { feature: string }) => f.feature === 'solver');
  const cad = r.features.find((f: { feature: string }) => f.feature === 'cad');
  t.equal(solver.grants, 2, 'the pickup of a queued grant is not a second grant');
  t.equal(solver.peakInUse, 1);
  t.equal(solver.queued, 1);
  t.ok(solver.waitP50s >= 0, 'a queue wait measured');
  t.equal(solver.unmetDemand, 2, 'one holder + one queued');
  t.equal(cad.denials, 1);
  t.equal(cad.unmetDemand, 2, 'one holder + one denied');
  t.same(r.denials, [{ feature: 'cad', reason: 'NO_SEATS', count: 1 }]);
  t.ok(r.byUser.some((u: { user: string }) => u.user === 'bob'));
  t.equal(r.skipped.count, 0);

  const text = capture(site.dir);
  t.equal(await runCli(['report', '--log', 'report.jsonl'], text), 0);
  t.match(text.stdout(), /FEATURE\s+PEAK\s+SEAT-HOURS/);
  t.match(text.stdout(), /Seat-hours by user/);
  t.match(text.stdout(), /Denials by reason\nFEATURE\s+REASON\s+COUNT\ncad\s+NO_SEATS\s+1/);
});

t.test('exact numbers from a known log, rotated files first, torn lines skipped', async (t) => {
  const site = makeSite([]);
  const log = join(site.dir, 'report.jsonl');
  writeFileSync(
    `${log}.20260105T083000000Z`,
    [
      ev(0, 'start', { features: 1 }),
      ev(0, 'session', { session: 's1', user: 'ann', host: 'h1' }),
      ev(0, 'grant', {
        session: 's1',
        user: 'ann',
        host: 'h1',
        feature: 'cad',
        count: 2,
        lease: 'l1',
      }),
      ev(10, 'grant', {
        session: 's2',
        user: 'bo',
        host: 'h2',
        feature: 'cad',
        count: 1,
        lease: 'l2',
      }),
      ev(20, 'deny', {
        session: 's3',
        user: 'cy',
        host: 'h3',
        feature: 'cad',
        count: 1,
        reason: 'NO_SEATS',
      }),
      ev(21, 'deny', {
        session: 's3',
        user: 'cy',
        host: 'h3',
        feature: 'cad',
        count: 1,
        reason: 'NO_SEATS',
      }),
      ev(22, 'queue', {
        session: 's4',
        user: 'di',
        host: 'h4',
        feature: 'cad',
        count: 1,
        position: 1,
      }),
      '',
    ].join('\n'),
  );
  writeFileSync(
    log,
    [
      ev(30, 'release', { session: 's1', lease: 'l1', feature: 'cad' }),
      ev(30, 'grant', {
        session: 's4',
        user: 'di',
        host: 'h4',
        feature: 'cad',
        lease: 'l3',
        queued: true,
      }),
      ev(60, 'close', { session: 's2', leases: 1 }),
      ev(90, 'reap', { session: 's4', leases: 1 }),
      '{"t":"2026-01-05T09:3', // torn by a crash mid-write
    ].join('\n'),
  );
  const io = capture(site.dir);
  t.equal(await runCli(['report', '--log', log, '--json', '--until', at(120)], io), 0);
  const r = JSON.parse(io.stdout());
  t.equal(r.files.length, 2);
  t.equal(r.skipped.count, 1);
  t.match(io.stderr(), /skipped 1 line.*report\.jsonl:5:1: not a report event/);
  const [cad] = r.features;
  t.equal(cad.peakInUse, 3);
  t.equal(cad.peakAt, at(10));
  // ann 2 seats × 30 min + bo 1 × 50 min + di 1 × 60 min = 170 seat-minutes.
  t.equal(Math.round(cad.seatHours * 60), 170);
  t.equal(cad.grants, 3);
  t.equal(cad.denials, 2);
  t.equal(cad.waitP50s, 8 * 60, 'queued at :22, granted at :30');
  t.equal(cad.waitP95s, 8 * 60);
  // At :22: 3 in use + 1 queued + cy denied at :21 without a seat = 5.
  t.equal(cad.unmetDemand, 5);
  t.equal(cad.unmetAt, at(22));
  const ann = r.byUser.find((u: { user: string }) => u.user === 'ann');
  t.equal(ann.seatHours, 1);
  t.equal(r.byHost.find((u: { host: string }) => u.host === 'h4').seatHours, 1);

  // --since clips: leases held at :45 count from :45 on; the peak is measured in the window.
  const win = capture(site.dir);
  t.equal(
    await runCli(['report', '--log', log, '--json', '--since', at(45), '--until', at(120)], win),
    0,
  );
  const w = JSON.parse(win.stdout()).features[0];
  t.equal(Math.round(w.seatHours * 60), 15 + 45, 'bo 15 min, di 45 min');
  t.equal(w.grants, 0);

  const csv = capture(site.dir);
  t.equal(
    await runCli(['report', '--log', log, '--csv', '--by', 'user', '--until', at(120)], csv),
    0,
  );
  const lines = csv.stdout().trim().split('\n');
  t.equal(lines[0], 'user,feature,seat_hours,grants');
  t.ok(lines.includes('ann,cad,1.00,1'));

  const fcsv = capture(site.dir);
  t.equal(await runCli(['report', '--log', log, '--csv', '--until', at(120)], fcsv), 0);
  t.match(fcsv.stdout(), /^feature,peak_in_use,peak_at,seat_hours/);
  const none = capture(site.dir);
  t.equal(await runCli(['report', '--log', log, '--feature', 'nope', '--until', at(120)], none), 0);
  t.match(none.stdout(), /no events in this period/);
});

t.test('bad options and missing files are one-line errors', async (t) => {
  const site = makeSite([]);
  const io = capture(site.dir);
  t.equal(await runCli(['report', '--log', 'missing.jsonl'], io), 6);
  t.match(io.stderr(), /^floatlm report: cannot read .*missing\.jsonl: ENOENT\n$/);
  writeFileSync(join(site.dir, 'report.jsonl'), '');
  const bad = capture(site.dir);
  t.equal(await runCli(['report', '--since', 'yesterday-ish'], bad), 2);
  t.match(bad.stderr(), /is not a date/);
  const both = capture(site.dir);
  t.equal(await runCli(['report', '--json', '--csv'], both), 2);
  const order = capture(site.dir);
  t.equal(await runCli(['report', '--since', '2026-02-01', '--until', '2026-01-01'], order), 2);
  t.match(order.stderr(), /--since must be before --until/);
  t.equal(parseWhen('2h', 10_000_000), 10_000_000 - 7_200_000);
  t.equal(parseWhen('2026-01-05T08:00:00Z'), T0);
});
