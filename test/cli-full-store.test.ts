// A store on a full disk (a small tmpfs, filled up): every command that needs room fails with one
// line naming the file it could not write and "no space left on device", leaves nothing half made,
// and once room is freed the next command works (the store lock is never left behind). Plus the
// words of the error funnel for the other system errors people meet.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { InstanceSession, instanceSkipReason, stderrLines } from './helpers/instances.js';
import { makeTestRoot, removeTestRoot } from './helpers/mount.js';
import { exec, execOk } from './helpers/exec.js';
import { seededBytes } from './helpers/bytes.js';
import { systemErrorText, writingTo } from '../src/util/error-funnel.js';
import { withLock } from '../src/store/lock.js';

const skipReason = await instanceSkipReason();
if (skipReason) test.skip(`full-store suite skipped: ${skipReason}`, () => undefined);
const serial = (title: string, fn: (t: ExecutionContext) => Promise<void>) => skipReason || test.serial(title, fn);

const root = skipReason ? '' : makeTestRoot('cli-full-store');
test.after.always(() => removeTestRoot(root));

/** Fill the filesystem at `dir` to the last block; returns the filler to remove. */
function fill(dir: string): string {
  const filler = path.join(dir, 'filler');
  const fd = fs.openSync(filler, 'w');
  const block = Buffer.alloc(4096, 1);
  try {
    for (;;) fs.writeSync(fd, block);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    fs.closeSync(fd);
  }
  return filler;
}

serial('a full store: one line naming the file and "no space left on device", nothing half made, fine once room is freed', async (t) => {
  const disk = path.join(root, 'disk');
  fs.mkdirSync(disk);
  execOk(['mount', '-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', disk]);
  t.teardown(() => void exec(['umount', '-l', disk]));
  const src = path.join(root, 'src');
  fs.mkdirSync(src);
  for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(src, `f${i}`), `file ${i}\n`);
  const small = path.join(root, 'small.tar');
  execOk(['tar', '-cf', small, '-C', src, '.']);
  fs.writeFileSync(path.join(src, 'big'), seededBytes(3 << 20, 1)); // larger than the disk, compressed or not
  const big = path.join(root, 'big.tar');
  execOk(['tar', '-cf', big, '-C', src, '.']);

  const s = new InstanceSession(path.join(disk, 'session'), t);
  const store = s.home;
  await s.addImage(small, 'img');
  await s.ok(['create', 'w', 'img']);
  await s.withInstance('w', (dir) => fs.writeFileSync(path.join(dir, 'changed'), 'a change\n'));
  const before = fs.readdirSync(path.join(store, 'images')).sort();
  // The store's server leaves 2 s after its last unmount, removing its files: room freed behind the
  // filler's back. Stop it now, so nothing but the commands below changes what the disk holds.
  await s.ok(['serve', '--stop']);

  // Room enough for a copy to start but not to finish; then no room at all.
  const refused = async (args: string[], what: string) => {
    const r = await s.cli(args);
    t.is(r.code, 1, `${what}: exit code (${r.stderr})`);
    t.is(stderrLines(r).length, 1, `${what}: one line, got:\n${r.stderr}`);
    t.regex(r.stderr, new RegExp(`^tarstack: cannot [a-z ]+ (\\S+ to )?${store}/\\S+: no space left on device \\(ENOSPC\\)\\n$`), what);
  };
  await refused(['image', 'add', big, '--name', 'copied', '--copy'], 'image add --copy');
  await refused(['image', 'add', big, '--name', 'seekable', '--recompress'], 'image add --recompress');
  const filler = fill(disk);
  await refused(['image', 'add', small, '--name', 'again'], 'image add');
  await refused(['commit', 'w', 'frozen'], 'commit');
  await refused(['create', 'w2', 'img'], 'create');
  t.deepEqual(fs.readdirSync(path.join(store, 'images')).sort(), before, 'no image half made (nor a staging directory left)');
  t.is(await withLock(path.join(store, 'lock'), () => 'free', { waitMs: 0 }), 'free', 'the store lock is not left held');

  fs.rmSync(filler);
  await s.ok(['create', 'w2', 'img']);
  await s.ok(['commit', 'w', 'frozen']);
  t.deepEqual((JSON.parse((await s.ok(['image', 'list', '--json'])).stdout) as Array<{ name: string }>).map((i) => i.name), ['frozen', 'img']);
});

test('system errors in words, with the file they were about', (t) => {
  const sys = (code: string, syscall: string, more: object = {}) => Object.assign(new Error(code), { code, syscall, ...more }) as NodeJS.ErrnoException & { code: string; syscall: string };
  t.is(systemErrorText(sys('EACCES', 'mkdir', { path: '/var/lib/x' })), 'cannot make the directory /var/lib/x: permission denied (EACCES)');
  t.is(systemErrorText(sys('ENOSPC', 'copyfile', { path: '/a.tar', dest: '/s/layer.tar' })), 'cannot copy /a.tar to /s/layer.tar: no space left on device (ENOSPC)');
  t.is(systemErrorText(sys('EROFS', 'open', { path: '/ro/f' })), 'cannot open /ro/f: read-only file system (EROFS)');
  t.is(systemErrorText(sys('EDQUOT', 'write', { path: '/q/f' })), 'cannot write /q/f: disk quota exceeded (EDQUOT)');
  t.is(systemErrorText(sys('ENOENT', 'scandir', { path: '/gone' })), 'cannot list /gone: no such file or directory (ENOENT)');
  t.is(systemErrorText(sys('ENOENT', 'spawn fusermount3', { path: 'fusermount3' })), 'cannot run fusermount3: no such file or directory (ENOENT)');
  t.is(systemErrorText(sys('EBADF', 'fstat')), 'cannot look at: bad file descriptor (EBADF)');
  // A write on a descriptor names no file: writingTo gives it the one being written, and only to writes.
  const thrown = (f: () => unknown) => t.throws(f) as unknown as NodeJS.ErrnoException;
  t.is(thrown(() => writingTo('/s/index', () => { throw sys('ENOSPC', 'write'); })).path, '/s/index');
  t.is(thrown(() => writingTo('/s/index', () => { throw sys('EIO', 'read'); })).path, undefined, 'a read is not the file being written');
  t.is(thrown(() => writingTo('/s/index', () => { throw sys('ENOSPC', 'write', { path: '/other' }); })).path, '/other', 'a named file stays named');
});
