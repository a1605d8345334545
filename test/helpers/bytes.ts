// Deterministic pseudo-random bytes for test data: the same on every run, so a failure reproduces.

/** `len` bytes from a linear congruential generator started at `seed` (its high byte each step). */
export function seededBytes(len: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(len);
  let x = seed >>> 0;
  for (let i = 0; i < len; i++) {
    x = (x * 1664525 + 1013904223) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}
