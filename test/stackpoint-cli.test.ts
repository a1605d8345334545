// Stackpoints end to end through real mounts: cutover then fallback keep the changes on both sides
// and cutover back reuses its instance; a busy stackpoint is refused naming the pid, or switched
// with --lazy while its user keeps the old tree; a failed switch leaves it on its old instance,
// mounted as before; two cutovers at once: one wins, one is refused; a reboot (every daemon killed,
// runtime state cleared) is undone by `stackpoint mount`; bad input is one line, nothing changed.
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { assertOneLineError, lastLine } from './helpers/instances.js';
import { forceUnmount, storeProcesses, strayMounts } from './helpers/mounted.js';
import { instanceSkipReason, StackSession, suiteRoot } from './helpers/stacks.js';
import { compareTrees, snapshotTree } from './helpers/tree.js';
import { waitFor } from './helpers/children.js';
import type { CliResult } from './helpers/mount.js';
import { withLock } from '../src/store/lock.js';

const skipReason = await instanceSkipReason();
if (skipReason) test.skip(`stackpoint suite skipped: ${skipReason}`, () => undefined);
const serial = (title: string, fn: (t: ExecutionContext) => Promise<void>) => skipReason || test.serial(title, fn);
const suite = suiteRoot('stackpoint', test, skipReason);

interface Described {
  name: string;
  path: string;
  current: { name: string; image: string };
  previous: { name: string; image: string } | null;
  mounted: { pid: number; state: string } | null;
}

let seq = 0;
/** Images v1 and v2 (two images of one tar: their instances are apart), stackpoint sp on v1 at root/sp, mounted. */
async function mountedStackpoint(t: ExecutionContext): Promise<{ s: StackSession; dir: string }> {
  const s = new StackSession(path.join(suite.root, `s${++seq}`), t);
  await s.addImage(suite.image.tar, 'v1');
  await s.addImage(suite.image.tar, 'v2');
  const dir = path.join(s.root, 'sp');
  await s.ok(['stackpoint', 'create', 'sp', 'v1', '--path', dir]);
  t.is(lastLine(await s.ok(['stackpoint', 'mount', 'sp'])), dir, 'mount prints the path last');
  return { s, dir };
}

const status = (s: StackSession) => s.json<Described>(['stackpoint', 'status', 'sp']);

serial('cutover then fallback: changes kept on both sides; cutover back reuses its instance; set; list, path, status', async (t) => {
  const { s, dir } = await mountedStackpoint(t);
  fs.writeFileSync(path.join(dir, 'on-v1'), 'v1 side\n');
  t.is(lastLine(await s.ok(['stackpoint', 'cutover', 'sp', 'v2'])), dir, 'cutover prints the path last');
  t.false(fs.existsSync(path.join(dir, 'on-v1')), 'v2 starts from its image');
  fs.writeFileSync(path.join(dir, 'on-v2'), 'v2 side\n');
  let st = await status(s);
  t.deepEqual([st.current.image, st.previous?.image, st.mounted?.state], ['v2', 'v1', 'serving']);
  await s.ok(['stackpoint', 'fallback', 'sp']);
  t.deepEqual(fs.readdirSync(dir).filter((n) => n.startsWith('on-')), ['on-v1'], 'fallback: the v1 instance with its change');
  await s.ok(['stackpoint', 'cutover', 'sp', 'v2']);
  t.deepEqual(fs.readdirSync(dir).filter((n) => n.startsWith('on-')), ['on-v2'], 'cutover back to v2 reuses its instance, change and all');
  st = await status(s);
  await s.ok(['stackpoint', 'set', 'sp', st.previous!.name]);
  t.true(fs.existsSync(path.join(dir, 'on-v1')), 'set switches to a named instance');
  t.is((await s.ok(['stackpoint', 'path', 'sp'])).stdout, `${dir}\n`);
  const list = await s.json<Described[]>(['stackpoint', 'list']);
  t.deepEqual(list.map((x) => [x.name, x.path, x.current.image]), [['sp', dir, 'v1']]);
  t.is((await s.json<Array<{ name: string }>>(['list'])).length, 2, 'two instances, one per image');
  assertOneLineError(t, await s.cli(['stackpoint', 'rm', 'sp']), 'rm while mounted');
  assertOneLineError(t, await s.cli(['rm', st.previous!.name]), 'rm of the current instance');
  await s.ok(['stackpoint', 'umount', 'sp']);
  t.deepEqual(strayMounts(dir), []);
  t.is((await status(s)).mounted, null);
  await s.ok(['stackpoint', 'rm', 'sp', '--instances']);
  t.deepEqual(await s.json<unknown[]>(['list']), [], 'rm --instances removed its instances');
});

