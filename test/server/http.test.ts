/**
 * The operator's HTTP port next to a real daemon over real UDP: /metrics scraped and parsed
 * strictly as the Prometheus text format, /healthz and /readyz (also in restart grace), the
 * JSON the page reads, the token, the loopback rule, the Host check and read-only methods.
 */
import http from 'node:http';
import t from 'tap';
import { checkHttpFlags, parseListen, startHttp } from '../../lib/server/http.ts';
import { Metrics } from '../../lib/server/metrics.ts';
import { daemonSource, startOperatorHttp } from '../helpers/operator.ts';
import { client, makeSite, startDaemon } from '../helpers/site.ts';

const LINES = [
  'FEATURE demo demo 1.0 permanent 2',
  'FEATURE solver demo 2.5 permanent 1 QUEUE=yes',
];

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * A strict parser of the Prometheus text format (0.0.4): every line is a comment, HELP, TYPE
 * or a sample of the family last TYPEd; names and labels well formed; values numbers.
 * @throws {Error} naming the line that breaks the format
 */
function parseProm(text: string): { types: Map<string, string>; samples: Sample[] } {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
  let family = '';
  text.split('\n').forEach((line, i) => {
    const where = `line ${i + 1}: ${line}`;
    if (line === '') return;
    if (line.startsWith('# HELP ')) {
      const name = line.slice(7).split(' ')[0]!;
      if (!NAME.test(name)) throw new Error(`bad HELP name at ${where}`);
      return;
    }
    if (line.startsWith('# TYPE ')) {
      const [name, type] = line.slice(7).split(' ');
      if (!name || !NAME.test(name)) throw new Error(`bad TYPE name at ${where}`);
      if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(type ?? '')) {
        throw new Error(`bad TYPE at ${where}`);
      }
      if (types.has(name)) throw new Error(`TYPE twice at ${where}`);
      types.set(name, type!);
      family = name;
      return;
    }
    if (line.startsWith('#')) return;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$/.exec(line);
    if (!m) throw new Error(`bad sample at ${where}`);
    const name = m[1]!;
    const type = types.get(family);
    const okName =
      name === family ||
      (type === 'histogram' &&
        [`${family}_bucket`, `${family}_sum`, `${family}_count`].includes(name)) ||
      (type === 'summary' && [`${family}_sum`, `${family}_count`].includes(name));
    if (!okName) throw new Error(`sample outside its family ${family} at ${where}`);
    const labels: Record<string, string> = {};
    if (m[3]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;
      let at = 0;
      while (at < m[3].length) {
        re.lastIndex = at;
        const l = re.exec(m[3]);
        if (!l) throw new Error(`bad labels at ${where}`);
        labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\(.)/g, '$1');
        at = re.lastIndex;
      }
    }
    const raw = m[4]!;
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw);
    if (Number.isNaN(value) && raw !== 'NaN') throw new Error(`bad value at ${where}`);
    samples.push({ name, labels, value });
  });
  return { types, samples };
}

function pick(s: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return s.find(
    (x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v),
  )?.value;
}

