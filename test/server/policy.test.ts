/**
 * Policy a client cannot talk its way around, against a real daemon: MAX_PER_HOST counts the
 * source address (made-up user/host names from one address), credential caps from the keys
 * file, and the admin's options file (EXCLUDE, TIMEOUT, all-or-nothing reread).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { DeniedError } from '../../lib/client/errors.ts';
import type { Daemon } from '../../lib/server/daemon.ts';
import { client, makeSite, startDaemon } from '../helpers/site.ts';

function inUse(d: Daemon, name: string): number {
  return d.pool.status().features.find((f) => f.name === name)?.inUse ?? 0;
}

t.test('a vendor-wide credential from one address gets at most MAX_PER_HOST seats', async (t) => {
  const site = makeSite(['FEATURE demo demo 1.0 permanent 20 MAX_PER_USER=2 MAX_PER_HOST=2']);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  let granted = 0;
  let hostMax = 0;
  for (let i = 0; i < 20; i++) {
    // Each "client" declares a fresh user and host; all come from 127.0.0.1.
    const c = await client(site, d.address().port, { user: `user${i}`, host: `host${i}` });
    t.teardown(() => c.close());
    try {
      await c.checkout('demo');
      granted++;
    } catch (e) {
      if (e instanceof DeniedError && e.reasonName === 'HOST_MAX') hostMax++;
      else throw e;
    }
  }
  t.equal(granted, 2, 'two seats, not twenty');
  t.equal(hostMax, 18, 'the others are refused HOST_MAX');
  t.equal(inUse(d, 'demo'), 2);
});

t.test('credential caps from the keys file: maxSessions and maxSeats', async (t) => {
  const site = makeSite(['FEATURE demo demo 1.0 permanent 10 DUP_GROUP=NONE']);
  const keys = JSON.parse(readFileSync(site.keysFile, 'utf8'));
  keys.credentials[0].maxSessions = 3;
  keys.credentials[0].maxSeats = 2;
  writeFileSync(site.keysFile, JSON.stringify(keys), { mode: 0o600 });
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const port = d.address().port;
  const cs = [];
  for (let i = 0; i < 3; i++) {
    const c = await client(site, port, { user: `u${i}` });
    t.teardown(() => c.close());
    cs.push(c);
  }
  const fourth = await client(site, port, { user: 'u9' }).catch((e: unknown) => e);
  t.match(String(fourth), /SESSION_LIMIT/, 'a fourth session of the credential is refused');
  await cs[0]!.checkout('demo');
  await cs[1]!.checkout('demo');
  const third = await cs[2]!.checkout('demo').catch((e: unknown) => e);
  t.type(third, DeniedError, 'a third seat for the credential is denied');
  t.equal(inUse(d, 'demo'), 2, 'the credential holds its two seats, no more');
});

t.test(
  'options file: EXCLUDE applies, a bad file is refused whole, TIMEOUT frees idle seats',
  async (t) => {
    const site = makeSite([
      'FEATURE demo demo 1.0 permanent 2',
      'FEATURE solver demo 1.0 permanent 1',
    ]);
    const opt = join(site.dir, 'site.opt');
    writeFileSync(opt, 'EXCLUDE demo USER mallory\nTIMEOUT solver 2\n');
    let offset = 0;
    const d = await startDaemon(site, {
      optionsFile: opt,
      now: () => Date.now() + offset,
      tickMs: 20,
    });
    t.teardown(() => d.close());
    const port = d.address().port;
    const mallory = await client(site, port, { user: 'mallory' });
    t.teardown(() => mallory.close());
    const denied = await mallory.checkout('demo').catch((e: unknown) => e);
    t.type(denied, DeniedError, 'mallory is excluded from demo');
    const alice = await client(site, port);
    t.teardown(() => alice.close());
    await alice.checkout('demo');
    // A broken options file: the reread is refused, the old policy stays.
    writeFileSync(opt, 'EXCLUDE demo GROUP nobody\n');
    t.throws(() => d.reread(), /options file/, 'refused with the file:line:column reason');
    const still = await mallory.checkout('demo').catch((e: unknown) => e);
    t.type(still, DeniedError, 'mallory is still excluded');
    // TIMEOUT: alice's solver seat, idle (heartbeats only) past 2 s, goes back to the pool.
    writeFileSync(opt, 'EXCLUDE demo USER mallory\nTIMEOUT solver 2\n');
    d.reread();
    await alice.checkout('solver');
    t.equal(inUse(d, 'solver'), 1);
    offset = 3000;
    const end = Date.now() + 10_000;
    while (inUse(d, 'solver') !== 0 && Date.now() < end)
      await new Promise((r) => setTimeout(r, 10));
    t.equal(inUse(d, 'solver'), 0, 'the idle seat went back to the pool on the tick');
  },
);
