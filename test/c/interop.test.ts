/**
 * The C example client (clients/c/example.c) against real floatlmd child processes: first
 * contact, checkout, heartbeat, answering test_conn (and, as a control, a client that does
 * not answer losing its seat), checkin, reclaiming its seat from a daemon restarted on its
 * durable state, and failing over to a second server by re-presenting its token (mode 2).
 */
import { join } from 'node:path';
import t from 'tap';
import { makeSite, spawnDaemon } from '../helpers/site.ts';
import { CClient, field } from './cclient.ts';

t.test('checkout, heartbeat, test_conn, checkin, reclaim after a restart', async (t) => {
  const site = makeSite(['FEATURE solver demo 2.5 permanent 2']);
  const args = ['--heartbeat', '1', '--test-conn-interval', '1', '--test-conn-tries', '1'];
  const first = await spawnDaemon(site, ['--grace', '20', ...args]);
  t.teardown(() => first.child.kill('SIGKILL'));
  const c = new CClient(site, { servers: [first.port] });
  t.teardown(() => c.child.kill('SIGKILL'));

  t.match(await c.run('hello'), /^ok hello session=[0-9a-f]{16} .*heartbeat_ms=1000$/);
  const co = await c.run('checkout solver 2.0 1');
  t.match(co, /^ok checkout feature=solver lease=[0-9a-f]{16} count=1$/, 'granted');
  const lease = field(co, 'lease');
  t.not(lease, '0000000000000000');
  t.match(await c.run('heartbeat'), /^ok heartbeat leases=1 queued=0 /);

  // Quiet for more than twice the heartbeat: the daemon pings; one unanswered ping would
  // cost the seat (--test-conn-tries 1), so holding it afterwards proves the acks counted.
  t.match(await c.run('wait-test-conn 10000'), /^ok wait-test-conn test_conn=1/);
  const polled = await c.run('poll 4000');
  t.match(polled, /^ok poll /);
  t.ok(Number(field(polled, 'total')) >= 2, `answered several pings (${polled})`);
  t.match(await c.run('heartbeat'), /^ok heartbeat leases=1 /, 'still holds its seat');

  // Control: a client that stops reading its socket is pinged, does not answer, is reaped
  // (while ours keeps answering: it only reads its socket inside a command).
  c.send('poll 12000');
  const hung = new CClient(site, { servers: [first.port] });
  t.teardown(() => hung.child.kill('SIGKILL'));
  t.match(await hung.run('hello'), /^ok hello/);
  t.match(await hung.run('checkout solver 2.0 1'), /^ok checkout feature=solver /);
  t.match(await hung.run('sleep 6000'), /^ok sleep/);
  t.match(
    await hung.run('heartbeat'),
    /^err heartbeat NO_TOKEN code=TOKEN_REVOKED/,
    'the unanswering client lost its token',
  );
  t.match(await hung.run('leases'), /^ok leases n=0$/);
  await hung.quit();
  t.match(await c.line(), /^ok poll /);

  // kill -9, restart on the same port and state: the session is known again from disk but
  // its lease waits to be reclaimed; the heartbeat sees it and the client re-presents it.
  first.child.kill('SIGKILL');
  await new Promise((r) => first.child.once('exit', r));
  // (default test_conn timing now: the client reads its socket only inside a command)
  const second = await spawnDaemon(site, [
    '--grace',
    '20',
    '--heartbeat',
    '1',
    '--port',
    String(first.port),
  ]);
  t.teardown(() => second.child.kill('SIGKILL'));
  t.match(await c.run('ping'), /^ok ping version=\S+ state=1 /, 'the new daemon is in grace');
  const hb = await c.run('heartbeat');
  t.match(hb, /^ok heartbeat /);
  t.match(
    await c.line(),
    new RegExp(`^ok auto-reclaim n=1 lease=${lease} code=OK held=1$`),
    'reclaimed the same lease',
  );
  t.match(await c.run('heartbeat'), /^ok heartbeat leases=1 /, 'the daemon counts it again');
  const ci = await c.run(`checkin ${lease}`);
  t.match(ci, new RegExp(`^ok checkin lease=${lease} released=1 held=0$`));
  t.match(await c.run('heartbeat'), /^ok heartbeat leases=0 /);
  t.equal(await c.quit(), 'ok quit OK');
  t.equal(c.child.exitCode, 0, 'exits cleanly (no sanitizer report)');
});

t.test('failover: the token is re-presented (mode 2) to the next server', async (t) => {
  const site = makeSite(['FEATURE solver demo 2.5 permanent 1']);
  const a = await spawnDaemon(site, ['--grace', '20']);
  t.teardown(() => a.child.kill('SIGKILL'));
  // a second server with the same keys and license but its own (empty) state, taking over
  const b = await spawnDaemon({ ...site, stateDir: join(site.dir, 'state-b') }, [
    '--grace',
    '20',
    '--takeover',
  ]);
  t.teardown(() => b.child.kill('SIGKILL'));
  const c = new CClient(site, { servers: [a.port, b.port] });
  t.teardown(() => c.child.kill('SIGKILL'));

  t.match(await c.run('hello'), /^ok hello/);
  const co = await c.run('checkout solver 2.0 1');
  t.match(co, /^ok checkout feature=solver /);
  const lease = field(co, 'lease');
  a.child.kill('SIGKILL');
  await new Promise((r) => a.child.once('exit', r));

  // No answer from a: mode 3, then mode 2 there, then mode 2 to b, which has never seen us.
  t.match(await c.run('heartbeat'), /^ok heartbeat leases=0 queued=0 \S+ restored=1$/);
  t.match(
    await c.line(),
    new RegExp(`^ok auto-reclaim n=1 lease=${lease} code=OK held=1$`),
    'the lease ticket is honoured by the other server',
  );
  t.match(await c.run('heartbeat'), /^ok heartbeat leases=1 /);
  t.match(await c.run(`checkin ${lease}`), /^ok checkin .*released=1 held=0$/);
  t.equal(await c.quit(), 'ok quit OK');
  t.equal(c.child.exitCode, 0, 'exits cleanly (no sanitizer report)');
});