serial('busy: cutover refused naming the pid; --lazy switches while the user keeps the old tree', async (t) => {
  const { s, dir } = await mountedStackpoint(t);
  fs.writeFileSync(path.join(dir, 'on-v1'), 'v1 side\n');
  const before = snapshotTree(dir);
  const sleeper = spawn('sleep', ['600'], { cwd: dir, stdio: 'ignore' });
  const pid = sleeper.pid!;
  t.teardown(() => void sleeper.kill('SIGKILL')); // the one process this test started
  for (const args of [['cutover', 'sp', 'v2'], ['umount', 'sp']]) {
    const r = await s.cli(['stackpoint', ...args]);
    assertOneLineError(t, r, `${args[0]} while busy`);
    t.regex(r.stderr, new RegExp(`\\b${pid}\\b`), `${args[0]} names the pid`);
  }
  t.deepEqual(compareTrees(before, snapshotTree(dir)), [], 'nothing changed');
  t.is((await status(s)).current.image, 'v1');
  await s.ok(['stackpoint', 'cutover', 'sp', 'v2', '--lazy']);
  t.false(fs.existsSync(path.join(dir, 'on-v1')), 'new opens see the new instance');
  t.true(fs.readdirSync(`/proc/${pid}/cwd`).includes('on-v1'), 'the busy user still sees the old one');
  sleeper.kill('SIGKILL');
  await new Promise((r) => sleeper.once('exit', r));
  // the old instance is free once released: retried until it is (a refusal changes nothing)
  const back = await waitFor(async () => (await s.cli(['stackpoint', 'fallback', 'sp'])).code === 0, 100);
  t.true(back, 'the old instance is released when its last user leaves');
  t.true(fs.existsSync(path.join(dir, 'on-v1')));
});

serial('a failed switch leaves the stackpoint on its old instance, mounted as before', async (t) => {
  const { s, dir } = await mountedStackpoint(t);
  fs.writeFileSync(path.join(dir, 'on-v1'), 'v1 side\n');
  const before = snapshotTree(dir);
  const unchanged = async (what: string) => {
    const st = await status(s);
    t.deepEqual([st.current.image, st.previous, st.mounted?.state], ['v1', null, 'serving'], `${what}: still on v1, mounted`);
    t.deepEqual(compareTrees(before, snapshotTree(dir)), [], `${what}: the same tree`);
  };
  // The target's image changed under it: caught before anything is touched.
  await s.create('broken', 'v2');
  await s.ok(['image', 'add', suite.image.tar, '--name', 'v3', '--copy']);
  fs.appendFileSync((await s.json<{ tar: string }>(['image', 'info', 'v3'])).tar, Buffer.alloc(512));
  assertOneLineError(t, await s.cli(['stackpoint', 'cutover', 'sp', 'v3']), 'cutover to an image whose tar changed');
  await unchanged('after the refused cutover');
  // The target instance is damaged: its mount fails after the old one came down; the old one comes back.
  fs.rmSync((await s.json<{ upper: string }>(['info', 'broken'])).upper, { recursive: true });
  const r = await s.cli(['stackpoint', 'set', 'sp', 'broken']);
  assertOneLineError(t, r, 'set to a damaged instance');
  t.regex(r.stderr, /stays on instance/);
  await unchanged('after the failed switch');
});

