// FUSE over io_uring (issue 17, native-bindings/src/uring.c), seen from outside: a writable
// instance served by a child process with TARSTACK_URING=1 while the kernel offers io_uring
// (/sys/module/fuse/parameters/enable_uring, read when a connection starts). The mount must serve
// the same bytes, its requests must come through the ring (counted apart from /dev/fuse's), and
// without the variable or with enable_uring N nothing changes. enable_uring is put back as found.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { OP } from '../src/fuse/lowlevel.js';
import type { MountStats } from '../src/fuse/native-backend.js';
import { delta, servedIn, serveInstance, type Served } from './helpers/instance-served.js';
import { makeTestRoot, mount, removeTestRoot } from './helpers/mounted.js';
import { pack } from './helpers/pack.js';

const PARAM = '/sys/module/fuse/parameters/enable_uring';
const MiB = 1 << 20;

function unsupported(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (enable_uring is root\'s to set)';
  const [maj, min] = (/^(\d+)\.(\d+)/.exec(fs.readFileSync('/proc/sys/kernel/osrelease', 'latin1')) ?? []).slice(1).map(Number);
  if (!maj || maj < 6 || (maj === 6 && (min ?? 0) < 14)) return 'needs kernel 6.14+ (FUSE over io_uring)';
  if (!fs.existsSync(PARAM)) return `the kernel has no ${PARAM} (built without CONFIG_FUSE_IO_URING)`;
  try {
    fs.writeFileSync(PARAM, fs.readFileSync(PARAM, 'latin1').trim());
  } catch (e) {
    return `${PARAM} cannot be written: ${(e as Error).message}`;
  }
  return undefined;
}

const why = unsupported();
if (why) test('FUSE over io_uring', (t) => t.pass(`skipped: ${why}`));
const uringTest = why ? test.skip : test.serial;
const root = why ? '' : makeTestRoot('uring');
const before = why ? '' : fs.readFileSync(PARAM, 'latin1').trim();
test.after.always(() => {
  if (before) fs.writeFileSync(PARAM, before);
  if (root) removeTestRoot(root);
});
/** Every 4-byte word differs, so data from a wrong offset shows. */
function patterned(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i += 4) b.writeUInt32LE((i * 2654435761 + seed) >>> 0, i);
  return b;
}
const LOWER = patterned(3 * MiB + 1000, 7); // not a multiple of the page: the last read is short
const serve = servedIn(root, [{ name: 'd/pattern', body: LOWER, mode: 0o644 }]);
const setUring = (on: boolean): void => fs.writeFileSync(PARAM, on ? 'Y' : 'N');

/** Drops the tar's pages (written back first: dirty pages stay), so reads of lower files are cold. */
function dropCache(file: string): void {
  const r = spawnSync('python3', ['-c', 'import os,sys\nfd=os.open(sys.argv[1],os.O_RDONLY)\nos.fsync(fd)\nos.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)', file]);
  if (r.status !== 0) throw new Error(r.stderr.toString());
}

/** Create, write (several 1 MiB requests), read back, read lower files cold and warm, list, unlink. */
function exercise(m: Served): void {
  const data = patterned(5 * MiB, 1);
  const file = path.join(m.mnt, 'new');
  fs.writeFileSync(file, data);
  if (!fs.readFileSync(file).equals(data)) throw new Error('read back differs');
  if (!fs.readFileSync(path.join(m.upper, 'new')).equals(data)) throw new Error('upper differs');
  dropCache(m.tar);
  if (!fs.readFileSync(path.join(m.mnt, 'd', 'pattern')).equals(LOWER)) throw new Error('cold lower read differs');
  if (!fs.readFileSync(path.join(m.mnt, 'd', 'big')).equals(Buffer.alloc(3 * MiB, 5))) throw new Error('lower read differs');
  if (fs.readFileSync(path.join(m.mnt, 'd', 'lower'), 'latin1') !== 'from the layer\n') throw new Error('lower file differs');
  fs.writeFileSync(path.join(m.mnt, 'd', 'small'), 'x');
  const names = fs.readdirSync(path.join(m.mnt, 'd')).sort();
  if (names.join() !== 'big,lower,pattern,small') throw new Error(`d lists ${names.join()}`);
  fs.unlinkSync(file);
  if (fs.existsSync(file) || fs.existsSync(path.join(m.upper, 'new'))) throw new Error('unlinked file still there');
}

