// DirLayer without a mount: whiteouts of both kinds, opaque directories of every marking, hard links
// sharing an inode, inode keys stable across two layers of one directory, nothing read before use,
// and a stack that mixes a directory layer over a tar layer.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { DirLayer } from '../../src/layer/dir-layer.js';
import { ABSENT } from '../../src/layer/layer.js';
import { Overlay } from '../../src/overlay/overlay.js';
import { loadSys } from '../../src/native/sys.js';
import { flatten, layerFromTar, tempDir } from '../helpers/layers.js';
import { pack } from '../helpers/pack.js';

const isRoot = process.getuid?.() === 0;

function write(root: string, rel: string, body = rel): void {
  fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
  fs.writeFileSync(path.join(root, rel), body);
}

test('whiteouts (char 0/0 and .wh. files) and opaque dirs (xattrs, .wh..wh..opq) merge as overlayfs does', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const top = path.join(dir, 'top');
  const bottom = path.join(dir, 'bottom');
  for (const f of ['a', 'b', 'c', 'keep', 'o1/old', 'o2/old', 'o3/old', 'm/old']) write(bottom, f);
  write(top, '.wh.b', '');
  write(top, 'o1/new');
  write(top, 'o2/new');
  write(top, 'o3/.wh..wh..opq', '');
  write(top, 'm/new');
  write(top, '.wh..wh.plnk/junk'); // aufs metadata: never shown
  loadSys().setxattr(Buffer.from(path.join(top, 'o1')).toString('latin1'), 'user.overlay.opaque', Buffer.from('y'), 0);
  if (isRoot) {
    loadSys().mknod(path.join(top, 'a'), 0o020000, 0, 0);
    loadSys().setxattr(path.join(top, 'o2'), 'trusted.overlay.opaque', Buffer.from('y'), 0);
  }
  const ov = new Overlay([new DirLayer(top), new DirLayer(bottom)]);
  t.teardown(() => ov.destroy());
  const tree = await flatten(ov);
  const names = Object.keys(tree).sort();
  const expected = ['c', 'keep', 'm', 'm/new', 'm/old', 'o1', 'o1/new', 'o2', 'o2/new', 'o3'];
  if (!isRoot) expected.push('a', 'o2/old');
  t.deepEqual(names, expected.sort());
  t.is(tree['keep']!.content, 'keep');
  t.is(ov.listxattr(ov.lookup(1, 'o1').ino).length, 0, 'overlay xattrs are layer format, not file data');
});

test('redirects in directory layers: relative and absolute, chained through three layers; an opaque dir stops first', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const [top, mid, bottom] = ['top', 'mid', 'bottom'].map((n) => path.join(dir, n)) as [string, string, string];
  const redirect = (p: string, to: string) => loadSys().setxattr(p, 'user.overlay.redirect', Buffer.from(to), 0);
  for (const f of ['d/a', 'd/sub/b', 'd/deep/c', 'other/o', 'x/old', 'keep']) write(bottom, f);
  // mid: mv d e (relative, as the kernel writes it within one directory); mv other y/moved (absolute)
  write(mid, '.wh.d', '');
  write(mid, 'e/.keep');
  redirect(path.join(mid, 'e'), 'd');
  write(mid, '.wh.other', '');
  write(mid, 'y/moved/mine');
  redirect(path.join(mid, 'y/moved'), '/other');
  // top: mv e f (absolute, to a redirect of the layer below); mv f/sub s2 (through that redirect)
  write(top, '.wh.e', '');
  write(top, 'f/.wh.sub', '');
  redirect(path.join(top, 'f'), '/e');
  write(top, 's2/.keep');
  redirect(path.join(top, 's2'), '/e/sub');
  write(top, 'x/new'); // opaque: its redirect is never read
  loadSys().setxattr(path.join(top, 'x'), 'user.overlay.opaque', Buffer.from('y'), 0);
  redirect(path.join(top, 'x'), '/d');
  const ov = new Overlay([new DirLayer(top), new DirLayer(mid), new DirLayer(bottom)]);
  t.teardown(() => ov.destroy());
  const names = Object.keys(await flatten(ov)).sort();
  t.deepEqual(names, ['f', 'f/.keep', 'f/a', 'f/deep', 'f/deep/c', 'keep', 's2', 's2/.keep', 's2/b', 'x', 'x/new', 'y', 'y/moved', 'y/moved/mine', 'y/moved/o'].sort());
  // a redirected directory's inode, looked up again from its number alone (cache or not), is the same merge
  const s2 = ov.lookup(1, 's2').ino;
  const ov2 = new Overlay([new DirLayer(top), new DirLayer(mid), new DirLayer(bottom)]);
  t.teardown(() => ov2.destroy());
  const f = ov2.lookup(1, 'f');
  t.is(ov2.lookup(f.ino, 'a').attr.size, 3, 'd/a of the bottom layer, reached through two redirects');
  t.is(ov2.lookup(1, 's2').ino, s2, 'inode numbers are stable across mounts');
  // f/deep is bottom's d/deep alone, whose path in its own layer is hidden: found again by number from that layer down
  const deep = ov.lookup(ov.lookup(1, 'f').ino, 'deep').ino;
  t.is(ov.lookup(deep, 'c').attr.size, 8);
});