/** A GET with full control of the headers (fetch will not set Host). */
function get(
  port: number,
  path: string,
  headers: Record<string, string> = {},
  method = 'GET',
): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, headers }, (res) => {
      let body = '';
      res.on('data', (b: Buffer) => {
        body += b.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('/metrics from a real daemon parses and carries the right numbers', async (t) => {
  const site = makeSite(LINES);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const { http: srv, metrics } = await startOperatorHttp(t, site, d);
  const port = srv.address().port;
  const c = await client(site, d.address().port);
  t.teardown(() => c.close());
  await c.checkout('demo');
  await c.checkout('solver');
  void metrics;

  const r = await get(port, '/metrics');
  t.equal(r.status, 200);
  t.match(r.headers['content-type'], /^text\/plain; version=0\.0\.4/);
  const { types, samples } = parseProm(r.body);
  const demo = { feature: 'demo', version: '1.0', vendor: 'demo' };
  t.equal(pick(samples, 'floatlm_feature_licensed_seats', demo), 2);
  t.equal(pick(samples, 'floatlm_feature_in_use_seats', demo), 1);
  t.equal(pick(samples, 'floatlm_feature_reserved_seats', demo), 0);
  t.equal(pick(samples, 'floatlm_feature_grants_total', demo), 1);
  t.equal(pick(samples, 'floatlm_feature_queued_requests', { feature: 'solver' }), 0);
  t.equal(pick(samples, 'floatlm_sessions'), 1);
  t.equal(pick(samples, 'floatlm_ready'), 1);
  t.equal(pick(samples, 'floatlm_grace_remaining_seconds'), 0);
  t.equal(pick(samples, 'floatlm_store_up', { backend: 'sqlite' }), 1);
  t.equal(pick(samples, 'floatlm_build_info', { version: '0.1.0' }), 1);
  const answered = pick(samples, 'floatlm_datagrams_total', { outcome: 'answered' }) ?? 0;
  t.ok(answered >= 3, `hello and two checkouts answered (${answered})`);
  t.equal(pick(samples, 'floatlm_datagrams_total', { outcome: 'bad_tag' }), 0);
  t.equal(pick(samples, 'floatlm_datagrams_received_total'), d.counters.received);
  // The daemon itself observed both checkouts and the commits that made them durable.
  t.equal(pick(samples, 'floatlm_checkout_duration_seconds_count'), 2, 'two checkouts timed');
  t.equal(
    pick(samples, 'floatlm_checkout_duration_seconds_bucket', { le: '+Inf' }),
    2,
    'every checkout in the +Inf bucket',
  );
  const commits = pick(samples, 'floatlm_store_commit_duration_seconds_count') ?? 0;
  t.ok(commits >= 2, `the HELLO and grant commits were timed (${commits})`);
  for (const [name, type] of types) {
    t.ok(name.startsWith('floatlm_'), `${name} has the floatlm_ prefix`);
    if (type === 'counter') t.ok(name.endsWith('_total'), `counter ${name} ends in _total`);
  }
  // Histogram buckets are cumulative and end in +Inf = _count.
  const buckets = samples.filter((s) => s.name === 'floatlm_checkout_duration_seconds_bucket');
  for (let i = 1; i < buckets.length; i++) t.ok(buckets[i]!.value >= buckets[i - 1]!.value);
  t.equal(buckets.at(-1)!.labels.le, '+Inf');

  // After a checkin the scrape moves.
  const [lease] = c.leases.filter((l) => l.feature === 'demo');
  await lease!.checkin();
  const after = parseProm((await get(port, '/metrics')).body).samples;
  t.equal(pick(after, 'floatlm_feature_in_use_seats', demo), 0);
});

t.test('health, readiness in restart grace, and the status JSON', async (t) => {
  const site = makeSite(LINES);
  const d1 = await startDaemon(site);
  const c1 = await client(site, d1.address().port);
  await c1.checkout('demo');
  await c1.destroy();
  await d1.close();
  const d = await startDaemon(site, { graceMs: 60_000 });
  t.teardown(() => d.close());
  const { http: srv } = await startOperatorHttp(t, site, d);
  const port = srv.address().port;
  t.equal((await get(port, '/healthz')).status, 200, 'alive in grace');
  const ready = await get(port, '/readyz');
  t.equal(ready.status, 503);
  t.match(ready.body, /not ready: in restart grace/);
  const m = parseProm((await get(port, '/metrics')).body).samples;
  t.equal(pick(m, 'floatlm_ready'), 0);
  t.ok((pick(m, 'floatlm_grace_remaining_seconds') ?? 0) > 0);

  const st = JSON.parse((await get(port, '/api/status')).body);
  t.match(st.ready, /in restart grace/);
  const demo = st.features.find((f: { name: string }) => f.name === 'demo');
  t.same(
    { licensed: demo.licensed, inUse: demo.inUse, free: demo.free, reserved: demo.reserved },
    { licensed: 2, inUse: 1, free: 1, reserved: 0 },
  );
  t.equal(st.holders.length, 1);
  t.equal(st.holders[0].user, 'alice');
  t.equal(st.holders[0].host, 'ws1');
  t.ok(st.holders[0].heldMs >= 0);
  t.equal((await get(port, '/api/history?range=century')).status, 400);
  const h = JSON.parse((await get(port, '/api/history?range=day')).body);
  t.equal(h.bucketSeconds, 60);
  t.equal(h.t.length, 1440);

  await d.close();
  t.equal((await get(port, '/healthz')).status, 503, 'a closed daemon is not alive');
});

t.test('read-only, loopback Host only, unknown paths', async (t) => {
  const site = makeSite(LINES);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const { http: srv } = await startOperatorHttp(t, site, d);
  const port = srv.address().port;
  t.equal((await get(port, '/metrics', {}, 'POST')).status, 405);
  t.equal((await get(port, '/api/status', {}, 'DELETE')).status, 405);
  t.equal((await get(port, '/nope')).status, 404);
  const rebound = await get(port, '/api/status', { host: 'evil.example:27401' });
  t.equal(rebound.status, 421, 'a rebound DNS name is refused');
  t.equal((await get(port, '/', { host: `localhost:${port}` })).status, 200);
  const page = await get(port, '/');
  t.match(page.body, /<title>floatlm status<\/title>/);
  t.match(page.headers['content-security-policy'], /default-src 'none'/);
  const js = await get(port, '/vendor/uPlot.iife.min.js');
  t.equal(js.status, 200);
  t.match(js.body, /uPlot/);
  const head = await get(port, '/metrics', {}, 'HEAD');
  t.equal(head.status, 200);
  t.equal(head.body, '');
});

t.test('the token: required beyond loopback, bearer or cookie, constant answers', async (t) => {
  const site = makeSite(LINES);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const source = daemonSource(d);
  const metrics = new Metrics(source, { processMetrics: false });
  await t.rejects(
    startHttp({ source, metrics, host: '0.0.0.0', port: 0 }),
    /listens beyond loopback only with --http-token/,
  );
  await t.rejects(
    startHttp({ source, metrics, host: '127.0.0.1', port: 0, token: 'short' }),
    RangeError,
  );
  const token = 'correct-horse-battery-staple';
  // Bound to loopback all the same: tests send nothing beyond 127.0.0.x.
  const srv = await startHttp({ source, metrics, host: '127.0.0.1', port: 0, token });
  t.teardown(() => srv.close());
  const port = srv.address().port;
  t.equal((await get(port, '/metrics')).status, 401);
  t.equal(
    (await get(port, '/metrics', { authorization: 'Bearer wrong-token-of-some-length' })).status,
    401,
  );
  t.equal((await get(port, '/metrics', { authorization: `Bearer ${token}` })).status, 200);
  t.equal((await get(port, '/api/status', { host: 'license.example.com' })).status, 401);
  t.equal((await get(port, '/healthz')).status, 200, 'health checks need no token');
  t.equal((await get(port, '/?token=nope')).status, 401);
  const login = await get(port, `/?token=${token}`);
  t.equal(login.status, 303);
  const cookie = String(login.headers['set-cookie']).split(';')[0]!;
  t.match(String(login.headers['set-cookie']), /HttpOnly; SameSite=Strict/);
  t.equal((await get(port, '/api/status', { cookie })).status, 200, 'the page uses the cookie');
});

t.test('parseListen and checkHttpFlags', async (t) => {
  t.same(checkHttpFlags('127.0.0.1:9', undefined), { host: '127.0.0.1', port: 9 });
  t.throws(() => checkHttpFlags('0.0.0.0:9', undefined), /only with --http-token/);
  t.same(checkHttpFlags('0.0.0.0:9', 'x'.repeat(16)), {
    host: '0.0.0.0',
    port: 9,
    token: 'x'.repeat(16),
  });
  t.throws(() => checkHttpFlags('[::1]:9', 'short'), /at least 16/);
  t.same(parseListen('127.0.0.1:27401'), { host: '127.0.0.1', port: 27401 });
  t.same(parseListen('[::1]:9000'), { host: '::1', port: 9000 });
  t.same(parseListen('8080'), { host: '127.0.0.1', port: 8080 });
  t.same(parseListen('0.0.0.0'), { host: '0.0.0.0', port: 27401 });
  t.throws(() => parseListen('host:99999'), RangeError);
  t.throws(() => parseListen('a:b:c'), RangeError);
});
