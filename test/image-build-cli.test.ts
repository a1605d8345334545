// Building images by editing, end to end through real mounts: `image new/edit/close` and `commit`
// freeze an instance into a layer that GNU tar reads (merged over the parent by kernel overlayfs
// it shows the instance's tree) and that, stacked as an image, shows exactly the instance's tree;
// the layer's whiteouts, opaque marker and owners are as OCI tools expect; `stack`/`unstack` work
// at $TARSTACK_STACKS; an open image is refused where a closed one is needed.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { assertOneLineError } from './helpers/instances.js';
import { exec, execOk } from './helpers/exec.js';
import type { Op } from './helpers/model-ops.js';
import { extractReference, gnuReference } from './helpers/reference.js';
import { apply, instanceSkipReason, StackSession, suiteRoot, tarHeaders } from './helpers/stacks.js';
import { mount, strayMounts } from './helpers/mounted.js';
import { compareTrees, snapshotTree, type Snapshot } from './helpers/tree.js';

const skipReason = await instanceSkipReason();
if (skipReason) test.skip(`image building suite skipped: ${skipReason}`, () => undefined);
const serial = (title: string, fn: (t: ExecutionContext) => Promise<void>) => skipReason || test.serial(title, fn);
const suite = suiteRoot('image-build', test, skipReason);

let seq = 0;
async function session(t: ExecutionContext, env: NodeJS.ProcessEnv = {}): Promise<StackSession> {
  const s = new StackSession(path.join(suite.root, `s${++seq}`), t, env);
  await s.addImage(suite.image.tar, 'img');
  return s;
}

/** Every kind of change a layer must carry: new, written (lazily copied big file, one name of a
 *  hard-link set), chmod/chown/xattr only, deleted, a renamed lower dir, a lower dir deleted and
 *  made again (opaque), a new hard link, symlink and fifo, a long name. */
const EDITS: Op[] = [
  { op: 'mkdir', path: 'n', mode: 0o755 },
  { op: 'create', path: 'n/new.txt', flags: 'excl', mode: 0o644, data: { len: 10, seed: 1 } },
  { op: 'write', path: 'd1/a', offset: 0, data: { len: 4, seed: 2 } },
  { op: 'write', path: 'd1/big', offset: 1_048_576, data: { len: 4096, seed: 3 } },
  { op: 'write', path: 'd2/hl', offset: 3, data: { len: 5, seed: 4 } },
  { op: 'chmod', path: 'd2/b', mode: 0o600 },
  { op: 'setxattr', path: 'e', name: 'user.e', value: 'dir xattr' },
  { op: 'unlink', path: 'f1' },
  { op: 'rename', from: 'd1/sub', to: 'd1/moved' },
  { op: 'chown', path: 'd1/moved/a', uid: 1234, gid: 5678, follow: false },
  { op: 'link', from: 'd1/a', to: 'n/a-link' },
  { op: 'symlink', target: '../d1', path: 'n/sym' },
  { op: 'mkfifo', path: 'n/fifo' },
  { op: 'utimes', path: 'd2/b', which: 'm', time: '1234567890.123456789', follow: true },
];

function edit(dir: string): void {
  apply(dir, EDITS);
  fs.rmSync(path.join(dir, 'd2/deep'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'd2/deep'));
  fs.writeFileSync(path.join(dir, 'd2/deep/fresh'), 'a new directory where a lower one was\n');
  fs.writeFileSync(path.join(dir, 'n', `long-${'x'.repeat(150)}`), 'a name longer than ustar holds\n');
  execOk(['setfattr', '-n', 'user.bin', '-v', '0xff00fe01', path.join(dir, 'n/new.txt')]); // not UTF-8
}

/** GNU tar extracts the layer; kernel overlayfs merges it over GNU tar's extraction of the image. */
async function kernelMerged(t: ExecutionContext, layer: string, work: string): Promise<Snapshot> {
  const ref = extractReference(layer, path.join(work, 'layer'));
  t.false(ref.fatal, `GNU tar reads the layer: ${ref.stderr.join(' | ')}`);
  t.is(ref.exitCode, 0, `GNU tar extracts the layer cleanly: ${ref.stderr.join(' | ')}`);
  const merged = await mount(t, path.join(work, 'merged'), { kind: 'kernel', lowers: [ref.dir, suite.image.lower], upper: null, convertOci: true });
  try {
    return snapshotTree(merged.root);
  } finally {
    await merged.unmount();
  }
}

