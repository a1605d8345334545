// Compressed tars without mounting: each shape (gzip one member or many, pigz, zstd one frame or
// many, xz one block or many) indexes to the same tree as the plain tar, serves every byte of a
// large member at random offsets (async and sync, concurrently), survives an index round trip,
// and fails cleanly: damage at index time is one TarFormatError (a change after indexing is an
// EIO: seekable.test.ts).
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, readFileSync, writeFileSync, writeSync, truncateSync, statSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { Overlay } from '../../src/overlay/overlay.js';
import { InstanceFs } from '../../src/overlay/instance-fs.js';
import { indexTarFile } from '../../src/tar/indexer.js';
import { readIndex, writeIndex } from '../../src/tar/index-file.js';
import { TarFormatError } from '../../src/tar/scan.js';
import { SeekIndex } from '../../src/tar/seek-table.js';
import { SeekableArchive } from '../../src/tar/seekable.js';
import { tarLayer, type TarLayer } from '../../src/layer/tar-layer.js';
import { flatten, layerFromFile, tempDir } from '../helpers/layers.js';
import { compress, flipByte, SHAPES } from '../helpers/compressed.js';
import { pack } from '../helpers/pack.js';

// Small spacings so a few MiB of tar has dozens of seek points and pieces.
const SEEK = { spacing: 64 * 1024, cheapSpacing: 16 * 1024, pieceSize: 16 * 1024, retain: 64 * 1024 };

const tmp = tempDir();
const src = join(tmp.dir, 'src');
mkdirSync(join(src, 'small'), { recursive: true });
// Half random, half text: deflate's blocks then vary between stored and Huffman-coded.
const big = Buffer.concat([randomBytes(1536 * 1024), Buffer.from('tarstack serves compressed tars in place. '.repeat(40000))]);
writeFileSync(join(src, 'big.bin'), big);
for (let i = 0; i < 150; i++) writeFileSync(join(src, 'small', `f${i}.txt`), `file ${i}\n`.repeat(i * 7));
execFileSync('truncate', ['-s', '3M', join(src, 'sparse.img')]);
writeFileSync(join(src, 'sparse.img'), Buffer.from('middle'), { flag: 'r+' });
execFileSync('ln', ['-s', 'big.bin', join(src, 'link')]);
const plainTar = join(tmp.dir, 'plain.tar');
execFileSync('tar', ['-cSf', plainTar, '--format=gnu', '-C', src, '.']);
const plain = layerFromFile(plainTar);
const plainTree = await flatten(new Overlay([plain.layer]));

test.after.always(() => {
  plain.layer.close();
  tmp.cleanup();
});

/** The node of a top-level name in a layer. */
const nodeOf = (layer: TarLayer, name: string): number => layer.lookup(0, name);

async function readVia(layer: TarLayer, node: number, pos: number, len: number): Promise<Buffer> {
  const r = await layer.read(node, pos, len);
  if (!Buffer.isBuffer(r)) throw new Error('a compressed layer answers with bytes');
  return r;
}

for (const shape of SHAPES) {
  test(`${shape}: same tree as the plain tar, random reads match the file`, async (t) => {
    const dir = join(tmp.dir, shape);
    mkdirSync(dir);
    const v = compress(plainTar, dir, shape, 200 * 1024);
    const { layer, data } = layerFromFile(v.path, { seek: SEEK });
    try {
      t.is(data.seek?.format, v.format);
      const ix = new SeekIndex(data.seek!);
      const multi = shape !== 'zstd' && shape !== 'xz';
      t.true(multi ? data.seek!.count > 5 : data.seek!.count === 1, `seek points: ${data.seek!.count}`);
      t.is(ix.pieces, data.seek!.pieceCrc.length);
      t.deepEqual(await flatten(new Overlay([layer])), plainTree);

      const node = nodeOf(layer, 'big.bin');
      // Random reads, all at once: they share decoders, wait on each other's pieces, and prefetch.
      const reads = Array.from({ length: 60 }, () => {
        const pos = Math.floor(Math.random() * big.length);
        return [pos, 1 + Math.floor(Math.random() * 100_000)] as const;
      });
      const got = await Promise.all(reads.map(([pos, len]) => readVia(layer, node, pos, len)));
      reads.forEach(([pos, len], i) => t.true(got[i].equals(big.subarray(pos, pos + len)), `async read at ${pos}+${len}`));
      // Sequential 128 KiB reads, as the kernel issues them, then the whole file synchronously.
      const seq: Buffer[] = [];
      for (let pos = 0; pos < big.length; pos += 131072) seq.push(await readVia(layer, node, pos, 131072));
      t.true(Buffer.concat(seq).equals(big), 'sequential reads');
      const all = Buffer.alloc(big.length);
      t.is(layer.readInto(node, 0, all, 0, big.length + 10), big.length);
      t.true(all.equals(big), 'readInto');
      const sparse = Buffer.alloc(3 * 1024 * 1024);
      t.is(layer.readInto(nodeOf(layer, 'sparse.img'), 0, sparse, 0, sparse.length), sparse.length);
      t.true(sparse.equals(readFileSync(join(src, 'sparse.img'))), 'sparse member');
    } finally {
      layer.close();
    }
  });
}

