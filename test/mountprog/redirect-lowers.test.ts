// Redirects in lower directory layers (issue 12, defect 4): an upper in which directories were
// renamed, rotated into the lower list, must show them where they went, as kernel overlayfs
// (redirect_dir=on) does: `trusted.overlay.redirect` followed in every directory lower, relative
// ("name", what the kernel writes for a rename in one directory) and absolute ("/a/b"). Uppers are
// written by tarstack-overlay and by kernel overlayfs, and each chain is read by both, writable and
// read-only, and by a tarstack instance and image whose layers are those directories.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { copyRootMetadata } from '../helpers/model-run.js';
import { mount, strayMounts, type MountConfig } from '../helpers/mounted.js';
import { mkdirs, mountProgRoot } from '../helpers/mountprog.js';
import { compareTrees, snapshotTree, type Snapshot } from '../helpers/tree.js';

const skip = process.getuid?.() !== 0 || !fs.existsSync('/dev/fuse') ? 'needs root (kernel overlayfs, trusted.* xattrs) and /dev/fuse' : undefined;

/** The bottom lower: d/a, d/sub/b, d/sub/deep/c, other/o, with fixed times so views compare exactly. */
function makeLower(dir: string): string {
  const files: Record<string, string> = { 'd/a': 'a\n', 'd/sub/b': 'b\n', 'd/sub/deep/c': 'c\n', 'other/o': 'o\n', top: 't\n' };
  for (const [rel, data] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), data);
  }
  for (const rel of ['d/sub/deep/c', 'd/sub/deep', 'd/sub/b', 'd/sub', 'd/a', 'd', 'other/o', 'other', 'top', '.']) fs.utimesSync(path.join(dir, rel), 1_500_000_000, 1_500_000_000);
  return dir;
}

type Writer = 'overlay-program' | 'kernel';

/** One round: a writable mount of `writer` over `lowers` (top first) on a fresh upper, `ops` run in it; the upper. */
async function round(t: ExecutionContext, dir: string, writer: Writer, lowers: string[], ops: (root: string) => void): Promise<string> {
  const [upper, work] = mkdirs(dir, 'upper', 'work') as [string, string];
  copyRootMetadata(lowers[0]!, upper);
  const m = await mount(t, dir, { kind: writer, lowers, upper, work } as MountConfig);
  try {
    ops(m.root);
  } finally {
    await m.unmount();
  }
  return upper;
}

const READERS = ['kernel', 'tarstack-overlay read-only', 'tarstack-overlay', 'tarstack instance', 'tarstack image'] as const;
type Reader = (typeof READERS)[number];
/** Kernel overlayfs and tarstack-overlay: what the in-between rounds are read by (fewer mounts). */
const PROGRAMS: Reader[] = ['kernel', 'tarstack-overlay read-only', 'tarstack-overlay'];

/** The tree each reader shows over `lowers`, by label; the mounts are made side by side. */
async function views(t: ExecutionContext, dir: string, lowers: string[], readers: readonly Reader[] = READERS): Promise<Map<string, Snapshot>> {
  const configOf = (reader: Reader, at: string): MountConfig => {
    switch (reader) {
      case 'kernel': return { kind: 'kernel', lowers, upper: null };
      case 'tarstack-overlay read-only': return { kind: 'overlay-program', lowers, upper: null };
      case 'tarstack-overlay': {
        const [upper] = mkdirs(at, 'upper');
        copyRootMetadata(lowers[0]!, upper!);
        return { kind: 'overlay-program', lowers, upper };
      }
      case 'tarstack instance': return { kind: 'instance', lowers };
      case 'tarstack image': return { kind: 'image', lowers };
    }
  };
  const seen = await Promise.all(readers.map(async (reader, i) => {
    const at = path.join(dir, String(i));
    const m = await mount(t, at, configOf(reader, at));
    try {
      return [reader, snapshotTree(m.root)] as const;
    } finally {
      await m.unmount();
    }
  }));
  return new Map(seen);
}

