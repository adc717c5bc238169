/**
 * The floatlm CLI: each command through `runCli` (commander with exitOverride) and captured
 * output, and end to end as child processes against a real floatlmd child process.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { buildProgram, runCli } from '../../lib/cli/floatlm.ts';
import type { CliIO } from '../../lib/cli/io.ts';
import { connect } from '../../lib/client/client.ts';
import { loadClientCredential, saveClientCredential } from '../../lib/crypto/files.ts';
import {
  client,
  makeSite,
  ROOT,
  type Site,
  spawnDaemon,
  startDaemon,
  TSX,
} from '../helpers/site.ts';

const VECTORS = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/vectors.json'), 'utf8')) as {
  name: string;
  key: string;
  datagram: string;
}[];

function capture(
  cwd: string,
  env: NodeJS.ProcessEnv = {},
): CliIO & { stdout: () => string; stderr: () => string } {
  let out = '';
  let err = '';
  return {
    out: (s) => {
      out += s;
    },
    err: (s) => {
      err += s;
    },
    env: { HOME: cwd, ...env },
    cwd,
    stdout: () => out,
    stderr: () => err,
  };
}

function creds(site: Site, port: number): { cred: string; admin: string } {
  const cred = join(site.dir, 'credential.json');
  const admin = join(site.dir, 'admin.json');
  saveClientCredential(cred, { id: 'demo', key: site.credKey, servers: [`127.0.0.1:${port}`] });
  saveClientCredential(admin, { id: 'admin', key: site.adminKey, servers: [`127.0.0.1:${port}`] });
  return { cred, admin };
}

/** Runs bin/floatlm.ts as a child process. */
function floatlm(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, ['--import', TSX, join(ROOT, 'bin/floatlm.ts'), ...args], {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => {
    out += b.toString();
  });
  child.stderr.on('data', (b: Buffer) => {
    err += b.toString();
  });
  const done = new Promise<{ code: number | null; out: string; err: string }>((r) =>
    child.on('exit', (code) => r({ code, out, err })),
  );
  return { child, done, out: () => out, err: () => err };
}

