// Instance commands given bad input: unknown instance or image, an instance already mounted, a busy
// mount (refused naming the pid; --lazy detaches), a non-empty or missing mount point, unsafe names,
// an image removed under an instance. Each: one `tarstack: ` line, non-zero exit, nothing lost.
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { assertOneLineError, InstanceSession, instanceSkipReason } from './helpers/instances.js';
import { buildModelImage, type ModelImage } from './helpers/model-image.js';
import { makeTestRoot, removeTestRoot, strayMounts } from './helpers/mounted.js';
import { compareTrees, snapshotTree } from './helpers/tree.js';
import { waitFor } from './helpers/children.js';

const skipReason = await instanceSkipReason();
if (skipReason) test.skip(`instance CLI error suite skipped: ${skipReason}`, () => undefined);
const serial = (title: string, fn: (t: ExecutionContext) => Promise<void>) => skipReason || test.serial(title, fn);

const root = skipReason ? '' : makeTestRoot('instance-errors');
let image: ModelImage;
test.before(() => {
  if (!skipReason) image = buildModelImage(path.join(root, 'image'));
});
test.after.always(() => removeTestRoot(root));

let seq = 0;
/** A session with image `img` and instance `a` holding one change (the file `kept`). */
async function withChangedInstance(t: ExecutionContext): Promise<{ s: InstanceSession; dir: string }> {
  const s = new InstanceSession(path.join(root, `s${++seq}`), t);
  await s.addImage(image.tar, 'img');
  await s.create('a', 'img');
  const dir = await s.mountInstance('a');
  fs.writeFileSync(path.join(dir, 'kept'), 'a change that must survive every refused command\n');
  return { s, dir };
}

/** The instance still shows what it showed before (its change included), mounted at dir. */
function unchanged(t: ExecutionContext, dir: string, before: ReturnType<typeof snapshotTree>, what: string): void {
  t.is(strayMounts(dir).length, 1, `${what}: still mounted once at ${dir}`);
  t.deepEqual(compareTrees(before, snapshotTree(dir)), [], `${what}: nothing lost`);
}

serial('unknown instance or image, name taken: one line each', async (t) => {
  const { s, dir } = await withChangedInstance(t);
  await s.create('b', 'img');
  const before = snapshotTree(dir);
  for (const args of [['mount', 'nosuch'], ['umount', 'nosuch'], ['reset', 'nosuch'], ['rm', 'nosuch'], ['diff', 'nosuch'], ['info', 'nosuch'],
    ['rename', 'nosuch', 'other'], ['instance', 'create', 'x', 'nosuch-image'], ['instance', 'create', 'a', 'img'], ['rename', 'b', 'a']]) {
    assertOneLineError(t, await s.cli(args), args.join(' '));
  }
  unchanged(t, dir, before, 'after the unknown names');
  t.false(fs.readdirSync(s.root).some((n) => n === 'x' || n === 'other'), 'nothing created beside the store');
});

serial('instance already mounted: a second mount is refused, the first keeps serving', async (t) => {
  const { s, dir } = await withChangedInstance(t);
  const before = snapshotTree(dir);
  const second = path.join(s.root, 'second');
  fs.mkdirSync(second);
  assertOneLineError(t, await s.cli(['mount', 'a', second]), 'mount at a second dir');
  assertOneLineError(t, await s.cli(['mount', 'a']), 'mount at the default dir');
  assertOneLineError(t, await s.cli(['mount', 'a', dir]), 'mount at the same dir');
  t.deepEqual(strayMounts(second), [], 'nothing mounted at the second dir');
  unchanged(t, dir, before, 'after the second mounts');
});

