import fc from 'fast-check';
import t from 'tap';
import { checkSkew, NonceCache, ReplayWindow } from '../../lib/auth/replay.ts';

t.test('checkSkew: ±300 000 ms accepted, ±300 001 and ±301 000 refused', async (t) => {
  const now = 2_000_000_000_000;
  t.ok(checkSkew(now + 300_000, now));
  t.ok(checkSkew(now - 300_000, now));
  t.notOk(checkSkew(now + 300_001, now));
  t.notOk(checkSkew(now - 300_001, now));
  t.notOk(checkSkew(now + 301_000, now));
  t.notOk(checkSkew(now - 301_000, now));
  t.ok(checkSkew(now + 5, now, 5));
  t.throws(() => checkSkew(0, 0, -1), RangeError);
});

t.test('ReplayWindow: duplicates dropped, reordering inside the window accepted', async (t) => {
  const w = new ReplayWindow(1024);
  t.ok(w.checkAndUpdate(0), 'seq 0 on a fresh window');
  t.notOk(w.checkAndUpdate(0));
  t.ok(w.checkAndUpdate(5));
  t.ok(w.checkAndUpdate(3), 'late but unseen');
  t.notOk(w.checkAndUpdate(3));
  t.ok(w.checkAndUpdate(5000));
  t.equal(w.highest, 5000);
  t.ok(w.check(5000 - 1023), 'oldest position in the window');
  t.notOk(w.check(5000 - 1024), 'one below the window');
  t.ok(w.checkAndUpdate(5000 - 1023));
  t.notOk(w.checkAndUpdate(5000 - 1023));
  t.notOk(w.check(5), 'far behind');
  t.ok(w.checkAndUpdate(0xffffffff));
  t.notOk(w.check(0x1_0000_0000), 'beyond u32');
  t.notOk(w.check(-1));
  t.throws(() => new ReplayWindow(1000), RangeError);
});

t.test('ReplayWindow agrees with a set-based model', async (t) => {
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(fc.integer({ min: 0, max: 5000 }), fc.integer({ min: 0, max: 0xffffffff })),
        {
          maxLength: 400,
        },
      ),
      fc.constantFrom(32, 64, 1024),
      (seqs, size) => {
        const w = new ReplayWindow(size);
        const seen = new Set<number>();
        let top = -1;
        for (const s of seqs) {
          const want = s > top || (top - s < size && !seen.has(s));
          if (w.checkAndUpdate(s) !== want) return false;
          if (want) {
            seen.add(s);
            top = Math.max(top, s);
          }
        }
        return true;
      },
    ),
    { numRuns: 300 },
  );
  t.pass('model agrees');
});

t.test('NonceCache: replay, time bound (2 × skew), count bound (refuse when full)', async (t) => {
  const c = new NonceCache({ maxEntries: 2, skewMs: 1000 });
  const a = new Uint8Array(16).fill(1);
  const b = new Uint8Array(16).fill(2);
  const x = new Uint8Array(16).fill(3);
  t.equal(c.add(a, 0), 'ok');
  t.equal(c.add(a, 1999), 'replay', 'live until 2 × skew');
  t.ok(c.has(a, 1999));
  t.equal(c.add(b, 10), 'ok');
  t.equal(c.add(x, 11), 'full', 'a live nonce is never evicted');
  t.equal(c.add(x, 2000), 'ok', 'a expired at 2000 and was pruned');
  t.notOk(c.has(a, 2000));
  t.equal(c.size, 2);
  t.throws(() => new NonceCache({ maxEntries: 0 }), RangeError);
});