test('hard links share an inode; keys come from st_ino, so two layers of one directory agree', (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  write(dir, 'd/x', 'same');
  fs.linkSync(path.join(dir, 'd/x'), path.join(dir, 'd/y'));
  const a = new DirLayer(dir);
  const b = new DirLayer(dir);
  t.teardown(() => (a.close(), b.close()));
  const ad = a.lookup(0, 'd');
  const ax = a.lookup(ad, 'x');
  const ay = a.lookup(ad, 'y');
  t.not(ax, ay);
  t.is(a.inodeOf(ax), a.inodeOf(ay));
  // Another instance meets the names in the other order and still gives the same keys.
  const by = b.lookup(b.lookup(0, 'd'), 'y');
  t.is(b.inodeOf(by), a.inodeOf(ax));
  t.is(a.nodeOfInode(a.inodeOf(ay)), ax, 'the first name met carries the inode');
  t.is(a.lookup(ad, 'nope'), ABSENT);
});

test('nothing is listed or stat-ed before it is used (no scan at mount)', (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  write(dir, 'open/file');
  fs.mkdirSync(path.join(dir, 'closed'));
  write(dir, 'closed/secret');
  const L = new DirLayer(dir);
  t.teardown(() => L.close());
  fs.chmodSync(path.join(dir, 'closed'), 0); // listing it now would fail (for non-root)
  t.not(L.lookup(L.lookup(0, 'open'), 'file'), ABSENT);
  t.true(L.isDir(L.lookup(0, 'closed')));
  fs.chmodSync(path.join(dir, 'closed'), 0o755);
  // Listing happens once: entries added later are not seen (a lower is read-only by contract).
  write(dir, 'open/later');
  t.is(L.lookup(L.lookup(0, 'open'), 'later'), ABSENT);
});

test('a directory layer over a tar layer: whiteouts and opaque dirs of the dir layer hide tar entries', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const tar = await pack([
    { name: 'etc/', type: 'directory' },
    { name: 'etc/passwd', body: 'root' },
    { name: 'etc/gone', body: 'x' },
    { name: 'opt/', type: 'directory' },
    { name: 'opt/old', body: 'x' },
  ]);
  const { layer } = layerFromTar(tar, dir);
  const top = path.join(dir, 'top');
  write(top, 'etc/.wh.gone', '');
  write(top, 'etc/hosts');
  write(top, 'opt/.wh..wh..opq', '');
  write(top, 'opt/new');
  const ov = new Overlay([new DirLayer(top), layer]);
  t.teardown(() => ov.destroy());
  t.deepEqual(Object.keys(await flatten(ov)).sort(), ['etc', 'etc/hosts', 'etc/passwd', 'opt', 'opt/new']);
});

test('the 1,025th node stat-ed reads its own attributes (the table grows under it)', (t) => {
  const tmp = tempDir();
  t.teardown(() => tmp.cleanup());
  const dir = tmp.dir;
  let d = dir;
  for (let i = 0; i < 1100; i++) fs.mkdirSync((d = path.join(d, 'd'))); // fails before: ENOTDIR at depth 1023
  const layer = new DirLayer(dir);
  let node = 0;
  for (let i = 0; i < 1100; i++) {
    node = layer.lookup(node, 'd');
    t.not(node, ABSENT);
    if (!layer.isDir(node) || (layer.modeOf(node) & 0o170000) !== 0o040000) return void t.fail(`depth ${i}: mode ${layer.modeOf(node).toString(8)}`);
  }
  layer.close();
  t.pass();
});