test('the seek table survives the index file; windows are read from it on demand', async (t) => {
  const dir = join(tmp.dir, 'roundtrip');
  mkdirSync(dir);
  const v = compress(plainTar, dir, 'gzip');
  const { data } = indexTarFile(v.path, { seek: SEEK });
  writeIndex(join(dir, 'index'), data);
  const loaded = readIndex(join(dir, 'index'));
  t.deepEqual({ ...loaded.seek, windows: undefined }, { ...data.seek, windows: undefined });
  t.true(data.seek!.winLen.some((n) => n > 0), 'gzip points inside the member carry windows');
  const layer = tarLayer(v.path, loaded, openSync(v.path, 'r'));
  try {
    const node = nodeOf(layer, 'big.bin');
    for (const pos of [big.length - 5000, 1_000_000, 12345]) t.true((await readVia(layer, node, pos, 4096)).equals(big.subarray(pos, pos + 4096)));
  } finally {
    layer.close();
  }
});

test('reads behind the scanner\'s kept output decode again from the points so far', async (t) => {
  const dir = join(tmp.dir, 'behind');
  mkdirSync(dir);
  // A 3 MB PAX header: the member's checksum reads back over it, past the 1 MiB blocks kept.
  const tar = await pack([
    { name: 'before', body: randomBytes(100_000) },
    { name: 'x', body: randomBytes(3_000_000), pax: { comment: 'c'.repeat(3_000_000) } },
  ]);
  writeFileSync(join(dir, 'p.tar'), tar);
  const v = compress(join(dir, 'p.tar'), dir, 'zstd-multi', 100_000);
  const compressed = indexTarFile(v.path, { seek: { ...SEEK, retain: 8 * 1024 } }).data;
  const reference = indexTarFile(join(dir, 'p.tar')).data;
  t.deepEqual([...compressed.members.crc], [...reference.members.crc]);
  t.deepEqual([...compressed.members.dataOff], [...reference.members.dataOff]);
});

test('copy-up from a compressed layer: an append copies lazily, reads and a middle write see the lower bytes', async (t) => {
  const dir = join(tmp.dir, 'copyup');
  mkdirSync(join(dir, 'upper'), { recursive: true });
  mkdirSync(join(dir, 'work'));
  const v = compress(plainTar, dir, 'zstd-multi', 200 * 1024);
  const { layer } = layerFromFile(v.path, { seek: SEEK });
  const fs = new InstanceFs([layer], join(dir, 'upper'), join(dir, 'work'));
  try {
    const me = { uid: 0, gid: 0, pid: 1 };
    const e = fs.lookup(1, 'big.bin');
    const w = fs.open(e.ino, 2);
    fs.write(e.ino, w.fh, Buffer.from('!'), big.length);
    fs.write(e.ino, w.fh, Buffer.from('MID'), 1_000_000);
    const got = (await fs.read(e.ino, w.fh, 0, big.length + 10)) as Buffer;
    t.is(got.length, big.length + 1);
    const want = Buffer.concat([big, Buffer.from('!')]);
    want.write('MID', 1_000_000);
    t.true(got.equals(want));
    fs.setattr(e.ino, { size: 10 }, w.fh, me);
    fs.release(e.ino, w.fh);
  } finally {
    await fs.destroy();
  }
});

const damaged: Array<[string, (path: string) => void, RegExp]> = [
  ['a flipped byte', (p) => flipByte(p, Math.floor(statSync(p).size / 2)), /corrupt|does not match|damaged|data/i],
  ['a truncated stream', (p) => truncateSync(p, Math.floor(statSync(p).size * 0.7)), /truncated|cut short|ends/i],
];
for (const shape of ['gzip', 'zstd-multi', 'xz-blocks'] as const) {
  for (const [what, damage, message] of damaged) {
    test(`${shape}: ${what} fails indexing with one clear message`, (t) => {
      const dir = join(tmp.dir, `bad-${shape}-${what.replace(/ /g, '-')}`);
      mkdirSync(dir);
      const v = compress(plainTar, dir, shape);
      damage(v.path);
      const err = t.throws(() => indexTarFile(v.path, { seek: SEEK }), { instanceOf: TarFormatError });
      t.regex(err!.message, message);
      t.notRegex(err!.message, /\n/);
    });
  }
}

