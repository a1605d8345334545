// The standard upper's two fallbacks, without a mount: `.wh.NAME` whiteout files (where mknod is
// refused) and user.overlay.* markers (userxattr / not root), written and read back by a fresh
// InstanceFs; nothing tarstack-private is written in either.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { DirLayer } from '../../src/layer/dir-layer.js';
import { InstanceFs } from '../../src/overlay/instance-fs.js';
import { ROOT_INO } from '../../src/vfs/api.js';
import { loadSys } from '../../src/native/sys.js';
import type { UpperFormat } from '../../src/overlay/upper.js';
import { tempDir } from '../helpers/layers.js';
import { xattrNamesUnder } from '../helpers/mountprog.js';

const me = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, pid: 1 };
const FORMAT: UpperFormat = { xattrs: 'user', whiteouts: 'files', privateMetadata: false };

function names(fsys: InstanceFs, ino: number): string[] {
  const fh = fsys.opendir(ino);
  const out = [...fsys.readdir(ino, fh, 0)].map((e) => e.name).filter((n) => n !== '.' && n !== '..');
  fsys.releasedir(ino, fh);
  return out.sort();
}

test('.wh. whiteout files and user.overlay.* markers: written, hidden, and read back', (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const lower = path.join(dir, 'lower');
  for (const f of ['a', 'b', 'd/x', 'e/y', 'r/z']) {
    fs.mkdirSync(path.dirname(path.join(lower, f)), { recursive: true });
    fs.writeFileSync(path.join(lower, f), f);
  }
  const [upper, work] = [path.join(dir, 'upper'), path.join(dir, 'work')];
  fs.mkdirSync(upper);
  const open = () => new InstanceFs([new DirLayer(lower)], upper, work, { format: FORMAT, wholeFiles: true });
  const a = open();
  a.unlink(ROOT_INO, 'a');
  const d = a.lookup(ROOT_INO, 'd').ino;
  a.unlink(d, 'x');
  a.rmdir(ROOT_INO, 'd');
  a.mkdir(ROOT_INO, 'd', 0o755, me); // replaces a lower dir: opaque
  a.rename(ROOT_INO, 'r', ROOT_INO, 'r2', 0); // a lower dir moves: redirect, and a whiteout at the old name
  a.rename(ROOT_INO, 'b', ROOT_INO, 'b2', 0);
  t.throws(() => a.lookup(ROOT_INO, '.wh.a'), { code: 'ENOENT' }, 'whiteout files are never names');
  t.deepEqual(names(a, ROOT_INO), ['b2', 'd', 'e', 'r2']);
  a.destroy();

  t.deepEqual(fs.readdirSync(upper).sort(), ['.wh.a', '.wh.b', '.wh.r', 'b2', 'd', 'r2']);
  t.true(fs.lstatSync(path.join(upper, '.wh.a')).isFile());
  const sys = loadSys();
  t.is(sys.getxattr(path.join(upper, 'd'), 'user.overlay.opaque')?.toString(), 'y');
  t.is(sys.getxattr(path.join(upper, 'r2'), 'user.overlay.redirect')?.toString(), '/r');
  t.deepEqual(xattrNamesUnder(upper).filter((n) => !n.startsWith('user.overlay.')), []);
  t.deepEqual(fs.readdirSync(work), ['tmp'], 'no hard-link index in the work dir');

  const b = open();
  t.teardown(() => b.destroy());
  t.deepEqual(names(b, ROOT_INO), ['b2', 'd', 'e', 'r2']);
  t.deepEqual(names(b, b.lookup(ROOT_INO, 'd').ino), []);
  t.deepEqual(names(b, b.lookup(ROOT_INO, 'r2').ino), ['z']);
  b.create(ROOT_INO, 'a', 0o644, fs.constants.O_WRONLY, me); // over its whiteout file
  t.false(fs.existsSync(path.join(upper, '.wh.a')), 'the whiteout file goes when the name comes back');
  t.deepEqual(names(b, ROOT_INO), ['a', 'b2', 'd', 'e', 'r2']);
});
