// The tree builder and the index file, over archives from tar-stream: duplicates, hard links,
// implied directories, confinement, whiteouts; every array through an index file and back.
// The scanner's own cases: scan.test.ts, sparse.test.ts.
import test from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { indexArchive } from '../../src/tar/indexer.js';
import { BufferReader } from '../../src/tar/reader.js';
import { readIndex, writeIndex } from '../../src/tar/index-file.js';
import { pack } from '../helpers/pack.js';
import { tempDir, tree } from '../helpers/layers.js';

const id = { size: 0, mtimeNs: '0', ino: 0, dev: 0 };

test('a later duplicate wins; a directory over a directory keeps its children', async (t) => {
  const tar = await pack([
    { name: 'f', body: 'old' },
    { name: 'd/', type: 'directory', mode: 0o700 },
    { name: 'd/inside', body: 'x' },
    { name: 'f', body: 'new!' },
    { name: 'd/', type: 'directory', mode: 0o750 },
  ]);
  const { flat } = await tree(tar);
  t.is(flat.f.content, 'new!');
  t.is(flat.d.mode, 0o750);
  t.is(flat['d/inside'].content, 'x');
});

test('hard links share an inode, even after the target name is replaced', async (t) => {
  const tar = await pack([
    { name: 'a', body: 'first' },
    { name: 'b', type: 'link', linkname: 'a' },
    { name: 'c', type: 'link', linkname: 'b' },
    { name: 'a', body: 'second' },
  ]);
  const { flat } = await tree(tar);
  t.is(flat.b.ino, flat.c.ino);
  t.not(flat.a.ino, flat.b.ino);
  t.is(flat.b.content, 'first');
  t.is(flat.b.nlink, 2);
  t.is(flat.a.nlink, 1);
});

test('parents are implied; unsafe names are skipped; leading slashes stripped', async (t) => {
  const tar = await pack([
    { name: 'deep/er/file', body: 'z' },
    { name: '../escape', body: 'no' },
    { name: 'a/../../b', body: 'no' },
    { name: '/abs/path', body: 'yes' },
    { name: './dot/./x', body: 'y' },
  ]);
  const { flat, warnings } = await tree(tar);
  t.deepEqual(Object.keys(flat).sort(), ['abs', 'abs/path', 'deep', 'deep/er', 'deep/er/file', 'dot', 'dot/x']);
  t.is(flat.deep.type, 'dir');
  t.deepEqual(warnings.filter((w) => w === 'UNSAFE_NAME').length, 2);
  t.true(warnings.includes('LEADING_SLASH'));
});

test('whiteouts and opaque markers never show as names', async (t) => {
  const tar = await pack([
    { name: '.wh.gone', body: '' },
    { name: 'd/.wh..wh..opq', body: '' },
    { name: 'd/kept', body: 'k' },
  ]);
  const { flat } = await tree(tar);
  t.deepEqual(Object.keys(flat).sort(), ['d', 'd/kept']);
});

test('a sibling finds its parent by the last member\'s directory, never once that directory was replaced', async (t) => {
  const tar = await pack([
    { name: 'p/e/', type: 'directory' },
    { name: 'p/e/.wh..wh..opq', body: '' }, // e stays empty, and is the directory members after it are looked up in
    { name: './p/e', body: 'a file over the empty directory' }, // not a plain name: the lookup cache stays as it was
    { name: 'p/e/z', body: 'no: its parent is a file now' },
    { name: 'p/d/', type: 'directory' },
    { name: 'p/d/x', body: 'x' },
    { name: 'p/d/y/', type: 'directory' },
    { name: 'p/d/y', body: 'over the empty directory' },
    { name: 'p/d/y/w', body: 'w' },
    { name: 'p/d/..', body: 'no' },
    { name: 'p/d/.', type: 'directory', mode: 0o700 },
  ]);
  const { flat, warnings } = await tree(tar);
  t.deepEqual(Object.keys(flat).sort(), ['p', 'p/d', 'p/d/x', 'p/d/y', 'p/e']);
  t.is(flat['p/e'].content, 'a file over the empty directory');
  t.is(flat['p/d'].mode, 0o700);
  t.is(flat['p/d/y'].type, 'file');
  t.deepEqual(warnings.sort(), ['PARENT_NOT_DIR', 'PARENT_NOT_DIR', 'UNSAFE_NAME']);
});

test('the index file round-trips every array', async (t) => {
  const tmp = tempDir();
  try {
    const tar = await pack([{ name: 'a/b', body: 'x', pax: { 'SCHILY.xattr.user.k': 'v' } }, { name: 'l', type: 'symlink', linkname: 'a/b' }]);
    const data = indexArchive(new BufferReader(tar), id, 0);
    const p = join(tmp.dir, 'index');
    writeIndex(p, data);
    const back = readIndex(p, { members: 'all' });
    for (const k of ['parent', 'nameOff', 'nameLen', 'flags', 'mode', 'size', 'dataOff', 'mtimeSec', 'a', 'b', 'inode', 'nlink', 'extra'] as const) {
      t.deepEqual([...back[k]], [...data[k]], k);
    }
    t.deepEqual([...back.members.crc], [...data.members.crc]);
    t.deepEqual(back.extras, data.extras);
    t.true(back.names.equals(data.names));
    // A plain tar's index as version 1 wrote it (the same layout, no seek table) still loads.
    const raw = readFileSync(p);
    raw.writeUInt32LE(1, 8);
    writeFileSync(p, raw);
    t.deepEqual([...readIndex(p).mode], [...data.mode]);
    t.is(readIndex(p).seek, undefined);
  } finally {
    tmp.cleanup();
  }
});
