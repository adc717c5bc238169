/**
 * Loading the addon (lib/native.ts), in child processes with their own module state: the
 * build in this checkout offers every function floatlm calls; FLOATLM_NATIVE=0 turns it off
 * with a reason; a build left from an older floatlm (a real shared object, compiled here with
 * gcc against Node's headers, lacking most functions) is refused with a reason that names
 * what it lacks and how to rebuild, rather than loaded and failing at its first call.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import t from 'tap';
import { ADDON_FUNCTIONS } from '../lib/native.ts';
import { ROOT, TSX } from './helpers/site.ts';

const built = existsSync(join(ROOT, 'build/Release/floatlm_native.node'));
if (!built && process.env.CI === 'true') throw new Error('CI=true: the addon is not built');

/** What `loadAddon()` and `addonUnavailable()` say in a child run from `root`. */
function probe(root: string, env: NodeJS.ProcessEnv = {}): { loaded: string[]; why: string } {
  const script = `
    import { loadAddon, addonUnavailable } from ${JSON.stringify(join(root, 'lib/native.ts'))};
    const a = loadAddon();
    // By name: the addon's properties are not enumerable (napi_define_properties).
    const names = ${JSON.stringify(ADDON_FUNCTIONS)};
    const loaded = a ? names.filter((k) => typeof a[k] === 'function') : [];
    console.log(JSON.stringify({ loaded, why: addonUnavailable() ?? '' }));
  `;
  const r = spawnSync(process.execPath, ['--import', TSX, '--input-type=module', '-e', script], {
    env: { ...process.env, FLOATLM_NATIVE: '', ...env },
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`probe failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { loaded: string[]; why: string };
}

t.test(
  'the build here offers every function; FLOATLM_NATIVE=0 turns it off',
  { skip: built ? false : 'the addon is not built (npm install builds it with gcc)' },
  async (t) => {
    const here = probe(ROOT);
    t.same(here, { loaded: [...ADDON_FUNCTIONS], why: '' }, 'every function, no reason against it');
    const off = probe(ROOT, { FLOATLM_NATIVE: '0' });
    t.same(off, { loaded: [], why: 'the addon is disabled (FLOATLM_NATIVE=0)' });
  },
);

const headers = join(dirname(dirname(process.execPath)), 'include', 'node');
const gcc = spawnSync('gcc', ['--version']).status === 0;
const noStub = !gcc
  ? 'gcc not found'
  : !existsSync(join(headers, 'node_api.h'))
    ? `no Node headers at ${headers}`
    : false;
if (noStub && process.env.CI === 'true') throw new Error(`CI=true: ${noStub}`);

t.test('an older build is refused, naming what it lacks', { skip: noStub }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'floatlm-native-'));
  mkdirSync(join(root, 'lib'));
  mkdirSync(join(root, 'build/Release'), { recursive: true });
  copyFileSync(join(ROOT, 'lib/native.ts'), join(root, 'lib/native.ts'));
  writeFileSync(join(root, 'package.json'), '{"type":"module"}\n');
  // As the first addon was: the socket only.
  const src = join(root, 'old.c');
  writeFileSync(
    src,
    `#include <node_api.h>
static napi_value nop(napi_env env, napi_callback_info info) { (void)info; (void)env; return NULL; }
NAPI_MODULE_INIT() {
  const char *names[] = {"open", "port", "send", "close"};
  for (int i = 0; i < 4; i++) {
    napi_value f;
    napi_create_function(env, names[i], NAPI_AUTO_LENGTH, nop, NULL, &f);
    napi_set_named_property(env, exports, names[i], f);
  }
  return exports;
}
`,
  );
  const out = join(root, 'build/Release/floatlm_native.node');
  const cc = spawnSync('gcc', ['-shared', '-fPIC', `-I${headers}`, src, '-o', out], {
    encoding: 'utf8',
  });
  t.equal(cc.status, 0, `compiled ${cc.stderr}`);
  const old = probe(root);
  t.same(old.loaded, [], 'not used');
  t.equal(
    old.why,
    `${out} is an older build (no rcvbuf, pauses, fullAfter, hmacVerify, hmacSign, hmacKey, hkdf, sha256Impl): npm rebuild floatlm`,
  );
});
