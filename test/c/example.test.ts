/**
 * The C example client (clients/c/example.c) as a legacy developer runs it, against a real
 * daemon (in-process, so its pool can be read directly): who it says it is (vendor, user,
 * host from its arguments, or $USER and the host name), lease ids in the CLI's hex, denials
 * printed as such with a non-zero exit, and leaving the queue when interrupted while waiting.
 */
import { hostname } from 'node:os';
import t, { type Test } from 'tap';
import { client, makeSite, reportEvents, startDaemon } from '../helpers/site.ts';
import { CClient, field } from './cclient.ts';

const hex = (id: bigint): string => id.toString(16).padStart(16, '0');

t.test('vendor, user and host from the arguments', async (t) => {
  const site = makeSite(['FEATURE solver demo 2.5 permanent 2']);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const c = new CClient(site, {
    servers: [d.address().port],
    args: ['--vendor', 'demo', '--user', 'carol', '--host', 'ws9'],
  });
  t.teardown(() => c.child.kill('SIGKILL'));

  t.match(
    await c.run('hello'),
    /^ok hello session=[0-9a-f]{16} vendor=demo user=carol host=ws9 heartbeat_ms=\d+$/,
  );
  const co = await c.run('checkout solver 2.0 1');
  t.match(co, /^ok checkout feature=solver lease=[0-9a-f]{16} count=1$/);
  const [holder] = d.pool.status().holders;
  t.match(holder, { user: 'carol', host: 'ws9', feature: 'solver' }, 'the daemon sees carol@ws9');
  t.equal(field(co, 'lease'), hex(holder!.leaseId), 'the lease id as the CLI shows it');
  t.match(await c.run('leases'), new RegExp(`^ok leases n=1 solver:${hex(holder!.leaseId)}:1$`));
  t.match(
    await c.run(`checkin ${field(co, 'lease')}`),
    new RegExp(`^ok checkin lease=${hex(holder!.leaseId)} released=1 held=0$`),
  );
  t.equal(await c.quit(), 'ok quit OK');
  t.equal(await c.exited, 0, 'every command succeeded (and no sanitizer report)');
  t.equal(d.sessionCount, 0, 'quit ended the session on the server');
});

t.test('defaults: the vendor from the credential id, $USER, the host name', async (t) => {
  const site = makeSite(['FEATURE solver demo 2.5 permanent 2']);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const c = new CClient(site, { servers: [d.address().port], env: { USER: 'dave' } });
  t.teardown(() => c.child.kill('SIGKILL'));
  const host = hostname().slice(0, 64);
  const hello = await c.run('hello');
  t.match(hello, /^ok hello session=[0-9a-f]{16} /);
  t.same(
    [field(hello, 'vendor'), field(hello, 'user'), field(hello, 'host')],
    ['demo', 'dave', host],
  );
  t.equal(await c.quit(), 'ok quit OK');
});

t.test('the vendor is the one asked for; an unknown feature is denied', async (t) => {
  const site = makeSite(['FEATURE solver demo 2.5 permanent 2']);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  // the credential is the demo vendor's: another vendor is refused at first contact
  const other = new CClient(site, { servers: [d.address().port], args: ['--vendor', 'acme'] });
  t.teardown(() => other.child.kill('SIGKILL'));
  t.match(await other.run('hello'), /^err hello SERVER code=NOT_PERMITTED /);
  t.equal(await other.quit(), 'ok quit OK');
  t.equal(await other.exited, 1);

  const c = new CClient(site, { servers: [d.address().port] });
  t.teardown(() => c.child.kill('SIGKILL'));
  t.match(await c.run('hello'), / vendor=demo /);
  t.equal(
    await c.run('checkout nosuch 1.0'),
    'denied checkout feature=nosuch reason=NO_SUCH_FEATURE retry_ms=0',
  );
  t.equal(d.pool.status().holders.length, 0);
  t.equal(await c.quit(), 'ok quit OK');
  t.equal(await c.exited, 3, 'a denial exits non-zero');
});

/**
 * A 1-seat solver held by alice@ws1 (a TypeScript client), and the C client as bob@ws2 (another
 * user, or duplicate grouping would share the seat), past its HELLO.
 */
async function oneSeatTaken(t: Test) {
  const site = makeSite(['FEATURE solver demo 2.5 permanent 1 QUEUE=yes']);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const holder = await client(site, d.address().port);
  t.teardown(() => holder.destroy());
  const lease = await holder.checkout('solver', { version: '2.0' });
  const c = new CClient(site, {
    servers: [d.address().port],
    args: ['--user', 'bob', '--host', 'ws2'],
  });
  t.teardown(() => c.child.kill('SIGKILL'));
  t.match(await c.run('hello'), /^ok hello /);
  return { site, d, lease, c };
}

t.test('no seat free: the denial is printed with its reason, the exit is non-zero', async (t) => {
  const { c } = await oneSeatTaken(t);
  const denied = await c.run('checkout solver 2.0 1');
  t.equal(denied, 'denied checkout feature=solver reason=NO_SEATS retry_ms=0');
  t.notMatch(denied, /^ok/);
  t.match(await c.run('ping'), /^ok ping /, 'later commands still run');
  c.child.stdin.end(); // end of input: the same way out as quit
  t.same(await c.rest(), ['ok quit OK']);
  t.equal(await c.exited, 3, 'exit status 3: a checkout was denied');
});

t.test('interrupted while queued: leaves the queue at once', async (t) => {
  const { site, d, lease, c } = await oneSeatTaken(t);
  c.send('checkout solver 2.0 1 wait');
  t.equal(await c.line(), 'queued checkout feature=solver position=1 length=1');
  t.match(d.pool.status().queue, [{ feature: 'solver', user: 'bob', host: 'ws2', position: 1 }]);

  c.child.kill('SIGINT');
  t.equal(await c.exited, 130, 'exit status 128 + SIGINT');
  t.same(await c.rest(), ['ok leave feature=solver', 'ok quit OK'], 'left, then closed');
  t.same(d.pool.status().queue, [], 'the queue is empty as soon as the client has gone');
  t.equal(d.sessionCount, 1, "only the holder's session is left");

  // The seat the holder frees goes to nobody: the departed client is not granted it.
  await lease.checkin();
  const s = d.pool.status();
  t.same(s.holders, [], 'nobody holds the seat');
  t.equal(s.features[0]!.inUse, 0);
  const bob = reportEvents(site).filter((e) => e.user === 'bob');
  t.same(
    bob.map((e) => e.event),
    ['session', 'queue', 'dequeue', 'close'],
    'in the report log: queued, left the queue, closed, and never granted',
  );
});
