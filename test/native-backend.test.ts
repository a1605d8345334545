// End-to-end tests of the native libfuse3 backend: a child process serves the toy tree and this
// process checks it with ordinary fs calls, then checks the kernel's reference balance and a clean
// unmount. Tests run in order on one mount; teardown never leaves a mount behind.
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { ChildMount, isMounted, makeTempDir, removeDir, startChild } from './helpers/mount-harness.js';
import { waitFor } from './helpers/children.js';
import { BIG_POS, BIG_SIZE, MANY, SPARSE_EXTENTS, SPARSE_SIZE } from './helpers/toy-tree.js';

const CHILD = new URL('./helpers/toy-child.js', import.meta.url).pathname;
const isRoot = process.getuid?.() === 0;

let base = '';
let mnt = '';
let backing: Buffer;
let inos: Record<string, number> = {};
let m: ChildMount | undefined;

test.before(async () => {
  base = makeTempDir('tarstack-native-');
  mnt = join(base, 'mnt');
  fs.mkdirSync(mnt);
  backing = randomBytes(BIG_POS + BIG_SIZE + 4096);
  fs.writeFileSync(join(base, 'backing'), backing);
  const started = await startChild(CHILD, mnt, [join(base, 'backing')], { TOY_SESSION: process.env.TOY_SESSION ?? '{}' });
  m = started.mount;
  inos = started.ready.inos as Record<string, number>;
});

test.after.always(async () => {
  await m?.cleanup();
  removeDir(base);
});

const p = (...parts: string[]) => join(mnt, ...parts);

function expectErrno(t: import('ava').ExecutionContext, code: string, fn: () => unknown): void {
  const err = t.throws(fn);
  t.is((err as NodeJS.ErrnoException | undefined)?.code, code);
}

test.serial('readdir gives names with their types', (t) => {
  const root = fs.readdirSync(mnt, { withFileTypes: true });
  const byName = new Map(root.map((d) => [d.name, d]));
  t.true(byName.get('hello.txt')?.isFile());
  t.true(byName.get('dir')?.isDirectory());
  t.true(byName.get('many')?.isDirectory());
  const dir = fs.readdirSync(p('dir'), { withFileTypes: true });
  t.true(dir.find((d) => d.name === 'link-to-hello')?.isSymbolicLink());
  const raw = fs.readdirSync(mnt, { encoding: 'buffer' });
  t.true(raw.some((b) => b.equals(Buffer.from([0x63, 0x61, 0x66, 0xe9]))), 'the byte 0xe9 survives');
  const many = fs.readdirSync(p('many'));
  t.is(many.length, MANY);
  t.is(new Set(many).size, MANY);
});

test.serial('stat shows 64-bit inode numbers, nanoseconds, owners and link counts', (t) => {
  const st = fs.statSync(p('hello.txt'), { bigint: true });
  t.is(st.ino, BigInt(inos.hello!));
  t.true(st.ino > 2n ** 32n);
  const nsec = BigInt((inos.hello! % 1_000_000_000) | 1);
  t.is(st.mtimeNs, 1_700_000_000n * 1_000_000_000n + nsec);
  t.is(st.ctimeNs, 1_700_000_001n * 1_000_000_000n + 999_999_999n);
  t.is(st.atimeNs, 1_600_000_000n * 1_000_000_000n + 1n);
  t.is(st.size, 12n);
  t.is(st.uid, 1234n);
  t.is(st.gid, 5678n);
  t.is(st.mode, BigInt(0o100644));
  const h1 = fs.statSync(p('hard1'), { bigint: true });
  const h2 = fs.statSync(p('hard2'), { bigint: true });
  t.is(h1.ino, h2.ino);
  t.is(h1.nlink, 2n);
  t.is(fs.statSync(p('dir')).nlink, 3);
  t.is(fs.statSync(p('sparse.bin')).blocks, Math.ceil((65536 + 100_000 + 4096) / 512));
});

test.serial('reads at many offsets and sizes match the backing file', (t) => {
  const want = backing.subarray(BIG_POS, BIG_POS + BIG_SIZE);
  t.true(fs.readFileSync(p('big.bin')).equals(want));
  const fd = fs.openSync(p('big.bin'), 'r');
  try {
    const sizes = [1, 100, 4096, 65536, 131072, 1 << 20, 3 << 20];
    for (let i = 0; i < 60; i++) {
      const len = sizes[i % sizes.length]!;
      const pos = Math.floor(Math.random() * (BIG_SIZE + 1000));
      const buf = Buffer.alloc(len);
      const got = fs.readSync(fd, buf, 0, len, pos);
      const exp = want.subarray(Math.min(pos, BIG_SIZE), Math.min(pos + len, BIG_SIZE));
      t.is(got, exp.length);
      if (!buf.subarray(0, got).equals(exp)) t.fail(`bytes differ at ${pos}+${len}`);
    }
  } finally {
    fs.closeSync(fd);
  }
  t.is(fs.readFileSync(p('hello.txt'), 'utf8'), 'hello world\n');
  const hfd = fs.openSync(p('hello.txt'), 'r');
  const b = Buffer.alloc(5);
  t.is(fs.readSync(hfd, b, 0, 5, 1), 5); // offset 1: the toy answers this one asynchronously
  fs.closeSync(hfd);
  t.is(b.toString(), 'ello ');
  t.is(fs.readFileSync(p('empty')).length, 0);
});

