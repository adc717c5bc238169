/** A reproducible random schedule for seeded tests: xorshift32 from a printed seed. */

/** Numbers in [0, 1) from `seed` (0 counts as 1). */
export function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x1_0000_0000;
  };
}
