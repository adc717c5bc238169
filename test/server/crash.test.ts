/**
 * kill -9 under traffic, 20 times: a daemon child process serves checkouts and checkins
 * from several clients and is killed with SIGKILL at a random moment. After each kill the
 * SQLite state must hold every acknowledged grant, none that was acknowledged as released,
 * and never more seats than the licensed count.
 */
import t from 'tap';
import type { Client, Lease } from '../../lib/client/client.ts';
import { openStore } from '../../lib/store/index.ts';
import { client, makeSite, spawnDaemon } from '../helpers/site.ts';

const ROUNDS = 20;
const COUNT = 3;

t.test(`SIGKILL at random moments, ${ROUNDS} times: nothing acknowledged is lost`, async (t) => {
  const site = makeSite([`FEATURE demo demo 1.0 permanent ${COUNT} DUP_GROUP=NONE`]);
  let totalGrants = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const { child, port } = await spawnDaemon(site, ['--grace', '1', '--log-level', 'warn']);
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    // Leases from the previous round's dead clients are released when the 1 s grace ends.
    await new Promise((r) => setTimeout(r, 1200));
    const clients: Client[] = [];
    for (let i = 0; i < 4; i++) {
      clients.push(
        await client(site, port, {
          user: `u${i}`,
          host: `h${i}`,
          heartbeatMs: 60_000,
          retry: { initialMs: 50, maxIntervalMs: 200, maxTotalMs: 1500 },
        }),
      );
    }
    const held = new Set<bigint>();
    const released = new Set<bigint>();
    let stop = false;
    const work = clients.map(async (c) => {
      const mine: Lease[] = [];
      while (!stop) {
        try {
          if (mine.length > 0 && Math.random() < 0.5) {
            const l = mine.shift()!;
            // Unknown from here until the reply: a checkin may commit and die unanswered.
            held.delete(l.leaseId);
            await l.checkin();
            released.add(l.leaseId);
          } else {
            const l = await c.checkout('demo');
            mine.push(l);
            held.add(l.leaseId);
            totalGrants++;
          }
        } catch {
          // Denied (no seats) or no answer once the daemon is dead: both fine.
          await new Promise((r) => setTimeout(r, 5));
        }
      }
    });
    await new Promise((r) => setTimeout(r, 50 + Math.random() * 400));
    child.kill('SIGKILL');
    await exited;
    stop = true;
    await Promise.all(clients.map((c) => c.destroy()));
    await Promise.allSettled(work);
    const store = openStore(site.stateDir);
    const snap = store.load();
    store.close();
    const onDisk = new Set(snap.leases.map((l) => l.leaseId));
    const lost = [...held].filter((id) => !onDisk.has(id));
    const resurrected = [...released].filter((id) => onDisk.has(id));
    t.same(lost, [], `round ${round + 1}: every acknowledged grant is on disk (${held.size} held)`);
    t.same(resurrected, [], `round ${round + 1}: no acknowledged release came back`);
    t.ok(snap.leases.length <= COUNT, `round ${round + 1}: ${snap.leases.length} held ≤ ${COUNT}`);
  }
  t.ok(totalGrants > ROUNDS, `traffic happened (${totalGrants} grants)`);
});
