/**
 * lib/license/options.ts: parsing every keyword of the options file, its problems as
 * file:line:column, and each keyword's effect through the pool (setOptions, expireIdle).
 */
import { readFileSync } from 'node:fs';
import t from 'tap';
import {
  EMPTY_POLICY,
  idleTimeoutMs,
  type PoolPolicy,
  parseOptions,
  permitted,
} from '../../lib/license/options.ts';
import { ErrorCode } from '../../lib/wire/index.ts';
import { code, granted, inUse, line, setup, T0 } from './helpers.ts';

const FIXTURES = new URL('../fixtures/options/', import.meta.url);

function policy(text: string): PoolPolicy {
  const r = parseOptions(text, 'test.opt');
  if (r.problems.length) throw new Error(r.problems.map((p) => p.text).join('\n'));
  return r.policy;
}
const problems = (text: string) => parseOptions(text, 'x.opt').problems.map((p) => p.text);
const who = (user: string, host = 'h', addr = '') => ({ user, host, addr });

t.test('the fixture with every keyword parses; the bad one reports every line', async (t) => {
  const site = parseOptions(readFileSync(new URL('site.opt', FIXTURES), 'utf8'), 'site.opt');
  t.same(site.problems, []);
  const p = site.policy;
  t.same([...p.groups], [['eng', ['alice', 'bob', 'carol']]], 'GROUP lines add up');
  t.same([...p.hostGroups], [['lab', ['ws1', 'ws2', 'ws3']]], 'continuation lines join');
  t.same([p.include.length, p.exclude.length, p.reserve.length, p.max.length], [4, 2, 1, 1]);
  t.same([[...p.timeout], p.timeoutAll, [...p.maxQueue]], [[['cad', 3600]], 7200, [['cad', 10]]]);
  const bad = parseOptions(readFileSync(new URL('bad.opt', FIXTURES), 'utf8'), 'bad.opt');
  t.same(
    bad.problems.map((x) => x.text),
    [
      'bad.opt:2:19: no GROUP named "engineers" in this file',
      'bad.opt:3:13: bad type "PERSON": expected USER, HOST, GROUP, HOST_GROUP or INTERNET',
      'bad.opt:4:9: RESERVE seats must be an integer from 1 to 65535, not "two"',
      'bad.opt:5:7: feature qualifiers ("cad:VERSION=2") are not supported: give the feature name only',
      'bad.opt:6:13: TIMEOUT seconds must be an integer from 1 to 31536000, not 0',
      'bad.opt:8:9: TIMEOUT solver already given on line 7',
      'bad.opt:9:1: unknown keyword "INTERNETZ": expected GROUP, HOST_GROUP, INCLUDE, EXCLUDE, INCLUDEALL, EXCLUDEALL, RESERVE, MAX, TIMEOUT, TIMEOUTALL, MAX_QUEUE',
      'bad.opt:10:21: bad prefix "/33": expected /0 to /32 for an IPv4 address',
      'bad.opt:11:17: unexpected "extra": expected MAX_QUEUE feature entries',
    ],
  );
  t.same(
    [bad.problems[0]!.file, bad.problems[0]!.line, bad.problems[0]!.column],
    ['bad.opt', 2, 19],
  );
});

