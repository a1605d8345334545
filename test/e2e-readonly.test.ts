// End-to-end: read-only images through real mounts made by the tarstack CLI, compared with GNU tar
// extractions (and kernel overlayfs for a layer stack); bad input gives one `tarstack: ` line; inode
// numbers survive remounts; unsafe names stay inside. Skips whole when the CLI is not built.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { buildFixtures, type Fixture } from './helpers/fixtures.js';
import { buildLayerStack } from './helpers/fixtures-stream.js';
import { LONG_FILE } from './helpers/fixtures-tools.js';
import { cliAvailable, TarstackSession, withMount, type CliResult } from './helpers/mount.js';
import { CLI_MAIN, makeTestRoot, mount, removeTestRoot, storeProcesses, strayMounts } from './helpers/mounted.js';
import { extractReference, gnuReference as reference } from './helpers/reference.js';
import { compareTrees, snapshotTree } from './helpers/tree.js';
import { waitNoneLeft } from './helpers/children.js';

const skipReason = !cliAvailable() ? `the tarstack CLI is not built (${CLI_MAIN} is missing)`
  : process.getuid?.() !== 0 ? 'needs root (devices, owners, trusted.* xattrs, overlayfs)'
  : !fs.existsSync('/dev/fuse') ? 'needs /dev/fuse' : undefined;

const root = skipReason ? '' : makeTestRoot('e2e');
const fixtures: Fixture[] = skipReason ? [] : await buildFixtures(path.join(root, 'fixtures'));
const fixture = (name: string) => fixtures.find((f) => f.name === name)!;
const e2e = skipReason ? test.skip : test.serial;
if (skipReason) test.skip(`e2e read-only suite skipped: ${skipReason}`, () => undefined);

test.after.always(() => removeTestRoot(root));

let seq = 0;
const session = (t: ExecutionContext, label: string) => new TarstackSession(path.join(root, `${label}-${++seq}`), t);

const lines = (s: string) => s.split('\n').filter((l) => l !== '');
const warnings = (r: CliResult) => lines(r.stderr).filter((l) => l.startsWith('tarstack: warning: '));

/** A user mistake: non-zero exit, exactly one stderr line `tarstack: ...`, no stack trace. */
function assertOneLineError(t: ExecutionContext, r: CliResult, what: string): void {
  t.not(r.code, 0, `${what}: exit code`);
  t.is(lines(r.stderr).length, 1, `${what}: one stderr line, got:\n${r.stderr}`);
  t.regex(r.stderr, /^tarstack: \S/, what);
  t.notRegex(r.stderr, /^\s+at /m, `${what}: stack trace`);
}

/** Success output: no error lines, no stack trace (warnings allowed). */
function assertClean(t: ExecutionContext, r: CliResult, what: string): void {
  t.is(r.code, 0, `${what}: ${r.stderr}`);
  t.deepEqual(lines(r.stderr).filter((l) => l.startsWith('tarstack: ') && !l.startsWith('tarstack: warning: ')), [], what);
  t.notRegex(r.stderr, /^\s+at /m, `${what}: stack trace`);
}

for (const f of fixtures.filter((x) => x.expect !== 'refuse' && x.compare)) {
  e2e(`serves ${f.name} (${f.maker}) as GNU tar extracts it`, async (t) => {
    const s = session(t, f.name);
    const add = await s.cli(['image', 'add', f.path, '--name', f.name]);
    assertClean(t, add, 'image add');
    const ref = reference(f.path, path.join(s.root, 'ref'));
    await withMount(s, f.name, (dir) => {
      t.deepEqual(compareTrees(ref.snap, snapshotTree(dir), { ignoreMtimeFor: ref.implicit }), []);
    });
    for (const name of f.skipped ?? []) {
      t.true(warnings(add).some((l) => l.includes(name)), `image add prints a "tarstack: warning: " line naming the skipped member ${name}`);
    }
  });
}

e2e('bsdtar-xattr-encoded-name: the true xattr name, not GNU tar\'s half-decoded one', async (t) => {
  const s = session(t, 'xattr-name');
  await s.addImage(fixture('bsdtar-xattr-encoded-name').path, 'x');
  await withMount(s, 'x', (dir) => {
    const f = snapshotTree(dir).records.find((r) => r.path === 'f');
    t.deepEqual(f?.xattrs, { 'user.sp ace=eq%': Buffer.from('v').toString('base64') });
  });
});

e2e('members through symlinks are skipped with a warning, never followed', async (t) => {
  const f = fixture('symlink-traversal');
  const s = session(t, 'traversal');
  const add = await s.cli(['image', 'add', f.path, '--name', 'trav']);
  assertClean(t, add, 'image add');
  for (const name of f.skipped!) t.true(warnings(add).some((l) => l.includes(name)), `warning for ${name}`);
  const outside = path.join(path.dirname(f.path), 'outside-dir');
  await withMount(s, 'trav', (dir) => {
    const snap = snapshotTree(dir);
    t.deepEqual(snap.errors, []);
    t.deepEqual(snap.records.map((r) => `${r.path}:${r.type}`), [':dir', 'd:dir', 'esc:symlink', 'rel:symlink']);
    t.is(snap.records.find((r) => r.path === 'esc')!.target, outside);
  });
  t.deepEqual(fs.readdirSync(outside), []);
});

