// SeekableArchive (src/tar/seekable.ts): random access to a compressed tar through its seek table.
// Every read, async or sync, single or concurrent, sequential or random, equals the plain tar's
// bytes in every compressed shape; verifyAll checks every piece; a changed archive gives EIO,
// never wrong bytes; a closed archive refuses reads.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdirSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { indexTarFile } from '../../src/tar/indexer.js';
import { SeekIndex } from '../../src/tar/seek-table.js';
import { DecodedReader, SeekableArchive } from '../../src/tar/seekable.js';
import type { TarLayer } from '../../src/layer/tar-layer.js';
import { FsError } from '../../src/util/errors.js';
import { seededBytes } from '../helpers/bytes.js';
import { compress, flipByte, SHAPES, type Shape } from '../helpers/compressed.js';
import { layerFromFile, tempDir } from '../helpers/layers.js';

// Small spacings so a few MiB of tar has dozens of seek points and pieces.
const SEEK = { spacing: 64 * 1024, cheapSpacing: 16 * 1024, pieceSize: 16 * 1024, retain: 64 * 1024 };

const tmp = tempDir();
const src = join(tmp.dir, 'src');
mkdirSync(join(src, 'small'), { recursive: true });
// Half random, half text: deflate's blocks then vary between stored and Huffman-coded.
const big = Buffer.concat([seededBytes(1536 * 1024, 7), Buffer.from('tarstack serves compressed tars in place. '.repeat(40000))]);
writeFileSync(join(src, 'big.bin'), big);
for (let i = 0; i < 150; i++) writeFileSync(join(src, 'small', `f${i}.txt`), `file ${i}\n`.repeat(i * 7));
const plainTar = join(tmp.dir, 'plain.tar');
execFileSync('tar', ['-cf', plainTar, '--format=gnu', '-C', src, '.']);
const plain = readFileSync(plainTar);

test.after.always(() => tmp.cleanup());

let seq = 0;
/** A compressed copy of the plain tar, indexed, and its archive opened for reading. */
function open(shape: Shape, piece = 200 * 1024): { archive: SeekableArchive; path: string } {
  const dir = join(tmp.dir, `${shape}-${++seq}`);
  mkdirSync(dir);
  const v = compress(plainTar, dir, shape, piece);
  const { data } = indexTarFile(v.path, { seek: SEEK });
  return { archive: new SeekableArchive(openSync(v.path, 'r'), data.seek!, v.path), path: v.path };
}

const spans = (n: number, seed: number): Array<[number, number]> => {
  const r = seededBytes(n * 8, seed);
  return Array.from({ length: n }, (_, i) => [r.readUInt32LE(i * 8) % plain.length, 1 + (r.readUInt32LE(i * 8 + 4) % 100_000)]);
};

for (const shape of SHAPES) {
  test(`${shape}: async, sync, concurrent, sequential and clamped reads all equal the plain tar`, async (t) => {
    const { archive } = open(shape);
    try {
      t.is(archive.size, plain.length);
      // All at once: more reads than decoders, so they share decoders, wait on each other's pieces, prefetch.
      const reads = spans(60, 11);
      const got = await Promise.all(reads.map(([pos, len]) => archive.read(pos, len)));
      reads.forEach(([pos, len], i) => t.true(got[i].equals(plain.subarray(pos, pos + len)), `async read at ${pos}+${len}`));
      const sequential: Buffer[] = [];
      for (let pos = 0; pos < plain.length; pos += 131072) sequential.push(await archive.read(pos, 131072));
      t.true(Buffer.concat(sequential).equals(plain), 'sequential 128 KiB reads');
      for (const [pos, len] of spans(30, 12)) {
        const buf = Buffer.alloc(len);
        const n = archive.readInto(pos, buf, 0, len);
        t.true(buf.subarray(0, n).equals(plain.subarray(pos, pos + len)), `sync read at ${pos}+${len}`);
      }
      const tail = await archive.read(plain.length - 100, 4096);
      t.true(tail.equals(plain.subarray(plain.length - 100)), 'a read past the end is clamped');
      t.is((await archive.read(plain.length, 10)).length, 0);
      t.true(new DecodedReader(archive).read(512, 1024).equals(plain.subarray(512, 1536)), 'DecodedReader');
    } finally {
      archive.close();
    }
  });
}