t.test('syntax problems: missing fields, KEY=VALUE, quotes, inline comments', async (t) => {
  t.same(problems('INCLUDE cad USER'), [
    'x.opt:1:17: missing name: expected INCLUDE feature type name',
  ]);
  t.same(problems('MAX'), [
    'x.opt:1:4: missing seats feature type name: expected MAX seats feature type name',
  ]);
  t.same(problems('GROUP eng'), ['x.opt:1:10: missing members: expected GROUP name user ...']);
  t.same(problems('TIMEOUTALL'), ['x.opt:1:11: missing seconds: expected TIMEOUTALL seconds']);
  t.same(problems('INCLUDE cad USER A=b'), ['x.opt:1:18: unexpected "A=b": name is not KEY=VALUE']);
  t.same(problems('INCLUDE cad USER "bad'), ['x.opt:1:18: unterminated quoted string']);
  t.same(problems('GROUP eng alice # bob'), [
    'x.opt:1:17: unexpected "#": a comment takes a whole line (# first)',
  ]);
  t.same(problems('INCLUDE c%d USER a'), [
    'x.opt:1:9: bad feature name "c%d": letters, digits, _ . - only, not starting with . or -',
  ]);
  t.same(problems(`INCLUDE cad USER ${'x'.repeat(65)}`), [
    'x.opt:1:18: name longer than 64 characters',
  ]);
  t.same(problems('# only a comment\n\n   \n'), []);
  t.same(
    problems('include cad user alice\nexcludeall host h'),
    [],
    'keywords and types in any case',
  );
  t.throws(() => parseOptions(1 as never, 'x'), /text/);
  t.throws(() => parseOptions('', 1 as never), /fileName/);
});

// ------------------------------------------------------------------ one test per keyword

t.test('GROUP: users named together, lines add up, used before defined', async (t) => {
  const p = policy('INCLUDE cad GROUP eng\nGROUP eng alice\nGROUP eng bob alice');
  t.same([...p.groups], [['eng', ['alice', 'bob']]]);
  t.ok(permitted(p, 'cad', who('bob')));
  t.notOk(permitted(p, 'cad', who('carol')));
  t.notOk(permitted(p, 'cad', who('h', 'alice')), 'a GROUP names users, not hosts');
});

t.test('HOST_GROUP: hosts named together', async (t) => {
  const p = policy('HOST_GROUP lab ws1 ws2\nINCLUDE cad HOST_GROUP lab');
  t.ok(permitted(p, 'cad', who('anyone', 'ws2')));
  t.notOk(permitted(p, 'cad', who('ws1', 'ws9')));
  t.same(problems('INCLUDE cad HOST_GROUP lab\nGROUP lab ws1'), [
    'x.opt:1:24: no HOST_GROUP named "lab" in this file',
  ]);
});

t.test('INCLUDE: only those included may check out the feature', async (t) => {
  const { pool, co } = setup(
    [line('cad', '1', 5), line('other', '1', 5)],
    policy('INCLUDE cad USER alice\nINCLUDE cad HOST ws1'),
  );
  granted(t, co(1, 'cad', { user: 'alice' }));
  granted(t, co(2, 'cad', { user: 'bob', host: 'ws1' }), 'by host');
  t.equal(code(co(3, 'cad', { user: 'bob' })), ErrorCode.NOT_PERMITTED);
  granted(t, co(3, 'other', { user: 'bob' }), 'other features are not gated');
  t.equal(code(co(4, 'nope', { user: 'bob' })), ErrorCode.NO_SUCH_FEATURE, 'unknown first');
  t.equal(pool.status().features.find((f) => f.name === 'cad')!.denied, 1);
  pool.assertInvariant();
});

t.test('EXCLUDE: excluded requesters are refused, and EXCLUDE beats INCLUDE', async (t) => {
  const { pool, co } = setup(
    [line('cad', '1', 5)],
    policy('GROUP eng alice mallory\nINCLUDE cad GROUP eng\nEXCLUDE cad USER mallory'),
  );
  granted(t, co(1, 'cad', { user: 'alice' }));
  t.equal(code(co(2, 'cad', { user: 'mallory' })), ErrorCode.NOT_PERMITTED);
  t.equal(code(co(3, 'cad', { user: 'bob' })), ErrorCode.NOT_PERMITTED, 'not included');
  pool.assertInvariant();
});

t.test('INCLUDEALL: only those included may check out any feature', async (t) => {
  const p = policy('INCLUDEALL USER alice\nINCLUDE cad USER bob');
  t.ok(permitted(p, 'x', who('alice')));
  t.notOk(permitted(p, 'x', who('bob')));
  t.ok(permitted(p, 'cad', who('bob')), 'an INCLUDE for the feature counts too');
  t.ok(permitted(p, 'cad', who('alice')));
  const { co } = setup([line('x', '1', 2)], p);
  t.equal(code(co(1, 'x', { user: 'carol' })), ErrorCode.NOT_PERMITTED);
});