/** Requests that never come through a ring: INIT, FORGET, BATCH_FORGET, INTERRUPT. */
function offRing(a: MountStats, b: MountStats): number {
  return [26, 2, 42, 36].reduce((n, op) => n + (b.ops[op] ?? 0) - (a.ops[op] ?? 0), 0);
}

uringTest('TARSTACK_URING=1 with enable_uring Y: requests come through the ring, the data is right', async (t) => {
  setUring(true);
  // Without passthrough, so that writes and reads carry their bytes through ring entries.
  const m = await serve(t, undefined, { TARSTACK_URING: '1', TARSTACK_PASSTHROUGH: '0' });
  const s0 = await m.stats();
  t.true(s0.uring, 'io_uring negotiated and every entry registered');
  exercise(m);
  const s1 = await m.stats();
  const d = delta(s0, s1);
  t.true(d.WRITE >= 5, `WRITEs reached the daemon (${d.WRITE})`);
  t.true(d.READ >= 1, `READs reached the daemon (${d.READ})`);
  t.true(s1.uringReads > s0.uringReads, 'cold ranges of the tar were read by the ring into their entries');
  t.true(d.CREATE >= 2);
  const ring = s1.uringRequests - s0.uringRequests;
  const all = s1.requests - s0.requests;
  t.true(ring > 0);
  t.is(all - ring, offRing(s0, s1), 'every request but FORGETs and INTERRUPTs came through the ring');
});

uringTest('an image mount over the ring: READs answered in C (direct reads) go through their ring entries, the bytes right', async (t) => {
  setUring(true);
  const dir = path.join(root, 'image');
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(mnt, { recursive: true });
  const tar = path.join(dir, 'image.tar');
  fs.writeFileSync(tar, await pack([{ name: 'pattern', body: LOWER, mode: 0o644 }]));
  const stats = await serveInstance(t, [mnt, tar, '-', '-'], { TARSTACK_URING: '1' });
  const s0 = await stats();
  t.true(s0.uring);
  const file = path.join(mnt, 'pattern');
  t.true(fs.readFileSync(file).equals(LOWER), 'first read');
  dropCache(file);
  dropCache(tar);
  t.true(fs.readFileSync(file).equals(LOWER), 'read again after its pages and the tar\'s were dropped');
  const s1 = await stats();
  t.true(s1.directReads > s0.directReads, `READs answered in C (${s1.directReads - s0.directReads})`);
  t.true(s1.uringRequests > s0.uringRequests);
  t.true(s1.uringLinked > s0.uringLinked, 'cold reads went as one chain with their commit');
  t.is(s1.uringBroken, s0.uringBroken, 'no chain broke');
});

/** A file of 4 KiB data blocks and 4 KiB holes (8 MiB; two in every 16 blocks are holes), archived
 *  with GNU tar --sparse: a READ of it is many ranges of the tar with zero ranges between. */
function sparseTar(dir: string): { tar: string; body: Buffer } {
  const src = path.join(dir, 'src');
  fs.mkdirSync(src, { recursive: true });
  const body = Buffer.alloc(8 * MiB);
  const fd = fs.openSync(path.join(src, 'sparse'), 'w');
  for (let off = 0; off < body.length; off += 4096) {
    if ((off / 4096) % 8 === 3 || (off / 4096) % 8 === 6) continue; // holes
    patterned(4096, off).copy(body, off);
    fs.writeSync(fd, body, off, 4096, off);
  }
  fs.ftruncateSync(fd, body.length);
  fs.closeSync(fd);
  const tar = path.join(dir, 'image.tar');
  const r = spawnSync('tar', ['--sparse', '--format=posix', '-cf', tar, '-C', src, 'sparse']);
  if (r.status !== 0) throw new Error(r.stderr.toString());
  return { tar, body };
}

