// Streamed reads (native-bindings/src/stream.c, src/tar/native-stream.ts): on an image mount of a
// single-frame .tar.zst, a member read sequentially is decoded ahead by a native stream and its
// READs are answered in C from the checked bytes, without JS. Seen from outside: a child serves the
// image and counts READs and READs answered that way; the bytes must be `zstd -dc`'s, also with
// random reads beside the sequential one, and a damaged archive gives EIO, never other bytes.
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { OP } from '../src/fuse/lowlevel.js';
import type { MountStats } from '../src/fuse/native-backend.js';
import { makeTestRoot, removeTestRoot } from './helpers/mounted.js';
import { dropCache, serveImageOf } from './helpers/instance-served.js';

const MiB = 1 << 20;
const root = makeTestRoot('streamed');
test.after.always(() => removeTestRoot(root));

/** Half text, half random, and not a whole number of pieces. */
function content(mib: number): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < mib; i++) parts.push(i % 2 ? randomBytes(MiB) : Buffer.from(`line ${i} of a text part `.repeat(MiB / 20).slice(0, MiB)));
  parts.push(randomBytes(12345));
  return Buffer.concat(parts);
}
const big = content(40);
const small = Buffer.from('a small member\n');

let seq = 0;
async function serveZst(t: ExecutionContext, env: Record<string, string> = {}, how: 'zstd' | 'zstd-frames' | 'gzip-members' = 'zstd'): Promise<{ mnt: string; zst: string; stats(): Promise<MountStats> }> {
  const m = await serveImageOf(t, path.join(root, `m${++seq}`), [
    { name: 'd/', type: 'directory', mode: 0o755 },
    { name: 'd/small', body: small, mode: 0o644 },
    { name: 'd/big', body: big, mode: 0o644 },
  ], env, how);
  return { mnt: m.mnt, zst: m.tar, stats: m.stats };
}

/** dd bs=1M of `file`: its bytes and whether dd succeeded. */
function ddRead(file: string): { ok: boolean; out: Buffer; err: string } {
  const r = spawnSync('dd', [`if=${file}`, 'bs=1M', 'status=none'], { maxBuffer: 256 * MiB });
  return { ok: r.status === 0, out: r.stdout, err: r.stderr.toString() };
}

/** ddRead of `file`, with the READs the daemon got meanwhile and how many of them C answered from a stream. */
async function countedRead(m: { stats(): Promise<MountStats> }, file: string): Promise<{ r: ReturnType<typeof ddRead>; reads: number; streamed: number }> {
  const s0 = await m.stats();
  const r = ddRead(file);
  const s1 = await m.stats();
  return { r, reads: (s1.ops[OP.READ] ?? 0) - (s0.ops[OP.READ] ?? 0), streamed: s1.streamedReads - s0.streamedReads };
}

test.serial('a member read sequentially is answered in C from the stream, with zstd -dc\'s bytes', async (t) => {
  const m = await serveZst(t);
  const file = path.join(m.mnt, 'd', 'big');
  const { r, reads, streamed } = await countedRead(m, file);
  t.true(r.ok, r.err);
  t.true(r.out.equals(big), 'sequential read');
  t.is(fs.readFileSync(path.join(m.mnt, 'd', 'small'), 'utf8'), small.toString());
  t.true(reads >= 10, `READs reached the daemon (${reads})`);
  t.true(streamed >= reads / 2, `READs answered in C: ${streamed} of ${reads}`);
});

for (const how of ['zstd-frames', 'gzip-members'] as const) {
  test.serial(`${how}: a member read sequentially is answered from streams, stream after stream, with the right bytes`, async (t) => {
    const m = await serveZst(t, {}, how);
    const r = ddRead(path.join(m.mnt, 'd', 'big'));
    t.true(r.ok, r.err);
    t.true(r.out.equals(big));
    const s = await m.stats();
    t.true(s.streamedReads >= (s.ops[OP.READ] ?? 0) / 2, `READs answered in C: ${s.streamedReads} of ${s.ops[OP.READ]}`);
  });
}