/** Polls (no timed assertion) until `cond` holds; fails at once if `p` exits first. */
async function until(
  cond: () => boolean,
  p?: { child: { exitCode: number | null }; out: () => string; err: () => string },
): Promise<void> {
  while (!cond()) {
    if (p && p.child.exitCode !== null)
      throw new Error(`exited ${p.child.exitCode}: ${p.out()}${p.err()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A long-running child for `floatlm run`: says "ready", exits `code` on `trap` if given, and
 * gives up by itself after a minute (never an orphan for good if a test fails).
 */
function sleeper(trap?: NodeJS.Signals, code = 0): string[] {
  const onSig = trap ? `process.on('${trap}', () => process.exit(${code}));` : '';
  return [process.execPath, '-e', `${onSig} console.log('ready'); setTimeout(() => {}, 60000);`];
}

t.test('decode: every vector dissected, tag checked with --key', async (t) => {
  for (const v of VECTORS.slice(0, 6)) {
    const io = capture(ROOT);
    const code = await runCli(['decode', v.datagram, '--key', v.key], io);
    t.equal(code, 0, `${v.name}: exit 0`);
    t.match(io.stdout(), /header\n {2}magic/);
    t.match(io.stdout(), /tag +[0-9a-f]{64} OK/);
  }
  const v = VECTORS[0]!;
  const io = capture(ROOT);
  t.equal(
    await runCli(['decode', v.datagram, '--key', '00'.repeat(32)], io),
    5,
    'wrong key: exit 5',
  );
  t.match(io.stdout(), /MISMATCH/);
  const bad = capture(ROOT);
  t.equal(await runCli(['decode', v.datagram.slice(0, 40)], bad), 6, 'truncated: exit 6');
  t.match(bad.stderr(), /^floatlm: decode: TRUNCATED: .* at byte \d+\n$/);
  const usage = capture(ROOT);
  t.equal(await runCli(['decode'], usage), 2, 'missing argument: exit 2');
});

t.test('license keygen, sign, verify; a tampered line is reported file:line:column', async (t) => {
  const site = makeSite(['FEATURE demo demo 1.0 permanent 2']);
  const io = capture(site.dir);
  t.equal(await runCli(['license', 'keygen', 'acme'], io), 0);
  t.equal(statSync(join(site.dir, 'acme.key')).mode & 0o777, 0o600);
  writeFileSync(join(site.dir, 'x.lic'), 'VENDOR acme\nFEATURE cad acme 2.0 permanent 4\n');
  t.equal(await runCli(['license', 'sign', 'x.lic', '--key', 'acme.key'], io), 0);
  t.match(readFileSync(join(site.dir, 'x.lic'), 'utf8'), /SIGN=/);
  const ok = capture(site.dir);
  t.equal(
    await runCli(['license', 'verify', 'x.lic', '--pub', 'acme.pub', '--vendor', 'acme'], ok),
    0,
  );
  t.match(ok.stdout(), /every line verifies and is in force/);
  writeFileSync(
    join(site.dir, 'x.lic'),
    readFileSync(join(site.dir, 'x.lic'), 'utf8').replace('permanent 4', 'permanent 40'),
  );
  const bad = capture(site.dir);
  t.equal(
    await runCli(['license', 'verify', 'x.lic', '--pub', 'acme.pub', '--vendor', 'acme'], bad),
    6,
  );
  t.match(bad.stdout(), /^x\.lic:2:\d+: .+/m);
  t.match(bad.stderr(), /^floatlm: license verify: 1 problem\(s\) in x\.lic\n$/);
});

t.test('keys init, show, rotate', async (t) => {
  const site = makeSite([]);
  const io = capture(site.dir);
  t.equal(
    await runCli(
      ['keys', 'init', '--keys', 'k.json', '--credential-out', 'c.json', '--admin-out', 'a.json'],
      io,
    ),
    0,
  );
  for (const f of ['k.json', 'c.json', 'a.json'])
    t.equal(statSync(join(site.dir, f)).mode & 0o777, 0o600, `${f} is 0600`);
  const again = capture(site.dir);
  t.equal(
    await runCli(
      ['keys', 'init', '--keys', 'k.json', '--credential-out', 'c.json', '--admin-out', 'a.json'],
      again,
    ),
    6,
    'refuses to overwrite',
  );
  const show = capture(site.dir);
  t.equal(await runCli(['keys', 'show', '--keys', 'k.json'], show), 0);
  t.match(show.stdout(), /current server key id \d+/);
  t.notMatch(show.stdout(), /[0-9a-f]{64}/, 'no secrets printed');
  const rot = capture(site.dir);
  t.equal(await runCli(['keys', 'rotate', '--keys', 'k.json'], rot), 0);
  t.match(rot.stdout(), /rotated: secret 2/);
  const insecure = capture(site.dir);
  const { chmodSync } = await import('node:fs');
  chmodSync(join(site.dir, 'k.json'), 0o644);
  t.equal(
    await runCli(['keys', 'show', '--keys', 'k.json'], insecure),
    6,
    'group/other-readable keys refused',
  );
  t.match(insecure.stderr(), /^floatlm: .*k\.json.*0644.*\n$/);
});

t.test('against a real daemon child: ping, status, checkout/run, waiting, admin', async (t) => {
  const site = makeSite([
    'FEATURE demo demo 1.0 permanent 2',
    'FEATURE solver demo 2.5 permanent 1 QUEUE=yes DUP_GROUP=NONE',
    'FEATURE lab demo 1.0 permanent 2 RESERVE=USER:carol:1',
    'FEATURE cad demo 1.0 31-dec-2099 1',
  ]);
  const { child, port } = await spawnDaemon(site, ['--grace', '5']);
  t.teardown(() => child.kill('SIGKILL'));
  const { cred, admin } = creds(site, port);
  const env = { FLOATLM_CREDENTIAL: cred, FLOATLM_ADMIN: admin };

  const ping = capture(site.dir, env);
  t.equal(await runCli(['ping', '-c', '2', '-i', '0.05'], ping), 0);
  t.match(
    ping.stdout(),
    /reply from 127\.0\.0\.1:\d+: seq=1 time=[\d.]+ ms server=floatlmd 0\.1\.0 offset=[+-]\d+ ms state=running/,
  );
  t.match(ping.stdout(), /2 sent, 2 received, 0% loss/);
  const pingJson = capture(site.dir, env);
  t.equal(await runCli(['ping', '--json'], pingJson), 0);
  t.match(JSON.parse(pingJson.stdout()), {
    schema: 'floatlm.ping/1',
    server: `127.0.0.1:${port}`,
    sent: 1,
    received: 1,
    replies: [{ seq: 1, serverVersion: '0.1.0', rttMs: Number, uptimeMs: Number }],
  });

  const none = capture(site.dir, env);
  t.equal(
    await runCli(['--timeout', '0.3', 'ping', '127.0.0.1:9'], none),
    3,
    'nothing answers: exit 3',
  );

  const st = capture(site.dir, env);
  t.equal(await runCli(['status'], st), 0);
  t.match(st.stdout(), /^server 127\.0\.0\.1:\d+: floatlmd 0\.1\.0, up \d+s, (running|grace)/);
  t.match(
    st.stdout(),
    /FEATURE +VERSION +VENDOR +EXPIRES +COUNT +IN USE +FREE +QUEUED +GRANTS +DENIALS/,
  );
  t.match(st.stdout(), /demo +1\.0 +demo +permanent +2 +0 +2 +0 +0 +0/);
  t.match(st.stdout(), /RESERVED FOR +FEATURE +SEATS +IN USE\nuser carol +lab +1 +0\n/);
  t.match(st.stdout(), /\ncad +1\.0 +demo +31-dec-2099 +1 +0 +1 /, 'EXPIRES: the date written');

  // checkout holds until SIGINT (a child process, so the signal is real).
  const co = floatlm(['checkout', 'solver'], site.dir, env);
  while (!/granted/.test(co.out())) await new Promise((r) => setTimeout(r, 50));
  const js = capture(site.dir, env);
  t.equal(await runCli(['status', '--json'], js), 0);
  const parsed = JSON.parse(js.stdout());
  t.equal(parsed.schema, 'floatlm.status/1');
  const solver = parsed.features.find((f: { name: string }) => f.name === 'solver');
  t.match(parsed, { serverVersion: '0.1.0', uptimeMs: Number });
  t.match(
    parsed.features.find((f: { name: string }) => f.name === 'cad'),
    {
      expiry: '31-dec-2099',
      expires: '2100-01-01T00:00:00.000Z',
      free: 1,
    },
  );
  t.equal(solver.inUse, 1);
  t.equal(solver.free, 0);
  const held = capture(site.dir, env);
  t.equal(await runCli(['status', '-f', 'solver'], held), 0);
  t.match(
    held.stdout(),
    /HOLDER +HOST +FEATURE +PROGRAM +SEATS +SINCE +HELD FOR +LEASE\n\S+ +\S+ +solver +floatlm\/\S+ +1 +\S+Z +\d+s +[0-9a-f]+\n/,
  );
  t.equal(solver.holders.length, 1);
  t.same(solver.reservations, []);
  t.same(parsed.features.find((f: { name: string }) => f.name === 'lab').reservations, [
    { type: 'user', name: 'carol', seats: 1, inUse: 0 },
  ]);

  // A waiting checkout is granted when the seat frees.
  const waiter = floatlm(['checkout', 'solver', '--wait'], site.dir, env);
  while (!/queued for solver: position 1/.test(waiter.out()))
    await new Promise((r) => setTimeout(r, 50));
  // On a terminal the wait is one line redrawn, with the time waited.
  const tty = {
    ...capture(site.dir, env),
    tty: { stdin: false, stdout: false, stderr: true },
  };
  const ttyRun = runCli(
    ['run', 'solver', '--wait', '--', process.execPath, '-e', 'process.exit(0)'],
    tty,
  );
  await until(() => /position 2 of 2/.test(tty.stderr()));
  t.match(tty.stderr(), /^\r\x1b\[Kqueued for solver: position 2 of 2, waiting \d+s/);
  const denied = capture(site.dir, env);
  t.equal(await runCli(['checkout', 'solver'], denied), 4, 'no seat and no --wait: exit 4');
  t.match(denied.stderr(), /^floatlm: checkout solver: NO_SEATS: all seats in use\n$/);
  co.child.kill('SIGINT');
  const coDone = await co.done;
  t.equal(coDone.code, 0);
  t.match(coDone.out, /released solver/);
  while (!/granted solver/.test(waiter.out())) await new Promise((r) => setTimeout(r, 50));
  waiter.child.kill('SIGINT');
  t.equal((await waiter.done).code, 0);
  t.equal(await ttyRun, 0, 'the run queued behind it got the seat and ran');
  t.match(
    tty.stderr(),
    /\r\x1b\[K(floatlm: )?holding solver \(lease [0-9a-f]+, 1 seat\(s\), after \d+s in the queue\); running /,
  );
  t.notMatch(tty.stdout(), /queued/, 'nothing of it on stdout, which is the program’s');

  // run: the program's exit status comes through.
  const handlers = () => ['SIGINT', 'SIGTERM', 'SIGHUP'].map((s) => process.listenerCount(s));
  const before = handlers();
  const ok = capture(site.dir, env);
  t.equal(await runCli(['run', 'demo', '--', process.execPath, '-e', 'process.exit(0)'], ok), 0);
  t.same(handlers(), before, 'run leaves no signal handler behind');
  t.match(ok.stderr(), /^floatlm: holding demo \(lease [0-9a-f]+, 1 seat\(s\)\); running \S+\n$/);
  const quiet = capture(site.dir, env);
  t.equal(
    await runCli(
      ['run', '--quiet', 'demo', '--', process.execPath, '-e', 'process.exit(0)'],
      quiet,
    ),
    0,
  );
  t.equal(quiet.stderr(), '', '--quiet: nothing on stderr');
  const three = capture(site.dir, env);
  t.equal(await runCli(['run', 'demo', '--', process.execPath, '-e', 'process.exit(3)'], three), 3);
  const killed = capture(site.dir, env);
  t.equal(
    await runCli(
      ['run', 'demo', '--', process.execPath, '-e', "process.kill(process.pid, 'SIGSEGV')"],
      killed,
    ),
    128 + 11,
    'a program killed by SIGSEGV: exit 128 + 11',
  );
  const after = capture(site.dir, env);
  await runCli(['status', '--json'], after);
  t.equal(
    JSON.parse(after.stdout()).features.find((f: { name: string }) => f.name === 'demo').inUse,
    0,
    'run released its seat',
  );

  // admin
  // An admin command needs only the admin credential.
  const adminOnly = mkdtempSync(join(tmpdir(), 'floatlm-admin-'));
  const rr = capture(adminOnly, { FLOATLM_ADMIN: admin });
  t.equal(await runCli(['reread'], rr), 0, 'reread with no client credential anywhere');
  t.match(rr.stdout(), /reread: 4 feature line/);
  const rrJson = capture(site.dir, env);
  t.equal(await runCli(['reread', '--json'], rrJson), 0);
  t.match(JSON.parse(rrJson.stdout()), { schema: 'floatlm.admin/1', op: 'reread' });
  const rm = capture(site.dir, env);
  t.equal(await runCli(['remove'], rm), 2, 'remove needs a target');
  const rmJson = capture(site.dir, env);
  t.equal(await runCli(['remove', '--user', 'nobody', '--json'], rmJson), 0);
  t.match(JSON.parse(rmJson.stdout()), { schema: 'floatlm.admin/1', op: 'remove', affected: 0 });
  const refused = capture(site.dir, env);
  t.equal(await runCli(['down'], refused), 2, 'down off a terminal without --yes: exit 2');
  t.match(refused.stderr(), /^floatlm: down: not asking on a non-terminal; give --yes .*\n$/);
  const asked: string[] = [];
  const no = {
    ...capture(site.dir, env),
    tty: { stdin: true, stdout: true, stderr: true },
    ask: async (q: string) => {
      asked.push(q);
      return 'n';
    },
  };
  t.equal(await runCli(['down'], no), 2, 'down answered no: exit 2');
  t.match(asked, [
    /^shut down floatlmd at 127\.0\.0\.1:\d+, 0 seat\(s\) held by 0 user\(s\)\? \[y\/N\] $/,
  ]);
  t.match(no.stderr(), /^floatlm: down: not confirmed; the server keeps running\n$/);
  t.equal(await runCli(['ping'], capture(site.dir, env)), 0, 'still running');
  const down = capture(site.dir, env);
  t.equal(await runCli(['down', '--yes'], down), 0);
  await new Promise<void>((r) => (child.exitCode !== null ? r() : child.once('exit', () => r())));
  t.equal(child.exitCode, 0, 'daemon exited cleanly after down');
});

t.test('checkout holds its lease across a daemon restart', async (t) => {
  const site = makeSite(['FEATURE solver demo 2.5 permanent 1']);
  const first = await spawnDaemon(site, ['--grace', '20', '--heartbeat', '1']);
  const port = first.port;
  const { cred } = creds(site, port);
  const env = { FLOATLM_CREDENTIAL: cred };
  const co = floatlm(['checkout', 'solver'], site.dir, env);
  while (!/granted/.test(co.out())) await new Promise((r) => setTimeout(r, 50));
  first.child.kill('SIGKILL');
  await new Promise((r) => first.child.once('exit', r));
  const second = await spawnDaemon(site, [
    '--grace',
    '20',
    '--heartbeat',
    '1',
    '--port',
    String(port),
  ]);
  t.teardown(() => second.child.kill('SIGKILL'));
  while (!/reclaimed solver/.test(co.out())) await new Promise((r) => setTimeout(r, 50));
  const st = capture(site.dir, env);
  await runCli(['status', '--json'], st);
  t.equal(JSON.parse(st.stdout()).features[0].inUse, 1, 'the seat is held again');
  co.child.kill('SIGINT');
  const done = await co.done;
  t.equal(done.code, 0);
  t.match(done.out, /released solver/);
});

t.test('checkout fails over between two daemons sharing a keyring', async (t) => {
  const site = makeSite(['FEATURE solver demo 2.5 permanent 1']);
  const a = await spawnDaemon(site, ['--heartbeat', '1']);
  const b = await spawnDaemon({ ...site, stateDir: `${site.stateDir}-b` }, [
    '--heartbeat',
    '1',
    '--grace',
    '0',
  ]);
  t.teardown(() => {
    a.child.kill('SIGKILL');
    b.child.kill('SIGKILL');
  });
  const { cred } = creds(site, a.port);
  const env = { FLOATLM_CREDENTIAL: cred };
  const servers = ['-s', `127.0.0.1:${a.port}`, '-s', `127.0.0.1:${b.port}`];
  const co = floatlm([...servers, '--timeout', '2', 'checkout', 'solver'], site.dir, env);
  while (!/granted/.test(co.out())) await new Promise((r) => setTimeout(r, 50));
  a.child.kill('SIGKILL');
  while (!/reclaimed solver/.test(co.out())) await new Promise((r) => setTimeout(r, 50));
  t.match(co.out(), new RegExp(`failed over to 127\\.0\\.0\\.1:${b.port}`));
  const st = capture(site.dir, env);
  t.equal(await runCli(['-s', `127.0.0.1:${b.port}`, 'status', '--json'], st), 0);
  const solver = JSON.parse(st.stdout()).features[0];
  t.equal(solver.inUse, 1, 'the standby counts the seat it took over');
  co.child.kill('SIGINT');
  const done = await co.done;
  t.equal(done.code, 0);
  t.match(done.out, /released solver/);
});

t.test('--help of every command shows examples; a missing command is a usage error', async (t) => {
  const names: string[][] = [];
  const walk = (c: ReturnType<typeof buildProgram>['program'], path: string[]) => {
    for (const sub of c.commands) {
      names.push([...path, sub.name()]);
      walk(sub, [...path, sub.name()]);
    }
  };
  walk(buildProgram(capture(ROOT)).program, []);
  t.ok(names.length >= 14, `${names.length} commands`);
  for (const n of [[], ...names]) {
    const io = capture(ROOT);
    t.equal(await runCli([...n, '--help'], io), 0, `${['floatlm', ...n].join(' ')} --help: exit 0`);
    t.match(io.stdout(), /\nExamples:\n {2}floatlm /, `${['floatlm', ...n].join(' ')}: an example`);
  }
  for (const n of [[], ['keys'], ['license']]) {
    const io = capture(ROOT);
    t.equal(await runCli(n, io), 2, `${['floatlm', ...n].join(' ')} alone: exit 2 (usage)`);
  }
});

t.test('an error is one line; --verbose adds the detail', async (t) => {
  const site = makeSite([]);
  const { cred } = creds(site, 9);
  const args = ['--timeout', '0.3', '--credential', cred, 'status'];
  const plain = capture(site.dir);
  t.equal(await runCli(args, plain), 3, 'no answer: exit 3');
  t.match(plain.stderr(), /^floatlm: connect: no answer from 127\.0\.0\.1:9 [^\n]*\n$/);
  const verbose = capture(site.dir);
  t.equal(await runCli(['--verbose', ...args], verbose), 3);
  const lines = verbose.stderr().trimEnd().split('\n');
  t.equal(lines[0], plain.stderr().trimEnd(), 'the same first line');
  t.match(lines[1], /^TimeoutError code=ETIMEDOUT$/, 'then the class and code');
  t.ok(lines.length > 2, 'then where it came from');
});

t.test(
  'run: signals forwarded, 128+n, the seat lost (stop/warn), Ctrl-C while queued',
  async (t) => {
    const site = makeSite([
      'FEATURE demo demo 1.0 permanent 4',
      'FEATURE solver demo 2.5 permanent 1 QUEUE=yes DUP_GROUP=NONE',
    ]);
    const { child, port } = await spawnDaemon(site, ['--heartbeat', '1']);
    t.teardown(() => child.kill('SIGKILL'));
    const started: ReturnType<typeof floatlm>[] = [];
    t.teardown(() => {
      for (const p of started) if (p.child.exitCode === null) p.child.kill('SIGTERM');
    });
    const run = (args: string[]) => {
      const p = floatlm(args, site.dir, env);
      started.push(p);
      return p;
    };
    const { cred, admin } = creds(site, port);
    const env = { FLOATLM_CREDENTIAL: cred, FLOATLM_ADMIN: admin };
    const inUse = async (feature: string) => {
      const st = capture(site.dir, env);
      await runCli(['status', '--json', '-f', feature], st);
      return JSON.parse(st.stdout()).features[0] as { inUse: number; queued: number };
    };

    // SIGHUP reaches the program, whose own status comes back.
    const hup = run(['run', 'demo', '--', ...sleeper('SIGHUP', 42)]);
    await until(() => /ready/.test(hup.out()), hup);
    hup.child.kill('SIGHUP');
    t.equal((await hup.done).code, 42, 'SIGHUP forwarded; exit with the program status');

    // SIGTERM kills a program that does not handle it: 128 + 15.
    const term = run(['run', 'demo', '--', ...sleeper()]);
    await until(() => /ready/.test(term.out()), term);
    term.child.kill('SIGTERM');
    t.equal((await term.done).code, 143, 'killed by SIGTERM: exit 143');
    t.equal((await inUse('demo')).inUse, 0, 'both released their seats');

    // --on-loss stop (the default): an admin remove; after the next heartbeat the program stops.
    const stop = run(['run', 'solver', '--', ...sleeper()]);
    await until(() => /ready/.test(stop.out()), stop);
    const rm = capture(site.dir, env);
    t.equal(await runCli(['remove', '--feature', 'solver'], rm), 0);
    const stopped = await stop.done;
    t.match(stopped.err, /floatlm: lost the solver seat: .*; stopping the program\n/);
    t.equal(stopped.code, 143, 'the program was stopped (SIGTERM)');

    // --on-loss warn: the program goes on; Ctrl-C then reaches it.
    const warn = run(['run', 'solver', '--on-loss', 'warn', '--', ...sleeper('SIGINT', 9)]);
    await until(() => /ready/.test(warn.out()), warn);
    t.equal(await runCli(['remove', '--feature', 'solver'], capture(site.dir, env)), 0);
    await until(() => /lost the solver seat/.test(warn.err()), warn);
    t.notMatch(warn.err(), /stopping the program/);
    t.equal(warn.child.exitCode, null, 'the program still runs');
    warn.child.kill('SIGINT');
    t.equal((await warn.done).code, 9, 'SIGINT forwarded; exit with the program status');

    // Ctrl-C while queued: run and checkout exit 130 and leave the queue.
    const holder = run(['run', 'solver', '--', ...sleeper()]);
    await until(() => /ready/.test(holder.out()), holder);
    for (const args of [
      ['run', 'solver', '--wait', '--', process.execPath, '-e', 'process.exit(0)'],
      ['checkout', 'solver', '--wait'],
    ]) {
      const w = run(args);
      // run keeps stdout for the program: its own words go to stderr.
      const said = args[0] === 'run' ? w.err : w.out;
      await until(() => /queued for solver: position 1/.test(said()), w);
      t.equal((await inUse('solver')).queued, 1);
      w.child.kill('SIGINT');
      const done = await w.done;
      t.equal(done.code, 130, `${args[0]} --wait interrupted: exit 130`);
      t.match(done.out, /interrupted\n$/);
      t.equal((await inUse('solver')).queued, 0, `${args[0]}: left the queue`);
    }
    holder.child.kill('SIGTERM');
    t.equal((await holder.done).code, 143);
  },
);

t.test('keys init: --server after the command, or -s before it, is written', async (t) => {
  const site = makeSite([]);
  const files = (n: string) => ['--keys', `k${n}.json`, '--credential-out', `c${n}.json`];
  const admin = (n: string) => ['--admin-out', `a${n}.json`];
  const read = (f: string) => JSON.parse(readFileSync(join(site.dir, f), 'utf8')).servers;
  const io = capture(site.dir);
  t.equal(
    await runCli(['keys', 'init', ...files('1'), ...admin('1'), '--server', 'licsrv:27401'], io),
    0,
  );
  t.same(read('c1.json'), ['licsrv:27401']);
  t.same(read('a1.json'), ['licsrv:27401']);
  t.match(io.stdout(), /servers licsrv:27401\n$/);
  t.equal(
    await runCli(
      ['-s', 'a:1', '-s', 'b', 'keys', 'init', ...files('2'), ...admin('2')],
      capture(site.dir),
    ),
    0,
  );
  t.same(read('c2.json'), ['a:1', 'b:27400'], 'repeatable; the default port filled in');
  t.equal(await runCli(['keys', 'init', ...files('3'), ...admin('3')], capture(site.dir)), 0);
  t.same(read('c3.json'), ['127.0.0.1:27400'], 'the default');
  const bad = capture(site.dir);
  t.equal(await runCli(['keys', 'init', ...files('4'), ...admin('4'), '--server', 'h:0'], bad), 2);
  t.match(bad.stderr(), /^floatlm: --server: bad port in "h:0"\n$/);
});

t.test(
  'credentials: ./credential.json is used; when none is found, every place tried',
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'floatlm-cred-'));
    const none = capture(dir);
    t.equal(await runCli(['status'], none), 6);
    t.match(
      none.stderr(),
      /^floatlm: no client credential found; tried .*\/credential\.json, .*\/\.floatlm-demo\/credential\.json, .*\/\.config\/floatlm\/credential\.json \(give --credential FILE or set \$FLOATLM_CREDENTIAL\)\n$/,
    );
    const adminNone = capture(dir);
    t.equal(await runCli(['reread'], adminNone), 6, 'an admin command asks for the admin file');
    t.match(adminNone.stderr(), /^floatlm: no admin credential found; tried .*\/admin\.json, /);
    saveClientCredential(join(dir, 'credential.json'), {
      id: 'demo',
      key: new Uint8Array(32),
      servers: ['127.0.0.1:9'],
    });
    const found = capture(dir);
    t.equal(await runCli(['--timeout', '0.3', 'status'], found), 3, 'read, then nothing answers');
    t.match(found.stderr(), /no answer from 127\.0\.0\.1:9/);
  },
);

t.test('keys show and rotate find the demo keys as other commands find its files', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'floatlm-demokeys-'));
  const { ensureDemo } = await import('../../lib/cli/demo.ts');
  ensureDemo(join(dir, '.floatlm-demo'), 27400);
  const show = capture(dir);
  t.equal(await runCli(['keys', 'show'], show), 0);
  t.match(show.stdout(), new RegExp(`^keys file ${join(dir, '.floatlm-demo', 'keys.json')}\n`));
  t.equal(await runCli(['keys', 'rotate'], capture(dir)), 0);
  const empty = capture(mkdtempSync(join(tmpdir(), 'floatlm-nokeys-')));
  t.equal(await runCli(['keys', 'show'], empty), 6);
  t.match(
    empty.stderr(),
    /^floatlm: no keys file found; tried .*keys\.json, .*\.floatlm-demo\/keys\.json/,
  );
});

t.test('license: the vendor from the file, expired lines, sign exits 6 on bad lines', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'floatlm-lic-'));
  t.equal(await runCli(['license', 'keygen', 'acme'], capture(dir)), 0);
  writeFileSync(
    join(dir, 'site.lic'),
    'VENDOR acme\nFEATURE cad acme 2.0 permanent 4\nFEATURE old acme 1.0 1-jan-2020 1\n',
  );
  t.equal(await runCli(['license', 'sign', 'site.lic', '--key', 'acme.key'], capture(dir)), 0);
  const v = capture(dir);
  t.equal(await runCli(['license', 'verify', 'site.lic', '--pub', 'acme.pub'], v), 6);
  t.match(v.stdout(), /^site\.lic:3:\d+: old 1\.0 expired on 1-jan-2020\n$/);
  t.notMatch(v.stdout(), /every line verifies/);
  t.match(v.stderr(), /^floatlm: license verify: 1 problem\(s\) in site\.lic\n$/);
  writeFileSync(join(dir, 'ok.lic'), 'FEATURE cad acme 2.0 permanent 4\n');
  t.equal(await runCli(['license', 'sign', 'ok.lic', '--key', 'acme.key'], capture(dir)), 0);
  const ok = capture(dir);
  t.equal(await runCli(['license', 'verify', 'ok.lic', '--pub', 'acme.pub'], ok), 0);
  t.match(ok.stdout(), /^ok\.lic: every line verifies and is in force\n$/);
  writeFileSync(join(dir, 'two.lic'), 'VENDOR acme\nVENDOR other\n');
  const two = capture(dir);
  t.equal(await runCli(['license', 'verify', 'two.lic', '--pub', 'acme.pub'], two), 2);
  t.match(two.stderr(), /names vendors acme, other; give --vendor/);
  writeFileSync(join(dir, 'bad.lic'), 'FEATURE cad acme 2.0 permanent 4\nFEATURE x acme 1.0\n');
  const sign = capture(dir);
  t.equal(await runCli(['license', 'sign', 'bad.lic', '--key', 'acme.key'], sign), 6);
  t.match(sign.stdout(), /^signed 1 line\(s\) into .*bad\.lic\n$/);
  t.match(
    sign.stderr(),
    /^bad\.lic:2:\d+: .+\nfloatlm: license sign: 1 line\(s\) with errors left unsigned in .*bad\.lic\n$/,
  );
});

t.test('decode: hex with spaces, colons or 0x; a cut-short string is named', async (t) => {
  const v = VECTORS[0]!;
  const spaced = `0x${v.datagram.match(/../g)!.join(':')}`;
  const io = capture(ROOT);
  t.equal(await runCli(['decode', spaced, '--key', v.key], io), 0);
  t.match(io.stdout(), /tag +[0-9a-f]{64} OK/);
  for (const cut of ['464c0108…', '464c0108...']) {
    const short = capture(ROOT);
    t.equal(await runCli(['decode', cut], short), 6);
    t.match(
      short.stderr(),
      /^floatlm: decode: "464c0108(…|\.\.\.)" is cut short: give every hex digit/,
    );
  }
  const nofile = capture(ROOT);
  t.equal(await runCli(['decode', 'capture.bin'], nofile), 6);
  t.match(
    nofile.stderr(),
    /^floatlm: decode: "capture\.bin" is neither hex digits nor a readable file \(ENOENT\)\n$/,
  );
});

t.test('README lists every command, with options that exist', async (t) => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(
    readme.indexOf('## The CLI: `floatlm`'),
    readme.indexOf('### Exit codes'),
  );
  const rows = section.split('\n').filter((l) => l.startsWith('| `'));
  const { program } = buildProgram(capture(ROOT));
  type Cmd = typeof program;
  const leaves: [string, Cmd][] = [];
  const walk = (c: Cmd, path: string[]) => {
    for (const sub of c.commands) {
      if (sub.commands.length) walk(sub, [...path, sub.name()]);
      else leaves.push([[...path, sub.name()].join(' '), sub]);
    }
  };
  walk(program, []);
  t.ok(leaves.length >= 14, `${leaves.length} commands`);
  for (const [name, cmd] of leaves) {
    const row = rows.find((r) => r.startsWith(`| \`${name} `) || r.startsWith(`| \`${name}\``));
    t.ok(row, `README has a row for ${name}`);
    t.match(row ?? '', /\| `floatlm |see below/, `${name}: with an example`);
    const usage = row?.split('|')[1] ?? '';
    for (const [option] of usage.matchAll(/--[a-z][a-z-]*/g))
      t.ok(
        [...cmd.options, ...program.options].some((o) => o.long === option),
        `${name}: README's ${option} exists`,
      );
  }
});

t.test('status shows each holder program/version, "-" where none was sent', async (t) => {
  const site = makeSite(['FEATURE solver demo 1.0 permanent 5 DUP_GROUP=NONE']);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const port = d.address().port;
  const { cred, admin } = creds(site, port);
  const env = { FLOATLM_CREDENTIAL: cred, FLOATLM_ADMIN: admin };
  const holders = [
    { user: 'alice', program: 'cad', programVersion: '2.10' },
    { user: 'bob', program: 'mesher', programVersion: '' },
    { user: 'carol', program: '', programVersion: '' },
  ];
  for (const o of holders) {
    const c = await client(site, port, o);
    t.teardown(() => c.close());
    await c.checkout('solver');
  }
  const text = capture(site.dir, env);
  t.equal(await runCli(['status'], text), 0, text.stderr());
  t.match(text.stdout(), /HOLDER +HOST +FEATURE +PROGRAM +SEATS +SINCE +HELD FOR +LEASE\n/);
  t.match(text.stdout(), /\nalice +ws1 +solver +cad\/2\.10 +1 /);
  t.match(text.stdout(), /\nbob +ws1 +solver +mesher +1 /, 'no version: the program alone');
  t.match(text.stdout(), /\ncarol +ws1 +solver +- +1 /, 'nothing sent: -');
  const json = capture(site.dir, env);
  t.equal(await runCli(['status', '--json'], json), 0, json.stderr());
  const solver = JSON.parse(json.stdout()).features[0];
  t.match(
    [...solver.holders].sort((a: { user: string }, b: { user: string }) =>
      a.user < b.user ? -1 : 1,
    ),
    [
      { user: 'alice', program: 'cad', version: '2.10' },
      { user: 'bob', program: 'mesher', version: '' },
      { user: 'carol', program: '', version: '' },
    ],
  );
});

t.test('keys add-credential: a per-user credential that may only declare its user', async (t) => {
  const site = makeSite(['FEATURE demo demo 1.0 permanent 5 DUP_GROUP=NONE']);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const port = d.address().port;
  const io = capture(site.dir);
  const args = ['keys', 'add-credential', '--keys', site.keysFile, '--vendor', 'demo'];
  t.equal(
    await runCli(
      [
        '-s',
        `127.0.0.1:${port}`,
        ...args,
        '--user',
        'alice',
        '--out',
        'alice.json',
        '--max-seats',
        '1',
      ],
      io,
    ),
    0,
    io.stderr(),
  );
  t.match(io.stdout(), /added credential demo\/alice .*may declare user alice only/);
  const file = join(site.dir, 'alice.json');
  t.equal(statSync(file).mode & 0o777, 0o600, 'written 0600');
  const again = capture(site.dir);
  t.equal(
    await runCli([...args, '--user', 'alice', '--out', 'x.json'], again),
    6,
    'no silent replace',
  );
  d.reread();
  const cred = loadClientCredential(file);
  t.same(cred.servers, [`127.0.0.1:${port}`]);
  const alice = await connect({
    servers: cred.servers,
    credential: cred,
    user: 'alice',
    host: 'ws1',
    retry: { initialMs: 100, maxIntervalMs: 400, maxTotalMs: 3000 },
  });
  t.teardown(() => alice.close());
  await alice.checkout('demo');
  await t.rejects(alice.checkout('demo', { count: 2 }), /USER_MAX/, 'its seat cap holds');
  const mallory = await connect({
    servers: cred.servers,
    credential: cred,
    user: 'mallory',
    host: 'ws1',
    retry: { initialMs: 100, maxIntervalMs: 400, maxTotalMs: 3000 },
  }).catch((e: unknown) => e);
  t.match(String(mallory), /NOT_PERMITTED/, 'it cannot declare another user');
});

t.test('checkout says when it has lost contact, and Ctrl-C then ends it promptly', async (t) => {
  const site = makeSite(['FEATURE solver demo 2.5 permanent 1']);
  const d = await spawnDaemon(site, ['--heartbeat', '1']);
  const { cred } = creds(site, d.port);
  const co = floatlm(['checkout', 'solver'], site.dir, { FLOATLM_CREDENTIAL: cred });
  await until(() => /granted/.test(co.out()), co);
  d.child.kill('SIGKILL');
  await new Promise((r) => d.child.once('exit', r));
  await until(() => /lost contact with 127\.0\.0\.1:\d+; still holding solver/.test(co.err()), co);
  co.child.kill('SIGINT');
  const done = await co.done;
  t.equal(done.code, 3, 'exit 3: the release went unanswered');
  t.match(
    done.err,
    /did not confirm the release within a second/,
    'says the release is unconfirmed',
  );
});
