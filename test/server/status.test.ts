/**
 * lib/server/status.ts: STATUS_REPLY pages of the pool's status, each one datagram, with
 * every holder's program and version; and the same through a real daemon and client.
 */
import t from 'tap';
import type { PoolStatus } from '../../lib/license/status.ts';
import { buildStatusPages, type ProgramInfo } from '../../lib/server/status.ts';
import {
  AuthMode,
  encodeToBytes,
  Flags,
  MAX_DATAGRAM,
  MsgType,
  StatusRecord,
  TAG_LENGTH,
} from '../../lib/wire/index.ts';
import { client, makeSite, startDaemon } from '../helpers/site.ts';

/** Strings at their wire limits, in bytes: two-byte UTF-8 characters where it counts. */
const LONG = 'é'.repeat(32); // 64 bytes
const LONG_VERSION = 'v'.repeat(32);

function poolWith(holders: number, name = LONG): PoolStatus {
  return {
    features: [],
    reservations: [],
    queue: [],
    holders: Array.from({ length: holders }, (_, i) => ({
      feature: name,
      version: '1.0',
      vendor: 'demo',
      user: name,
      host: name,
      addr: '127.0.0.1',
      since: 1_780_000_000_000 + i,
      count: 1,
      leaseId: BigInt(i + 1),
      // Two leases per session: the lookup is asked once per session.
      sessionId: BigInt(Math.floor(i / 2) + 1),
    })),
  };
}

/** The page as the daemon sends it; encodeToBytes throws past 1200 bytes. */
function datagramOf(body: ReturnType<typeof buildStatusPages>[number]): Uint8Array {
  return encodeToBytes({
    type: MsgType.STATUS_REPLY,
    flags: Flags.REPLY | Flags.FROM_SERVER,
    auth: { mode: AuthMode.SESSION },
    requestId: 0xffffffff,
    sessionId: 0xffffffffffffffffn,
    seq: 0xffffffff,
    timestamp: Number.MAX_SAFE_INTEGER,
    body,
    tag: new Uint8Array(TAG_LENGTH),
  });
}

t.test('holders carry the program and version the lookup names, "" when unknown', async (t) => {
  const asked: bigint[] = [];
  const lookup = (id: bigint): ProgramInfo | undefined => {
    asked.push(id);
    return id === 1n ? { program: 'cad', version: '2.10' } : undefined;
  };
  const [page, ...more] = buildStatusPages(poolWith(4, 'solver'), '', 7, lookup);
  t.same(more, [], 'one page');
  t.match(page!.records, [
    { kind: StatusRecord.HOLDER, leaseId: 1n, program: 'cad', version: '2.10' },
    { kind: StatusRecord.HOLDER, leaseId: 2n, program: 'cad', version: '2.10' },
    { kind: StatusRecord.HOLDER, leaseId: 3n, program: '', version: '' },
    { kind: StatusRecord.HOLDER, leaseId: 4n, program: '', version: '' },
  ]);
  t.same(asked, [1n, 2n], 'each session looked up once');
  t.match(buildStatusPages(poolWith(1, 'solver'), '', 7)[0]!.records, [
    { program: '', version: '' },
  ]);
  t.throws(
    () => buildStatusPages(poolWith(1), '', 0, 'cad' as never),
    new TypeError('programOf must be a function, got string'),
  );
});

t.test('holders with every string at its limit: each page one datagram, none lost', async (t) => {
  const n = 200;
  const pages = buildStatusPages(poolWith(n), '', 1, () => ({
    program: LONG,
    version: LONG_VERSION,
  }));
  t.ok(pages.length > 1, `${pages.length} pages`);
  const leaseIds: bigint[] = [];
  const sizes: number[] = [];
  const programs = new Set<string>();
  for (const p of pages) {
    if (p.pages !== pages.length) t.fail(`page ${p.page} says ${p.pages} pages`);
    sizes.push(datagramOf(p).length);
    for (const r of p.records) {
      if (r.kind !== StatusRecord.HOLDER) continue;
      leaseIds.push(r.leaseId);
      programs.add(`${r.program}/${r.version}`);
    }
  }
  t.ok(Math.max(...sizes) <= MAX_DATAGRAM, `largest page ${Math.max(...sizes)} bytes`);
  t.same([...programs], [`${LONG}/${LONG_VERSION}`]);
  t.same(
    leaseIds,
    Array.from({ length: n }, (_, i) => BigInt(i + 1)),
    'every holder once, in order',
  );
  // Pages are full: the next record would not have fitted.
  const first = pages[0]!;
  const one = datagramOf({ ...first, records: first.records.slice(0, 1) }).length;
  const per = datagramOf({ ...first, records: first.records.slice(0, 2) }).length - one;
  t.ok(datagramOf(first).length + per > MAX_DATAGRAM, 'the first page is as full as it can be');
});

t.test('a real daemon lists each holder with its HELLO program and version', async (t) => {
  const site = makeSite(['FEATURE solver demo 1.0 permanent 30 DUP_GROUP=NONE']);
  const d = await startDaemon(site);
  t.teardown(() => d.close());
  const port = d.address().port;
  const long = await client(site, port, { program: LONG, programVersion: LONG_VERSION });
  t.teardown(() => long.close());
  const cad = await client(site, port, { user: 'bob', program: 'cad', programVersion: '2.10' });
  t.teardown(() => cad.close());
  for (let i = 0; i < 20; i++) await long.checkout('solver');
  await cad.checkout('solver');
  const s = await cad.status();
  t.equal(s.holders.length, 21);
  t.equal(s.holders.filter((h) => h.program === LONG && h.version === LONG_VERSION).length, 20);
  t.match(
    s.holders.filter((h) => h.user === 'bob'),
    [{ program: 'cad', version: '2.10' }],
  );
});
