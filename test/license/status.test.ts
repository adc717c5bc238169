/** lib/license/status.ts: features, holders, queue and reservations in a stable order. */
import t from 'tap';
import { parseOptions } from '../../lib/license/options.ts';
import { granted, line, resUser, setup } from './helpers.ts';

t.test('status: sorted features, holders with addresses, queue positions', async (t) => {
  const { pool, co } = setup([line('b', '1', 1), line('a', '2', 1), line('a', '1.5', 1)]);
  granted(t, co(1, 'b', { addr: '10.0.0.9' }));
  co(2, 'b', { wait: true });
  co(3, 'b', { wait: true });
  granted(t, co(4, 'a', { version: '2' }));
  const st = pool.status();
  t.same(
    st.features.map((f) => [f.name, f.version, f.count, f.inUse, f.queued]),
    [
      ['a', '1.5', 1, 0, 0],
      ['a', '2', 1, 1, 0],
      ['b', '1', 1, 1, 2],
    ],
  );
  t.same(
    st.holders.map((h) => [h.feature, h.version, h.user, h.addr]),
    [
      ['a', '2', 'u4', ''],
      ['b', '1', 'u1', '10.0.0.9'],
    ],
  );
  t.same(
    st.queue.map((q) => [q.feature, q.position, q.sessionId]),
    [
      ['b', 1, 2n],
      ['b', 2, 3n],
    ],
  );
});

t.test('status: license reservations first, then the options file’s, with use', async (t) => {
  const { pool, co } = setup([line('r', '1', 4, {}, { reservations: [resUser('a', 1)] })]);
  pool.setOptions(
    parseOptions('GROUP g b c\nRESERVE 2 r GROUP g\nRESERVE 9 r INTERNET 10.0.0.0/8', 'o'),
  );
  granted(t, co(1, 'r', { user: 'b' }));
  t.same(
    pool.status().reservations.map((r) => [r.type, r.name, r.count, r.inUse]),
    [
      ['user', 'a', 1, 0],
      ['group', 'g', 2, 1],
      ['internet', '10.0.0.0/8', 1, 0],
    ],
  );
});
