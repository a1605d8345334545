// tarstack-overlay against kernel overlayfs (redirect_dir=on, index=off: the upper format both write)
// on the same lower directory: a scripted sequence of operations (files, dirs, renames, deletes, hard
// links, open handles) compared errno by errno, then tree by tree; then kernel overlayfs mounts the
// upper tarstack-overlay wrote and must show the same tree. fuse-overlayfs runs beside, for information.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { buildModelImage } from '../helpers/model-image.js';
import { applyOp, closeAll, describeOp, type Op, type RootState } from '../helpers/model-ops.js';
import { copyRootMetadata, normalizeNow } from '../helpers/model-run.js';
import { mount, strayMounts, type Mounted } from '../helpers/mounted.js';
import { mkdirs, mountProgRoot } from '../helpers/mountprog.js';
import { compareTrees, snapshotTree } from '../helpers/tree.js';

const skip = process.getuid?.() !== 0 || !fs.existsSync('/dev/fuse') ? 'needs root (kernel overlayfs, trusted.* xattrs) and /dev/fuse' : undefined;
const KERNEL_OPTIONS = 'redirect_dir=on,index=off,metacopy=off';

const d = (len: number, seed: number) => ({ len, seed });
/** The script: every kind of change, the errors programs meet, and lower hard links (d1/hl = d2/hl). */
const SCRIPT: Op[] = [
  { op: 'create', path: 'new1', flags: 'plain', mode: 0o644, data: d(100, 1) },
  { op: 'write', path: 'f1', offset: 1, data: d(5, 2) },
  { op: 'read', path: 'f1' },
  { op: 'truncate', path: 'd1/big', length: 4096 },
  { op: 'create', path: 'd1/a', flags: 'append', mode: 0o644, data: d(10, 3) },
  { op: 'unlink', path: 'd2/b' },
  { op: 'stat', path: 'd2/b', follow: false },
  { op: 'create', path: 'd2/b', flags: 'excl', mode: 0o600, data: d(7, 4) },
  { op: 'mkdir', path: 'd1/sub', mode: 0o755 },
  { op: 'rmdir', path: 'd1/sub' },
  { op: 'unlink', path: 'd1/sub/a' },
  { op: 'unlink', path: 'd1/sub/s' },
  { op: 'unlink', path: 'd1/sub/up' },
  { op: 'rmdir', path: 'd1/sub' },
  { op: 'mkdir', path: 'd1/sub', mode: 0o700 },
  { op: 'readdir', path: 'd1/sub' },
  { op: 'rename', from: 'd2/deep', to: 'n' },
  { op: 'readdir', path: 'n/x' },
  { op: 'stat', path: 'n/x/y', follow: true },
  { op: 'rename', from: 'd2/deep', to: 'x' },
  { op: 'link', from: 'f1', to: 'f1link' },
  { op: 'write', path: 'f1link', offset: 0, data: d(3, 5) },
  { op: 'link', from: 'd1/hl', to: 'd1/hl2' },
  { op: 'write', path: 'd2/hl', offset: 0, data: d(4, 6) },
  { op: 'stat', path: 'd1/hl', follow: false },
  { op: 'rename', from: 'f1', to: 'd1/x' },
  { op: 'rename', from: 'd1', to: 'd2/d1' },
  { op: 'readdir', path: 'd2/d1' },
  { op: 'symlink', target: 'x', path: 'd2/sl' },
  { op: 'readlink', path: 'd2/sl' },
  { op: 'mkfifo', path: 'fifo2' },
  { op: 'chmod', path: 'd2/fifo', mode: 0o600 },
  { op: 'chown', path: 'n', uid: 1000, gid: 1000, follow: true },
  { op: 'utimes', path: 'd2/d1/a', which: 'm', time: '1234567890.123456789', follow: true },
  { op: 'setxattr', path: 'd2/b', name: 'user.a', value: 'v1' },
  { op: 'getxattr', path: 'd2/b', name: 'user.a' },
  { op: 'removexattr', path: 'd2/b', name: 'user.a' },
  { op: 'getxattr', path: 'd2/d1/big', name: 'user.big' },
  { op: 'rename', from: 'n', to: 'd2' },
  { op: 'rmdir', path: 'd2' },
  { op: 'rename', from: 'd2/b', to: 'd2/fifo' },
  { op: 'open', slot: 0, path: 'new1', flags: 'rw' },
  { op: 'unlink', path: 'new1' },
  { op: 'pwrite', slot: 0, offset: 50, data: d(20, 7) },
  { op: 'pread', slot: 0, offset: 0, length: 200 },
  { op: 'fstat', slot: 0 },
  { op: 'close', slot: 0 },
  { op: 'rmdir', path: 'e' },
  { op: 'mkdir', path: 'e', mode: 0o755 },
  { op: 'rename', from: 'd2/d1/sub', to: 'e/sub' },
  { op: 'unlink', path: 's' },
  { op: 'symlink', target: 'e', path: 's' },
  { op: 'readdir', path: '' },
];

