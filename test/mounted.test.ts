// The mount toolkit (helpers/mounted.ts) itself: every configuration over the same lowers (a
// directory with kernel whiteouts, a tar with OCI ones, a .tar.gz) shows the same merged tree; writes
// land in the upper and survive remount; unmount and teardown leave no mount and no daemon.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { execOk } from './helpers/exec.js';
import { makeTestRoot, mount, removeTestRoot, strayMounts, type MountConfig } from './helpers/mounted.js';
import { ordinaryUser } from './helpers/ordinary-user.js';
import { pack } from './helpers/pack.js';

const skip = process.getuid?.() !== 0 || !fs.existsSync('/dev/fuse') ? 'needs root (kernel overlayfs) and /dev/fuse' : undefined;
if (skip) test.skip(`mount toolkit suite skipped: ${skip}`, () => undefined);
const it = (title: string, fn: (t: ExecutionContext) => Promise<void>) => skip || test.serial(title, fn);
const root = skip ? '' : makeTestRoot('mounted');
test.after.always(() => removeTestRoot(root));

/** top: a directory (a char 0:0 whiteout of `gone`); middle: a tar (an OCI whiteout of `old`); bottom: a .tar.gz. */
async function lowers(): Promise<string[]> {
  const top = path.join(root, 'top');
  if (fs.existsSync(top)) return [top, path.join(root, 'middle.tar'), path.join(root, 'bottom.tar.gz')];
  fs.mkdirSync(path.join(top, 'd'), { recursive: true });
  fs.writeFileSync(path.join(top, 'd', 'top'), 'from the top\n');
  execOk(['mknod', path.join(top, 'gone'), 'c', '0', '0']);
  fs.writeFileSync(path.join(root, 'middle.tar'), await pack([
    { name: 'd/', type: 'directory', mode: 0o755 },
    { name: 'd/mid', body: 'from the middle\n' },
    { name: '.wh.old', body: '' },
  ]));
  const bottom = path.join(root, 'bottom.tar');
  fs.writeFileSync(bottom, await pack([
    { name: 'd/', type: 'directory', mode: 0o755 },
    { name: 'd/bottom', body: 'from the bottom\n' },
    { name: 'gone', body: 'hidden by the top\n' },
    { name: 'old', body: 'hidden by the middle\n' },
    { name: 'keep', body: 'kept\n' },
  ]));
  execOk(['gzip', '-f', bottom]);
  return [top, path.join(root, 'middle.tar'), `${bottom}.gz`];
}

const listing = (dir: string): string[] => execOk(['find', '.', '-mindepth', '1'], { cwd: dir }).stdout.toString().split('\n').filter(Boolean).sort();
const MERGED = ['./d', './d/bottom', './d/mid', './d/top', './keep'];

let seq = 0;
for (const kind of ['kernel', 'overlay-program', 'instance'] as const) {
  it(`${kind}: the merged tree; a write lands in the upper and survives remount; unmount leaves nothing`, async (t) => {
    const dir = path.join(root, `${kind}-${++seq}`);
    const m = await mount(t, dir, { kind, lowers: await lowers() } as MountConfig);
    t.deepEqual(listing(m.root), MERGED);
    t.is(fs.readFileSync(path.join(m.root, 'd/mid'), 'utf8'), 'from the middle\n');
    fs.writeFileSync(path.join(m.root, 'd/new'), 'new\n');
    t.true(fs.existsSync(path.join(m.upper!, 'd/new')), 'the change is in the upper');
    await m.remount();
    t.is(fs.readFileSync(path.join(m.root, 'd/new'), 'utf8'), 'new\n');
    await m.unmount();
    t.deepEqual(strayMounts(dir), []);
    t.deepEqual(m.daemons(), [], 'no daemon left');
  });
}

it('image and read-only mounts: the same tree, nothing writable', async (t) => {
  for (const config of [{ kind: 'image' }, { kind: 'overlay-program', upper: null }, { kind: 'kernel', upper: null }] as const) {
    const m = await mount(t, path.join(root, `ro-${++seq}`), { ...config, lowers: await lowers() });
    t.deepEqual(listing(m.root), MERGED, config.kind);
    t.throws(() => fs.writeFileSync(path.join(m.root, 'x'), ''), { code: 'EROFS' }, config.kind);
    await m.unmount();
  }
});

it('a mount the test leaves is gone after its teardown, daemon included', async (t) => {
  const dir = path.join(root, `left-${++seq}`);
  let daemons: number[] = [];
  await t.try(async (tt) => {
    const m = await mount(tt, dir, { kind: 'overlay-program', lowers: await lowers() });
    daemons = m.daemons();
    tt.is(daemons.length, 1);
  }).then((r) => r.commit());
  t.deepEqual(strayMounts(dir), []);
  t.false(daemons.some((p) => fs.existsSync(`/proc/${p}`) && !/\) Z /.test(fs.readFileSync(`/proc/${p}/stat`, 'latin1'))));
});

const user = skip ? 'skipped' : ordinaryUser();
it('an instance mounted by an ordinary user: only they enter; the tree is the same', async (t) => {
  if (typeof user === 'string') {
    t.pass(`no ordinary user: ${user}`);
    return;
  }
  const m = await mount(t, path.join(root, `user-${++seq}`), { kind: 'instance', lowers: await lowers(), user });
  t.throws(() => fs.readdirSync(m.root), { code: 'EACCES' }, 'root may not enter without allow_other');
  const r = await m.run(['find', '.', '-mindepth', '1'], { cwd: m.root });
  t.is(r.code, 0, r.stderr);
  t.deepEqual(r.stdout.split('\n').filter(Boolean).sort(), MERGED);
  t.is((await m.run(['sh', '-c', `echo mine > ${m.root}/d/new && stat -c %u ${m.root}/d/new`])).stdout.trim(), String(user.uid));
  await m.unmount();
});
