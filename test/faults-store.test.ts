// The store under faults (issue 6): the upper's disk fills up (a tmpfs with size=): writes fail with
// ENOSPC, a copy-up that cannot fit leaves nothing behind, earlier data stays, and everything works
// again once space is freed. Store metadata truncated or hand-edited: every command either works or
// says so in one line naming the file; no instance is silently dropped.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { InstanceSession, instanceSkipReason, stderrLines } from './helpers/instances.js';
import { makeTestRoot, removeTestRoot } from './helpers/mounted.js';
import { exec, execOk } from './helpers/exec.js';

const skipReason = await instanceSkipReason();
if (skipReason) test.skip(`store fault suite skipped: ${skipReason}`, () => undefined);
const serial = (title: string, fn: (t: ExecutionContext) => Promise<void>) => skipReason || test.serial(title, fn);

const root = skipReason ? '' : makeTestRoot('faults-store');
test.after.always(() => removeTestRoot(root));

const LOWER = Buffer.alloc(3 << 20, 'lower-bytes.');
let seq = 0;

function imageTar(dir: string): string {
  const src = path.join(dir, 'src');
  fs.mkdirSync(src, { recursive: true });
  fs.writeFileSync(path.join(src, 'lower'), LOWER);
  fs.writeFileSync(path.join(src, 'small'), 'small lower file\n');
  execOk(['tar', '-cf', path.join(dir, 'img.tar'), '-C', src, '.']);
  return path.join(dir, 'img.tar');
}

const errno = (f: () => unknown): string => {
  try {
    f();
    return 'ok';
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? String(e);
  }
};

serial('a full upper disk: ENOSPC, nothing half-copied, earlier data intact, fine again once space is freed', async (t) => {
  const dir = path.join(root, `s${++seq}`);
  const store = path.join(dir, 'store');
  fs.mkdirSync(store, { recursive: true });
  const tar = imageTar(dir);
  execOk(['mount', '-t', 'tmpfs', '-o', 'size=16m', 'tarstack-enospc', store]);
  t.teardown(() => void exec(['umount', '-l', store])); // after the session's own cleanup (teardowns run in reverse)
  const s = new InstanceSession(dir, t);
  await s.addImage(tar, 'img');
  await s.create('i', 'img');
  const mnt = await s.mountInstance('i');
  const keep = Buffer.alloc(1 << 20, 'keep.');
  fs.writeFileSync(path.join(mnt, 'keep'), keep);
  // Fill the disk through the mount.
  const fill = exec(['dd', 'if=/dev/zero', `of=${path.join(mnt, 'fill')}`, 'bs=1M', 'count=64']);
  t.not(fill.code, 0);
  t.regex(fill.stderr, /No space left on device/);
  t.is(errno(() => fs.appendFileSync(path.join(mnt, 'keep'), Buffer.alloc(1 << 20))), 'ENOSPC');
  // A copy-up that cannot fit: the lower file still reads whole and unchanged, no temp copy stays.
  t.is(errno(() => fs.appendFileSync(path.join(mnt, 'small'), 'more\n'.repeat(2000))), 'ENOSPC');
  const fd = fs.openSync(path.join(mnt, 'lower'), 'r+'); // lazy: no data copied yet, so it fits
  t.is(errno(() => fs.writeSync(fd, Buffer.from('X'), 0, 1, 1_500_000)), 'ENOSPC');
  fs.closeSync(fd);
  t.true(fs.readFileSync(path.join(mnt, 'lower')).equals(LOWER), 'the lower file is intact');
  t.is(fs.readFileSync(path.join(mnt, 'small'), 'utf8'), 'small lower file\n');
  t.true(fs.readFileSync(path.join(mnt, 'keep')).subarray(0, keep.length).equals(keep), 'earlier data intact');
  // Space back: everything works again, and survives a remount.
  fs.unlinkSync(path.join(mnt, 'fill'));
  fs.writeFileSync(path.join(mnt, 'keep'), keep);
  fs.appendFileSync(path.join(mnt, 'small'), 'more\n');
  const fd2 = fs.openSync(path.join(mnt, 'lower'), 'r+');
  fs.writeSync(fd2, Buffer.from('X'), 0, 1, 1_500_000);
  fs.closeSync(fd2);
  await s.umountInstance('i', mnt);
  const work = fs.readdirSync(path.join(store, 'instances')).map((id) => path.join(store, 'instances', id, 'work', 'tmp'));
  t.deepEqual(work.flatMap((w) => fs.readdirSync(w)), [], 'no temp copies left');
  const at = await s.mountInstance('i');
  const expect = Buffer.from(LOWER);
  expect[1_500_000] = 'X'.charCodeAt(0);
  t.true(fs.readFileSync(path.join(at, 'lower')).equals(expect));
  t.is(fs.readFileSync(path.join(at, 'small'), 'utf8'), 'small lower file\nmore\n');
  t.true(fs.readFileSync(path.join(at, 'keep')).equals(keep));
  await s.umountInstance('i', at);
  const diff = (await s.ok(['diff', 'i', '--porcelain'])).stdout.split('\n').filter(Boolean).sort();
  t.deepEqual(diff, ['A keep', 'M lower', 'M small']);
});

