/**
 * The operator's HTTP port next to a real in-process daemon, for tests: the daemon (an
 * OperatorSource), its Metrics, and the started HTTP server on 127.0.0.1:0.
 */
import { join } from 'node:path';
import type { Daemon } from '../../lib/server/daemon.ts';
import { type HttpOptions, type HttpServer, startHttp } from '../../lib/server/http.ts';
import type { Metrics, OperatorSource } from '../../lib/server/metrics.ts';
import type { Site } from './site.ts';

/** The daemon seen through OperatorSource (it implements it). */
export function daemonSource(d: Daemon): OperatorSource {
  return d;
}

/** Starts the HTTP port for `d` (history in the site's state dir); closes it on teardown. */
export async function startOperatorHttp(
  t: { teardown(fn: () => unknown): void },
  site: Site,
  d: Daemon,
  o: Partial<HttpOptions> = {},
): Promise<{ http: HttpServer; metrics: Metrics; base: string; source: OperatorSource }> {
  const source = daemonSource(d);
  const metrics = d.metrics;
  const http = await startHttp({
    source,
    metrics,
    host: '127.0.0.1',
    port: 0,
    historyFile: join(site.stateDir, 'history.db'),
    ...o,
  });
  t.teardown(() => http.close());
  return { http, metrics, base: `http://127.0.0.1:${http.address().port}`, source };
}
