import fc from 'fast-check';
import t from 'tap';
import { checkSkew, RecentNonces, ReplayWindow, WindowSlab } from '../../lib/auth/replay.ts';

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

/** A set-based model of an RFC 6479 window of `size` whose every seq ≤ floor is seen. */
function model(size: number, floor = -1) {
  const seen = new Set<number>();
  let top = floor;
  return {
    check: (s: number) =>
      Number.isInteger(s) &&
      s >= 0 &&
      s <= 0xffffffff &&
      s > floor &&
      (s > top || (top - s < size && !seen.has(s))),
    update(s: number) {
      seen.add(s);
      top = Math.max(top, s);
    },
    get top() {
      return top;
    },
  };
}

const seqs = fc.array(
  fc.oneof(fc.integer({ min: 0, max: 5000 }), fc.integer({ min: 0, max: 0xffffffff })),
  { maxLength: 400 },
);

t.test('WindowSlab: the same semantics as ReplayWindow(1024)', async (t) => {
  const w = new WindowSlab(1);
  const s = w.alloc();
  const check = (q: number) => w.check(s, q);
  const take = (q: number) => {
    if (!w.check(s, q)) return false;
    w.update(s, q);
    return true;
  };
  t.equal(w.highest(s), -1);
  t.ok(take(0), 'seq 0 on a fresh window');
  t.notOk(take(0));
  t.ok(take(5));
  t.ok(take(3), 'late but unseen');
  t.notOk(take(3));
  t.ok(take(5000));
  t.equal(w.highest(s), 5000);
  t.ok(check(5000 - 1023), 'oldest position in the window');
  t.notOk(check(5000 - 1024), 'one below the window');
  t.ok(take(5000 - 1023));
  t.notOk(take(5000 - 1023));
  t.notOk(check(5), 'far behind');
  w.update(s, 5); // update without check is a no-op for a seq the window refuses
  t.equal(w.highest(s), 5000);
  t.ok(take(0xffffffff));
  t.notOk(check(0x1_0000_0000), 'beyond u32');
  t.notOk(check(-1));
  t.notOk(check(1.5));
  t.throws(() => new WindowSlab(0), RangeError);
  t.throws(() => new WindowSlab(1.5), RangeError);
});

t.test('WindowSlab agrees with ReplayWindow and the model, many windows interleaved', async (t) => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.integer({ min: 0, max: 4 }), seqs), { maxLength: 5 }),
      (runs) => {
        const slab = new WindowSlab(1); // grows while the windows are in use
        const slots = Array.from({ length: 5 }, () => slab.alloc());
        const refs = slots.map(() => new ReplayWindow(1024));
        const models = slots.map(() => model(1024));
        // Round-robin over the runs so every window's updates interleave with the others'.
        const longest = Math.max(0, ...runs.map(([, q]) => q.length));
        for (let i = 0; i < longest; i++) {
          for (const [k, q] of runs) {
            const seq = q[i];
            if (seq === undefined) continue;
            const want = models[k]!.check(seq);
            if (refs[k]!.checkAndUpdate(seq) !== want) return false;
            if (slab.check(slots[k]!, seq) !== want) return false;
            if (want) {
              slab.update(slots[k]!, seq);
              models[k]!.update(seq);
            }
            if (slab.highest(slots[k]!) !== refs[k]!.highest) return false;
          }
        }
        return true;
      },
    ),
    { numRuns: 200 },
  );
  t.pass('model agrees');
});

/** Seqs as clients send them: mostly the next one, some lost, late, repeated or jumped. */
const clientSeqs = (start: number) =>
  fc
    .array(
      fc.oneof(
        { weight: 12, arbitrary: fc.constant(1) },
        { weight: 2, arbitrary: fc.integer({ min: 2, max: 70 }) },
        { weight: 2, arbitrary: fc.integer({ min: -80, max: 0 }) },
        { weight: 1, arbitrary: fc.integer({ min: -1100, max: 1100 }) },
      ),
      { maxLength: 600 },
    )
    .map((steps) => {
      let at = start;
      return steps.map((d) => {
        at = Math.max(0, Math.min(0xffffffff, at + d));
        return at;
      });
    });

t.test(
  'WindowSlab compact and spilled windows agree with the model on client-like seqs',
  async (t) => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: -1, max: 3000 }), fc.nat(5000)), {
          minLength: 1,
          maxLength: 4,
        }),
        fc.array(clientSeqs(0), { minLength: 4, maxLength: 4 }),
        (starts, runs) => {
          const slab = new WindowSlab(1);
          const slots = starts.map(([floor]) => slab.alloc(floor));
          const models = starts.map(([floor]) => model(1024, floor));
          for (let i = 0; i < 600; i++) {
            for (let k = 0; k < slots.length; k++) {
              const q = runs[k]![i];
              if (q === undefined) continue;
              const seq = q + starts[k]![1];
              const want = models[k]!.check(seq);
              if (slab.check(slots[k]!, seq) !== want) return false;
              if (want) {
                slab.update(slots[k]!, seq);
                models[k]!.update(seq);
              }
              if (slab.highest(slots[k]!) !== models[k]!.top) return false;
            }
          }
          return true;
        },
      ),
      { numRuns: 300 },
    );
    t.pass('model agrees');
  },
);

