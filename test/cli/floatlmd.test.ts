/**
 * The floatlmd command: usage errors, one-line refusals of bad files and of a license with
 * nothing servable (exit 6), a clean stop on SIGTERM, SIGHUP rereading the license without
 * dropping held seats, and the demo's credentials following its port.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { runDaemonCli } from '../../lib/cli/floatlmd.ts';
import type { CliIO } from '../../lib/cli/io.ts';
import { loadClientCredential } from '../../lib/crypto/files.ts';
import type { Daemon } from '../../lib/server/daemon.ts';
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

t.test('usage errors exit 2; --help exits 0 with examples', async (t) => {
  const site = makeSite([]);
  const io = capture(site.dir);
  t.equal(await runDaemonCli([], io), 2);
  t.match(io.stderr(), /^floatlmd: --license, --keys and --state are required \(or --demo\)\n$/);
  const bad = capture(site.dir);
  t.equal(await runDaemonCli(['--port', '70000', '--demo'], bad), 2);
  t.match(bad.stderr(), /--port must be an integer in \[0, 65535\]/);
  const pause = capture(site.dir);
  t.equal(await runDaemonCli(['--flood-pause', '50', '--demo'], pause), 2);
  t.match(pause.stderr(), /--flood-pause must be an integer in \[0, 10\]/);
  const level = capture(site.dir);
  t.equal(await runDaemonCli(['--demo', '--log-level', 'loud'], level), 2, 'bad log level: exit 2');
  t.match(level.stderr(), /--log-level.*loud.*error, warn, info, debug/);
  const help = capture(site.dir);
  t.equal(await runDaemonCli(['--help'], help), 0);
  t.match(help.stdout(), /Examples:\n {2}floatlmd --demo/);
});

t.test(
  'a foreign state file and an insecure keys file are refused in one line (exit 6)',
  async (t) => {
    const site = makeSite(['FEATURE demo demo 1.0 permanent 1']);
    const { mkdirSync, chmodSync, readFileSync } = await import('node:fs');
    mkdirSync(site.stateDir, { recursive: true });
    const db = join(site.stateDir, 'floatlm.db');
    writeFileSync(db, 'this is not a database, it is a shopping list\n');
    const args = [
      '--license',
      site.licenseFile,
      '--keys',
      site.keysFile,
      '--state',
      site.stateDir,
      '--port',
      '0',
    ];
    const io = capture(site.dir);
    t.equal(await runDaemonCli(args, io), 6);
    t.match(
      io.stderr(),
      /^floatlmd: NOT_SQLITE: .*floatlm\.db: .*refusing to use or replace it\n$/,
    );
    t.equal(
      readFileSync(db, 'utf8'),
      'this is not a database, it is a shopping list\n',
      'left as it was',
    );
    chmodSync(site.keysFile, 0o644);
    const keys = capture(site.dir);
    t.equal(await runDaemonCli(args, keys), 6);
    t.match(keys.stderr(), /^floatlmd: .*keys\.json: mode 0644 .*chmod 600\n$/);
  },
);

t.test('SIGHUP rereads the license under held seats; SIGTERM stops cleanly', async (t) => {
  const site = makeSite(['FEATURE demo demo 1.0 permanent 1']);
  let daemon: Daemon | undefined;
  const io = capture(site.dir);
  const run = runDaemonCli(
    [
      '--license',
      site.licenseFile,
      '--keys',
      site.keysFile,
      '--state',
      site.stateDir,
      '--port',
      '0',
      '--log-level',
      'error',
    ],
    io,
    (d) => {
      daemon = d;
    },
  );
  while (!daemon) await new Promise((r) => setTimeout(r, 20));
  const c = await client(site, daemon.address().port);
  const lease = await c.checkout('demo');
  site.writeLicense(['FEATURE demo demo 1.0 permanent 3']);
  process.emit('SIGHUP');
  const st = await c.status('demo');
  t.equal(st.features[0]!.count, 3, 'the new count is served');
  t.equal(st.features[0]!.inUse, 1, 'the held seat survived');
  t.equal(lease.state, 'held');
  await c.close();
  process.emit('SIGTERM');
  t.equal(await run, 0, 'exit 0 after SIGTERM');
  t.equal(daemon.state, 'CLOSED');
  t.match(io.stdout(), /^floatlmd listening on 127\.0\.0\.1:\d+\n$/);
});

t.test(
  'a port already in use is a runtime error in one line (exit 1), not a bad file',
  async (t) => {
    const site = makeSite(['FEATURE demo demo 1.0 permanent 1']);
    const other = await startDaemon({ ...site, stateDir: `${site.stateDir}-other` });
    t.teardown(() => other.close());
    const io = capture(site.dir);
    const args = ['--license', site.licenseFile, '--keys', site.keysFile, '--state', site.stateDir];
    t.equal(await runDaemonCli([...args, '--port', String(other.address().port)], io), 1);
    t.match(io.stderr(), /^floatlmd: .*EADDRINUSE.*\n$/);
  },
);

t.test('a license with nothing servable: exit 6 in one line, unless --allow-empty', async (t) => {
  const site = makeSite(['FEATURE old demo 1.0 1-jan-2020 1']);
  const args = ['--license', site.licenseFile, '--keys', site.keysFile, '--state', site.stateDir];
  const expired = capture(site.dir);
  t.equal(await runDaemonCli([...args, '--port', '0'], expired), 6);
  t.match(
    expired.stderr(),
    /^floatlmd: .*site\.lic: no servable feature \(1 problem\(s\), the first: .*site\.lic:3:\d+: old 1\.0 expired on 1-jan-2020\); fix it, or start with --allow-empty\n$/,
  );
  t.equal(expired.stdout(), '', 'never listened');
  site.writeLicense([]);
  const empty = capture(site.dir);
  t.equal(await runDaemonCli([...args, '--port', '0'], empty), 6);
  t.match(empty.stderr(), /no servable feature \(no FEATURE or INCREMENT line\)/);

  let daemon: Daemon | undefined;
  const allowed = capture(site.dir);
  const run = runDaemonCli(
    [...args, '--port', '0', '--allow-empty', '--log-level', 'error'],
    allowed,
    (d) => {
      daemon = d;
    },
  );
  while (!daemon) await new Promise((r) => setTimeout(r, 20));
  t.match(allowed.stdout(), /^floatlmd listening on /, '--allow-empty: it serves');
  process.emit('SIGTERM');
  t.equal(await run, 0);
});

t.test('--demo: the demo credentials follow the port the daemon listens on', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'floatlmd-demo-'));
  const ports: number[] = [];
  for (let i = 0; i < 2; i++) {
    let daemon: Daemon | undefined;
    const run = runDaemonCli(
      ['--demo', '--port', '0', '--log-level', 'error'],
      capture(dir),
      (d) => {
        daemon = d;
      },
    );
    while (!daemon) await new Promise((r) => setTimeout(r, 20));
    const port = daemon.address().port;
    ports.push(port);
    for (const f of ['credential.json', 'admin.json'])
      t.same(
        loadClientCredential(join(dir, '.floatlm-demo', f)).servers,
        [`127.0.0.1:${port}`],
        `run ${i + 1}: ${f} names port ${port}`,
      );
    process.emit('SIGTERM');
    t.equal(await run, 0);
  }
});

t.test('--http serves the metrics of the daemon; --options applies; JSON logs', async (t) => {
  const site = makeSite(['FEATURE demo demo 1.0 permanent 2']);
  const opt = join(site.dir, 'site.opt');
  writeFileSync(opt, 'EXCLUDE demo USER mallory\n');
  let daemon: Daemon | undefined;
  const io = capture(site.dir);
  const run = runDaemonCli(
    [
      '--license',
      site.licenseFile,
      '--keys',
      site.keysFile,
      '--state',
      site.stateDir,
      '--options',
      opt,
      '--port',
      '0',
      '--http',
      '127.0.0.1:0',
      '--log-format',
      'json',
    ],
    io,
    (d) => {
      daemon = d;
    },
  );
  while (!daemon) await new Promise((r) => setTimeout(r, 20));
  const m = /floatlmd http on 127\.0\.0\.1:(\d+)/.exec(io.stdout());
  t.ok(m, 'the http address is printed');
  const c = await client(site, daemon.address().port);
  await c.checkout('demo');
  const mallory = await client(site, daemon.address().port, { user: 'mallory' });
  await t.rejects(mallory.checkout('demo'), /NOT_PERMITTED/, 'the options file applies');
  const res = await fetch(`http://127.0.0.1:${m![1]}/metrics`);
  const text = await res.text();
  t.match(text, /floatlm_feature_in_use_seats\{[^}]*feature="demo"[^}]*\} 1/);
  t.equal((await fetch(`http://127.0.0.1:${m![1]}/readyz`)).status, 200, 'ready');
  await c.close();
  await mallory.close();
  process.emit('SIGTERM');
  t.equal(await run, 0);
  for (const line of io.stderr().trim().split('\n').filter(Boolean)) {
    t.doesNotThrow(() => JSON.parse(line), `a JSON log line: ${line.slice(0, 60)}`);
  }
});

t.test(
  '--udp: a kind it does not know is a usage error; batch where it cannot go, exit 1',
  async (t) => {
    const site = makeSite(['FEATURE demo demo 1.0 permanent 1']);
    const args = ['--license', site.licenseFile, '--keys', site.keysFile, '--state', site.stateDir];
    const bogus = capture(site.dir);
    t.equal(await runDaemonCli([...args, '--udp', 'raw'], bogus), 2);
    t.match(bogus.stderr(), /--udp.*raw.*batch, dgram/s);
    const six = capture(site.dir);
    t.equal(
      await runDaemonCli([...args, '--udp', 'batch', '--host', '::1', '--port', '0'], six),
      1,
    );
    t.equal(
      six.stderr(),
      'floatlmd: --udp batch: the batched socket takes an IPv4 address, not ::1\n',
      'one line naming why',
    );
  },
);

t.test('--http beyond loopback without a token is a usage error', async (t) => {
  const site = makeSite(['FEATURE demo demo 1.0 permanent 1']);
  const io = capture(site.dir);
  const args = ['--license', site.licenseFile, '--keys', site.keysFile, '--state', site.stateDir];
  t.equal(await runDaemonCli([...args, '--http', '0.0.0.0:0'], io), 2);
  t.match(io.stderr(), /^floatlmd: --http 0\.0\.0\.0: .*--http-token\n$/);
});

t.test(
  '--etcd: bad URLs are usage errors; an etcd nobody answers on is exit 1, one line',
  async (t) => {
    const site = makeSite(['FEATURE cad demo 1.0 permanent 1']);
    const args = [
      '--license',
      site.licenseFile,
      '--keys',
      site.keysFile,
      '--state',
      site.stateDir,
      '--port',
      '0',
    ];
    const bad = capture(site.dir);
    t.equal(await runDaemonCli([...args, '--etcd', 'lic1:2379'], bad), 2, 'not a URL: exit 2');
    t.match(bad.stderr(), /--etcd: not an etcd client URL: lic1:2379/);
    const both = capture(site.dir);
    t.equal(await runDaemonCli([...args, '--etcd', 'http://127.0.0.1:1', '--takeover'], both), 2);
    t.match(both.stderr(), /--takeover is for a single server/);
    const down = capture(site.dir);
    t.equal(await runDaemonCli([...args, '--etcd', 'http://127.0.0.1:1'], down), 1, 'exit 1');
    const lines = down.stderr().trim().split('\n');
    t.match(
      lines[lines.length - 1],
      /^floatlmd: etcd http:\/\/127\.0\.0\.1:1: UNREACHABLE: /,
      'says etcd is unreachable',
    );
    t.notMatch(down.stderr(), /\n\s+at /, 'no stack trace');
  },
);