serial('two cutovers at once: one wins, the other is refused; the record stays whole', async (t) => {
  const { s, dir } = await mountedStackpoint(t);
  await s.addImage(suite.image.tar, 'v3');
  // "At once" for sure, however the machine schedules the two: with the store lock held here, the
  // cutover that takes the stackpoint first waits inside its switch (it makes its new instance under
  // the store lock) while the other finds the stackpoint taken; then the lock is let go.
  let both: Promise<CliResult>[] = [];
  await withLock(path.join(s.home, 'lock'), async () => {
    both = [s.cli(['stackpoint', 'cutover', 'sp', 'v2']), s.cli(['stackpoint', 'cutover', 'sp', 'v3'])];
    await Promise.race(both);
  });
  const [a, b] = await Promise.all(both) as [CliResult, CliResult];
  const won = [a, b].filter((r) => r.code === 0);
  t.is(won.length, 1, `exactly one wins: ${a.stderr} | ${b.stderr}`);
  const lost = a.code === 0 ? b : a;
  assertOneLineError(t, lost, 'the loser');
  const st = await status(s);
  t.is(st.current.image, a.code === 0 ? 'v2' : 'v3', 'the winner\'s image is current');
  t.is(st.previous?.image, 'v1');
  t.is(strayMounts(dir).length, 1, 'mounted once');
  const creates = await Promise.all([s.cli(['stackpoint', 'create', 'twin', 'v1']), s.cli(['stackpoint', 'create', 'twin', 'v2'])]);
  t.is(creates.filter((r) => r.code === 0).length, 1, 'two creates of one name: one wins');
  assertOneLineError(t, creates.find((r) => r.code !== 0)!, 'the losing create');
  t.is((await s.json<Described[]>(['stackpoint', 'list'])).length, 2);
});

serial('reboot: every daemon killed and runtime state cleared, `stackpoint mount` brings back the same instance', async (t) => {
  const { s, dir } = await mountedStackpoint(t);
  await s.ok(['stackpoint', 'cutover', 'sp', 'v2']);
  fs.writeFileSync(path.join(dir, 'survives'), 'across the reboot\n');
  const before = snapshotTree(dir);
  const instance = (await status(s)).current.name;
  for (const pid of storeProcesses(s.home)) process.kill(pid, 'SIGKILL'); // this store's daemons, started by this test
  for (const m of strayMounts(s.root).reverse()) forceUnmount(m.mountpoint); // what a reboot does to mounts
  fs.rmSync(path.join(s.home, 'run'), { recursive: true, force: true });
  t.is((await status(s)).mounted, null, 'nothing mounted after the reboot');
  t.is(lastLine(await s.ok(['stackpoint', 'mount', 'sp'])), dir);
  const st = await status(s);
  t.deepEqual([st.current.name, st.previous?.image], [instance, 'v1'], 'the same instance, and its fallback');
  t.deepEqual(compareTrees(before, snapshotTree(dir)), [], 'with its changes');
});

serial('bad input: unknown stackpoint, no previous instance, unknown or open image: one line, nothing changed', async (t) => {
  const { s, dir } = await mountedStackpoint(t);
  await s.ok(['image', 'new', 'open', '--parent', 'v1']);
  const before = await status(s);
  for (const args of [['mount', 'nosuch'], ['umount', 'nosuch'], ['cutover', 'nosuch', 'v2'], ['fallback', 'nosuch'], ['set', 'nosuch', 'x'], ['path', 'nosuch'],
    ['status', 'nosuch'], ['rm', 'nosuch'], ['fallback', 'sp'], ['cutover', 'sp', 'nosuch'], ['cutover', 'sp', 'open'], ['cutover', 'sp', 'v1'], ['set', 'sp', 'nosuch'],
    ['create', 'sp', 'v1'], ['create', 'bad/name', 'v1'], ['create', 'new', 'open']]) {
    assertOneLineError(t, await s.cli(['stackpoint', ...args]), args.join(' '));
  }
  t.deepEqual(await status(s), before, 'the stackpoint is as it was');
  t.is(strayMounts(dir).length, 1);
});
