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

/**
 * `got` equals `want` byte for byte (the assertion t.deepEqual makes of two Buffers). ava's
 * deepEqual walks a Buffer as a generic object, ~3 s of CPU a MiB; Buffer#equals is memcmp. A
 * difference is said by its first differing offset and the lengths.
 */
export function sameBytes(t: { pass(message?: string): void; fail(message?: string): void }, got: Uint8Array, want: Uint8Array, what = 'bytes'): void {
  if (Buffer.compare(got, want) === 0) return t.pass(what);
  let at = 0;
  while (at < got.length && at < want.length && got[at] === want[at]) at++;
  t.fail(`${what}: ${got.length} bytes, ${want.length} wanted; they differ from offset ${at}`);
}