t.test('WindowSlab: a window stays compact while its seqs come in order', async (t) => {
  const w = new WindowSlab(4);
  // As a session's: seq 0 is never a mode-2/3 seq, its window counts it seen.
  const a = w.alloc(0);
  const b = w.alloc(4096);
  const take = (s: number, q: number) => {
    if (!w.check(s, q)) return false;
    w.update(s, q);
    return true;
  };
  for (let q = 1; q <= 3000; q++) take(a, q);
  for (let q = 4097; q <= 7000; q++) take(b, q);
  t.equal(w.spilled, 0, 'in-order seqs never spill');
  t.notOk(take(a, 3000 - 1000), 'seen long ago');
  t.ok(take(a, 3005), 'a jump within 64');
  t.ok(take(a, 3002), 'the gap is still open');
  t.equal(w.spilled, 0);
  for (let q = 3006; q <= 3001 + 63; q++) take(a, q);
  t.equal(w.spilled, 0, 'still within 64 of the top: 3001, 3003, 3004 open');
  t.ok(take(a, 3001 + 64), 'one more and 3001 would leave the 64 unseen');
  t.equal(w.spilled, 1, 'so the window spilled');
  t.ok(w.check(a, 3003), '3003 is still open');
  t.ok(take(a, 3001));
  t.notOk(take(a, 3001));
  t.notOk(w.check(a, 3002), 'seen before the spill');
  t.ok(take(b, 7000 + 500), 'a jump past 64 spills too');
  t.equal(w.spilled, 2);
  t.ok(take(b, 7100), 'and keeps the seqs it jumped over open');
  const bytes = w.bytes;
  w.release(a);
  w.release(b);
  t.equal(w.spilled, 0, 'released with their slots');
  const c = w.alloc(0);
  t.ok(take(c, 1), 'a reused slot starts compact');
  t.equal(w.spilled, 0);
  const d = w.alloc();
  t.ok(take(d, 1000), 'a fresh window holding just its first seq (a mode-2 restore)');
  t.equal(w.spilled, 1, 'spills: the seqs below it are still unseen');
  t.ok(take(d, 1), 'and open');
  t.equal(w.bytes, bytes, 'the freed bitmap was reused');
});

t.test('WindowSlab floor: every seq at or below it is seen, the rest is fresh', async (t) => {
  const w = new WindowSlab(2);
  const s = w.alloc(5000);
  t.equal(w.highest(s), 5000, 'the floor is the top');
  t.notOk(w.check(s, 5000));
  t.notOk(w.check(s, 4999), 'inside the window, below the floor');
  t.notOk(w.check(s, 4000));
  t.notOk(w.check(s, 0), 'far below');
  t.ok(w.check(s, 5001));
  w.update(s, 5001);
  t.notOk(w.check(s, 4999), 'still seen once the top moved');
  w.update(s, 8000);
  t.ok(w.check(s, 7000), 'never seen, inside the window: fresh');
  t.notOk(w.check(s, 5001));
  const z = w.alloc(0);
  t.notOk(w.check(z, 0), 'floor 0: seq 0 was used');
  t.ok(w.check(z, 1));
  const fresh = w.alloc(-1);
  t.ok(w.check(fresh, 0), 'floor -1: a fresh window');
  t.equal(w.highest(fresh), -1);
});

t.test(
  'WindowSlab floor: seqs above the floor in its own 32-seq word stay fresh after the top passes them',
  async (t) => {
    const w = new WindowSlab(1);
    const s = w.alloc(100);
    w.update(s, 105);
    t.ok(w.check(s, 103), '103 > floor 100 was never seen');
  },
);

t.test('WindowSlab with a floor agrees with the model', async (t) => {
  fc.assert(
    fc.property(
      // Any floor: at a word's end or inside one (the seqs above it in its word are fresh).
      fc.integer({ min: 0, max: 6400 }),
      seqs,
      (floor, qs) => {
        const w = new WindowSlab(1);
        const s = w.alloc(floor);
        const m = model(1024, floor);
        for (const q of qs) {
          const want = m.check(q);
          if (w.check(s, q) !== want) return false;
          if (want) {
            w.update(s, q);
            m.update(q);
          }
          if (w.highest(s) !== m.top) return false;
        }
        return true;
      },
    ),
    { numRuns: 200 },
  );
  t.pass('model agrees');
});