t.test('EXCLUDEALL: refused from every feature', async (t) => {
  const p = policy('EXCLUDEALL HOST kiosk\nINCLUDE cad HOST kiosk');
  t.notOk(permitted(p, 'cad', who('a', 'kiosk')), 'EXCLUDEALL beats INCLUDE');
  t.notOk(permitted(p, 'x', who('a', 'kiosk')));
  t.ok(permitted(p, 'x', who('a', 'desk')));
  const { co } = setup([line('x', '1', 2)], p);
  t.equal(code(co(1, 'x', { host: 'kiosk' })), ErrorCode.NOT_PERMITTED);
});

t.test('INTERNET: IPv4 and IPv6 addresses and CIDR, the source address only', async (t) => {
  const p = policy(
    'INCLUDE cad INTERNET 10.1.0.0/16\nINCLUDE cad INTERNET 2001:db8::/32\nINCLUDE cad INTERNET 192.0.2.7\nEXCLUDE cad INTERNET 10.1.9.0/24',
  );
  t.ok(permitted(p, 'cad', who('a', 'h', '10.1.2.3')));
  t.notOk(permitted(p, 'cad', who('a', 'h', '10.2.0.1')));
  t.notOk(permitted(p, 'cad', who('a', 'h', '10.1.9.1')), 'excluded subnet');
  t.ok(permitted(p, 'cad', who('a', 'h', '2001:db8:1::5')));
  t.notOk(permitted(p, 'cad', who('a', 'h', '2001:db9::5')));
  t.ok(permitted(p, 'cad', who('a', 'h', '192.0.2.7')));
  t.notOk(permitted(p, 'cad', who('a', 'h', '192.0.2.8')));
  t.notOk(permitted(p, 'cad', who('a', '10.1.2.3', '')), 'a host named like an address is not one');
  const { co } = setup([line('cad', '1', 3)], p);
  granted(t, co(1, 'cad', { addr: '::ffff:10.1.0.1' }), 'IPv4-mapped IPv6 is the IPv4 address');
  t.equal(
    code(co(2, 'cad', { host: '10.1.0.1' })),
    ErrorCode.NOT_PERMITTED,
    'no address: no match',
  );
  t.same(problems('INCLUDE cad INTERNET 10.0.0.300'), [
    'x.opt:1:22: bad address "10.0.0.300": expected an IPv4 or IPv6 address, optionally /prefix',
  ]);
  t.same(problems('INCLUDE cad INTERNET ::1/129'), [
    'x.opt:1:22: bad prefix "/129": expected /0 to /128 for an IPv6 address',
  ]);
});

t.test('RESERVE: seats kept for a group, clipped to the count', async (t) => {
  const { pool, co } = setup(
    [line('cad', '1', 3)],
    policy('GROUP eng alice bob\nRESERVE 2 cad GROUP eng\nRESERVE 5 cad USER zed'),
  );
  const st = pool.status().reservations;
  t.same(
    st.map((r) => [r.type, r.name, r.count]),
    [
      ['group', 'eng', 2],
      ['user', 'zed', 1],
    ],
    'the second reservation is clipped to the seat left',
  );
  t.equal(code(co(1, 'cad', { user: 'carol' })), ErrorCode.NO_SEATS, 'every seat reserved');
  granted(t, co(2, 'cad', { user: 'alice' }));
  granted(t, co(3, 'cad', { user: 'bob' }));
  granted(t, co(4, 'cad', { user: 'zed' }));
  t.equal(inUse(pool, 'cad'), 3);
  pool.assertInvariant();
});

