/**
 * floatlmd child processes serving a site over a test etcd cluster (test/helpers/etcd.ts),
 * with fast timers, and an observer that reads the site's ledger as etcd has it.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type EtcdLedger, openEtcdLedger } from '../../lib/store/etcd.ts';
import type { EtcdCluster } from './etcd.ts';
import { type Site, spawnDaemon } from './site.ts';

export interface SiteServer {
  child: ChildProcess;
  port: number;
  stderr: () => string;
}

/**
 * A floatlmd of site `siteName` with id `name`: etcd lease TTL 2 s, heartbeat and
 * test_conn interval 1 s. Resolves once it listens.
 */
export function siteServer(
  cluster: EtcdCluster,
  site: Site,
  name: string,
  siteName: string,
): Promise<SiteServer> {
  return spawnDaemon(site, [
    '--etcd',
    cluster.endpoints.join(','),
    '--site',
    siteName,
    '--server-id',
    name,
    '--etcd-lease-ttl',
    '2',
    '--heartbeat',
    '1',
    '--test-conn-interval',
    '1',
    '--state',
    join(site.dir, `state-${name}`),
    ...(process.env.FLOATLM_TEST_LOGS ? ['--log-level', 'debug'] : []),
  ]);
}

/**
 * Where a failed test keeps its servers' logs: the directory FLOATLM_TEST_LOGS names (servers
 * then log at debug level), one file per server. Nothing is written without it.
 */
export function keepLogs(servers: { port: number; stderr: () => string }[], label: string): void {
  const dir = process.env.FLOATLM_TEST_LOGS;
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  for (const s of servers) writeFileSync(join(dir, `${label}-${s.port}.log`), s.stderr());
}

/** A ledger handle of its own on site `siteName`, to read what etcd holds. Close it after use. */
export function siteObserver(cluster: EtcdCluster, siteName: string): Promise<EtcdLedger> {
  return openEtcdLedger({
    endpoints: cluster.endpoints,
    site: siteName,
    serverId: `observer-${siteName}-${process.pid}`,
    leaseTtlSec: 5,
  });
}
