// Direct reads (native-bindings/src/readpool.c, src/fuse/direct-reads.ts): on an image mount, the
// READs of a plain tar member are answered in C from its range of the tar, without calling JS,
// once its first READ has registered it. Seen from outside: a child serves the image and counts
// READs (by opcode) and READs answered that way; the bytes read must be the member's, at every
// offset and across its end, also after the page cache was dropped and the inode forgotten.
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { OP } from '../src/fuse/lowlevel.js';
import type { MountStats } from '../src/fuse/native-backend.js';
import { makeTestRoot, removeTestRoot } from './helpers/mounted.js';
import { dropCache, serveImageOf } from './helpers/instance-served.js';

const MiB = 1 << 20;
const root = makeTestRoot('direct');
test.after.always(() => removeTestRoot(root));

const big = randomBytes(3 * MiB + 123); // not a whole number of pages: the last READ crosses the end
const small = Buffer.from('a small member\n');

// The READ counts below are of 1 MiB READs, also where root raised fs.fuse.max_pages_limit.
const ONE_MIB_READS = { TARSTACK_MAX_PAGES: '256' };

let seq = 0;
async function serveImage(t: ExecutionContext, env: Record<string, string> = {}): Promise<{ mnt: string; stats(): Promise<MountStats> }> {
  return serveImageOf(t, path.join(root, `m${++seq}`), [
    { name: 'd/', type: 'directory', mode: 0o755 },
    { name: 'd/small', body: small, mode: 0o644 },
    { name: 'd/big', body: big, mode: 0o644 },
  ], { ...ONE_MIB_READS, ...env });
}

/** Reads `file` at scattered offsets (and across its end) with pread, compared with `want`. */
function checkPreads(t: ExecutionContext, file: string, want: Buffer): void {
  const fd = fs.openSync(file, 'r');
  try {
    for (const pos of [0, 4096, 12345, MiB - 7, 2 * MiB + 4095, want.length - 5000, want.length - 1, want.length, want.length + 4096]) {
      const buf = Buffer.alloc(70000);
      const n = fs.readSync(fd, buf, 0, buf.length, pos);
      const end = Math.min(want.length, pos + buf.length);
      t.is(n, Math.max(0, end - pos), `pread at ${pos}: length`);
      t.true(buf.subarray(0, n).equals(want.subarray(pos, end)), `pread at ${pos}: bytes`);
    }
  } finally {
    fs.closeSync(fd);
  }
}

test.serial('READs of a plain tar member after the first are answered without JS, with its bytes', async (t) => {
  const m = await serveImage(t);
  const file = path.join(m.mnt, 'd', 'big');
  const s0 = await m.stats();
  t.true(fs.readFileSync(file).equals(big), 'sequential read');
  t.is(fs.readFileSync(path.join(m.mnt, 'd', 'small'), 'utf8'), small.toString());
  dropCache(file);
  checkPreads(t, file, big);
  const s1 = await m.stats();
  const reads = (s1.ops[OP.READ] ?? 0) - (s0.ops[OP.READ] ?? 0);
  t.true(reads >= 4, `READs reached the daemon (${reads})`);
  // Only the first READ of each of the two files went to JS (which registered it).
  t.is(s1.directReads - s0.directReads, reads - 2, `READs answered in C: ${s1.directReads} of ${reads}`);
});

test.serial('a forgotten inode is read through JS again, then directly, with the same bytes', async (t) => {
  if (process.getuid?.() !== 0) return t.pass('dropping the kernel\'s inodes needs root');
  const m = await serveImage(t);
  const file = path.join(m.mnt, 'd', 'big');
  t.true(fs.readFileSync(file).equals(big));
  fs.writeFileSync('/proc/sys/vm/drop_caches', '3'); // pages and inodes: the kernel FORGETs d/big
  const s0 = await m.stats();
  t.true(fs.readFileSync(file).equals(big), 'read after the inode was forgotten');
  checkPreads(t, file, big);
  const s1 = await m.stats();
  const reads = (s1.ops[OP.READ] ?? 0) - (s0.ops[OP.READ] ?? 0);
  const direct = s1.directReads - s0.directReads;
  t.true(reads - direct >= 1, `the first READ after the FORGET went through JS (${reads} READs, ${direct} direct)`);
  t.true(direct > 0, 'registered again');
});

test.serial('TARSTACK_DIRECT_READS=0: every READ goes through JS, same bytes', async (t) => {
  const m = await serveImage(t, { TARSTACK_DIRECT_READS: '0' });
  const file = path.join(m.mnt, 'd', 'big');
  t.true(fs.readFileSync(file).equals(big));
  dropCache(file);
  checkPreads(t, file, big);
  const s = await m.stats();
  t.true((s.ops[OP.READ] ?? 0) > 2);
  t.is(s.directReads, 0);
});
