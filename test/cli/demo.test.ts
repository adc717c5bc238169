/**
 * lib/cli/demo.ts: the demo files, pointing their credentials at another port, and where
 * the CLIs look for a credential or keys file when no option names one.
 */
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { DEMO_DIR, ensureDemo, findFile, pointDemoAt } from '../../lib/cli/demo.ts';
import type { CliIO } from '../../lib/cli/io.ts';
import { generateKey, loadClientCredential, saveClientCredential } from '../../lib/crypto/files.ts';

function io(cwd: string, env: NodeJS.ProcessEnv = {}): CliIO {
  return { out: () => {}, err: () => {}, env: { HOME: join(cwd, 'home'), ...env }, cwd };
}

function cred(file: string): void {
  saveClientCredential(file, { id: 'demo', key: generateKey(), servers: ['127.0.0.1:27400'] });
}

t.test('ensureDemo creates once; port 0 is written as 27400; pointDemoAt follows', async (t) => {
  const dir = join(mkdtempSync(join(tmpdir(), 'floatlm-demo-')), DEMO_DIR);
  const paths = ensureDemo(dir, 0);
  t.same(loadClientCredential(paths.credential).servers, ['127.0.0.1:27400']);
  const key = loadClientCredential(paths.credential).key;
  t.same(ensureDemo(dir, 5000), paths, 'the second call finds the demo');
  t.same(loadClientCredential(paths.credential).key, key, 'and keeps its keys');
  t.same(pointDemoAt(paths, '127.0.0.1:5000'), [paths.credential, paths.admin]);
  for (const f of [paths.credential, paths.admin])
    t.same(loadClientCredential(f).servers, ['127.0.0.1:5000'], `${f} names the new port`);
  t.same(loadClientCredential(paths.credential).key, key, 'the key is unchanged');
  t.same(pointDemoAt(paths, '127.0.0.1:5000'), [], 'nothing to change the second time');
});

t.test('findFile: option, environment, ./, the demo, ~/.config; else every place', async (t) => {
  const cwd = mkdtempSync(join(tmpdir(), 'floatlm-find-'));
  const home = join(cwd, 'home', '.config', 'floatlm');
  const tried = [
    join(cwd, 'credential.json'),
    join(cwd, DEMO_DIR, 'credential.json'),
    join(home, 'credential.json'),
  ];
  t.throws(() => findFile(io(cwd), 'credential', undefined), {
    message: `floatlm: no client credential found; tried ${tried.join(', ')} (give --credential FILE or set $FLOATLM_CREDENTIAL)`,
    exitCode: 6,
  });
  mkdirSync(home, { recursive: true });
  cred(tried[2]!);
  t.equal(findFile(io(cwd), 'credential', undefined), tried[2]);
  mkdirSync(join(cwd, DEMO_DIR));
  cred(tried[1]!);
  t.equal(findFile(io(cwd), 'credential', undefined), tried[1], 'the demo before ~/.config');
  cred(tried[0]!);
  t.equal(findFile(io(cwd), 'credential', undefined), tried[0], './credential.json first');
  t.equal(
    findFile(io(cwd, { FLOATLM_CREDENTIAL: 'x.json' }), 'credential', undefined),
    join(cwd, 'x.json'),
    'the environment before the search (existing or not: loading it says so)',
  );
  t.equal(
    findFile(io(cwd, { FLOATLM_CREDENTIAL: 'x.json' }), 'credential', 'y.json'),
    join(cwd, 'y.json'),
    'the option before the environment',
  );
  t.throws(() => findFile(io(cwd), 'admin', undefined), {
    message: /^floatlm: no admin credential found; tried .*admin\.json.* \$FLOATLM_ADMIN\)$/,
  });
  t.throws(() => findFile(io(cwd), 'keys', undefined), {
    message: `floatlm: no keys file found; tried ${join(cwd, 'keys.json')}, ${join(cwd, DEMO_DIR, 'keys.json')} (give --keys FILE)`,
  });
});