test('verifyAll decodes every piece once, reporting progress to the end; damage is an EIO', (t) => {
  const { archive, path } = open('gzip-multi');
  const progress: number[] = [];
  try {
    archive.verifyAll((done, total) => {
      t.is(total, statSync(path).size);
      progress.push(done);
    });
    t.true(progress.length >= archive.table.count, 'a report per job at least');
    t.deepEqual(progress, [...progress].sort((a, b) => a - b), 'progress never goes back');
  } finally {
    archive.close();
  }
  flipByte(path, Math.floor(statSync(path).size / 2));
  const again = new SeekableArchive(openSync(path, 'r'), archive.table, path);
  try {
    t.throws(() => again.verifyAll(), { instanceOf: FsError, message: /changed since it was indexed|decoding/ });
  } finally {
    again.close();
  }
});

test('a closed archive refuses reads with EIO; closing while decoding is safe', async (t) => {
  const { archive } = open('zstd-multi');
  const pending = archive.read(1_000_000, 50_000);
  archive.close();
  await t.notThrowsAsync(async () => {
    try {
      await pending;
    } catch (err) {
      if (!(err instanceof FsError)) throw err;
    }
  });
  await t.throwsAsync(async () => archive.read(2_000_000, 10), { instanceOf: FsError });
  t.throws(() => archive.readInto(2_500_000, Buffer.alloc(10), 0, 10), { instanceOf: FsError });
});

/** The node of a top-level name in a layer. */
const nodeOf = (layer: TarLayer, name: string): number => layer.lookup(0, name);

async function readVia(layer: TarLayer, node: number, pos: number, len: number): Promise<Buffer> {
  const r = await layer.read(node, pos, len);
  if (!Buffer.isBuffer(r)) throw new Error('a compressed layer answers with bytes');
  return r;
}

for (const shape of ['gzip', 'zstd', 'zstd-multi', 'xz-blocks'] as const) {
  test(`${shape}: an archive changed after indexing gives EIO, never wrong bytes`, async (t) => {
    const dir = join(tmp.dir, `changed-${shape}`);
    mkdirSync(dir);
    const v = compress(plainTar, dir, shape);
    const { layer, data } = layerFromFile(v.path, { seek: SEEK });
    try {
      const node = nodeOf(layer, 'big.bin');
      const start = data.dataOff[node];
      const ix = new SeekIndex(data.seek!);
      // Damage the compressed bytes behind the middle of big.bin (its chunk's compressed span).
      const c = ix.chunkAt(start + big.length / 2);
      const from = Math.floor(data.seek!.inBit[c] / 8);
      const to = c + 1 < data.seek!.count ? Math.floor(data.seek!.inBit[c + 1] / 8) : statSync(v.path).size;
      for (let k = 1; k <= 8; k++) flipByte(v.path, from + Math.floor(((to - from) * k) / 9));
      let failures = 0;
      for (let pos = 0; pos < big.length; pos += 65536) {
        try {
          const got = await readVia(layer, node, pos, 65536);
          t.true(got.equals(big.subarray(pos, pos + 65536)), `bytes at ${pos} are right or an error`);
        } catch (err) {
          t.true(err instanceof FsError && err.code === 'EIO', String(err));
          failures++;
        }
      }
      t.true(failures > 0, 'the damaged chunk fails');
      const buf = Buffer.alloc(big.length);
      t.throws(() => layer.readInto(node, 0, buf, 0, big.length), { instanceOf: FsError });
    } finally {
      layer.close();
    }
  });
}