// 1 MiB READs of 64 KiB pieces span 17 of them, as max_pages=1024's 4 MiB READs span 17 pieces of
// 256 KiB. A READ arriving used to let the stream recycle the slab its own first pieces were in
// (they were more than BEHIND pieces behind its last one, and it was parked only after): C then
// answered it EIO. Page-cache readers never saw that (the kernel re-read each page alone: 4 KiB
// READs, answered by JS decoding from the frame's start); O_DIRECT readers got the error.
test.serial('READs spanning many pieces (4 MiB READs under max_pages=1024) are answered from the stream, never EIO', async (t) => {
  const m = await serveZst(t, { TARSTACK_TEST_SEEK: JSON.stringify({ pieceSize: 64 * 1024 }) });
  const file = path.join(m.mnt, 'd', 'big');
  const direct = spawnSync('dd', [`if=${file}`, 'iflag=direct', 'bs=1M', 'status=none'], { maxBuffer: 256 * MiB });
  t.is(direct.status, 0, direct.stderr.toString());
  t.true(direct.stdout.equals(big), 'O_DIRECT read');
  dropCache(file);
  await new Promise((r) => setTimeout(r, 2500)); // the first stream ends idle: the second read starts its own
  const { r, reads, streamed } = await countedRead(m, file);
  t.true(r.ok && r.out.equals(big), 'page-cache read');
  t.true(reads >= 10 && reads <= 2 * (big.length / MiB), `READs of up to 1 MiB, not page by page (${reads})`);
  t.true(streamed >= reads / 2, `READs answered in C: ${streamed} of ${reads}`);
});

test.serial('random reads beside a sequential one get the right bytes', async (t) => {
  const m = await serveZst(t);
  const file = path.join(m.mnt, 'd', 'big');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(MiB);
    let rnd = 7;
    for (let pos = 0; pos < big.length; pos += MiB) {
      const n = fs.readSync(fd, buf, 0, MiB, pos);
      t.true(buf.subarray(0, n).equals(big.subarray(pos, pos + MiB)), `sequential at ${pos}`);
      rnd = (rnd * 1103515245 + 12345) % 2 ** 31;
      const at = rnd % big.length;
      const b2 = Buffer.alloc(70000);
      const n2 = fs.readSync(fd, b2, 0, b2.length, at);
      t.true(b2.subarray(0, n2).equals(big.subarray(at, at + b2.length)), `random at ${at}`);
    }
  } finally {
    fs.closeSync(fd);
  }
});

test.serial('a reader that pauses (its stream ends idle) reads on with the right bytes, from a stream again', async (t) => {
  const m = await serveZst(t);
  const file = path.join(m.mnt, 'd', 'big');
  const head = spawnSync('dd', [`if=${file}`, 'bs=1M', 'count=9', 'status=none'], { maxBuffer: 64 * MiB });
  t.true(head.stdout.equals(big.subarray(0, 9 * MiB)), 'before the pause');
  await new Promise((r) => setTimeout(r, 2500)); // two idle checks: the stream hands its pieces to the cache and ends
  const s0 = await m.stats();
  const tail = spawnSync('dd', [`if=${file}`, 'bs=1M', 'skip=9', 'status=none'], { maxBuffer: 64 * MiB });
  t.is(tail.status, 0);
  t.true(tail.stdout.equals(big.subarray(9 * MiB)), 'after the pause');
  t.true((await m.stats()).streamedReads > s0.streamedReads, 'a stream serves again');
});

test.serial('reading the member again right after (the first stream still runs, past the start): the right bytes, from a stream again', async (t) => {
  const m = await serveZst(t);
  const file = path.join(m.mnt, 'd', 'big');
  t.true(ddRead(file).out.equals(big), 'first read');
  // The first read's stream still runs (it ends after a second without READs), past the start.
  dropCache(file);
  const { r, reads, streamed } = await countedRead(m, file);
  t.true(r.ok && r.out.equals(big), 'second read');
  t.true(reads >= 10, `READs reached the daemon (${reads})`);
  t.true(streamed >= reads / 2, `READs answered in C the second time: ${streamed} of ${reads}`);
});

test.serial('TARSTACK_NATIVE_STREAMS=0: no READ is answered from a stream, same bytes', async (t) => {
  const m = await serveZst(t, { TARSTACK_NATIVE_STREAMS: '0' });
  const r = ddRead(path.join(m.mnt, 'd', 'big'));
  t.true(r.ok && r.out.equals(big));
  t.is((await m.stats()).streamedReads, 0);
});

test.serial('a damaged archive gives EIO, never other bytes', async (t) => {
  const m = await serveZst(t);
  // damage the compressed bytes in place (the served descriptor sees it) far from the start
  const fd = fs.openSync(m.zst, 'r+');
  const size = fs.fstatSync(fd).size;
  for (let at = Math.floor(size * 0.6); at < Math.floor(size * 0.6) + 64; at += 8) fs.writeSync(fd, Buffer.from([0x55]), 0, 1, at);
  fs.closeSync(fd);
  const r = ddRead(path.join(m.mnt, 'd', 'big'));
  t.false(r.ok, 'dd failed');
  t.regex(r.err, /Input\/output error/);
  t.true(r.out.length < big.length, 'stopped early');
  t.true(r.out.equals(big.subarray(0, r.out.length)), 'what was read is the member\'s');
});
