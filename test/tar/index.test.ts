// The scanner and tree builder against archives from tar-stream and GNU tar: extension headers,
// duplicates, hard links, implied directories, confinement, sparse files, damage.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FdRange } from '../../src/vfs/api.js';
import { Overlay } from '../../src/overlay/overlay.js';
import { indexArchive, indexTarFile } from '../../src/tar/indexer.js';
import { BufferReader } from '../../src/tar/reader.js';
import { TarFormatError } from '../../src/tar/scan.js';
import { readIndex, writeIndex } from '../../src/tar/index-file.js';
import { pack } from '../helpers/pack.js';
import { flatten, layerFromTar, tempDir } from '../helpers/layers.js';

const id = { size: 0, mtimeNs: '0', ino: 0, dev: 0 };

async function tree(tar: Buffer) {
  const t = tempDir();
  try {
    const { layer, data } = layerFromTar(tar, t.dir);
    const fs = new Overlay([layer]);
    const flat = await flatten(fs);
    fs.destroy();
    return { flat, warnings: data.warnings.map((w) => w.code) };
  } finally {
    t.cleanup();
  }
}

test('PAX records apply to the next member only; globals to all after them', async (t) => {
  const tar = await pack([
    { name: 'short', body: 'a', pax: { path: 'long/' + 'x'.repeat(150), mtime: '1700000000.123456789' } },
    { name: 'plain', body: 'b' },
  ]);
  const { flat } = await tree(tar);
  t.deepEqual(Object.keys(flat).sort(), ['long', 'long/' + 'x'.repeat(150), 'plain']);
  t.is(flat.plain.content, 'b');
});

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

test('damaged archives are refused with a reason', async (t) => {
  const good = await pack([{ name: 'f', body: 'x'.repeat(3000) }]);
  const cases: Array<[string, Buffer, RegExp]> = [
    ['empty', Buffer.alloc(0), /empty/],
    ['random', Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) & 255)), /not a tar/],
    ['truncated body', good.subarray(0, 1024), /truncated/],
    ['truncated header', good.subarray(0, 300), /truncated/],
  ];
  const flipped = Buffer.from(good);
  flipped[10] ^= 0x55;
  cases.push(['bad checksum', flipped, /not a tar|checksum/]);
  for (const [what, buf, re] of cases) {
    const err = t.throws(() => indexArchive(new BufferReader(buf), id, 0), { instanceOf: TarFormatError }, what);
    t.regex(err!.message, re, what);
  }
});

test('indexing seeks over bodies: a tar of big members reads only a little', async (t) => {
  const tmp = tempDir();
  try {
    const src = join(tmp.dir, 'src');
    mkdirSync(src);
    for (let i = 0; i < 8; i++) writeFileSync(join(src, `big${i}`), Buffer.alloc(8 * 1024 * 1024, i + 1));
    const tarPath = join(tmp.dir, 'big.tar');
    execFileSync('tar', ['-cf', tarPath, '-C', src, '.']);
    const { data, bytesRead } = indexTarFile(tarPath);
    t.is(data.members.count, 9);
    t.true(bytesRead < 512 * 1024, `read ${bytesRead} bytes of ${data.source.size}`);
  } finally {
    tmp.cleanup();
  }
});

test('GNU sparse formats 0.0, 0.1, 1.0 and old GNU read back byte for byte', async (t) => {
  const tmp = tempDir();
  try {
    const src = join(tmp.dir, 'src');
    mkdirSync(src);
    const f = join(src, 'holes');
    execFileSync('truncate', ['-s', '20M', f]);
    execFileSync('sh', ['-c', `printf start | dd of=${f} conv=notrunc 2>/dev/null; printf middle | dd of=${f} bs=1 seek=9000000 conv=notrunc 2>/dev/null; printf end | dd of=${f} bs=1 seek=20971517 conv=notrunc 2>/dev/null`]);
    const want = readFileSync(f);
    const variants: Array<[string, string[]]> = [
      ['gnu', ['--format=gnu']],
      ['pax-0.0', ['--format=posix', '--sparse-version=0.0']],
      ['pax-0.1', ['--format=posix', '--sparse-version=0.1']],
      ['pax-1.0', ['--format=posix', '--sparse-version=1.0']],
    ];
    for (const [name, flags] of variants) {
      const tarPath = join(tmp.dir, `${name}.tar`);
      execFileSync('tar', ['-cSf', tarPath, ...flags, '-C', src, 'holes']);
      const { layer } = layerFromTar(readFileSync(tarPath), tmp.dir, `${name}-copy.tar`);
      const fs = new Overlay([layer]);
      const e = fs.lookup(1, 'holes');
      t.is(e.attr.size, want.length, name);
      const got = Buffer.alloc(want.length);
      let off = 0;
      for (const r of (await fs.read(e.ino, 0, 0, want.length)) as FdRange[]) {
        if (r.fd >= 0) {
          const { readSync } = await import('node:fs');
          readSync(r.fd, got, off, r.len, r.pos);
        }
        off += r.len;
      }
      t.true(got.equals(want), `${name} content`);
      fs.destroy();
    }
  } finally {
    tmp.cleanup();
  }
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
