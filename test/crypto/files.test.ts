import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t, { type Test } from 'tap';
import { KeyFileError } from '../../lib/crypto/errors.ts';
import {
  type DaemonKeys,
  generateKey,
  loadClientCredential,
  loadDaemonKeys,
  saveClientCredential,
  saveDaemonKeys,
  writeFileAtomic0600,
} from '../../lib/crypto/files.ts';
import { Keyring } from '../../lib/crypto/keyring.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'floatlm-keys-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

function keys(): DaemonKeys {
  return {
    keyring: Keyring.generate(Date.parse('2030-01-01T00:00:00Z')),
    credentials: new Map([
      ['demo', generateKey()],
      ['demo/alice', generateKey()],
    ]),
    admin: new Map([['admin', generateKey()]]),
    vendors: new Map([['acme', generateKey()]]),
  };
}

function refused(t: Test, fn: () => unknown, code: string, re: RegExp): void {
  try {
    fn();
    t.fail(`expected ${code}`);
  } catch (e) {
    t.ok(e instanceof KeyFileError, 'a KeyFileError');
    t.equal((e as KeyFileError).code, code);
    t.match((e as Error).message, re);
    t.notMatch((e as Error).message, /\n/, 'one line');
  }
}

t.test('daemon keys round trip through a 0600 file', async (t) => {
  const file = path.join(dir, 'keys.json');
  const k = keys();
  saveDaemonKeys(file, k);
  t.equal(fs.statSync(file).mode & 0o777, 0o600);
  const back = loadDaemonKeys(file);
  t.same(back.keyring.toJSON(), k.keyring.toJSON());
  t.same([...back.credentials], [...k.credentials]);
  t.same([...back.admin], [...k.admin]);
  t.same([...(back.vendors ?? [])], [...(k.vendors ?? [])], 'vendor public keys too');
  t.same(
    fs.readdirSync(dir).filter((f) => f.endsWith('.tmp')),
    [],
    'no temporary file left behind',
  );
});

t.test('files readable by group or others are refused', async (t) => {
  const file = path.join(dir, 'open.json');
  saveDaemonKeys(file, keys());
  for (const mode of [0o644, 0o640, 0o604, 0o660, 0o601]) {
    fs.chmodSync(file, mode);
    refused(
      t,
      () => loadDaemonKeys(file),
      'INSECURE',
      /mode 0\d{3} lets group or others access it/,
    );
  }
  fs.chmodSync(file, 0o600);
  t.ok(loadDaemonKeys(file));
  fs.chmodSync(file, 0o400);
  t.ok(loadDaemonKeys(file), '0400 is fine');
});

t.test('missing, not a file, and malformed files are refused with what and where', async (t) => {
  refused(
    t,
    () => loadDaemonKeys(path.join(dir, 'nope.json')),
    'MISSING',
    /nope\.json: no such file/,
  );
  const sub = path.join(dir, 'sub');
  fs.mkdirSync(sub, { mode: 0o700 });
  refused(t, () => loadDaemonKeys(sub), 'UNREADABLE', /not a regular file/);
  const file = path.join(dir, 'bad.json');
  const write = (text: string) => writeFileAtomic0600(file, text);
  write('{"version":1,');
  refused(t, () => loadDaemonKeys(file), 'MALFORMED', /bad\.json: not valid JSON/);
  const good = JSON.parse(fs.readFileSync(path.join(dir, 'keys.json'), 'utf8'));
  write(JSON.stringify({ ...good, version: 3 }));
  refused(t, () => loadDaemonKeys(file), 'MALFORMED', /version: must be 1/);
  write(JSON.stringify({ ...good, server: undefined }));
  refused(t, () => loadDaemonKeys(file), 'MALFORMED', /server: missing/);
  write(JSON.stringify({ ...good, credentials: [{ id: 'demo', key: 'zz' }] }));
  refused(
    t,
    () => loadDaemonKeys(file),
    'MALFORMED',
    /credentials\[0\]\.key: must be 64 hex digits/,
  );
  write(JSON.stringify({ ...good, admin: [{ id: 'has space', key: '00'.repeat(32) }] }));
  refused(t, () => loadDaemonKeys(file), 'MALFORMED', /admin\[0\]\.id/);
  write(JSON.stringify({ ...good, credentials: [good.credentials[0], good.credentials[0]] }));
  refused(t, () => loadDaemonKeys(file), 'MALFORMED', /credentials\[1\]\.id: "demo" repeats/);
  write(
    JSON.stringify({
      ...good,
      server: { ...good.server, secrets: [{ id: 1, secret: '00', activates: 'x' }] },
    }),
  );
  refused(t, () => loadDaemonKeys(file), 'MALFORMED', /server\.secrets\[0\]\.secret/);
  write(JSON.stringify({ ...good, vendors: { acme: 'x' } }));
  refused(t, () => loadDaemonKeys(file), 'MALFORMED', /vendors: must be an array/);
  write(JSON.stringify({ ...good, vendors: [{ name: 'acme', publicKey: 'abc' }] }));
  refused(t, () => loadDaemonKeys(file), 'MALFORMED', /vendors\[0\]\.publicKey: must be 64 hex/);
  const pk = '11'.repeat(32);
  write(
    JSON.stringify({
      ...good,
      vendors: [
        { name: 'a', publicKey: pk },
        { name: 'a', publicKey: pk },
      ],
    }),
  );
  refused(t, () => loadDaemonKeys(file), 'MALFORMED', /vendors\[1\]\.name: "a" repeats/);
});

t.test('client credential round trip and refusals', async (t) => {
  const file = path.join(dir, 'cred.json');
  const cred = {
    id: 'demo/alice',
    key: generateKey(),
    servers: ['127.0.0.1:27400', '[::1]:27400', 'lic.example:1'],
  };
  saveClientCredential(file, cred);
  t.equal(fs.statSync(file).mode & 0o777, 0o600);
  t.same(loadClientCredential(file), cred);
  fs.chmodSync(file, 0o644);
  refused(t, () => loadClientCredential(file), 'INSECURE', /chmod 600/);
  const write = (v: unknown) => writeFileAtomic0600(file, JSON.stringify(v));
  const good = { version: 1, id: 'demo', key: '11'.repeat(32), servers: ['h:1'] };
  write({ ...good, servers: ['h'] });
  refused(t, () => loadClientCredential(file), 'MALFORMED', /servers\[0\]: must be "host:port"/);
  write({ ...good, servers: ['h:70000'] });
  refused(t, () => loadClientCredential(file), 'MALFORMED', /servers\[0\]: port/);
  write({ ...good, key: undefined });
  refused(t, () => loadClientCredential(file), 'MALFORMED', /key: must be 64 hex digits/);
  write({ ...good, id: '' });
  refused(t, () => loadClientCredential(file), 'MALFORMED', /id: must be/);
  write([]);
  refused(t, () => loadClientCredential(file), 'MALFORMED', /must be a JSON object/);
  t.throws(() => saveClientCredential(file, { ...cred, key: new Uint8Array(3) }), TypeError);
});

t.test('atomic write replaces the file and keeps 0600 even over a wider file', async (t) => {
  const file = path.join(dir, 'replace.txt');
  fs.writeFileSync(file, 'old', { mode: 0o644 });
  writeFileAtomic0600(file, 'new');
  t.equal(fs.readFileSync(file, 'utf8'), 'new');
  t.equal(fs.statSync(file).mode & 0o777, 0o600);
});
