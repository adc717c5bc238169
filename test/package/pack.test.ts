/**
 * The package as a user gets it: `npm pack` (which builds dist/ through `prepare`), the
 * tarball installed into a fresh project, and README's client example run there verbatim
 * with `node` against a real daemon, importing from 'floatlm'; the installed `floatlm`
 * binary answers too.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { saveClientCredential } from '../../lib/crypto/files.ts';
import { makeSite, ROOT, reportEvents, startDaemon } from '../helpers/site.ts';

const run = promisify(execFile);
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';

/** The first ```js block of README's "The client library" section. */
function readmeExample(): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n## The client library'));
  const m = /```js\n([\s\S]*?)```/.exec(section);
  if (!m) throw new Error('README.md: no ```js block under "## The client library"');
  return m[1]!;
}

t.test('npm pack, install the tarball, run README’s client example', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'floatlm-pack-'));
  const env: NodeJS.ProcessEnv = { ...process.env, npm_config_update_notifier: 'false' };

  const packed = await run(NPM, ['pack', '--silent', '--pack-destination', dir], {
    cwd: ROOT,
    env,
    maxBuffer: 16 << 20,
  });
  const tarball = join(dir, packed.stdout.trim().split('\n').pop()!);
  const listing = (await run('tar', ['tzf', tarball], { maxBuffer: 16 << 20 })).stdout.split('\n');
  for (const f of [
    'package/dist/lib/index.js',
    'package/dist/lib/index.d.ts',
    'package/dist/bin/floatlm.js',
    'package/dist/bin/floatlmd.js',
    'package/README.md',
    'package/lib/server/web/index.html',
    'package/contrib/systemd/floatlmd.service',
    'package/binding.gyp',
    'package/native/addon.c',
    'package/native/addon.h',
    'package/native/udp.c',
    'package/native/hmac.c',
  ])
    t.ok(listing.includes(f), `the tarball ships ${f}`);
  t.notOk(
    listing.some(
      (f) =>
        f.startsWith('package/dist/test/') ||
        (f.startsWith('package/lib/') && !f.startsWith('package/lib/server/web/')) ||
        f.startsWith('package/build/') ||
        (f.endsWith('.ts') && !f.endsWith('.d.ts')),
    ),
    'no tests, TypeScript sources or local build/ in the tarball (only the status page assets of lib/)',
  );

  const project = join(dir, 'project');
  mkdirSync(project);
  writeFileSync(
    join(project, 'package.json'),
    `${JSON.stringify({ name: 'uses-floatlm', private: true, type: 'module' })}\n`,
  );
  // --ignore-scripts: better-sqlite3 compiles from source (a minute or more) where no
  // prebuilt binary can be fetched; the client library never loads it, which this proves.
  const install = ['install', '--no-audit', '--no-fund', '--ignore-scripts', tarball];
  try {
    await run(NPM, [...install, '--offline'], { cwd: project, env });
  } catch {
    // Something is not in the npm cache yet: the registry is reachable.
    await run(NPM, [...install, '--prefer-offline'], { cwd: project, env });
  }
  t.ok(readdirSync(join(project, 'node_modules', 'floatlm')).includes('dist'), 'installed');

  const site = makeSite(['FEATURE solver demo 2.5 permanent 1 QUEUE=yes']);
  const daemon = await startDaemon(site);
  t.teardown(() => daemon.close());
  const server = `127.0.0.1:${daemon.address().port}`;
  // The file the example reads, where `floatlm keys init` would have written it.
  saveClientCredential(join(project, 'credential.json'), {
    id: 'demo',
    key: site.credKey,
    servers: [server],
  });
  const example = readmeExample();
  t.match(example, /from 'floatlm'/, 'the example imports the package by name');
  writeFileSync(join(project, 'example.mjs'), example);
  // Nothing from this machine's own floatlm set-up: only the project's credential.json.
  const { FLOATLM_CREDENTIAL: _, ...rest } = env;
  const clean = { ...rest, HOME: project };
  const out = await run(process.execPath, ['example.mjs'], { cwd: project, env: clean });
  t.match(out.stdout, /^holding solver, lease [0-9a-f]+\n$/, 'the example held a seat');
  t.equal(out.stderr, '', 'and said nothing on stderr');
  const events = reportEvents(site).map((e) => e.event);
  t.ok(events.includes('grant') && events.includes('release'), 'granted, then released');
  t.equal(daemon.pool.status().features[0]?.inUse, 0, 'no seat left held');

  const bin = join(project, 'node_modules', '.bin', 'floatlm');
  const ping = await run(bin, ['ping'], { cwd: project, env: clean });
  t.match(ping.stdout, new RegExp(`^reply from ${server.replace(/\./g, '\\.')}: seq=1 `));
});
