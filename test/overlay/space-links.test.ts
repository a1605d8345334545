// A size-limited instance (create --size) gives a file's data space back when the file's data goes:
// its last name removed (unlink, or a rename over it), or, when it was open then, its last close.
// Also for a hard-link set, whose one upper inode lives in the index (work/index/<ino>) with a link
// for each upper name: the data goes with the index object, after the last name. statfs shows what
// is left of the limit, so it must come back to what it was before the file was written.
import test from 'ava';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { InstanceFs } from '../../src/overlay/instance-fs.js';
import type { TarLayer } from '../../src/layer/tar-layer.js';
import { pack } from '../helpers/pack.js';
import { layerFromTar, tempDir } from '../helpers/layers.js';

const me = { uid: 0, gid: 0, pid: 1 };
const DATA = Buffer.alloc(256 * 1024, 7); // a lower file written reserves a whole lazy chunk (1 MiB) besides: the limit is 4 MiB
const O_RDWR = 2;

async function limited(t: { teardown(fn: () => void): void }): Promise<InstanceFs> {
  const tmp = tempDir();
  t.teardown(() => tmp.cleanup());
  const tar = await pack([
    { name: 'h1', body: 'linked' },
    { name: 'h2', type: 'link', linkname: 'h1' },
    { name: 'z', body: 'z' },
  ]);
  const upper = join(tmp.dir, 'upper');
  mkdirSync(upper);
  const fs = new InstanceFs([layerFromTar(tar, tmp.dir, 'image.tar').layer as TarLayer], upper, join(tmp.dir, 'work'), { sizeLimit: 4 * 1024 * 1024 });
  t.teardown(() => fs.destroy());
  return fs;
}

/** A new file `name` in the root with DATA in it, left open: its inode and handle. */
function written(fs: InstanceFs, name: string): { ino: number; fh: number } {
  const c = fs.create(1, name, 0o644, O_RDWR, me);
  fs.write(c.entry.ino, c.open.fh, DATA, 0);
  return { ino: c.entry.ino, fh: c.open.fh };
}

const free = (fs: InstanceFs): number => fs.statfs().bfree;

test('a file\'s space comes back with its last name, for a plain file and for a set of links made in the instance', (t) =>
  limited(t).then((fs) => {
    const empty = free(fs);
    const a = written(fs, 'a');
    fs.release(a.ino, a.fh);
    t.true(free(fs) < empty, 'the data is counted');
    fs.unlink(1, 'a');
    t.is(free(fs), empty, 'a plain file');
    const s = written(fs, 's1');
    fs.release(s.ino, s.fh);
    fs.link(s.ino, 1, 's2');
    fs.link(s.ino, 1, 's3');
    const full = free(fs);
    fs.unlink(1, 's1');
    fs.unlink(1, 's2');
    t.is(free(fs), full, 'a name is left: nothing comes back');
    fs.unlink(1, 's3');
    t.is(free(fs), empty, 'a set: the last unlink');
  }));

test('a set\'s space comes back when a rename replaces its last name, and for a lower set written through one name', (t) =>
  limited(t).then((fs) => {
    const empty = free(fs);
    const s = written(fs, 's1');
    fs.release(s.ino, s.fh);
    fs.link(s.ino, 1, 's2');
    fs.unlink(1, 's1');
    fs.rename(1, 'z', 1, 's2', 0);
    t.is(free(fs), empty, 'renamed over');
    const h1 = fs.lookup(1, 'h1');
    const h = fs.open(h1.ino, O_RDWR);
    fs.write(h1.ino, h.fh, DATA, 0);
    fs.release(h1.ino, h.fh);
    t.true(free(fs) < empty);
    fs.unlink(1, 'h2');
    fs.unlink(1, 'h1');
    t.is(free(fs), empty, 'a lower set copied into the index');
  }));

test('a file open when its last name goes gives its space back at its last close, a plain file and a set', (t) =>
  limited(t).then((fs) => {
    const empty = free(fs);
    const a = written(fs, 'a');
    fs.unlink(1, 'a');
    t.true(free(fs) < empty, 'still open: still there');
    fs.release(a.ino, a.fh);
    t.is(free(fs), empty, 'a plain file');
    const s = written(fs, 's1');
    fs.link(s.ino, 1, 's2');
    fs.unlink(1, 's1');
    fs.unlink(1, 's2');
    t.true(free(fs) < empty, 'still open: still there');
    fs.release(s.ino, s.fh);
    t.is(free(fs), empty, 'a set');
  }));