uringTest('READs over many ranges (a sparse member): chains, or range by range past the SQ ring\'s size; zeros between, the bytes right', async (t) => {
  setUring(true);
  const dir = path.join(root, 'sparse');
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(mnt, { recursive: true });
  const { tar, body } = sparseTar(dir);
  const stats = await serveInstance(t, [mnt, tar, '-', '-'], { TARSTACK_URING: '1' });
  const s0 = await stats();
  dropCache(tar);
  const file = path.join(mnt, 'sparse');
  // Small reads at odd offsets first (each READ a few ranges: the chain), then the whole file.
  const fd = fs.openSync(file, 'r');
  try {
    for (const at of [4096 * 2 + 100, 3 * MiB + 4096 * 5 + 7, 6 * MiB - 3]) {
      const b = Buffer.alloc(3 * 4096);
      t.is(fs.readSync(fd, b, 0, b.length, at), b.length);
      t.true(b.equals(body.subarray(at, at + b.length)), `bytes at ${at}`);
    }
  } finally {
    fs.closeSync(fd);
  }
  t.true(fs.readFileSync(file).equals(body), 'the whole file');
  const s1 = await stats();
  const [reads, linked] = [s1.uringReads - s0.uringReads, s1.uringLinked - s0.uringLinked];
  t.true(linked > 0, `READs read as chains (${linked} of ${reads})`);
  // A READ of 512 KiB or more here is over 31 data ranges: more than a chain fits in the SQ ring.
  t.true(reads > linked, `big READs read range by range (${reads - linked} of ${reads})`);
  t.is(s1.uringBroken, s0.uringBroken);
});

uringTest('a tar truncated after indexing: the short read breaks the chain and the reader gets EIO, as without io_uring', async (t) => {
  setUring(true);
  for (const uring of [true, false]) {
    const dir = path.join(root, `truncated-${uring}`);
    const mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt, { recursive: true });
    const tar = path.join(dir, 'image.tar');
    fs.writeFileSync(tar, await pack([{ name: 'pattern', body: LOWER, mode: 0o644 }]));
    const stats = await serveInstance(t, [mnt, tar, '-', '-'], uring ? { TARSTACK_URING: '1' } : {});
    const file = path.join(mnt, 'pattern');
    const fd = fs.openSync(file, 'r');
    try {
      const b = Buffer.alloc(4096);
      t.is(fs.readSync(fd, b, 0, 4096, 0), 4096); // registers the member for direct reads
      t.true(b.equals(LOWER.subarray(0, 4096)));
      const s0 = await stats();
      // The member's data starts at 512 (one header): cut 100 bytes into its second MiB.
      fs.truncateSync(tar, 512 + MiB + 100);
      dropCache(tar);
      for (const at of [MiB, 2 * MiB]) { // a READ straddling the new end (short), one past it (0 bytes)
        t.throws(() => fs.readSync(fd, b, 0, 4096, at), { code: 'EIO' }, `${uring ? 'ring' : '/dev/fuse'}: read at ${at}`);
      }
      const s1 = await stats();
      t.is(s1.uring, uring);
      if (uring) t.true(s1.uringBroken - s0.uringBroken >= 2, `chains broke (${s1.uringBroken - s0.uringBroken})`);
    } finally {
      fs.closeSync(fd);
    }
  }
});

uringTest('enable_uring Y without TARSTACK_URING, and TARSTACK_URING=1 with enable_uring N: /dev/fuse as before', async (t) => {
  setUring(true);
  const plain = await serve(t, undefined, { TARSTACK_PASSTHROUGH: '0' });
  setUring(false);
  const off = await serve(t, undefined, { TARSTACK_URING: '1', TARSTACK_PASSTHROUGH: '0' });
  for (const m of [plain, off]) {
    exercise(m);
    const s = await m.stats();
    t.false(s.uring);
    t.is(s.uringRequests + s.uringReads, 0, 'nothing came through a ring');
    t.true(s.ops[OP.WRITE]! >= 5, 'the writes came through /dev/fuse');
  }
});

uringTest('`status` lists io_uring for a CLI mount that uses it', async (t) => {
  setUring(true);
  const dir = path.join(root, 'cli');
  fs.mkdirSync(dir, { recursive: true });
  const tar = path.join(dir, 'lower.tar');
  fs.writeFileSync(tar, await pack([{ name: 'f', body: 'x\n' }]));
  const saved = process.env.TARSTACK_URING;
  process.env.TARSTACK_URING = '1'; // the CLI starts the mount server, which inherits it
  let m;
  try {
    m = await mount(t, path.join(dir, 'i'), { kind: 'instance', lowers: [tar] });
  } finally {
    if (saved === undefined) delete process.env.TARSTACK_URING;
    else process.env.TARSTACK_URING = saved;
  }
  t.is(fs.readFileSync(path.join(m.root, 'f'), 'latin1'), 'x\n');
  const st = await m.cli(['status', '--json']);
  t.is(st.code, 0, st.stderr);
  const rows = JSON.parse(st.stdout) as Array<{ mountpoint: string; features: string[] }>;
  t.true(rows.find((r) => r.mountpoint === m.root)?.features.includes('io_uring'));
  t.regex((await m.cli(['status'])).stdout, /kernel FUSE features: .*io_uring/);
});
