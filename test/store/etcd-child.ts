/**
 * A stand-in floatlmd for test/store/etcd.test.ts: opens the site ledger as server `argv[3]`
 * on the etcd endpoints `argv[2]` (comma-separated), attaches sessions 1..3 to its etcd
 * lease and reports on stdout, one line each: `ready`, then `grantable <bool>` and `lost`
 * as its lease state changes. The parent freezes it with SIGSTOP and thaws it with SIGCONT.
 */
import { openEtcdLedger } from '../../lib/store/etcd.ts';

const [endpoints, serverId, ttl] = process.argv.slice(2);
const ledger = await openEtcdLedger({
  endpoints: endpoints!.split(','),
  serverId: serverId!,
  site: 'sigstop',
  leaseTtlSec: Number(ttl),
});
ledger.on('grantable', (g: boolean) => process.stdout.write(`grantable ${g}\n`));
ledger.on('lease-lost', () => process.stdout.write('lost\n'));
for (const id of [1n, 2n, 3n]) await ledger.attachSession(id);
process.stdout.write('ready\n');
// Stay alive until the parent kills us: the keepalive's timers are unref'ed.
setInterval(() => undefined, 60_000);