test.serial('sparse files read zeros in holes and data in extents', (t) => {
  const want = Buffer.alloc(SPARSE_SIZE);
  for (const [off, len, pos] of SPARSE_EXTENTS) backing.copy(want, off, pos, pos + len);
  t.true(fs.readFileSync(p('sparse.bin')).equals(want));
  const fd = fs.openSync(p('sparse.bin'), 'r');
  try {
    for (const [off, len] of SPARSE_EXTENTS) {
      for (const at of [off - 1000, off + len - 1000]) {
        if (at < 0) continue;
        const buf = Buffer.alloc(5000);
        const got = fs.readSync(fd, buf, 0, 5000, at);
        t.true(buf.subarray(0, got).equals(want.subarray(at, at + got)), `across ${at}`);
      }
    }
  } finally {
    fs.closeSync(fd);
  }
});

test.serial('symlinks resolve and read back', (t) => {
  t.is(fs.readlinkSync(p('dir', 'link-to-hello')), '../hello.txt');
  t.is(fs.readFileSync(p('dir', 'link-to-hello'), 'utf8'), 'hello world\n');
  t.true(fs.lstatSync(p('dir', 'link-to-hello')).isSymbolicLink());
  t.is(fs.readFileSync(p('dir', 'nested', 'deep.txt'), 'utf8'), 'deep\n');
});

test.serial('xattrs list, read, and report absent names', (t) => {
  const dump = execFileSync('getfattr', ['-d', '-m', '-', p('hello.txt')], { encoding: 'utf8' });
  t.regex(dump, /user\.color="blue"/);
  t.regex(dump, /user\.big="a{1000}"/);
  const value = execFileSync('getfattr', ['--only-values', '-n', 'user.color', p('hello.txt')]);
  t.is(value.toString(), 'blue');
  const missing = spawnSync('getfattr', ['-n', 'user.nope', p('hello.txt')], { encoding: 'utf8' });
  t.not(missing.status, 0);
  t.regex(missing.stderr, /No such attribute/);
  t.is(execFileSync('getfattr', ['-d', p('empty')], { encoding: 'utf8' }), '');
});

test.serial('statfs reports what the filesystem says', (t) => {
  const s = fs.statfsSync(mnt);
  t.is(s.bsize, 4096);
  t.is(s.blocks, 1000);
  t.true(s.files > MANY);
});

test.serial('bad calls fail with the right errno', (t) => {
  expectErrno(t, 'ENOENT', () => fs.statSync(p('nope')));
  expectErrno(t, 'ENOENT', () => fs.statSync(p('nope'))); // now from the kernel's negative entry
  expectErrno(t, 'ENOTDIR', () => fs.statSync(p('hello.txt', 'x')));
  expectErrno(t, 'ENOTDIR', () => fs.readdirSync(p('hello.txt')));
  expectErrno(t, 'EISDIR', () => fs.readFileSync(p('dir')));
  expectErrno(t, 'EROFS', () => fs.writeFileSync(p('new'), 'x'));
  expectErrno(t, 'EROFS', () => fs.openSync(p('hello.txt'), 'r+'));
  expectErrno(t, 'EROFS', () => fs.mkdirSync(p('newdir')));
  expectErrno(t, 'EROFS', () => fs.unlinkSync(p('hello.txt')));
  expectErrno(t, 'EINVAL', () => fs.readlinkSync(p('hello.txt')));
});

test.serial('invalidation makes the kernel see changes it cached for a day', async (t) => {
  t.is(fs.readFileSync(p('hello.txt'), 'utf8'), 'hello world\n');
  t.true(fs.existsSync(p('empty')));
  await m!.ask('mutate', 'mutated');
  t.is(fs.readFileSync(p('hello.txt'), 'utf8'), 'hello world\n', 'page cache and attributes kept');
  t.true(fs.existsSync(p('empty')), 'entry kept');
  const r = await m!.ask('invalidate', 'invalidated');
  t.deepEqual(r.results, [0, 0]);
  t.is(fs.readFileSync(p('hello.txt'), 'utf8'), 'HELLO WORLD\n');
  t.false(fs.existsSync(p('empty')));
});

test.serial('every kernel reference is given back when the kernel drops its caches', async (t) => {
  if (!isRoot) return t.pass('dropping caches needs root');
  const before = await m!.ask('stats');
  t.true((before.refs as number) > 0, 'the walk took references (readdirplus entries count, through lookup)');
  fs.writeFileSync('/proc/sys/vm/drop_caches', '2');
  // Forgets arrive in batches; the kernel sends them all, however long a busy machine takes.
  const after = await waitFor(async () => {
    const s = await m!.ask('stats');
    return s.refs === 0 ? s : undefined;
  }, 100);
  t.is(after.refs, 0, `still held: ${JSON.stringify(after.held)}`);
});

test.serial('fusermount3 -u ends the session and the child exits 0', async (t) => {
  fs.statSync(p('dir', 'nested', 'deep.txt')); // hold a few references across the unmount
  const ended = m!.next('ended');
  execFileSync('fusermount3', ['-u', mnt]);
  const msg = await ended;
  t.true(msg.destroyed as boolean, 'FileSystem.destroy ran');
  // The kernel sends no FORGET at unmount (it tears the connection down first), so whatever
  // it still held stays counted here: only the three names just looked up.
  t.true((msg.refs as number) <= 3);
  t.is(await m!.exited, 0);
  t.false(isMounted(mnt));
});
