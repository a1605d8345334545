// Instances with limits, end to end: `create --tmp` and `mount --tmp` (changes vanish at unmount,
// the instance's own upper untouched), `create --size` (ENOSPC past the limit with what came before
// intact, metadata-only changes still work when full, df shows the limit and the use, `info` the
// use as counted again), and `create --dir` (directories owned by the calling user).
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { assertOneLineError } from './helpers/instances.js';
import { execOk } from './helpers/exec.js';
import { instanceSkipReason, StackSession, suiteRoot } from './helpers/stacks.js';
import { compareTrees, snapshotTree } from './helpers/tree.js';

const skipReason = await instanceSkipReason();
if (skipReason) test.skip(`instance limits suite skipped: ${skipReason}`, () => undefined);
const serial = (title: string, fn: (t: ExecutionContext) => Promise<void>) => skipReason || test.serial(title, fn);
const suite = suiteRoot('instance-limits', test, skipReason);

let seq = 0;
async function session(t: ExecutionContext): Promise<StackSession> {
  const s = new StackSession(path.join(suite.root, `s${++seq}`), t);
  await s.addImage(suite.image.tar, 'img');
  return s;
}

serial('--tmp: changes vanish at unmount (create --tmp, and mount --tmp of a kept instance)', async (t) => {
  const s = await session(t);
  await s.ok(['create', 'scratch', 'img', '--tmp']);
  await s.withInstance('scratch', (d) => {
    fs.writeFileSync(path.join(d, 'gone'), 'only while mounted\n');
    fs.rmSync(path.join(d, 'd1'), { recursive: true });
  });
  await s.withInstance('scratch', (d) => t.deepEqual(compareTrees(suite.image.pristine, snapshotTree(d)), [], 'remounted: the image again'));
  await s.create('kept', 'img');
  await s.withInstance('kept', (d) => fs.writeFileSync(path.join(d, 'kept'), 'persistent\n'));
  const dir = path.join(s.root, 'tmp-mount');
  fs.mkdirSync(dir);
  await s.ok(['mount', 'kept', dir, '--tmp']);
  t.true(fs.existsSync(path.join(dir, 'kept')), 'a --tmp mount starts from the instance as it is');
  fs.writeFileSync(path.join(dir, 'kept'), 'changed for a while\n');
  fs.writeFileSync(path.join(dir, 'scratch'), 'for a while\n');
  await s.umountInstance('kept', dir);
  await s.withInstance('kept', (d) => {
    t.is(fs.readFileSync(path.join(d, 'kept'), 'utf8'), 'persistent\n', 'the --tmp changes are gone');
    t.false(fs.existsSync(path.join(d, 'scratch')));
  });
  const info = await s.json<{ tmp: boolean; upper: string }>(['info', 'scratch']);
  t.true(info.tmp);
  t.false(fs.existsSync(path.join(path.dirname(info.upper), 'tmp-sessions')), 'the throwaway upper was removed');
});

serial('--size: ENOSPC past the limit, data before intact, metadata changes need no space, df and info show it', async (t) => {
  const s = await session(t);
  assertOneLineError(t, await s.cli(['create', 'bad', 'img', '--size', 'lots']), 'an unreadable size');
  await s.ok(['create', 'small', 'img', '--size', '1M']);
  const dir = await s.mountInstance('small');
  const df = () => execOk(['df', '-B1', '--output=size,used,avail', dir]).stdout.toString().trim().split('\n')[1]!.trim().split(/\s+/).map(Number);
  t.is(df()[0], 1024 * 1024, 'df: the size is the limit');
  const chunk = Buffer.alloc(256 * 1024, 7);
  const fd = fs.openSync(path.join(dir, 'fill'), 'w');
  let written = 0;
  let error: NodeJS.ErrnoException | undefined;
  try {
    for (let i = 0; i < 8; i++) written += fs.writeSync(fd, chunk);
  } catch (err) {
    error = err as NodeJS.ErrnoException;
  } finally {
    fs.closeSync(fd);
  }
  t.is(error?.code, 'ENOSPC', 'a write past the limit fails with ENOSPC');
  t.true(written >= 768 * 1024 && written <= 1024 * 1024, `what fit was written (${written} bytes)`);
  t.true(fs.readFileSync(path.join(dir, 'fill')).equals(Buffer.alloc(written, 7)), 'everything written before is intact');
  t.true(df()[2]! < 256 * 1024, `df: little left (${df()[2]})`);
  // Full, and yet metadata-only changes of lower files work (copied up without their data).
  fs.chmodSync(path.join(dir, 'd1/big'), 0o600);
  fs.chownSync(path.join(dir, 'd2/b'), 1000, 1000);
  execOk(['setfattr', '-n', 'user.m', '-v', 'x', path.join(dir, 'd1/a')]);
  fs.utimesSync(path.join(dir, 'f1'), 1, 2);
  fs.mkdirSync(path.join(dir, 'newdir'));
  t.is(fs.statSync(path.join(dir, 'd1/big')).size, 1_258_291, 'd1/big still reads whole');
  t.throws(() => fs.appendFileSync(path.join(dir, 'd2/b'), Buffer.alloc(300 * 1024)), { code: 'ENOSPC' }, 'but a data change of one does not fit');
  await s.umountInstance('small', dir);
  const info = await s.json<{ sizeLimit: number; dataBytes: number }>(['info', 'small']);
  t.is(info.sizeLimit, 1024 * 1024);
  t.true(info.dataBytes >= written && info.dataBytes <= 1024 * 1024, `info: ${info.dataBytes} bytes used`);
  fs.writeFileSync(path.join(path.dirname(await s.json<{ upper: string }>(['info', 'small']).then((i) => i.upper)), 'upper', 'offline'), Buffer.alloc(200 * 1024, 1));
  await s.withInstance('small', (d) => {
    t.is(df()[2], 0, 'the use is counted again at mount: what was added offline fills it');
    t.throws(() => fs.writeFileSync(path.join(d, 'more'), Buffer.alloc(64 * 1024)), { code: 'ENOSPC' });
    fs.rmSync(path.join(d, 'fill'));
    fs.writeFileSync(path.join(d, 'again'), Buffer.alloc(512 * 1024, 3));
    t.is(fs.statSync(path.join(d, 'again')).size, 512 * 1024, 'space freed by rm can be used again');
  }, dir);
});

serial('--dir: directories made in the instance, owned by the calling user', async (t) => {
  const s = await session(t);
  await s.ok(['create', 'dirs', 'img', '--dir', '/var/cache/app', '--dir', 'd1/sub/inner', '--dir', 'e']);
  await s.withInstance('dirs', (d) => {
    for (const p of ['var/cache/app', 'd1/sub/inner', 'e']) {
      const st = fs.statSync(path.join(d, p));
      t.true(st.isDirectory(), p);
      t.deepEqual([st.uid, st.gid], [process.getuid!(), process.getgid!()], `${p} belongs to the caller`);
    }
    t.true(fs.existsSync(path.join(d, 'd1/sub/a')), 'the lower entries beside it still show');
  });
  assertOneLineError(t, await s.cli(['create', 'clash', 'img', '--dir', 'f1/x']), '--dir through a file');
  assertOneLineError(t, await s.cli(['create', 'up', 'img', '--dir', '../out']), '--dir with ..');
  t.deepEqual((await s.json<Array<{ name: string }>>(['list'])).map((i) => i.name), ['dirs'], 'a refused create leaves no instance');
});
