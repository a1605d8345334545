// Merging tar layers without a mount: whiteouts, opaque directories, files hiding directories,
// inode numbers (unique, stable, shared by hard links) and readdir cookies.
import test from 'ava';
import { Overlay } from '../../src/overlay/overlay.js';
import type { TarLayer } from '../../src/layer/tar-layer.js';
import { pack } from '../helpers/pack.js';
import { flatten, layerFromTar, tempDir } from '../helpers/layers.js';

async function stack(t: { teardown(fn: () => void): void }): Promise<() => Overlay> {
  const tmp = tempDir();
  t.teardown(() => tmp.cleanup());
  const base = await pack([
    { name: 'a/x', body: 'ax' },
    { name: 'a/y', body: 'ay' },
    { name: 'b', body: 'b' },
    { name: 'c/1', body: 'c1' },
    { name: 'd/deep/f', body: 'deep' },
    { name: 'h1', body: 'linked' },
    { name: 'h2', type: 'link', linkname: 'h1' },
    { name: 'g/keep', body: 'g' },
  ]);
  const mid = await pack([
    { name: '.wh.b', body: '' },
    { name: 'a/.wh.x', body: '' },
    { name: 'c/.wh..wh..opq', body: '' },
    { name: 'c/new', body: 'cnew' },
    { name: 'e', body: 'e' },
    { name: 'd', body: 'd is a file now' },
  ]);
  const top = await pack([
    { name: 'a/z', body: 'az' },
    { name: '.wh.e', body: '' },
    { name: 'f', body: 'f' },
    { name: 'g/.wh.keep', body: '' },
    { name: 'g/added', body: 'ga' },
  ]);
  const files = [top, mid, base].map((tar, i) => ({ tar, name: `l${i}.tar` }));
  return () => new Overlay(files.map((f) => layerFromTar(f.tar, tmp.dir, f.name).layer as TarLayer));
}

test('three layers merge as kernel overlayfs would', async (t) => {
  const fs = (await stack(t))();
  const flat = await flatten(fs);
  t.deepEqual(Object.keys(flat).sort(), ['a', 'a/y', 'a/z', 'c', 'c/new', 'd', 'f', 'g', 'g/added', 'h1', 'h2']);
  t.is(flat.d.type, 'file');
  t.is(flat.d.content, 'd is a file now');
  t.is(flat['a/y'].content, 'ay');
  t.is(flat.h1.ino, flat.h2.ino);
  t.is(flat.h1.nlink, 2);
  t.is(flat.a.nlink, 1, 'a merged directory reports nlink 1, as overlayfs does');
  const inos = Object.values(flat).map((e) => e.ino);
  t.is(new Set(inos).size, inos.length - 1, 'only the hard-linked pair shares an inode');
  fs.destroy();
});

test('inode numbers are stable across remounts', async (t) => {
  const make = await stack(t);
  const one = make();
  const two = make();
  t.deepEqual(await flatten(one), await flatten(two));
  // A fresh overlay resolves an inode it never looked up (kernel-cached) to the same directory.
  const aIno = one.lookup(1, 'a').ino;
  const names = [...two.readdir(aIno, two.opendir(aIno), 0)].map((e) => e.name);
  t.deepEqual(names, ['.', '..', 'y', 'z']);
  one.destroy();
  two.destroy();
});

test('readdir resumes at any cookie without skipping or repeating', async (t) => {
  const fs = (await stack(t))();
  const fh = fs.opendir(1);
  const all = [...fs.readdir(1, fh, 0)];
  for (let i = 0; i < all.length; i++) {
    const rest = [...fs.readdir(1, fh, all[i].next)].map((e) => e.name);
    t.deepEqual(rest, all.slice(i + 1).map((e) => e.name), `after ${all[i].name}`);
  }
  fs.releasedir(1, fh);
  fs.destroy();
});

test('errors: missing names, files as directories, writes', async (t) => {
  const fs = (await stack(t))();
  t.throws(() => fs.lookup(1, 'b'), { code: 'ENOENT' });
  const f = fs.lookup(1, 'f').ino;
  t.throws(() => fs.lookup(f, 'x'), { code: 'ENOTDIR' });
  t.throws(() => fs.open(f, 1), { code: 'EROFS' });
  t.throws(() => fs.open(1, 0), { code: 'EISDIR' });
  t.throws(() => fs.readlink(f), { code: 'EINVAL' });
  t.throws(() => fs.getxattr(f, 'user.nope'), { code: 'ENODATA' });
  fs.destroy();
});
