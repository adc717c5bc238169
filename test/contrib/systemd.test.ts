/**
 * contrib/systemd: the unit passes `systemd-analyze verify` (with ExecStart pointed at a real
 * executable, since floatlmd is not installed here) and keeps its hardening; the sysusers
 * snippet is accepted by systemd-sysusers and the tmpfiles snippet makes the directories
 * with their modes, both in a temp root. Skips without systemd's tools, except under CI=true.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ROOT } from '../helpers/site.ts';

const DIR = join(ROOT, 'contrib/systemd');
const has = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;

if (!has('systemd-analyze')) {
  if (process.env.CI === 'true') t.fail('systemd-analyze is missing; CI must install systemd');
  else t.plan(0, "systemd-analyze is missing: install it with 'apt-get install -y systemd'");
} else {
  t.test('the unit verifies and is hardened', async (t) => {
    const unit = readFileSync(join(DIR, 'floatlmd.service'), 'utf8');
    for (const line of [
      'User=floatlm',
      'StateDirectory=floatlm',
      'ConfigurationDirectory=floatlm',
      'ProtectSystem=strict',
      'NoNewPrivileges=yes',
      'ExecReload=/bin/kill -HUP $MAINPID',
      'Restart=on-failure',
      'CapabilityBoundingSet=',
      'UMask=0077',
    ]) {
      t.ok(unit.split('\n').includes(line), line);
    }
    const dir = mkdtempSync(join(tmpdir(), 'floatlm-unit-'));
    const copy = join(dir, 'floatlmd.service');
    writeFileSync(copy, unit.replace('/usr/local/bin/floatlmd', process.execPath));
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', copy], { encoding: 'utf8' });
    t.equal(r.status, 0, `systemd-analyze verify: ${r.stderr}`);
    t.equal(r.stderr.trim(), '', 'no warnings');
    const sec = spawnSync('systemd-analyze', ['security', '--offline=yes', copy], {
      encoding: 'utf8',
    });
    const level = /Overall exposure level for \S+: ([\d.]+)/.exec(sec.stdout);
    if (level) t.ok(Number(level[1]) <= 2, `exposure level ${level[1]} (≤ 2 of 10)`);
  });

  t.test('sysusers and tmpfiles snippets', { skip: !has('systemd-sysusers') }, async (t) => {
    const root = mkdtempSync(join(tmpdir(), 'floatlm-root-'));
    mkdirSync(join(root, 'etc'));
    mkdirSync(join(root, 'var/lib'), { recursive: true });
    writeFileSync(join(root, 'etc/passwd'), '');
    writeFileSync(join(root, 'etc/group'), '');
    const u = spawnSync(
      'systemd-sysusers',
      ['--root', root, '--dry-run', join(DIR, 'floatlm.sysusers')],
      { encoding: 'utf8' },
    );
    t.equal(u.status, 0, u.stderr);
    t.match(u.stderr + u.stdout, /Creating user 'floatlm'/);
    // tmpfiles resolves owners on the host: check the lines with root as the owner.
    const lines = readFileSync(join(DIR, 'floatlm.tmpfiles'), 'utf8').replace(
      /\s(floatlm|root) +floatlm\s/g,
      ' root root ',
    );
    const conf = join(root, 'floatlm.conf');
    writeFileSync(conf, lines);
    const f = spawnSync('systemd-tmpfiles', ['--root', root, '--create', conf], {
      encoding: 'utf8',
    });
    t.equal(f.status, 0, f.stderr);
    t.equal(statSync(join(root, 'var/lib/floatlm')).mode & 0o777, 0o700);
    t.equal(statSync(join(root, 'etc/floatlm')).mode & 0o777, 0o750);
  });
}
