// The write side and the safety of the native binding, driven through lowlevel.ts directly by a
// tiny writable child (test/helpers/ll-child.ts): every op the next issue needs reaches JS with
// the right arguments (times with nanoseconds, one time alone, rename flags), and a handler that
// answers twice, throws, or never answers cannot crash the daemon or hang its teardown.
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { ChildMount, isMounted, makeTempDir, removeDir, startChild } from './helpers/mount-harness.js';
import { waitFor } from './helpers/children.js';
import * as ll from '../src/fuse/lowlevel.js';
import { loadAddon } from '../src/native/addon.js';

const CHILD = new URL('./helpers/ll-child.js', import.meta.url).pathname;
let base = '';
let mnt = '';
let m: ChildMount | undefined;

test.before(async () => {
  base = makeTempDir('tarstack-ll-');
  mnt = join(base, 'mnt');
  fs.mkdirSync(mnt);
  m = (await startChild(CHILD, mnt, [])).mount;
});

test.after.always(async () => {
  await m?.cleanup();
  removeDir(base);
});

const p = (...parts: string[]) => join(mnt, ...parts);
type Log = { op: string; [k: string]: unknown }[];
async function log(): Promise<Log> {
  return (await m!.ask('log')).log as Log;
}
function renameat2(from: string, to: string, flags: number): number {
  const py = 'import ctypes,sys; l=ctypes.CDLL(None,use_errno=True); r=l.renameat2(-100,sys.argv[1].encode(),-100,sys.argv[2].encode(),int(sys.argv[3])); sys.exit(0 if r==0 else ctypes.get_errno())';
  return spawnSync('python3', ['-c', py, from, to, String(flags)]).status ?? -1;
}