t.test('MAX: a subject together holds at most N seats of the feature', async (t) => {
  const { pool, co } = setup(
    [line('cad', '1', 9), line('cad', '2', 9)],
    policy(
      'HOST_GROUP lab ws1 ws2\nMAX 2 cad HOST_GROUP lab\nMAX 1 cad USER bob\nMAX 0 cad INTERNET 10.9.0.0/16',
    ),
  );
  granted(t, co(1, 'cad', { host: 'ws1' }));
  granted(t, co(2, 'cad', { host: 'ws2', version: '2' }), 'versions count together');
  t.equal(code(co(3, 'cad', { host: 'ws1' })), ErrorCode.HOST_MAX);
  granted(t, co(4, 'cad', { user: 'bob' }));
  t.equal(code(co(5, 'cad', { user: 'bob' })), ErrorCode.USER_MAX);
  t.equal(code(co(6, 'cad', { addr: '10.9.1.1' })), ErrorCode.HOST_MAX, 'MAX 0');
  granted(t, co(7, 'cad'));
  pool.assertInvariant();
});

t.test(
  'TIMEOUT: a seat with no checkout activity goes back; heartbeats do not count',
  async (t) => {
    const { pool, co, clock } = setup(
      [line('cad', '1', 1), line('x', '1', 1)],
      policy('TIMEOUT cad 60'),
    );
    const l = granted(t, co(1, 'cad'));
    granted(t, co(1, 'x'));
    t.equal(co(2, 'cad', { wait: true }).status, 'queued');
    clock.now = T0 + 59_999;
    pool.touch(1n); // what a heartbeat does
    t.same(pool.expireIdle(), [], 'not idle long enough');
    co(1, 'cad'); // a repeated checkout by the holder is activity (shares its seat)
    clock.now = T0 + 119_998;
    t.same(pool.expireIdle(), [], 'the checkout restarted the clock');
    clock.now = T0 + 119_999;
    t.same(
      pool.expireIdle().map((x) => x.leaseId),
      [l.leaseId, 3n],
      'both cad leases of the holder (the repeat shares the seat)',
    );
    t.same(
      pool.leasesOf(1n).map((x) => x.feature),
      ['x'],
      'a feature without TIMEOUT stays',
    );
    t.same(
      pool.takeAssigned().map((x) => x.sessionId),
      [2n],
      'the seat went to the queue',
    );
    t.equal(idleTimeoutMs(pool.policy, 'cad'), 60_000);
    t.throws(() => pool.expireIdle(Number.NaN), /now/);
    pool.assertInvariant();
  },
);

t.test('TIMEOUTALL: every feature without its own TIMEOUT', async (t) => {
  const p = policy('TIMEOUTALL 100\nTIMEOUT cad 10');
  t.same([idleTimeoutMs(p, 'cad'), idleTimeoutMs(p, 'x')], [10_000, 100_000]);
  t.equal(idleTimeoutMs(EMPTY_POLICY, 'x'), null);
  const { pool, co, clock } = setup([line('cad', '1', 2), line('x', '1', 2)], p);
  granted(t, co(1, 'cad'));
  granted(t, co(1, 'x'));
  granted(t, co(2, 'x'));
  clock.now = T0 + 50_000;
  co(2, 'x'); // checkout activity of session 2 on x
  t.same(
    pool.expireIdle(T0 + 10_000).map((l) => l.feature),
    ['cad'],
    'an explicit now',
  );
  t.same(
    pool.expireIdle(T0 + 100_000).map((l) => [l.sessionId, l.feature]),
    [[1n, 'x']],
  );
  t.same(
    pool.expireIdle(T0 + 150_000).map((l) => [l.sessionId, l.feature]),
    [
      [2n, 'x'],
      [2n, 'x'],
    ],
    'the first lease of session 2 and the one its repeat checkout took',
  );
  t.same(problems('TIMEOUTALL 5\nTIMEOUTALL 6'), ['x.opt:2:1: TIMEOUTALL already given on line 1']);
});

