// What the host refuses an ordinary user is kept by tarstack (src/overlay/kept.ts): an instance with
// keepRefused on copies up root-owned files, devices, security.*/trusted.* xattrs and user.* xattrs
// on symlinks without chown, mknod or privileged setxattr, and shows (and diffs) the stored values.
import test from 'ava';
import { lstatSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { InstanceFs } from '../../src/overlay/instance-fs.js';
import { Overlay } from '../../src/overlay/overlay.js';
import { diffTrees } from '../../src/overlay/diff.js';
import type { TarLayer } from '../../src/layer/tar-layer.js';
import { pack } from '../helpers/pack.js';
import { layerFromTar, tempDir } from '../helpers/layers.js';

const me = { uid: 4321, gid: 4321, pid: 1 };
const CAP = Buffer.from('0100000200200000000000000000000000000000', 'hex'); // cap_net_bind_service=ep

async function setup(t: { teardown(fn: () => void): void }) {
  const tmp = tempDir();
  t.teardown(() => tmp.cleanup());
  const tar = await pack([
    { name: 'ro/', type: 'directory', mode: 0o555, uid: 0, gid: 0 },
    { name: 'ro/f', body: 'root file', mode: 0o444, uid: 0, gid: 0 },
    { name: 'owned', body: 'x', mode: 0o4755, uid: 1234, gid: 5678 },
    { name: 'cap', body: 'ping', mode: 0o755, pax: { 'SCHILY.xattr.security.capability': CAP.toString('latin1'), 'SCHILY.xattr.trusted.t': 'T' } },
    { name: 'null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
    { name: 'disk', type: 'block-device', devmajor: 8, devminor: 0, mode: 0o660, gid: 6 },
    { name: 'pipe', type: 'fifo', mode: 0o620, uid: 7 },
    { name: 'sym', type: 'symlink', linkname: 'owned', uid: 9, pax: { 'SCHILY.xattr.user.s': 'on a symlink' } },
  ]);
  const upper = join(tmp.dir, 'upper');
  const work = join(tmp.dir, 'work');
  mkdirSync(upper);
  const layers = () => [layerFromTar(tar, tmp.dir, 'image.tar').layer as TarLayer];
  const open = (owners?: 'mapped') => new InstanceFs(layers(), upper, work, { keepRefused: true, ...(owners ? { owners } : {}) });
  const fs = open();
  let closed = false;
  const destroy = fs.destroy.bind(fs);
  fs.destroy = () => void (closed || ((closed = true), destroy())); // some tests reopen the instance
  t.teardown(() => fs.destroy());
  return { fs, upper, work, open, image: () => new Overlay(layers()), offline: () => new InstanceFs(layers(), upper, work, { offline: true }) };
}

const touch = (fs: InstanceFs, ino: number) => fs.setattr(ino, { mtime: { sec: 1_800_000_000, nsec: 5 } }, undefined);

test('copy-up keeps owners and modes in tarstack metadata; the real objects stay the daemon\'s and writable', async (t) => {
  const { fs, upper } = await setup(t);
  const ro = fs.lookup(1, 'ro').ino;
  const f = fs.lookup(ro, 'f').ino;
  const h = fs.open(f, 2);
  fs.write(f, h.fh, Buffer.from('ROOT'), 0);
  fs.release(f, h.fh);
  const a = fs.getattr(f);
  t.deepEqual([a.uid, a.gid, a.mode & 0o7777], [0, 0, 0o444]);
  t.is(fs.getattr(ro).mode & 0o7777, 0o555);
  // The upper copies: the real mode lets the daemon keep working in them (stored mode in an xattr).
  t.is(lstatSync(join(upper, 'ro')).mode & 0o700, 0o700);
  t.is(lstatSync(join(upper, 'ro', 'f')).mode & 0o600, 0o600);
  const owned = fs.lookup(1, 'owned').ino;
  touch(fs, owned);
  t.deepEqual([fs.getattr(owned).uid, fs.getattr(owned).gid, fs.getattr(owned).mode & 0o7777], [1234, 5678, 0o4755]);
  t.is(lstatSync(join(upper, 'owned')).mode & 0o6000, 0, 'no real set-id bits');
});

test('devices become stand-ins, fifos and symlinks keep owner, inode and xattrs in the side table', async (t) => {
  const { fs, upper, open, work } = await setup(t);
  const before = ['null', 'disk', 'pipe', 'sym'].map((n) => fs.lookup(1, n));
  for (const e of before) touch(fs, e.ino);
  fs.setxattr(before[3]!.ino, 'user.more', Buffer.from('m'), 0);
  t.true(lstatSync(join(upper, 'null')).isFile(), 'a char device is kept as an empty file');
  t.true(lstatSync(join(upper, 'disk')).isFile());
  t.true(lstatSync(join(upper, 'pipe')).isFIFO());
  t.true(readdirSync(join(work, 'meta')).length >= 2);
  fs.destroy();
  const again = open();
  t.teardown(() => again.destroy());
  const after = ['null', 'disk', 'pipe', 'sym'].map((n) => again.lookup(1, n));
  for (let i = 0; i < after.length; i++) {
    const [x, y] = [before[i]!.attr, after[i]!.attr];
    t.deepEqual([y.ino, y.mode, y.uid, y.gid, y.rdev], [x.ino, x.mode, x.uid, x.gid, x.rdev], ['null', 'disk', 'pipe', 'sym'][i]);
    t.is(y.mtimeSec, 1_800_000_000);
  }
  t.is(again.getxattr(after[3]!.ino, 'user.s').toString(), 'on a symlink');
  t.deepEqual(again.listxattr(after[3]!.ino).sort(), ['user.more', 'user.s']);
});

test('security.* and trusted.* xattrs survive copy-up and changes; chown and chmod are kept, never refused', async (t) => {
  const { fs, upper } = await setup(t);
  const cap = fs.lookup(1, 'cap').ino;
  touch(fs, cap);
  t.deepEqual(fs.getxattr(cap, 'security.capability'), CAP);
  t.is(fs.getxattr(cap, 'trusted.t').toString(), 'T');
  t.deepEqual(fs.listxattr(cap).sort(), ['security.capability', 'trusted.t']);
  fs.setxattr(cap, 'trusted.new', Buffer.from('n'), 0);
  fs.removexattr(cap, 'trusted.t');
  t.deepEqual(fs.listxattr(cap).sort(), ['security.capability', 'trusted.new']);
  fs.setattr(cap, { uid: 0, gid: 42, mode: 0o2711 }, undefined);
  const a = fs.getattr(cap);
  t.deepEqual([a.uid, a.gid, a.mode & 0o7777], [0, 42, 0o2711]);
  const made = fs.create(1, 'new', 0o100640, 0o101, me);
  fs.release(made.entry.ino, made.open.fh);
  t.deepEqual([fs.getattr(made.entry.ino).uid, fs.getattr(made.entry.ino).mode & 0o7777], [4321, 0o640]);
  const dev = fs.mknod(1, 'tty', 0o020620, (4 << 8) | 1, me);
  t.is(fs.getattr(dev.ino).mode, 0o020620);
  t.is(fs.getattr(dev.ino).rdev, (4 << 8) | 1);
  t.true(lstatSync(join(upper, 'tty')).isFile());
});

test('mapped owners show the mounting user; diff sees stored values, not the stand-ins', async (t) => {
  const { fs, open, image, offline } = await setup(t);
  touch(fs, fs.lookup(1, 'owned').ino);
  touch(fs, fs.lookup(1, 'null').ino);
  fs.setattr(fs.lookup(1, 'pipe').ino, { uid: 7 }, undefined); // no change of owner: only ctime
  fs.destroy();
  const mapped = open('mapped');
  t.teardown(() => mapped.destroy());
  const a = mapped.getattr(mapped.lookup(1, 'owned').ino);
  t.deepEqual([a.uid, a.gid], [process.getuid!(), process.getgid!()]);
  t.is(a.mode & 0o7777, 0o4755);
  const before = image();
  const after = offline();
  t.teardown(() => (before.destroy(), after.destroy()));
  const changes = (await diffTrees(before, after)).map((c) => `${c.change} ${c.path}`).sort();
  t.deepEqual(changes, ['modified null', 'modified owned']);
});