test('the addon and lowlevel.ts name the same scratch slots and flag bits, and a mismatch is refused', (t) => {
  const layout = (loadAddon() as { layout: ll.Layout }).layout;
  t.notThrows(() => ll.checkLayout(layout));
  t.is(ll.loadNative().scratch.length, ll.Slot.SCRATCH_LEN);
  const moved = { ...layout, slots: { ...layout.slots, ATTR_MODE: 7 } };
  t.throws(() => ll.checkLayout(moved), { message: /slots\.ATTR_MODE: ours 1, the addon's 7/ });
  const extra = { ...layout, openFlags: { ...layout.openFlags, NOFLUSH: 16 } };
  t.throws(() => ll.checkLayout(extra), { message: /openFlags\.NOFLUSH: ours undefined/ });
  t.throws(() => ll.checkLayout(undefined), { message: /rebuild/ });
});

test.serial('create, write, read back, mkdir, symlink, hard link', async (t) => {
  fs.writeFileSync(p('a.txt'), 'hello');
  fs.appendFileSync(p('a.txt'), ' world');
  t.is(fs.readFileSync(p('a.txt'), 'utf8'), 'hello world');
  const big = Buffer.alloc(3 << 20, 7);
  fs.writeFileSync(p('big'), big);
  t.true(fs.readFileSync(p('big')).equals(big));
  fs.mkdirSync(p('d'));
  fs.symlinkSync('../a.txt', p('d', 'ln'));
  t.is(fs.readlinkSync(p('d', 'ln')), '../a.txt');
  fs.linkSync(p('a.txt'), p('d', 'hard'));
  t.is(fs.statSync(p('a.txt')).nlink, 2);
  t.is(fs.statSync(p('d', 'hard')).ino, fs.statSync(p('a.txt')).ino);
  const created = (await log()).find((e) => e.op === 'create' && e.name === 'a.txt')!;
  t.is((created.mode as number) & 0o777, 0o666 & ~process.umask());
  t.is(created.umask, process.umask());
});

test.serial('setattr carries nanoseconds, one time alone, sizes and modes', async (t) => {
  execFileSync('touch', ['-d', '2001-02-03 04:05:06.123456789 UTC', p('a.txt')]);
  let st = fs.statSync(p('a.txt'), { bigint: true });
  t.is(st.mtimeNs, 981173106123456789n);
  t.is(st.atimeNs, 981173106123456789n);
  execFileSync('touch', ['-a', '-d', '2002-01-01 00:00:00.000000007 UTC', p('a.txt')]);
  st = fs.statSync(p('a.txt'), { bigint: true });
  t.is(st.atimeNs, 1009843200000000007n);
  t.is(st.mtimeNs, 981173106123456789n, 'mtime untouched by touch -a');
  execFileSync('touch', ['-m', '-d', '2003-01-01 00:00:00.5 UTC', p('a.txt')]);
  st = fs.statSync(p('a.txt'), { bigint: true });
  t.is(st.mtimeNs, 1041379200500000000n);
  t.is(st.atimeNs, 1009843200000000007n, 'atime untouched by touch -m');
  execFileSync('touch', [p('a.txt')]);
  fs.truncateSync(p('a.txt'), 3);
  t.is(fs.readFileSync(p('a.txt'), 'utf8'), 'hel');
  fs.chmodSync(p('a.txt'), 0o600);
  t.is(fs.statSync(p('a.txt')).mode & 0o7777, 0o600);
  const sets = (await log()).filter((e) => e.op === 'setattr').map((e) => e.toSet as number);
  const both = ll.SETATTR_ATIME | ll.SETATTR_MTIME;
  t.true(sets.some((f) => (f & both) === both), 'both times');
  t.true(sets.some((f) => (f & both) === ll.SETATTR_ATIME), 'atime alone');
  t.true(sets.some((f) => (f & both) === ll.SETATTR_MTIME), 'mtime alone');
  t.true(sets.some((f) => (f & (ll.SETATTR_ATIME_NOW | ll.SETATTR_MTIME_NOW)) === (ll.SETATTR_ATIME_NOW | ll.SETATTR_MTIME_NOW)), 'now');
  t.true(sets.some((f) => (f & ll.SETATTR_SIZE) !== 0), 'size');
  t.true(sets.some((f) => (f & ll.SETATTR_MODE) !== 0), 'mode');
});

test.serial('rename with and without flags', async (t) => {
  fs.writeFileSync(p('x'), 'x');
  fs.writeFileSync(p('y'), 'y');
  t.is(renameat2(p('x'), p('y'), 1), 17, 'RENAME_NOREPLACE onto an existing name is EEXIST (the VFS already knows)');
  t.is(renameat2(p('x'), p('w'), 1), 0, 'RENAME_NOREPLACE onto a free name');
  t.is(renameat2(p('w'), p('x'), 0), 0);
  t.is(renameat2(p('x'), p('y'), 2), 0, 'RENAME_EXCHANGE');
  t.is(fs.readFileSync(p('x'), 'utf8'), 'y');
  t.is(fs.readFileSync(p('y'), 'utf8'), 'x');
  fs.renameSync(p('x'), p('d', 'z'));
  t.is(fs.readFileSync(p('d', 'z'), 'utf8'), 'y');
  const flags = (await log()).filter((e) => e.op === 'rename').map((e) => e.flags);
  t.deepEqual(flags, [1, 0, 2, 0]);
});

test.serial('xattrs, mknod, fallocate, fsync, unlink, rmdir, statfs', async (t) => {
  execFileSync('setfattr', ['-n', 'user.k', '-v', 'v1', p('y')]);
  t.is(execFileSync('getfattr', ['--only-values', '-n', 'user.k', p('y')]).toString(), 'v1');
  execFileSync('setfattr', ['-x', 'user.k', p('y')]);
  t.not(spawnSync('getfattr', ['-n', 'user.k', p('y')]).status, 0);
  execFileSync('mkfifo', [p('fifo')]);
  t.true(fs.statSync(p('fifo')).isFIFO());
  execFileSync('fallocate', ['-l', '8192', p('y')]);
  t.is(fs.statSync(p('y')).size, 8192);
  t.not(spawnSync('fallocate', ['-p', '-o', '0', '-l', '10', p('y')]).status, 0, 'punching holes is refused');
  const fd = fs.openSync(p('y'), 'r+');
  fs.fsyncSync(fd);
  fs.fdatasyncSync(fd);
  fs.closeSync(fd);
  t.throws(() => fs.rmdirSync(p('d')), { code: 'ENOTEMPTY' });
  for (const f of ['ln', 'hard', 'z']) fs.unlinkSync(p('d', f));
  fs.rmdirSync(p('d'));
  t.false(fs.existsSync(p('d')));
  t.is(fs.statfsSync(mnt).bsize, 512);
  const l = await log();
  t.true(l.some((e) => e.op === 'mknod' && ((e.mode as number) & 0o170000) === 0o010000));
  const syncs = l.filter((e) => e.op === 'fsync').map((e) => e.datasync);
  t.true(syncs.includes(0) && syncs.includes(1), 'fsync and fdatasync');
  t.true(l.some((e) => e.op === 'fallocate' && e.mode !== 0));
});

test.serial('a double reply is refused and a throwing handler answers EIO', async (t) => {
  t.true(fs.statSync(p('twice')).isFile());
  const twice = (await log()).find((e) => e.op === 'twice')!;
  t.deepEqual([twice.first, twice.second, twice.err], [true, false, false]);
  t.throws(() => fs.statSync(p('throws')), { code: 'EIO' });
  t.true(fs.statSync(p('a.txt')).isFile(), 'still serving');
});

test.serial('ending with a request never answered: answered EIO, no crash, exit 0', async (t) => {
  const hanging = fs.promises.stat(p('hang'));
  await waitFor(async () => (await m!.ask('log')).pending !== 0); // the stat has reached the handler
  const ended = m!.next('ended');
  m!.child.send({ type: 'unmount' });
  const err = await hanging.then(() => undefined, (e: NodeJS.ErrnoException) => e.code);
  t.true(err === 'EIO' || err === 'ENOTCONN', String(err));
  const msg = await ended;
  t.deepEqual(msg.late, [false]);
  t.is(msg.errno, 0);
  t.is(await m!.exited, 0);
  t.false(isMounted(mnt));
});
