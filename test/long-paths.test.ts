// Paths near and past PATH_MAX in real mounts (issue 12, defect 1): a tarstack instance and
// tarstack-overlay over a directory lower. The caller's paths stay below PATH_MAX (a 4,046-byte
// relative path, a 6,060-byte chain of 60 names walked by chdir); the upper's and lower's own prefixes must not
// count against them. Every kind of change is made (long-paths.py), read back, read again after a
// remount; on the instance, diff, commit (and a mount of the committed image) and reset walk it too.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execOk } from './helpers/exec.js';
import { mount, type Mounted } from './helpers/mounted.js';
import { mountProgRoot } from './helpers/mountprog.js';

const skip = process.getuid?.() !== 0 || !fs.existsSync('/dev/fuse') ? 'needs root and /dev/fuse' : undefined;
const SCRIPT = fileURLToPath(new URL('../../test/helpers/long-paths.py', import.meta.url));
const serial = skip ? test.skip : test.serial;

/** A lower directory holding a 4,056-byte chain (long-paths.py's LOWER_FILE), and the same as a tar. */
function lowers(root: string): { dir: string; tar: string } {
  const dir = path.join(root, 'lower');
  fs.mkdirSync(dir);
  execOk(['python3', '-c', "import os; p = '/'.join(['L' * 250] * 16); os.makedirs(p); open(p + '/' + 'l' * 40, 'w').write('lower')"], { cwd: dir });
  const tar = path.join(root, 'lower.tar');
  execOk(['tar', '--format=posix', '-C', dir, '-cf', tar, '.']);
  return { dir, tar };
}

/** Runs a step of long-paths.py in the mount's root (or `at`), as the mount's user. */
async function step(t: ExecutionContext, m: Mounted, what: 'make' | 'check' | 'remove', at = m.root): Promise<void> {
  const r = await m.run(['python3', SCRIPT, what], { cwd: at });
  t.is(r.code, 0, `${what}: ${r.stderr.trim()}`);
}

serial('tarstack-overlay over a directory lower: create, stat, read, rename, link, remove past PATH_MAX', async (t) => {
  const root = mountProgRoot(t, 'long-paths-prog');
  const m = await mount(t, path.join(root, 'm'), { kind: 'overlay-program', lowers: [lowers(root).dir] });
  await step(t, m, 'make');
  await step(t, m, 'check');
  await m.remount();
  await step(t, m, 'check');
  await step(t, m, 'remove');
  await m.remount();
  const r = await m.run(['python3', '-c', "import os; assert os.listdir('.') == ['L' * 250]; p = '/'.join(['L' * 250] * 16); assert os.path.isdir(os.path.dirname(p)) and not os.path.lexists(p)"], { cwd: m.root });
  t.is(r.code, 0, `after remove and remount, the lower shows without the chain's end moved away: ${r.stderr.trim()}`);
});

serial('instance: past PATH_MAX, then diff, commit (its image mounted) and reset', async (t) => {
  const root = mountProgRoot(t, 'long-paths-inst');
  const m = await mount(t, path.join(root, 'm'), { kind: 'instance', lowers: [lowers(root).tar] });
  await step(t, m, 'make');
  await step(t, m, 'check');
  await m.remount();
  await step(t, m, 'check');
  await m.unmount();

  const diff = await m.cli(['diff', 'i', '--porcelain']);
  t.is(diff.code, 0, diff.stderr);
  t.true(diff.stdout.split('\n').some((l) => l.startsWith('A chain/') && l.endsWith('/leaf2')), `diff lists the chain's leaf: ${diff.stdout.slice(0, 300)}`);
  t.true(diff.stdout.split('\n').some((l) => l.startsWith('A moved/') && l.endsWith('g'.repeat(30))), 'diff lists the moved file');

  const commit = await m.cli(['commit', 'i', 'frozen']);
  t.is(commit.code, 0, commit.stderr);
  t.is((await m.cli(['instance', 'create', 'j', 'frozen'])).code, 0);
  const mnt2 = path.join(root, 'm', 'mnt2');
  fs.mkdirSync(mnt2);
  const mounted = await m.cli(['mount', 'j', mnt2]);
  t.is(mounted.code, 0, mounted.stderr);
  try {
    await step(t, m, 'check', mnt2);
  } finally {
    t.is((await m.cli(['umount', mnt2])).code, 0);
  }

  const reset = await m.cli(['reset', 'i']);
  t.is(reset.code, 0, reset.stderr);
  await m.remount();
  const r = await m.run(['python3', '-c', "import os; assert os.listdir('.') == ['L' * 250]; p = '/'.join(['L' * 250] * 16) + '/' + 'l' * 40; assert open(p).read() == 'lower'"], { cwd: m.root });
  t.is(r.code, 0, `after reset, only the image shows: ${r.stderr.trim()}`);
});
