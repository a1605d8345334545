// The scanner (src/tar/scan.ts) over golden blocks (headers and extension headers placed block by
// block) and over archives from tar-stream and GNU tar: extension headers apply to the next member
// only and globals to every later one, PAX overrides with warnings for what does not parse, member
// types, the end of the archive, damage refused with a reason, offsets and member checksums.
// Sparse files: sparse.test.ts.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { indexArchive, indexTarFile } from '../../src/tar/indexer.js';
import { BufferReader } from '../../src/tar/reader.js';
import { TarFormatError } from '../../src/tar/scan.js';
import { pack } from '../helpers/pack.js';
import { tempDir, tree } from '../helpers/layers.js';
import { END, entry, gnuLong, header, pax } from '../helpers/rawtar.js';
import { fixChecksum, scan } from './blocks.js';

const id = { size: 0, mtimeNs: '0', ino: 0, dev: 0 };

test('PAX records apply to the next member only; globals to all after them', async (t) => {
  const tar = await pack([
    { name: 'short', body: 'a', pax: { path: 'long/' + 'x'.repeat(150), mtime: '1700000000.123456789' } },
    { name: 'plain', body: 'b' },
  ]);
  const { flat } = await tree(tar);
  t.deepEqual(Object.keys(flat).sort(), ['long', 'long/' + 'x'.repeat(150), 'plain']);
  t.is(flat.plain.content, 'b');
});

test('GNU long names and long link names apply to the next member only', (t) => {
  const name = 'a/' + 'n'.repeat(200);
  const link = 't'.repeat(150);
  const r = scan(gnuLong('L', name), gnuLong('K', link), entry({ name: 'short', type: '2', linkname: 'x' }), entry({ name: 'plain', type: '2', linkname: 'y' }), END);
  t.is(r.error, undefined);
  t.deepEqual(r.members.map((m) => [m.path, m.linkname, m.type]), [[name, link, 'symlink'], ['plain', 'y', 'symlink']]);
  t.is(r.members[0].headerOffset, 0, 'a member starts at its first extension header');
  t.is(r.members[1].headerOffset, r.members[0].dataOffset);
});

test('a PAX global header applies to every later member, an empty value deletes it, a member\'s own records win', (t) => {
  const r = scan(
    pax([['uid', '1234'], ['comment', 'c']], 'g'),
    entry({ name: 'a', uid: 1 }, 'x'),
    pax([['uid', '99'], ['path', 'renamed']]),
    entry({ name: 'b', uid: 2 }),
    pax([['uid', '']], 'g'),
    entry({ name: 'c', uid: 7 }),
    END,
  );
  t.is(r.error, undefined);
  t.deepEqual(r.members.map((m) => [m.path, m.uid]), [['a', 1234], ['renamed', 99], ['c', 7]]);
});

test('PAX overrides: size, nanosecond times (before 1970 too), ids, names, device numbers; what does not parse warns and falls back', (t) => {
  const r = scan(
    pax([['size', '5'], ['mtime', '-1.25'], ['uname', 'someone'], ['gid', '70000000000'], ['linkpath', 'unused']]),
    entry({ name: 'f', size: 0 }, 'hello'), // the header says 0 bytes; its PAX size, 5
    pax([['SCHILY.devmajor', '300'], ['SCHILY.devminor', '7']]),
    entry({ name: 'dev', type: '3', devmajor: 1, devminor: 2 }),
    pax([['uid', 'x1'], ['mtime', 'soon']]),
    entry({ name: 'g', uid: 5, mtime: 100 }),
    END,
  );
  t.is(r.error, undefined);
  const [f, dev, g] = r.members;
  t.deepEqual([f.storedSize, f.size, f.mtimeSec, f.mtimeNsec, f.uname, f.gid], [5, 5, -2, 750000000, 'someone', 70000000000]);
  t.is(dev.headerOffset, f.dataOffset + 512, 'the next header follows the PAX size, padded');
  t.deepEqual([dev.type, dev.devmajor, dev.devminor, dev.size], ['char', 300, 7, 0]);
  t.deepEqual([g.uid, g.mtimeSec, g.mtimeNsec], [5, 100, 0]);
  t.deepEqual(r.warnings.map((w) => [w.code, w.offset]).sort(), [['BAD_PAX_NUMBER', g.headerOffset], ['BAD_PAX_TIME', g.headerOffset]]);
});

test('xattrs: SCHILY.xattr from globals and the member; bsdtar\'s doubled LIBARCHIVE.xattr counted once', (t) => {
  const r = scan(
    pax([['SCHILY.xattr.user.g', 'G']], 'g'),
    pax([['SCHILY.xattr.user.a', 'A'], ['LIBARCHIVE.xattr.user.b%3D', Buffer.from('B').toString('base64')], ['SCHILY.xattr.user.b%3D', 'B']]),
    entry({ name: 'x' }),
    entry({ name: 'y' }),
    END,
  );
  t.is(r.error, undefined);
  const show = (x: Array<[string, Buffer]> | undefined) => x?.map(([k, v]) => [k, v.toString()]);
  t.deepEqual(show(r.members[0].xattrs), [['user.g', 'G'], ['user.a', 'A'], ['user.b=', 'B']]);
  t.deepEqual(show(r.members[1].xattrs), [['user.g', 'G']]);
});

