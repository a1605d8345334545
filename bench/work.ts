// Small jobs the harness runs as child processes, so a hung mount never blocks the harness and
// the timed loops run without the harness's own event loop in the way. Each prints one JSON line.
//   poll            (env BENCH_POLL_DIR) print {armed}, then stat the dir until its st_dev changes
//   hash ROOT JSON  sha256 of each sample range {path, offset, length} under ROOT
//   create DIR N    mkdir DIR, write N one-byte files in it; prints the seconds the loop took
//   append FILE     append one byte to FILE; prints the seconds open+write+close took
import { createHash } from 'node:crypto';
import { appendFileSync, closeSync, mkdirSync, openSync, readSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const [cmd, ...args] = process.argv.slice(2);
const out = (v: unknown): void => void process.stdout.write(JSON.stringify(v) + '\n');
const secondsSince = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e9;

function poll(): void {
  // the mountpoint comes by env, so this process never matches a scan for the mount's servers
  const dir = process.env['BENCH_POLL_DIR']!;
  const baseDev = statSync(dirname(dir)).dev;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  const deadline = process.hrtime.bigint() + 120_000_000_000n;
  out({ armed: true });
  while (process.hrtime.bigint() < deadline) {
    try {
      if (statSync(dir).dev !== baseDev) return out({ readyNs: String(process.hrtime.bigint()) });
    } catch {
      // mountpoint briefly absent or ENOTCONN: keep polling
    }
    Atomics.wait(pause, 0, 0, 0.2); // 0.2 ms between polls: precise, and leaves the CPUs to the mount
  }
  out({ timeout: true });
}

function hash(root: string, samples: { path: string; offset: number; length: number }[]): void {
  out(samples.map((s) => {
    try {
      const fd = openSync(join(root, s.path), 'r');
      const buf = Buffer.alloc(s.length);
      let got = 0;
      for (let n = 1; got < s.length && n > 0; got += n) n = readSync(fd, buf, got, s.length - got, s.offset + got);
      closeSync(fd);
      return createHash('sha256').update(buf.subarray(0, got)).digest('hex');
    } catch (e) {
      return `error: ${(e as Error).message}`;
    }
  }));
}

function create(dir: string, n: number): void {
  const t0 = process.hrtime.bigint();
  mkdirSync(dir);
  for (let i = 0; i < n; i++) writeFileSync(join(dir, `f${i}`), 'x');
  out({ seconds: secondsSince(t0) });
}

function append(file: string): void {
  const t0 = process.hrtime.bigint();
  appendFileSync(file, 'x');
  out({ seconds: secondsSince(t0) });
}

switch (cmd) {
  case 'poll': poll(); break;
  case 'hash': hash(args[0]!, JSON.parse(args[1]!)); break;
  case 'create': create(args[0]!, Number(args[1])); break;
  case 'append': append(args[0]!); break;
  default: process.stderr.write(`work.js: unknown job ${cmd}\n`); process.exit(2);
}
