/**
 * Child process for the store crash test (not a test itself): grants numbered leases in
 * group commits, one commit per event-loop tick like the daemon, and prints each lease id
 * on stdout only after the commit that stored it returned, i.e. "acknowledges" it. The
 * parent kills it with SIGKILL at a random moment. Usage: crash-child.ts DIR full|normal
 */
import { openStore } from '../../lib/store/index.ts';

const [dir, durability] = process.argv.slice(2);
if (!dir || (durability !== 'full' && durability !== 'normal')) {
  // Run by a test runner given the whole folder: say so in TAP and do nothing.
  process.stdout.write('1..0 # SKIP child process of crash.test.ts, not a test\n');
  process.exit(0);
}
const store = openStore(dir, { durability });
let next = 1n;
for (const l of store.load().leases) if (l.leaseId >= next) next = l.leaseId + 1n;
const ticket = new Uint8Array(90).fill(7);

function tick(): void {
  const ids: bigint[] = [];
  const n = 1 + Number(next % 7n);
  for (let i = 0; i < n; i++) {
    const leaseId = next++;
    store.putLease({
      leaseId,
      tokenId: leaseId * 31n,
      feature: 'cad',
      version: '1',
      count: 1,
      groupKey: `u${leaseId}`,
      grantedAt: Date.now(),
      ticket,
    });
    if (leaseId % 3n === 0n) store.revoke(leaseId, 4_102_444_800_000);
    ids.push(leaseId);
  }
  store.commit();
  // process.stdout on a pipe is synchronous on Linux (and blocks rather than failing with
  // EAGAIN like fs.writeSync on the non-blocking fd): the ids are out before the next tick.
  process.stdout.write(`${ids.join('\n')}\n`);
  setImmediate(tick);
}
tick();
