/**
 * The operator log's text and JSON formats, and the report log: listeners, rotation by size,
 * by day and on demand (SIGHUP), `keep`, and mode 0600 on the file and every rotated file,
 * even under umask 0 and after an outside tool recreated or widened the file.
 */
import { chmodSync, mkdtempSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { makeLogger, ReportLog, rotatedReportFiles } from '../../lib/server/log.ts';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 2, 3, 23, 59, 0);
const mode = (p: string) => statSync(p).mode & 0o777;
const lines = (p: string) => readFileSync(p, 'utf8').split('\n').filter(Boolean);

// Files made by the process would otherwise be 0666: the 0600 must come from the code.
process.umask(0);

t.test('makeLogger: text and json', async (t) => {
  const out: string[] = [];
  const text = makeLogger('info', (l) => out.push(l));
  text.info('hello');
  text.debug('hidden');
  t.equal(out.length, 1);
  t.match(out[0], /^\d{4}-\d\d-\d\dT[\d:.]+Z info hello$/);
  const json = makeLogger('debug', (l) => out.push(l), 'json');
  json.warn('a "quoted" line\nwith a newline');
  const o = JSON.parse(out[1]!);
  t.same(Object.keys(o), ['time', 'level', 'msg']);
  t.equal(o.level, 'warn');
  t.equal(o.msg, 'a "quoted" line\nwith a newline');
  t.notOk(out[1]!.includes('\n'), 'one line');
  t.throws(() => makeLogger('info', () => {}, 'xml'), RangeError);
  t.throws(() => makeLogger('loud', () => {}), RangeError);
});

t.test('listeners see events, with or without a file', async (t) => {
  const seen: string[] = [];
  const r = new ReportLog(undefined);
  const off = r.subscribe((e, _now, f) => seen.push(`${e}:${String(f.feature)}`));
  r.write('grant', T0, { feature: 'cad' });
  off();
  r.write('deny', T0, { feature: 'cad' });
  t.same(seen, ['grant:cad']);
  t.throws(() => r.subscribe(undefined as never), TypeError);
  t.throws(() => new ReportLog(undefined, { maxBytes: -1 }), RangeError);
});

t.test('rotation by size keeps 0600 and every line', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'floatlm-log-'));
  const path = join(dir, 'report.jsonl');
  const r = new ReportLog(path, { maxBytes: 400, keep: 3 });
  t.equal(mode(path), 0o600);
  for (let i = 0; i < 40; i++) {
    r.write('grant', T0 + i * 1000, { feature: 'cad', n: i });
    r.flush();
  }
  const rotated = rotatedReportFiles(path);
  t.equal(rotated.length, 3, 'keep: only the 3 newest rotated files');
  for (const p of [path, ...rotated]) {
    t.equal(mode(p), 0o600, `${p} is 0600`);
    t.ok(statSync(p).size <= 400, 'no file beyond maxBytes');
  }
  const all = [...rotated, path].flatMap(lines).map((l) => JSON.parse(l).n as number);
  t.same(
    all,
    [...all].sort((a, b) => a - b),
    'oldest first, in order',
  );
  t.equal(all.at(-1), 39);
});

t.test('rotation by day and on demand; outside tools cannot widen the mode', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'floatlm-log-'));
  const path = join(dir, 'report.jsonl');
  writeFileSync(path, '', { mode: 0o644 });
  chmodSync(path, 0o644);
  const r = new ReportLog(path, { daily: true });
  t.equal(mode(path), 0o600, 'a wider file is tightened on open');
  r.write('grant', T0, { day: 1 });
  r.flush();
  r.write('grant', T0 + 30_000, { day: 1 });
  r.flush();
  t.equal(rotatedReportFiles(path).length, 0, 'same day: no rotation');
  r.write('grant', T0 + 120_000, { day: 2 });
  r.flush();
  const [first] = rotatedReportFiles(path);
  t.ok(first, 'the day changed: rotated');
  t.equal(lines(first!).length, 2);
  t.equal(lines(path).length, 1);
  t.match(first!, /report\.jsonl\.20260304T000100000Z$/, 'named after the rotation time');

  // SIGHUP: the daemon calls rotate(); buffered lines go to the old file first.
  r.write('grant', T0 + DAY, { day: 2 });
  const second = r.rotate(T0 + DAY + 1);
  t.equal(lines(second!).length, 2);
  t.equal(mode(second!), 0o600);
  t.equal(statSync(path).size, 0);
  t.equal(r.rotate(T0 + DAY + 2), undefined, 'an empty file is not rotated');

  // logrotate without copytruncate: the file vanishes; ours comes back 0600.
  unlinkSync(path);
  r.write('grant', T0 + DAY + 3, { day: 3 });
  r.flush();
  t.equal(mode(path), 0o600);
  t.equal(lines(path).length, 1);
});