t.test('WindowSlab: released slots are reused fresh; growth keeps every window', async (t) => {
  const w = new WindowSlab(2);
  const a = w.alloc();
  const b = w.alloc();
  t.equal(w.size, 2);
  w.update(a, 7);
  w.update(b, 9);
  w.release(a);
  t.equal(w.size, 1);
  const c = w.alloc(-1);
  t.equal(c, a, 'the released slot is reused');
  t.equal(w.highest(c), -1, 'and is a fresh window');
  t.ok(w.check(c, 7), 'nothing of the old window remains');
  t.notOk(w.check(b, 9), 'the other window untouched');
  t.ok(w.check(b, 8), 'its unseen seqs too');
  // Growth well beyond the initial size, with windows in use: each is used as soon as it is
  // made, so the growths that follow copy live windows (a third of them with a floor).
  const bytes = w.bytes;
  const expect: { slot: number; top: number; seen: number[]; fresh: number[] }[] = [];
  const use = (slot: number, top: number, floor = -1) => {
    w.update(slot, top);
    const seen = floor < 0 ? [top] : [top, floor, floor - 10];
    expect.push({ slot, top, seen, fresh: [top - 1, top + 1] });
  };
  use(c, 20_000);
  use(b, 20_001);
  for (let i = 0; i < 300; i++) {
    const floor = i % 3 === 0 ? 32 * (700 + i) - 1 - (i % 7) : -1;
    const s = w.alloc(floor);
    use(s, floor < 0 ? 20_002 + i : floor + 100, floor);
  }
  t.equal(w.size, 302);
  t.ok(w.bytes >= bytes * 128, `the slab grew (${bytes} → ${w.bytes} bytes)`);
  t.equal(new Set(expect.map((e) => e.slot)).size, 302, 'every slot distinct');
  let intact = 0;
  for (const e of expect) {
    if (
      w.highest(e.slot) === e.top &&
      e.seen.every((q) => !w.check(e.slot, q)) &&
      e.fresh.every((q) => w.check(e.slot, q))
    ) {
      intact++;
    }
  }
  t.equal(intact, expect.length, 'every window (and floor) intact after the growth');
});

t.test('RecentNonces: a replay is detected, within 2 × skew', async (t) => {
  const r = new RecentNonces(16, 1000);
  t.equal(r.lifetimeMs, 2000);
  const a = new Uint8Array(16).fill(1);
  const b = new Uint8Array(16).fill(2);
  t.notOk(r.seen(a, 0), 'first time: fresh');
  t.ok(r.seen(a, 1), 'again: a replay');
  t.ok(r.seen(a, 1999), 'live until 2 × skew');
  t.notOk(r.seen(b, 10), 'another nonce is fresh');
  t.notOk(r.seen(a, 2000), 'expired at 2 × skew: fresh again (the skew check refuses it)');
  t.ok(r.seen(a, 2001), 'and recorded again');
  t.ok(r.seen(new Uint8Array(32).fill(2), 11), 'the first 16 bytes are the id');
  const v = new Uint8Array(20).fill(1);
  t.ok(r.seen(v.subarray(2, 18), 2002), 'a view at an offset reads its own bytes');
  t.throws(() => r.seen(new Uint8Array(15), 0), RangeError);
  t.throws(() => new RecentNonces(3), RangeError);
  t.throws(() => new RecentNonces(0), RangeError);
  t.throws(() => new RecentNonces(16, -1), RangeError);
});

t.test('RecentNonces: a newer entry overwrites an older one in its slot', async (t) => {
  const r = new RecentNonces(1, 1000); // one slot: every id collides
  const a = new Uint8Array(16).fill(1);
  const b = new Uint8Array(16).fill(2);
  t.notOk(r.seen(a, 0));
  t.notOk(r.seen(b, 1), 'never refused: b takes the slot');
  t.ok(r.seen(b, 2));
  t.notOk(r.seen(a, 3), 'a was overwritten: forgotten');
  t.ok(r.seen(a, 4));
  // Ids differing in any one of their four words are told apart.
  for (let k = 0; k < 16; k += 4) {
    const c = a.slice();
    c[k]! ^= 0x80;
    t.notOk(r.seen(c, 5), `differs in word ${k / 4}`);
    t.notOk(r.seen(a, 6), 'and it took the slot');
  }
});

t.test('RecentNonces: fixed size under a 200 000-nonce flood, never refusing', async (t) => {
  const slots = 1024;
  const r = new RecentNonces(slots, 300_000);
  const id = (i: number) => {
    const b = new Uint8Array(16);
    const v = new DataView(b.buffer);
    v.setUint32(0, i);
    v.setUint32(8, Math.imul(i, 0x9e3779b1));
    return b;
  };
  const n = 200_000;
  let replays = 0;
  for (let i = 0; i < n; i++) if (r.seen(id(i), i)) replays++;
  t.equal(replays, 0, 'every distinct nonce is fresh: none refused, none mistaken');
  t.ok(r.seen(id(n - 1), n), 'the newest is still guarded');
  // A replay answer leaves the table as it is, so counting the ids it still answers for is
  // an upper bound of what it holds: never more than its slots.
  let remembered = 0;
  for (let i = n - 1; i >= n - 8 * slots; i--) if (r.seen(id(i), n)) remembered++;
  t.ok(remembered > 0, `some recent nonces remembered (${remembered})`);
  t.ok(remembered <= slots, `at most ${slots} remembered (${remembered})`);
  t.notOk(r.seen(id(0), n), 'the oldest were overwritten, not kept');
});