e2e('a three-layer stack with whiteouts and opaque dirs equals the kernel overlayfs merge', async (t) => {
  const s = session(t, 'stack');
  const [base, mid, top] = await buildLayerStack(s.root);
  await s.addImage(base!, 'base');
  await s.addImage(mid!, 'mid', 'base');
  await s.addImage(top!, 'top', 'mid');
  const extracted = [top!, mid!, base!].map((tar) => extractReference(tar, tar.replace(/\.tar$/, '.ref')).dir);
  const merged = await mount(t, path.join(s.root, 'merged'), { kind: 'kernel', lowers: extracted, upper: null, convertOci: true });
  try {
    const ref = snapshotTree(merged.root);
    await withMount(s, 'top', (dir) => {
      // nlink: the kernel keeps the lower's count when a whiteout removes one name of a hard link
      t.deepEqual(compareTrees(ref, snapshotTree(dir), { ignoreMtimeFor: [''], compareNlink: false }), []);
    });
  } finally {
    await merged.unmount();
  }
});

// A directory is not refused: it becomes a directory layer (test/mountprog/dir-image.test.ts).
for (const f of fixtures.filter((x) => x.expect === 'refuse' && x.name !== 'a-directory')) {
  e2e(`refuses ${f.name} with one line`, async (t) => {
    const s = session(t, f.name);
    assertOneLineError(t, await s.cli(['image', 'add', f.path, '--name', 'bad']), 'image add');
    fs.mkdirSync(path.join(s.root, 'mnt'));
    assertOneLineError(t, await s.cli(['image', 'mount', 'bad', path.join(s.root, 'mnt')]), 'mount of the refused image');
    t.deepEqual(strayMounts(s.root), []);
  });
}

e2e('user mistakes: one line each, nothing left mounted', async (t) => {
  const s = session(t, 'mistakes');
  const good = fixture('stream-pax').path;
  const mnt = path.join(s.root, 'mnt');
  fs.mkdirSync(mnt);
  assertOneLineError(t, await s.cli(['image', 'add', path.join(s.root, 'no-such.tar'), '--name', 'x']), 'missing tar');
  assertOneLineError(t, await s.cli(['image', 'add', good, '--name', 'orphan', '--parent', 'no-such-image']), 'unknown parent');
  assertOneLineError(t, await s.cli(['image', 'mount', 'no-such-image', mnt]), 'unknown image');
  await s.addImage(good, 'good');
  assertOneLineError(t, await s.cli(['image', 'mount', 'good', path.join(s.root, 'no', 'such', 'dir')]), 'missing mount point');
  assertOneLineError(t, await s.cli(['umount', mnt]), 'umount of a dir that is not mounted');
  t.deepEqual(strayMounts(s.root), []);
  await withMount(s, 'good', async (dir) => {
    assertOneLineError(t, await s.cli(['image', 'mount', 'good', dir]), 'busy mount point');
    t.is(strayMounts(dir).length, 1, 'still exactly one mount there');
    t.true(fs.readdirSync(dir).includes('dup'), 'and it still serves');
  });
  t.deepEqual(strayMounts(s.root), []);
});

e2e('inode numbers are stable across remounts; hard-linked names share one', async (t) => {
  const s = session(t, 'inodes');
  await s.addImage(fixture('gnu-posix').path, 'img');
  const inodes = async () => withMount(s, 'img', (dir) => snapshotTree(dir, { hash: false, xattrs: false }).records.map((r) => [r.path, r.ino, r.type] as const));
  const first = await inodes();
  await waitNoneLeft(() => storeProcesses(s.home)); // it may take a while to exit on a busy machine
  t.deepEqual(storeProcesses(s.home), [], 'umount ends the daemon');
  const second = await inodes();
  t.deepEqual(second, first);
  const ino = new Map(first.map(([p, i]) => [p, i]));
  t.is(new Set(['links/a', 'links/b', 'links/c'].map((p) => ino.get(p))).size, 1);
  const linked = new Set(['links/a', 'links/b', 'links/c', LONG_FILE, 'hardlong']);
  const others = first.filter(([p]) => !linked.has(p)).map(([, i]) => i);
  t.is(new Set(others).size, others.length, 'every other entry has its own inode');
});

e2e('unsafe member names never appear outside the mount', async (t) => {
  const f = fixture('hostile-names');
  const s = session(t, 'hostile');
  await s.addImage(f.path, 'hostile');
  const hostProbes = ['/abs/path', '/double/slash', '/tarstack-probe-absent', '/x', '/b', '/y'].filter((p) => !fs.existsSync(p));
  const around = () => fs.readdirSync(s.root).sort();
  const before = around();
  await withMount(s, 'hostile', (dir) => {
    const paths = snapshotTree(dir, { hash: false }).records.map((r) => r.path);
    t.false(paths.some((p) => p.split('/').includes('..')), 'no ".." component inside');
    t.true(paths.includes('abs/path'), 'a leading "/" is stripped, the member served inside');
    t.deepEqual(around(), [...before, 'mnt'].sort(), 'nothing beside the mount point');
  });
  t.deepEqual(hostProbes.filter((p) => fs.existsSync(p)), [], 'nothing on the host');
});