t.test('TIMEOUT: checkin and reclaim are activity too', async (t) => {
  const { pool, co, clock } = setup(
    [line('cad', '1', 5, { dupGroup: 'NONE' })],
    policy('TIMEOUT cad 10'),
  );
  const a = granted(t, co(1, 'cad'));
  const b = granted(t, co(1, 'cad'));
  clock.now = T0 + 9_000;
  pool.checkin(1n, a.leaseId);
  const r = pool.reclaim({
    leaseId: 500n,
    sessionId: 3n,
    user: 'u',
    host: 'h',
    feature: 'cad',
    version: '1',
    count: 1,
    grantedAt: T0 - 1_000_000,
  });
  t.ok(r.ok);
  clock.now = T0 + 18_999;
  t.same(pool.expireIdle(), [], 'the checkin kept the other lease active; the reclaim is new');
  clock.now = T0 + 19_000;
  t.same(
    pool.expireIdle().map((l) => l.leaseId),
    [b.leaseId, 500n],
  );
});

t.test('MAX_QUEUE: entries allowed in a feature queue', async (t) => {
  const { pool, co } = setup(
    [line('cad', '1', 1, { queueMax: 5 }), line('x', '1', 1)],
    policy('MAX_QUEUE cad 1\nMAX_QUEUE x 0'),
  );
  granted(t, co(1, 'cad'));
  granted(t, co(1, 'x'));
  t.equal(co(2, 'cad', { wait: true }).status, 'queued');
  t.equal(
    code(co(3, 'cad', { wait: true })),
    ErrorCode.QUEUE_FULL,
    'the lower of license and options',
  );
  t.equal(code(co(3, 'x', { wait: true })), ErrorCode.QUEUE_FULL, 'MAX_QUEUE 0: no queue');
  t.same(problems('MAX_QUEUE cad 1\nMAX_QUEUE cad 2'), [
    'x.opt:2:11: MAX_QUEUE cad already given on line 1',
  ]);
  pool.assertInvariant();
});

// ------------------------------------------------------------------ applying

t.test('setOptions: all or nothing, held seats kept, excluded queue entries dropped', async (t) => {
  const { pool, co } = setup([line('cad', '1', 1)]);
  granted(t, co(1, 'cad', { user: 'mallory' }));
  t.equal(co(2, 'cad', { user: 'bob', wait: true }).status, 'queued');
  t.equal(co(3, 'cad', { user: 'alice', wait: true }).status, 'queued');
  const broken = parseOptions('EXCLUDE cad USER bob\nMAX x cad USER a', 'new.opt');
  t.throws(() => pool.setOptions(broken), /new\.opt:2:5: MAX seats must be/);
  t.equal(pool.policy, EMPTY_POLICY, 'a file with a problem changes nothing');
  t.equal(pool.queuedOf(2n), 1);
  const ok = parseOptions('EXCLUDE cad USER bob\nEXCLUDE cad USER mallory', 'new.opt');
  const { dropped } = pool.setOptions(ok);
  t.same(
    dropped.map((e) => e.sessionId),
    [2n],
    'bob leaves the queue',
  );
  t.equal(pool.leasesOf(1n).length, 1, 'mallory keeps the seat held');
  t.equal(
    code(co(2, 'cad', { user: 'bob', wait: true })),
    ErrorCode.NOT_PERMITTED,
    'the poll learns why',
  );
  t.equal(pool.policy, ok.policy);
  pool.setOptions(null);
  t.equal(pool.policy, EMPTY_POLICY);
  t.throws(() => pool.setOptions({} as never), /PoolPolicy/);
  t.throws(() => setup([], {} as never), /PoolPolicy/);
  pool.assertInvariant();
});

t.test(
  'setOptions: a new RESERVE over held seats keeps them and grants nothing outside it',
  async (t) => {
    const { pool, co } = setup([line('cad', '1', 2)]);
    granted(t, co(1, 'cad', { user: 'b' }));
    granted(t, co(2, 'cad', { user: 'c' }));
    pool.setOptions(policy('RESERVE 1 cad USER a'));
    pool.assertInvariant();
    pool.checkin(1n, pool.leasesOf(1n)[0]!.leaseId);
    t.equal(code(co(3, 'cad', { user: 'd' })), ErrorCode.NO_SEATS);
    granted(t, co(4, 'cad', { user: 'a' }));
    pool.assertInvariant();
  },
);