/** Every reader's tree against the kernel's, which must hold `expect` (paths present) and lack `gone`. */
function check(t: ExecutionContext, label: string, seen: Map<string, Snapshot>, expect: string[], gone: string[]): void {
  const ref = seen.get('kernel')!;
  const paths = new Set(ref.records.map((r) => r.path));
  t.deepEqual(expect.filter((p) => !paths.has(p)), [], `${label}: kernel overlayfs shows the renamed directories' contents`);
  t.deepEqual(gone.filter((p) => paths.has(p)), [], `${label}: kernel overlayfs no longer shows the old names`);
  for (const [reader, tree] of seen) {
    if (reader !== 'kernel') t.deepEqual(compareTrees(ref, tree, { ignoreMtimeFor: [''] }), [], `${label}: ${reader} shows what kernel overlayfs shows`);
  }
}

for (const writer of ['overlay-program', 'kernel'] as const) {
  const who = writer === 'kernel' ? 'kernel overlayfs' : 'tarstack-overlay';
  test(`a directory renamed in an upper written by ${who} shows its contents once that upper is a lower`, async (t) => {
    if (skip) return t.pass(skip);
    const root = mountProgRoot(t, 'redirect-lowers');
    const lower = makeLower(path.join(root, 'L'));
    // the case: mv d e in the same directory (the kernel writes a relative redirect, "d")
    const u1 = await round(t, path.join(root, 'r1'), writer, [lower], (m) => fs.renameSync(`${m}/d`, `${m}/e`));
    check(t, 'mv d e', await views(t, path.join(root, 'v1'), [u1, lower]), ['e/a', 'e/sub/b', 'e/sub/deep/c'], ['d']);
    t.is(strayMounts(root).length, 0);
  });

  test(`renames across three rotated uppers written by ${who}: every reader follows the chain of redirects`, async (t) => {
    if (skip) return t.pass(skip);
    const root = mountProgRoot(t, 'redirect-chain');
    const lower = makeLower(path.join(root, 'L'));
    const u1 = await round(t, path.join(root, 'r1'), writer, [lower], (m) => {
      fs.renameSync(`${m}/d`, `${m}/e`); // relative in the kernel's upper
      fs.renameSync(`${m}/other`, `${m}/e/other`); // absolute: into a directory renamed in the same upper
    });
    const u2 = await round(t, path.join(root, 'r2'), writer, [u1, lower], (m) => {
      fs.mkdirSync(`${m}/f`);
      fs.renameSync(`${m}/e`, `${m}/f/g`); // a directory that is itself a redirect in the layer below
      fs.renameSync(`${m}/f/g/sub`, `${m}/s2`); // reached only through that redirect: its path in its own layer is hidden
    });
    check(t, 'after two rounds', await views(t, path.join(root, 'v2'), [u2, u1, lower], PROGRAMS),
      ['f/g/a', 'f/g/other/o', 's2/b', 's2/deep/c'], ['d', 'e', 'other', 'f/g/sub']);
    const u3 = await round(t, path.join(root, 'r3'), writer, [u2, u1, lower], (m) => {
      fs.renameSync(`${m}/s2`, `${m}/t`); // relative again, over an absolute one below
      fs.renameSync(`${m}/f/g`, `${m}/h`);
      fs.renameSync(`${m}/t/deep`, `${m}/h/deep`);
      fs.writeFileSync(`${m}/h/deep/new`, 'n\n');
    });
    check(t, 'after three rounds', await views(t, path.join(root, 'v3'), [u3, u2, u1, lower]),
      ['h/a', 'h/other/o', 'h/deep/c', 'h/deep/new', 't/b'], ['d', 'e', 'f/g', 's2', 't/deep']);
    t.is(strayMounts(root).length, 0);
  });
}

test('an opaque directory in a rotated upper stops the merge, redirect or not', async (t) => {
  if (skip) return t.pass(skip);
  const root = mountProgRoot(t, 'redirect-opaque');
  const lower = makeLower(path.join(root, 'L'));
  const u1 = await round(t, path.join(root, 'r1'), 'overlay-program', [lower], (m) => {
    fs.renameSync(`${m}/d`, `${m}/e`);
    fs.rmSync(`${m}/other`, { recursive: true });
    fs.mkdirSync(`${m}/other`); // opaque: nothing of the lower's other shows
    fs.writeFileSync(`${m}/other/mine`, 'm\n');
  });
  check(t, 'opaque', await views(t, path.join(root, 'v'), [u1, lower], PROGRAMS), ['e/a', 'other/mine'], ['d', 'other/o']);
  t.is(strayMounts(root).length, 0);
});