serial('busy mount: umount, reset and rm refuse naming the pid; --lazy detaches; nothing lost', async (t) => {
  const { s, dir } = await withChangedInstance(t);
  const before = snapshotTree(dir);
  const sleeper = spawn('sleep', ['600'], { cwd: path.join(dir, 'd1'), stdio: 'ignore' });
  const pid = sleeper.pid!;
  t.teardown(() => void sleeper.kill('SIGKILL')); // the one process this test started
  for (const args of [['umount', 'a'], ['umount', dir], ['reset', 'a'], ['rm', 'a']]) {
    const r = await s.cli(args);
    assertOneLineError(t, r, `${args.join(' ')} while busy`);
    t.regex(r.stderr, new RegExp(`\\b${pid}\\b`), `${args.join(' ')}: names the pid holding the mount`);
  }
  unchanged(t, dir, before, 'after the refusals');
  await s.ok(['umount', '--lazy', 'a']);
  t.deepEqual(strayMounts(dir), [], 'umount --lazy detaches the mount');
  t.true(fs.existsSync(`/proc/${pid}/cwd`) && fs.readdirSync(`/proc/${pid}/cwd`).includes('a'), 'its user still reads the old tree');
  sleeper.kill('SIGKILL');
  await new Promise((r) => sleeper.once('exit', r));
  // the instance is released once its last user leaves: retried until it is (a refusal changes nothing)
  const mounted = await waitFor(async () => (await s.cli(['mount', 'a', dir])).code === 0 && dir, 100);
  t.truthy(mounted, 'the instance mounts again once its last user left');
  if (mounted) unchanged(t, dir, before, 'after lazy umount and remount');
});

serial('mount point non-empty or missing: refused, its files untouched', async (t) => {
  const { s, dir } = await withChangedInstance(t);
  await s.umountInstance('a', dir);
  const full = path.join(s.root, 'full');
  fs.mkdirSync(full);
  fs.writeFileSync(path.join(full, 'mine'), 'the user\'s file\n');
  assertOneLineError(t, await s.cli(['mount', 'a', full]), 'mount on a non-empty dir');
  t.deepEqual(strayMounts(full), []);
  t.deepEqual(fs.readdirSync(full), ['mine']);
  t.is(fs.readFileSync(path.join(full, 'mine'), 'utf8'), 'the user\'s file\n');
  assertOneLineError(t, await s.cli(['mount', 'a', path.join(s.root, 'no', 'such', 'dir')]), 'mount on a missing dir');
  await s.withInstance('a', (d) => t.true(fs.existsSync(path.join(d, 'kept'))), dir);
});

serial('unsafe instance names are refused and create nothing anywhere', async (t) => {
  const { s, dir } = await withChangedInstance(t);
  await s.umountInstance('a', dir);
  const listing = async () => ({ around: fs.readdirSync(root).sort(), session: fs.readdirSync(s.root).sort(), list: (await s.ok(['list', '--json'])).stdout });
  const before = await listing();
  for (const name of ['../x', 'a/b', '..', '.', '', '/abs', 'x\ny']) {
    assertOneLineError(t, await s.cli(['instance', 'create', name, 'img']), `create ${JSON.stringify(name)}`);
    assertOneLineError(t, await s.cli(['rename', 'a', name]), `rename a to ${JSON.stringify(name)}`);
  }
  t.deepEqual(await listing(), before, 'nothing new beside the test\'s dirs or the store, list --json unchanged');
  await s.withInstance('a', (d) => t.true(fs.existsSync(path.join(d, 'kept'))), dir);
});

serial('image rm is refused while an instance uses it, mounted or not', async (t) => {
  const { s, dir } = await withChangedInstance(t);
  assertOneLineError(t, await s.cli(['image', 'rm', 'img']), 'image rm while the instance is mounted');
  await s.umountInstance('a', dir);
  assertOneLineError(t, await s.cli(['image', 'rm', 'img']), 'image rm while an instance exists');
  await s.withInstance('a', (d) => {
    t.true(fs.existsSync(path.join(d, 'kept')), 'the instance keeps its change');
    t.true(fs.readFileSync(path.join(d, 'd1/big')).length > 1_000_000, 'and still reads the image');
  }, dir);
  await s.ok(['rm', 'a']);
  await s.ok(['image', 'rm', 'img']);
});