/** What `podman export` can carry: whole-second mtimes, no trusted.* xattrs. */
function coarse(snap: Snapshot): Snapshot {
  const sec = (ns: string) => String((BigInt(ns) / 1_000_000_000n - (BigInt(ns) < 0n && BigInt(ns) % 1_000_000_000n !== 0n ? 1n : 0n)) * 1_000_000_000n);
  const xattrs = (x: Record<string, string>) => Object.fromEntries(Object.entries(x).filter(([k]) => !k.startsWith('trusted.')));
  return { errors: snap.errors, records: snap.records.map((r) => ({ ...r, mtimeNs: sec(r.mtimeNs), xattrs: xattrs(r.xattrs) })) };
}

/**
 * What an OCI tool makes of the image: its `export --layers` loaded into a private podman store
 * (vfs: layers applied by containers/storage), a container's rootfs exported and extracted by GNU
 * tar. undefined when podman is not installed. The root's mtime is the extraction's; podman's
 * export keeps whole seconds and no trusted.* xattrs (see coarse).
 */
async function podmanTree(s: StackSession, image: string): Promise<Snapshot | undefined> {
  if (exec(['sh', '-c', 'command -v podman']).code !== 0) return undefined;
  const oci = path.join(s.root, `${image}.oci.tar`);
  await s.ok(['image', 'export', image, '--layers', '-o', oci]);
  const store = fs.mkdtempSync('/tmp/tsp-'); // podman wants a short runroot
  const podman = (...args: string[]) => execOk(['podman', '--root', `${store}/root`, '--runroot', `${store}/run`, '--storage-driver', 'vfs', ...args]);
  try {
    podman('load', '-q', '-i', oci);
    const id = podman('create', '--entrypoint', '/none', `localhost/${image}:latest`).stdout.toString().trim();
    podman('export', '-o', path.join(s.root, 'podman.tar'), id);
    podman('rm', id);
  } finally {
    exec(['podman', '--root', `${store}/root`, '--runroot', `${store}/run`, '--storage-driver', 'vfs', 'system', 'reset', '-f']);
    fs.rmSync(store, { recursive: true, force: true });
  }
  const ref = extractReference(path.join(s.root, 'podman.tar'), path.join(s.root, 'podman-tree'));
  if (ref.fatal) throw new Error(`GNU tar on podman's export: ${ref.stderr.join(' | ')}`);
  return snapshotTree(ref.dir);
}

serial('image new/edit/close: the layer is a valid OCI layer and stacks into exactly the edited tree', async (t) => {
  const s = await session(t);
  await s.ok(['image', 'new', 'app', '--parent', 'img']);
  const dir = (await s.ok(['image', 'edit', 'app'])).stdout.trimEnd().split('\n').pop()!;
  t.is((await s.ok(['image', 'edit', 'app'])).stdout.trimEnd().split('\n').pop(), dir, 'a second edit names the same mount');
  t.deepEqual(compareTrees(suite.image.pristine, snapshotTree(dir)), [], 'the edit starts from the parent');
  edit(dir);
  const edited = snapshotTree(dir);
  await s.ok(['image', 'close', 'app']);
  t.is(strayMounts(dir).length, 0, 'close unmounted the edit');
  t.false((await s.json<Array<{ name: string }>>(['list'])).some((i) => i.name.startsWith('app')), 'the edit instance is gone');
  const layer = await s.layerTar('app');

  const names = (await tarHeaders(layer)).map((h) => h.name);
  t.true(names.includes('.wh.f1') && names.includes('d1/.wh.sub'), 'deletions are .wh. entries');
  t.deepEqual(names.filter((n) => n.endsWith('.wh..wh..opq')), ['d2/deep/.wh..wh..opq'], 'one opaque marker: the replaced directory');
  t.deepEqual(names.filter((n) => n.startsWith('d2/deep/') && n.includes('.wh.') && !n.endsWith('.wh..wh..opq')), [], 'no whiteouts inside it');
  t.false(names.some((n) => n.startsWith('d2/deep/x')), 'nothing of the old directory');
  const moved = (await tarHeaders(layer)).find((h) => h.name === 'd1/moved/a');
  t.deepEqual([moved?.uid, moved?.gid], [1234, 5678], 'the stored owner');
  const hl = (await tarHeaders(layer)).filter((h) => h.name === 'd1/hl' || h.name === 'd2/hl');
  t.deepEqual(hl.map((h) => h.type).sort(), ['file', 'link'], 'both names of the hard-link set: a file and a link to it');

  t.deepEqual(compareTrees(edited, await kernelMerged(t, layer, path.join(s.root, 'gnu'))), [], 'GNU tar + kernel overlayfs show the edited tree');
  await s.withImage('app', (m) => t.deepEqual(compareTrees(edited, snapshotTree(m)), [], 'stacked as an image: exactly the edited tree'));
  const viaPodman = await podmanTree(s, 'app');
  if (viaPodman) t.deepEqual(compareTrees(coarse(edited), coarse(viaPodman), { ignoreMtimeFor: [''] }), [], 'podman loads the --layers export and shows the edited tree');
  assertOneLineError(t, await s.cli(['image', 'edit', 'app']), 'edit of a closed image');
});