/**
 * Where tarstack-overlay may answer otherwise, and why. Empty today: with index=off both split a lower
 * hard-link set on copy-up, and with redirect_dir=on both rename lower directories in place. Not
 * compared at all (test/helpers/tree.ts, model-ops.ts): st_ino values (hard-link classes are), atime
 * and ctime, directory sizes and link counts.
 */
const ALLOWED: Array<{ step: string; reason: string }> = [];

type Target = Mounted;

async function kernel(t: ExecutionContext, runDir: string, lower: string, upper?: string): Promise<Target> {
  const [up, work] = mkdirs(runDir, 'upper', 'work') as [string, string];
  const u = upper ?? up;
  if (!upper) copyRootMetadata(lower, u);
  return mount(t, runDir, { kind: 'kernel', lowers: [lower], upper: u, work, options: KERNEL_OPTIONS.split(',') });
}

/** tarstack-overlay, or another program taking its arguments (fuse-overlayfs), on a fresh upper. */
async function program(t: ExecutionContext, runDir: string, lower: string, other?: string): Promise<Target> {
  const [upper, work] = mkdirs(runDir, 'upper', 'work') as [string, string];
  copyRootMetadata(lower, upper);
  return mount(t, runDir, { kind: 'overlay-program', lowers: [lower], upper, work, ...(other ? { program: other } : {}) });
}

test('scripted operations: tarstack-overlay answers as kernel overlayfs, step by step and tree by tree; kernel overlayfs reads its upper', async (t) => {
  if (skip) return t.pass(skip);
  const root = mountProgRoot(t, 'mountprog-kernel');
  const image = buildModelImage(path.join(root, 'image'));
  const ref = await kernel(t, path.join(root, 'kernel'), image.lower);
  const sut = await program(t, path.join(root, 'tarstack'), image.lower);
  const fuseOverlayfs = fs.existsSync('/usr/bin/fuse-overlayfs') ? await program(t, path.join(root, 'fo'), image.lower, '/usr/bin/fuse-overlayfs') : undefined;
  const sinceNs = BigInt(Date.now() - 2000) * 1_000_000n;
  const states = new Map<Target, RootState>([ref, sut, ...(fuseOverlayfs ? [fuseOverlayfs] : [])].map((x) => [x, { root: x.root, fds: new Map(), sinceNs }]));
  const failures: string[] = [];
  const info: string[] = [];
  try {
    t.deepEqual(compareTrees(snapshotTree(ref.root), snapshotTree(sut.root)), [], 'the same tree before any operation');
    for (const [i, op] of SCRIPT.entries()) {
      const want = applyOp(states.get(ref)!, op);
      const got = applyOp(states.get(sut)!, op);
      const step = `${i + 1}. ${describeOp(op)}`;
      if (fuseOverlayfs) {
        const fo = applyOp(states.get(fuseOverlayfs)!, op);
        if (fo !== want) info.push(`${step}: fuse-overlayfs ${fo}, kernel ${want}`);
      }
      if (got !== want && !ALLOWED.some((a) => a.step === describeOp(op))) failures.push(`${step}: tarstack-overlay ${got}, kernel ${want}`);
    }
    for (const s of states.values()) closeAll(s);
    const refTree = normalizeNow(snapshotTree(ref.root), sinceNs);
    const sutTree = normalizeNow(snapshotTree(sut.root), sinceNs);
    failures.push(...compareTrees(refTree, sutTree).map((x) => `final tree: ${x}`));
    if (fuseOverlayfs) info.push(...compareTrees(refTree, normalizeNow(snapshotTree(fuseOverlayfs.root), sinceNs)).map((x) => `fuse-overlayfs final tree: ${x}`));

    // The upper it wrote is a standard one: kernel overlayfs mounted on it shows the same tree.
    await sut.unmount();
    const reread = await kernel(t, path.join(root, 'reread'), image.lower, sut.upper);
    try {
      failures.push(...compareTrees(sutTree, normalizeNow(snapshotTree(reread.root), sinceNs), { compareNlink: true }).map((x) => `kernel overlayfs on tarstack's upper: ${x}`));
    } finally {
      await reread.unmount();
    }
    // And tarstack-overlay itself reads it back the same.
    await sut.remount();
    const again = sut.result!;
    t.is(again.code, 0, again.stderr);
    failures.push(...compareTrees(sutTree, normalizeNow(snapshotTree(sut.root), sinceNs)).map((x) => `tarstack-overlay remounted: ${x}`));
  } finally {
    for (const s of states.values()) closeAll(s);
    for (const x of [ref, sut, fuseOverlayfs]) await x?.unmount();
  }
  if (!fuseOverlayfs) t.log('fuse-overlayfs is not installed: no side-by-side information (apt-get install fuse-overlayfs)');
  if (info.length) t.log(`fuse-overlayfs (information only, not asserted):\n  ${info.join('\n  ')}`);
  t.deepEqual(failures, []);
  t.is(strayMounts(root).length, 0);
});
