// GNU sparse files in their four encodings (src/tar/sparse.ts; GNU tar's manual, "Storing Sparse
// Files"): old GNU (type 'S', the map in the header, continued in extension blocks), PAX 0.0
// (repeated GNU.sparse.offset/numbytes), PAX 0.1 (GNU.sparse.map) and PAX 1.0 (the map as decimal
// lines at the start of the body): golden blocks for each and their damage, then GNU tar's own.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FdRange } from '../../src/vfs/api.js';
import { Overlay } from '../../src/overlay/overlay.js';
import { TarFormatError } from '../../src/tar/scan.js';
import { layerFromTar, tempDir } from '../helpers/layers.js';
import { body, END, entry, header, pax } from '../helpers/rawtar.js';
import { gnuSparseExtension, scan, withGnuSparse } from './blocks.js';

const segs = (m: { sparse?: Array<{ offset: number; size: number }> }) => m.sparse?.map((s) => [s.offset, s.size]);

test('old GNU: four map entries in the header, more in extension blocks before the data', (t) => {
  const inHeader: Array<[number, number]> = [[0, 512], [4096, 512], [8192, 512], [12288, 512]];
  const extension: Array<[number, number]> = [[16384, 512], [20480, 100]];
  const stored = 5 * 512 + 100;
  const r = scan(
    withGnuSparse(header({ name: 's', type: 'S', magic: 'gnu', size: stored }), inHeader, true, 30000),
    gnuSparseExtension(extension, false),
    body(Buffer.alloc(stored, 0x73)),
    END,
  );
  t.is(r.error, undefined);
  const [m] = r.members;
  t.deepEqual([m.path, m.type, m.size, m.dataOffset, m.storedSize], ['s', 'file', 30000, 1024, stored]);
  t.deepEqual(segs(m), [...inHeader, ...extension]);
});

test('PAX 1.0: the map is decimal lines at the start of the body, padded to a block; GNU.sparse.name is the name', (t) => {
  const map = body('2\n0\n100\n5000\n200\n');
  const ext = pax([['GNU.sparse.major', '1'], ['GNU.sparse.minor', '0'], ['GNU.sparse.name', 'sparse.bin'], ['GNU.sparse.realsize', '10000']]);
  const r = scan(ext, entry({ name: './GNUSparseFile.0/sparse.bin' }, Buffer.concat([map, Buffer.alloc(300, 0x64)])), END);
  t.is(r.error, undefined);
  const [m] = r.members;
  t.deepEqual([m.path, m.size, m.dataOffset, m.storedSize], ['sparse.bin', 10000, ext.length + 1024, 300]);
  t.deepEqual(segs(m), [[0, 100], [5000, 200]]);
  t.deepEqual(r.warnings, []);
});

test('PAX 0.0 (repeated offset/numbytes records) and 0.1 (one map list)', (t) => {
  const r = scan(
    pax([['GNU.sparse.size', '9000'], ['GNU.sparse.numblocks', '2'], ['GNU.sparse.offset', '0'], ['GNU.sparse.numbytes', '10'], ['GNU.sparse.offset', '8000'], ['GNU.sparse.numbytes', '20']]),
    entry({ name: 'z0' }, Buffer.alloc(30, 0x30)),
    pax([['GNU.sparse.size', '9000'], ['GNU.sparse.map', '0,10,8000,20']]),
    entry({ name: 'z1' }, Buffer.alloc(30, 0x31)),
    END,
  );
  t.is(r.error, undefined);
  for (const m of r.members) {
    t.deepEqual([m.size, m.storedSize], [9000, 30], m.path);
    t.deepEqual(segs(m), [[0, 10], [8000, 20]], m.path);
  }
});

test('a sparse member without GNU.sparse.name under a GNUSparseFile. path is a warning', (t) => {
  const r = scan(pax([['GNU.sparse.size', '100'], ['GNU.sparse.map', '0,10']]), entry({ name: 'd/GNUSparseFile.1/f' }, Buffer.alloc(10)), END);
  t.is(r.error, undefined);
  t.deepEqual(r.warnings.map((w) => w.code), ['SPARSE_NAME']);
});

test('damaged maps are refused: overlapping or past the file, more than is stored, bad 1.0 text, cut short', (t) => {
  const map01 = (size: number, map: string, stored: number) => [pax([['GNU.sparse.size', String(size)], ['GNU.sparse.map', map]]), entry({ name: 'f' }, Buffer.alloc(stored)), END];
  const v1 = (text: string, stored: number) => [pax([['GNU.sparse.major', '1'], ['GNU.sparse.realsize', '100000']]), entry({ name: 'f', size: stored }, body(text)), END];
  const cases: Array<[string, Buffer[], RegExp]> = [
    ['overlap', map01(1000, '0,100,50,10', 110), /^damaged sparse map of "f": segments overlap or exceed the file$/],
    ['past the file', map01(9000, '0,10,8995,20', 30), /segments overlap or exceed the file/],
    ['more than stored', map01(1000, '0,100', 30), /^damaged sparse map of "f": maps 100 bytes, stores 30$/],
    ['1.0 not a digit', v1('1\n0\nx\n', 512), /^damaged sparse map of "f": unexpected byte$/],
    ['1.0 past the member', v1('1000\n' + '1\n'.repeat(300), 512), /^damaged sparse map of "f": runs past the member$/],
    ['1.0 cut short', [pax([['GNU.sparse.major', '1']]), header({ name: 'f', size: 4096 }), Buffer.from('3\n0\n')], /^damaged sparse map of "f": cut short$/],
    ['old GNU extension cut short', [withGnuSparse(header({ name: 's', type: 'S', magic: 'gnu', size: 0 }), [], true, 10)], /^truncated archive: sparse map of "s" is cut short$/],
  ];
  for (const [what, parts, re] of cases) {
    const r = scan(...parts);
    t.true(r.error instanceof TarFormatError, what);
    t.regex(r.error!.message, re, what);
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