serial('commit: an instance frozen into a new image; its merged export is read right by GNU tar', async (t) => {
  const s = await session(t);
  await s.create('work', 'img');
  const dir = await s.mountInstance('work');
  edit(dir);
  const edited = snapshotTree(dir);
  assertOneLineError(t, await s.cli(['commit', 'work', 'v2']), 'commit of a mounted instance');
  await s.umountInstance('work', dir);
  await s.ok(['commit', 'work', 'v2']);
  const info = await s.json<{ stack: string[] }>(['image', 'info', 'v2']);
  t.deepEqual(info.stack, ['v2', 'img']);
  await s.withImage('v2', (m) => t.deepEqual(compareTrees(edited, snapshotTree(m)), [], 'v2 shows the instance'));
  await s.withInstance('work', (d) => t.deepEqual(compareTrees(edited, snapshotTree(d)), [], 'the instance is untouched by commit'));
  const merged = path.join(s.root, 'v2.tar');
  await s.ok(['image', 'export', 'v2', '-o', merged]);
  const gnu = gnuReference(merged, path.join(s.root, 'v2-gnu'));
  t.deepEqual(gnu.implicit, [], 'every directory is in the export');
  t.deepEqual(compareTrees(edited, gnu.snap), [], 'GNU tar extracts the export as the instance');
  assertOneLineError(t, await s.cli(['commit', 'work', 'v2']), 'commit to a name taken');
  assertOneLineError(t, await s.cli(['commit', 'nosuch', 'v3']), 'commit of an unknown instance');
});

serial('stack/unstack at $TARSTACK_STACKS: made on a parent once, restacked with its changes, then closed', async (t) => {
  const stacks = path.join(suite.root, `stacks-${seq}`);
  const s = await session(t, { TARSTACK_STACKS: stacks });
  assertOneLineError(t, await s.cli(['stack', 'w1']), 'stack of an unknown image without a parent');
  const r = await s.ok(['stack', 'w1', 'img']);
  const dir = path.join(stacks, 'w1');
  t.is(r.stdout.trimEnd().split('\n').pop(), dir, 'mounted at $TARSTACK_STACKS/w1, printed last');
  t.regex(r.stdout, /^created image w1 on img, open for editing \(stack: w1 <- img\)$/m, 'one image made, the stack it shows');
  fs.writeFileSync(path.join(dir, 'kept'), 'through unstack\n');
  await s.ok(['unstack', 'w1']);
  t.false(fs.existsSync(dir), 'unstack removed the empty mount directory');
  assertOneLineError(t, await s.cli(['unstack', 'w1']), 'unstack of what is not stacked');
  assertOneLineError(t, await s.cli(['stack', 'w1', 'w1']), 'stack on another parent than the first time');
  t.regex((await s.ok(['stack', 'w1'])).stdout, /^editing image w1 \(stack: w1 <- img\)$/m, 'nothing made the second time');
  t.is(fs.readFileSync(path.join(dir, 'kept'), 'utf8'), 'through unstack\n', 'restacked with its changes');
  // An open image is not a closed one.
  assertOneLineError(t, await s.cli(['instance', 'create', 'x', 'w1']), 'instance of an open image');
  assertOneLineError(t, await s.cli(['image', 'new', 'w2', '--parent', 'w1']), 'an open image as a parent');
  assertOneLineError(t, await s.cli(['image', 'export', 'w1', '-o', path.join(s.root, 'w1.tar')]), 'export of an open image');
  await s.ok(['image', 'close', 'w1']);
  t.false(fs.existsSync(path.join(dir, 'kept')), 'close unmounted the stack');
  await s.ok(['stack', 'w2', 'w1']);
  t.is(fs.readFileSync(path.join(stacks, 'w2', 'kept'), 'utf8'), 'through unstack\n', 'a closed image is a parent like any other');
  await s.ok(['unstack', 'w2']);
  await s.ok(['image', 'close', 'w2']);
  t.deepEqual((await s.json<{ stack: string[] }>(['image', 'info', 'w2'])).stack, ['w2', 'w1', 'img']);
});

