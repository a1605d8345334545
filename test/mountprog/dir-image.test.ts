// `tarstack image add <dir>`: a directory as an image layer, referenced in place and never modified,
// stacked on a tar image and under another; an instance of the mixed stack changes only its upper.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { InstanceSession, instanceSkipReason } from '../helpers/instances.js';
import { makeTestRoot } from '../helpers/mounted.js';
import { pack } from '../helpers/pack.js';
import { snapshotTree, compareTrees } from '../helpers/tree.js';

test('a mixed stack (dir over tar over dir) mounts read-only and as an instance; the directories never change', async (t) => {
  const why = await instanceSkipReason();
  if (why) return t.pass(why);
  const s = new InstanceSession(makeTestRoot('dir-image'), t);
  const base = path.join(s.root, 'base');
  const top = path.join(s.root, 'top');
  fs.mkdirSync(path.join(base, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(base, 'etc/os-release'), 'base');
  fs.writeFileSync(path.join(base, 'etc/hosts'), 'base hosts');
  fs.mkdirSync(path.join(top, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(top, 'etc/.wh.hosts'), '');
  fs.writeFileSync(path.join(top, 'etc/motd'), 'hello');
  fs.writeFileSync(path.join(top, 'big'), Buffer.alloc(2 << 20, 1));
  const tar = path.join(s.root, 'mid.tar');
  fs.writeFileSync(tar, await pack([{ name: 'usr/', type: 'directory' }, { name: 'usr/bin', body: 'tool' }, { name: 'etc/', type: 'directory' }, { name: 'etc/os-release', body: 'mid' }]));
  const before = { base: snapshotTree(base), top: snapshotTree(top) };

  const added = await s.ok(['image', 'add', base, '--name', 'base']);
  t.regex(added.stdout, /directory .* \(served in place\)/);
  await s.addImage(tar, 'mid', 'base');
  await s.ok(['image', 'add', top, '--name', 'top', '--parent', 'mid']);
  const info = JSON.parse((await s.ok(['image', 'info', 'top', '--json'])).stdout) as { kind: string; stack: string[]; tarStatus: string };
  t.deepEqual([info.kind, info.stack, info.tarStatus], ['dir', ['top', 'mid', 'base'], 'ok']);

  t.regex((await s.ok(['image', 'verify', 'top'])).stdout, /ok +base: .*base is the directory that was added/);
  const ro = await s.mount('top', 'ro');
  t.deepEqual(fs.readdirSync(path.join(ro, 'etc')).sort(), ['motd', 'os-release']);
  t.is(fs.readFileSync(path.join(ro, 'etc/os-release'), 'utf8'), 'mid');
  await s.umount(ro);

  await s.create('inst', 'top');
  await s.withInstance('inst', (mnt) => {
    fs.appendFileSync(path.join(mnt, 'etc/os-release'), '+');
    fs.appendFileSync(path.join(mnt, 'big'), 'x'); // a dir layer's big file is copied whole (see CopyUp)
    fs.rmSync(path.join(mnt, 'etc/motd'));
    fs.writeFileSync(path.join(mnt, 'usr/new'), 'n');
  });
  const diff = (await s.ok(['diff', 'inst', '--porcelain'])).stdout.trim().split('\n').sort();
  t.deepEqual(diff, ['A usr/new', 'D etc/motd', 'M big', 'M etc', 'M etc/os-release', 'M usr']); // dirs: their mtimes moved
  await s.withInstance('inst', (mnt) => {
    t.is(fs.readFileSync(path.join(mnt, 'etc/os-release'), 'utf8'), 'mid+');
    t.is(fs.statSync(path.join(mnt, 'big')).size, (2 << 20) + 1);
  });
  t.deepEqual(compareTrees(before.base, snapshotTree(base)), [], 'the base directory is never modified');
  t.deepEqual(compareTrees(before.top, snapshotTree(top)), [], 'the top directory is never modified');

  // A directory replaced under its image is reported, not served.
  fs.renameSync(top, `${top}.old`);
  fs.mkdirSync(top);
  const r = await s.cli(['image', 'mount', 'top', path.join(s.root, 'ro')]);
  t.not(r.code, 0);
  t.regex(r.stderr, /no longer the directory that was added/);
});
