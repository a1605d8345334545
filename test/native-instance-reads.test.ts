// Reads of a writable instance's lower files answered in C (src/overlay/lower-reads.ts,
// src/fuse/direct-reads.ts): while a file has no upper copy its READs are a plain tar member's
// range (direct reads) or a zstd member's native stream, as on an image mount; the moment it is
// copied up, C lets go of it and the file's new bytes are what every reader sees. Seen from
// outside: a child serves the instance and counts READs and READs answered in C.
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { OP } from '../src/fuse/lowlevel.js';
import type { MountStats } from '../src/fuse/native-backend.js';
import { makeTestRoot, removeTestRoot } from './helpers/mounted.js';
import { dropCache, serveInstanceOf } from './helpers/instance-served.js';

const MiB = 1 << 20;
const root = makeTestRoot('instance-reads');
test.after.always(() => removeTestRoot(root));

const big = randomBytes(6 * MiB + 321);
const other = randomBytes(2 * MiB);

let seq = 0;
function serve(t: ExecutionContext, compress?: 'zstd'): Promise<{ mnt: string; stats(): Promise<MountStats> }> {
  return serveInstanceOf(t, path.join(root, `m${++seq}`), [
    { name: 'd/', type: 'directory', mode: 0o755 },
    { name: 'd/big', body: big, mode: 0o644 },
    { name: 'd/other', body: other, mode: 0o644 },
  ], { TARSTACK_MAX_PAGES: '256' }, compress); // the READ counts below are of 1 MiB READs, whatever fs.fuse.max_pages_limit allows
}

/** dd bs=1M of `file`: what a sequential reader gets. */
function ddRead(t: ExecutionContext, file: string): Buffer {
  const r = spawnSync('dd', [`if=${file}`, 'bs=1M', 'status=none'], { maxBuffer: 64 * MiB });
  t.is(r.status, 0, r.stderr.toString());
  return r.stdout;
}

const reads = (a: MountStats, b: MountStats): { all: number; direct: number; streamed: number } => ({
  all: (b.ops[OP.READ] ?? 0) - (a.ops[OP.READ] ?? 0),
  direct: b.directReads - a.directReads,
  streamed: b.streamedReads - a.streamedReads,
});

/** Writes `patch` at `at` through the mount (a copy-up), then checks every reader sees it. */
function copyUpAndCheck(t: ExecutionContext, file: string, opened: number, at: number, patch: Buffer): Buffer {
  const want = Buffer.from(big);
  patch.copy(want, at);
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, patch, 0, patch.length, at);
  } finally {
    fs.closeSync(fd);
  }
  dropCache(file);
  t.true(ddRead(t, file).equals(want), 'a new reader sees the written bytes');
  const buf = Buffer.alloc(2 * MiB);
  const n = fs.readSync(opened, buf, 0, buf.length, at - MiB);
  t.true(buf.subarray(0, n).equals(want.subarray(at - MiB, at + MiB)), 'a reader opened before the copy-up sees them too');
  return want;
}

test.serial('a lower plain member is read in C until its copy-up, then its new bytes through JS', async (t) => {
  const m = await serve(t);
  const file = path.join(m.mnt, 'd', 'big');
  const s0 = await m.stats();
  const opened = fs.openSync(file, 'r');
  t.teardown(() => fs.closeSync(opened));
  t.true(ddRead(t, file).equals(big), 'sequential read');
  t.true(fs.readFileSync(path.join(m.mnt, 'd', 'other')).equals(other));
  const s1 = await m.stats();
  const before = reads(s0, s1);
  t.true(before.all >= 6, `READs reached the daemon (${before.all})`);
  t.is(before.direct, before.all - 2, `only each file's first READ went through JS: ${before.direct} of ${before.all} in C`);

  const want = copyUpAndCheck(t, file, opened, 3 * MiB + 17, Buffer.from('written through the mount'));
  const s2 = await m.stats();
  const after = reads(s1, s2);
  t.true(after.all >= 6, `READs after the copy-up (${after.all})`);
  t.is(after.direct, 0, 'none of them answered from the lower range');
  dropCache(file);
  t.true(fs.readFileSync(file).equals(want), 'and again');
});

test.serial('a lower zstd member is streamed in C until its copy-up, then its new bytes through JS', async (t) => {
  const m = await serve(t, 'zstd');
  const file = path.join(m.mnt, 'd', 'big');
  const s0 = await m.stats();
  const opened = fs.openSync(file, 'r');
  t.teardown(() => fs.closeSync(opened));
  t.true(ddRead(t, file).equals(big), 'sequential read');
  const s1 = await m.stats();
  const before = reads(s0, s1);
  t.true(before.all >= 6, `READs reached the daemon (${before.all})`);
  t.true(before.streamed >= before.all / 2, `READs answered from the stream: ${before.streamed} of ${before.all}`);

  copyUpAndCheck(t, file, opened, 2 * MiB + 4000, Buffer.from('written through the mount'));
  const s2 = await m.stats();
  const after = reads(s1, s2);
  t.true(after.all >= 6, `READs after the copy-up (${after.all})`);
  t.is(after.streamed + after.direct, 0, 'none of them answered from the lower');
});

test.serial('a truncate copies up as well: the file reads as its new size', async (t) => {
  const m = await serve(t);
  const file = path.join(m.mnt, 'd', 'big');
  t.true(ddRead(t, file).equals(big));
  fs.truncateSync(file, MiB + 5);
  dropCache(file);
  t.true(ddRead(t, file).equals(big.subarray(0, MiB + 5)));
  fs.truncateSync(file, 3 * MiB);
  dropCache(file);
  t.true(ddRead(t, file).equals(Buffer.concat([big.subarray(0, MiB + 5), Buffer.alloc(2 * MiB - 5)])), 'grown with zeros, not the lower bytes');
});