test('member types: an unknown one warns and is a file; a v7 name ending in / and a GNU dumpdir are directories; links have no size', (t) => {
  const r = scan(
    entry({ name: 'u', type: 'Z' }, 'data'),
    entry({ name: 'olddir/', type: '0', magic: 'v7' }),
    entry({ name: 'dd', type: 'D', magic: 'gnu' }, 'names\0'),
    entry({ name: 'h', type: '1', linkname: 'u', size: 0 }),
    entry({ name: 'c', type: '7' }, 'contiguous'),
    entry({ name: 'old', type: '\0' }, 'nul type'),
    END,
  );
  t.is(r.error, undefined);
  t.deepEqual(r.members.map((m) => [m.path, m.type, m.size]), [['u', 'file', 4], ['olddir/', 'dir', 0], ['dd', 'dir', 0], ['h', 'hardlink', 0], ['c', 'file', 10], ['old', 'file', 8]]);
  t.deepEqual(r.warnings.map((w) => w.code), ['UNKNOWN_TYPE']);
});

test('the end: zero blocks end it; no end marker is a warning; an extension header with no member after it is an error', (t) => {
  const open = scan(entry({ name: 'a' }, 'x'));
  t.is(open.error, undefined);
  t.is(open.members.length, 1);
  t.deepEqual(open.warnings.map((w) => w.code), ['NO_END_MARKER']);
  const trailing = scan(entry({ name: 'a' }, 'x'), END, Buffer.from('garbage after the end marker'));
  t.is(trailing.error, undefined);
  t.is(trailing.members.length, 1);
  for (const ext of [pax([['path', 'p']]), gnuLong('L', 'name')]) {
    const r = scan(entry({ name: 'a' }, 'x'), ext, END);
    t.true(r.error instanceof TarFormatError);
    t.regex(r.error!.message, /^truncated archive: extension header at byte 1024 has no member after it$/);
  }
});

test('refused with a reason: a multi-volume continuation, a hostile extension size, a damaged PAX body, a member past the end', (t) => {
  const cases: Array<[string, Buffer[], RegExp]> = [
    ['multi-volume', [entry({ name: 'm', type: 'M', magic: 'gnu' }), END], /^multi-volume archives are not supported \(continuation member at byte 0\)$/],
    ['huge PAX', [header({ name: 'PaxHeader', type: 'x', size: 65 * 1024 * 1024 }), END], /^PAX header at byte 0 claims 68157440 bytes \(limit 67108864\)$/],
    ['cut PAX', [header({ name: 'PaxHeader', type: 'x', size: 2000 }), Buffer.alloc(512, 0x31)], /^truncated archive: PAX header at byte 0 is cut short$/],
    ['damaged PAX', [entry({ name: 'PaxHeader', type: 'x' }, '5 a=b\n'), entry({ name: 'x' }), END], /^damaged PAX header at byte 0: /],
    ['body past the end', [header({ name: 'big', size: 10000 }), Buffer.alloc(512)], /^truncated archive: member "big" needs 10512 bytes, the file has 1024$/],
    ['bad second header', [entry({ name: 'a' }, 'x'), header({ name: 'b', badChecksum: true }), END], /^damaged archive: header checksum mismatch in the header at byte 1024$/],
  ];
  for (const [what, parts, re] of cases) {
    const r = scan(...parts);
    t.true(r.error instanceof TarFormatError, what);
    t.regex(r.error!.message, re, what);
  }
});

test('offsets and checksums: a member\'s checksum covers its headers and its body, whole when small, both ends when big', (t) => {
  const small = Buffer.concat([pax([['path', 'p']]), entry({ name: 'x' }, 'abc'), END]);
  const [m] = scan(small).members;
  t.deepEqual([m.path, m.headerOffset, m.dataOffset, m.storedSize], ['p', 0, 1536, 3]);
  t.is(m.checksum, crc32(small.subarray(0, 1536 + 3)));
  const body = Buffer.alloc(20000, 0x61);
  const big = Buffer.concat([entry({ name: 'big' }, body), END]);
  const sum = scan(big).members[0].checksum;
  const middle = Buffer.from(big);
  middle[512 + 10000] ^= 1;
  t.is(scan(middle).members[0].checksum, sum, 'the middle of a big body is not read');
  for (const at of [512 + 100, 512 + 19990, 3]) {
    const changed = Buffer.from(big);
    changed[at] ^= 1;
    if (at < 512) fixChecksum(changed.subarray(0, 512)); // a header byte: still a valid header
    t.not(scan(changed).members[0].checksum, sum, `byte ${at}`);
  }
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
