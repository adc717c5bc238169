/**
 * The etcd cluster of bench/etcd.ts for tests (re-exported: one starter for tests and
 * benchmarks), and how an etcd test skips: without `etcd` on PATH the tests that need it
 * skip, saying how to install it, except under CI=true where a missing etcd is a failure.
 */
import { etcdMissing } from '../../bench/etcd.ts';

export {
  type ClusterOptions,
  EtcdCluster,
  etcdMissing,
  freePorts,
  startCluster,
} from '../../bench/etcd.ts';

/**
 * The tap `skip` option for etcd tests: a message when etcd is missing on a developer's
 * machine, false when the tests can run.
 * @throws Error under CI=true when etcd is missing: CI must run these tests, not skip them.
 */
export function skipWithoutEtcd(): string | false {
  const missing = etcdMissing();
  if (missing === undefined) return false;
  const why = `${missing} to run the etcd tests`;
  if (process.env.CI === 'true') throw new Error(`CI=true: ${why}`);
  return why;
}