// Only the frame checksum (XXH64 of the content) can tell: indexing checks it on Node's thread, off
// the decoding thread (native-bindings/src/codec_zsum.c), and must still refuse the archive.
for (const shape of ['zstd', 'zstd-multi'] as const) {
  test(`${shape}: a frame whose stored checksum does not match its content fails indexing with one line`, (t) => {
    const dir = join(tmp.dir, `bad-sum-${shape}`);
    mkdirSync(dir);
    const v = compress(plainTar, dir, shape);
    const z = readFileSync(v.path);
    const second = z.indexOf(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), 4); // the second frame's magic
    t.true(shape === 'zstd' || second > 0);
    flipByte(v.path, shape === 'zstd' ? z.length - 1 : second - 1); // a frame's last byte: its checksum's
    const err = t.throws(() => indexTarFile(v.path, { seek: SEEK }), { instanceOf: TarFormatError });
    t.regex(err!.message, /^zstd: .*checksum/);
    t.notRegex(err!.message, /\n/);
  });
}

test('gzip: damage that decodes into a bad tar header is named as damaged gzip data, not as a bad tar', (t) => {
  // Stored (level 0) deflate blocks carry the tar as it is: a flipped byte inside a member's header
  // leaves the deflate stream valid, so the scanner meets a bad header before the gzip trailer's
  // crc32 is read. Which of the two the user hears must not depend on where the damage landed.
  const dir = join(tmp.dir, 'bad-gzip-header');
  mkdirSync(dir);
  const tar = readFileSync(plainTar);
  const gz = gzipSync(tar, { level: 0 });
  const headers: number[] = [];
  for (let h = 0; tar.toString('latin1', h + 257, h + 262) === 'ustar'; ) {
    headers.push(h);
    h += 512 + Math.ceil(parseInt(tar.toString('latin1', h + 124, h + 136), 8) / 512) * 512;
  }
  const at = headers[headers.length >> 1]; // a header in the middle of the archive
  const inGz = gz.indexOf(tar.subarray(at, at + 512));
  t.true(inGz > 0, 'the header is stored as it is');
  gz[inGz + 100] ^= 0x01; // its mode field: the header's checksum no longer matches
  const path = join(dir, 'x.tar.gz');
  writeFileSync(path, gz);
  const err = t.throws(() => indexTarFile(path, { seek: SEEK }), { instanceOf: TarFormatError });
  t.regex(err!.message, /^gzip: .*incorrect data check/);
});

// A download indexed as it arrives (remote/add-remote.ts): the file grows only as far as each gate
// asks, so a read past what was asked for would see a short file and fail or differ.
for (const shape of ['plain', ...SHAPES] as const) {
  test(`${shape}: indexed while it is written, reading only what the gate let in: the same index as the whole file's`, (t) => {
    const dir = join(tmp.dir, `gated-${shape}`);
    mkdirSync(dir);
    const full = shape === 'plain' ? plainTar : compress(plainTar, dir, shape, 200 * 1024).path;
    const bytes = readFileSync(full);
    const growing = join(dir, 'growing');
    writeFileSync(growing, '');
    const fd = openSync(growing, 'r+');
    let have = 0;
    const asked: number[] = [];
    const gate = (end: number): void => {
      asked.push(end);
      if (end <= have) return;
      writeSync(fd, bytes, have, end - have, have);
      have = end;
    };
    const source = { size: bytes.length, mtimeNs: '0', ino: 0, dev: 0 };
    const gated = indexTarFile(growing, { gate, source, seek: { ...SEEK, windowLevel: 0 } }).data;
    const whole = indexTarFile(full, { seek: SEEK }).data;
    closeSync(fd);
    t.is(have, bytes.length);
    if (!shape.startsWith('xz')) t.true(asked.some((e) => e < bytes.length / 2), 'decoding began before half the file was there');
    t.deepEqual([...gated.members.dataOff], [...whole.members.dataOff]);
    t.deepEqual([...gated.members.crc], [...whole.members.crc]);
    t.is(gated.nodeCount, whole.nodeCount);
    t.deepEqual(gated.seek && [...gated.seek.outOff], whole.seek && [...whole.seek.outOff]);
    t.deepEqual(gated.seek && [...gated.seek.inCrc], whole.seek && [...whole.seek.inCrc]);
    t.deepEqual(gated.seek && [...gated.seek.pieceCrc], whole.seek && [...whole.seek.pieceCrc]);
    t.is(gated.seek?.tailCrc, whole.seek?.tailCrc);
    // Its windows stored undeflated (windowLevel 0) serve random reads as deflated ones do.
    if (gated.seek) {
      const plainBytes = readFileSync(plainTar);
      const rfd = openSync(full, 'r');
      const archive = new SeekableArchive(rfd, gated.seek, full);
      try {
        for (let i = 0; i < 40; i++) {
          const at = Math.floor(((i * 7919) % 40) / 40 * (plainBytes.length - 5000));
          const buf = Buffer.alloc(5000);
          t.is(archive.readInto(at, buf, 0, 5000), 5000);
          t.true(buf.equals(plainBytes.subarray(at, at + 5000)), `decoded bytes at ${at}`);
        }
      } finally {
        archive.close();
        closeSync(rfd);
      }
    }
  });
}