serial('a new image without a parent, edited from nothing', async (t) => {
  const s = await session(t);
  await s.ok(['image', 'new', 'scratch']);
  const dir = (await s.ok(['image', 'edit', 'scratch'])).stdout.trimEnd().split('\n').pop()!;
  t.deepEqual(fs.readdirSync(dir), []);
  fs.mkdirSync(path.join(dir, 'etc'));
  fs.writeFileSync(path.join(dir, 'etc/hostname'), 'scratch\n');
  const edited = snapshotTree(dir);
  await s.ok(['image', 'close', 'scratch']);
  await s.withImage('scratch', (m) => t.deepEqual(compareTrees(edited, snapshotTree(m)), []));
});

serial('bad parents (a cycle, a missing parent) and racing calls: one line each, the store intact', async (t) => {
  const s = await session(t);
  await s.addImage(suite.image.tar, 'mid', 'img');
  await s.addImage(suite.image.tar, 'leaf', 'mid');
  await s.create('inst', 'img');
  // Two calls at once on one name: one wins, the other says why; nothing half made.
  const news = await Promise.all([s.cli(['image', 'new', 'twin', '--parent', 'img']), s.cli(['image', 'new', 'twin'])]);
  t.is(news.filter((r) => r.code === 0).length, 1, `one image new wins: ${news.map((r) => r.stderr).join(' | ')}`);
  assertOneLineError(t, news.find((r) => r.code !== 0)!, 'the losing image new');
  const commits = await Promise.all([s.cli(['commit', 'inst', 'snap']), s.cli(['commit', 'inst', 'snap'])]);
  t.is(commits.filter((r) => r.code === 0).length, 1, `one commit wins: ${commits.map((r) => r.stderr).join(' | ')}`);
  assertOneLineError(t, commits.find((r) => r.code !== 0)!, 'the losing commit');
  const images = path.join(s.home, 'images');
  t.deepEqual(fs.readdirSync(images).filter((n) => n.startsWith('.')), [], 'no staging left behind');

  const listed = await s.json<Array<{ name: string; id: string }>>(['image', 'list']);
  const id = (name: string) => listed.find((x) => x.name === name)!.id;
  const meta = (name: string) => path.join(images, id(name), 'image.json');
  const snapshot = () => fs.readdirSync(images).sort().map((d) => fs.readFileSync(path.join(images, d, 'image.json'), 'utf8'));
  const uses = (parent: string) => [['instance', 'create', 'x', parent], ['image', 'new', 'y', '--parent', parent], ['stack', 'z', parent],
    ['image', 'export', parent, '-o', path.join(s.root, 'x.tar')], ['stackpoint', 'create', 'sp', parent], ['image', 'mount', parent, s.root]];
  const imgJson = JSON.parse(fs.readFileSync(meta('img'), 'utf8')) as { parent: string | null };
  fs.writeFileSync(meta('img'), JSON.stringify({ ...imgJson, parent: id('leaf') })); // img <- mid <- leaf <- img
  let before = snapshot();
  for (const args of uses('leaf')) {
    const r = await s.cli(args);
    assertOneLineError(t, r, `${args.join(' ')} with a cycle`);
    t.regex(r.stderr, /cycle/, `${args[0]} ${args[1]}: says it is a cycle`);
  }
  t.deepEqual(snapshot(), before, 'nothing changed (cycle)');
  fs.writeFileSync(meta('img'), JSON.stringify(imgJson));
  fs.renameSync(path.join(images, id('mid')), path.join(s.root, 'mid-aside')); // leaf's parent is gone
  before = snapshot();
  for (const args of uses('leaf')) {
    const r = await s.cli(args);
    assertOneLineError(t, r, `${args.join(' ')} with a missing parent`);
    t.regex(r.stderr, /missing/, `${args[0]} ${args[1]}: says the parent is missing`);
  }
  t.deepEqual(snapshot(), before, 'nothing changed (missing parent)');
  t.false(fs.existsSync(path.join(s.root, 'x.tar')), 'no export written');
});