/** Every command either works (then listing every instance) or fails in one line naming `file`. */
async function judge(t: ExecutionContext, s: InstanceSession, file: string, what: string): Promise<void> {
  for (const args of [['list'], ['info', 'b'], ['mount', 'b']]) {
    const r = await s.cli(args);
    const label = `${what}: tarstack ${args.join(' ')}`;
    if (r.code === 0) {
      if (args[0] === 'list') t.true(r.stdout.includes('"a"') || /^a\s/m.test(r.stdout), `${label} lists a`);
      if (args[0] === 'list') t.true(r.stdout.includes('"b"') || /^b\s/m.test(r.stdout), `${label} lists b`);
      if (args[0] === 'mount') await s.ok(['umount', 'b']);
      continue;
    }
    t.is(stderrLines(r).length, 1, `${label}: one line, got ${r.stderr}`);
    t.true(r.stderr.includes(file), `${label} names ${file}: ${r.stderr}`);
    t.notRegex(r.stderr, /^\s+at /m, `${label}: no stack trace`);
  }
}

serial('store metadata truncated or edited into nonsense: one line naming the file, never a silent drop', async (t) => {
  const dir = path.join(root, `s${++seq}`);
  const s = new InstanceSession(dir, t);
  await s.addImage(imageTar(dir), 'img');
  await s.create('a', 'img');
  await s.create('b', 'img');
  const id = (name: string) => fs.readdirSync(path.join(s.home, 'instances')).find((x) => fs.readFileSync(path.join(s.home, 'instances', x, 'instance.json'), 'utf8').includes(`"name": "${name}"`))!;
  const instJson = path.join(s.home, 'instances', id('a'), 'instance.json');
  const imageDir = path.join(s.home, 'images', fs.readdirSync(path.join(s.home, 'images'))[0]!);
  const cases: Array<[string, string, (text: string) => string]> = [
    ['instance.json truncated', instJson, (x) => x.slice(0, x.length >> 1)],
    ['instance.json edited', instJson, () => '{"version": 1, "id": 7, "name": ["a"]}\n'],
    ['image.json truncated', path.join(imageDir, 'image.json'), (x) => x.slice(0, 40)],
    ['image.json edited', path.join(imageDir, 'image.json'), (x) => x.replace(/"nodes": \d+/, '"nodes": "many"')],
    ['index truncated', path.join(imageDir, 'index'), (x) => x.slice(0, 100)],
  ];
  for (const [what, file, damage] of cases) {
    const good = fs.readFileSync(file, 'latin1');
    fs.writeFileSync(file, damage(good), 'latin1');
    await judge(t, s, file, what);
    fs.writeFileSync(file, good, 'latin1');
  }
  // A mount record edited by hand while mounted.
  await s.mountInstance('b');
  const rec = path.join(s.home, 'run', 'mounts', fs.readdirSync(path.join(s.home, 'run', 'mounts'))[0]!);
  const good = fs.readFileSync(rec, 'utf8');
  fs.writeFileSync(rec, '{"version": 1, "pid": "x"');
  for (const args of [['status'], ['list']]) {
    const r = await s.cli(args);
    if (r.code !== 0) t.true(stderrLines(r).length === 1 && r.stderr.includes(rec), `mount record: ${args.join(' ')}: ${r.stderr}`);
  }
  fs.writeFileSync(rec, good);
  await s.umountInstance('b', path.join(s.root, 'mnt-b'));
  const names = (JSON.parse((await s.ok(['list', '--json'])).stdout) as Array<{ name: string }>).map((x) => x.name);
  t.deepEqual(names, ['a', 'b'], 'nothing was dropped');
});
