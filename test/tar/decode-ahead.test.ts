// Decoding ahead on a decoder's own thread (native codec aheadStart/Push/Pop/Stop, and
// src/tar/decode-ahead.ts as SeekableArchive uses it): the bytes are `zstd -dc`'s whatever the
// sizes pushed, checksums match, and stopping or closing while the thread decodes neither crashes
// nor hangs nor serves anything; reads that would wait on a closed stream fail with EIO.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setImmediate as turn } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { crc32 } from 'node:zlib';
import { indexTarFile } from '../../src/tar/indexer.js';
import { SeekableArchive } from '../../src/tar/seekable.js';
import { CodecFormat, loadCodec } from '../../src/native/codec.js';
import { FsError } from '../../src/util/errors.js';
import { seededBytes } from '../helpers/bytes.js';
import { tempDir } from '../helpers/layers.js';

const tmp = tempDir();
test.after.always(() => tmp.cleanup());

// One zstd frame (what `zstd` and `tar --zstd` make), half random, half text.
const member = Buffer.concat([seededBytes(3 << 20, 3), Buffer.from('decode ahead of the reader, '.repeat(120_000))]);
writeFileSync(join(tmp.dir, 'member.bin'), member);
const tarPath = join(tmp.dir, 'one.tar');
execFileSync('tar', ['-cf', tarPath, '--format=gnu', '-C', tmp.dir, 'member.bin']);
const zst = `${tarPath}.zst`;
execFileSync('zstd', ['-q', '-3', '-f', tarPath, '-o', zst]);
const decoded = execFileSync('zstd', ['-dc', zst], { maxBuffer: 1 << 30 });
const SEEK = { spacing: 64 * 1024, cheapSpacing: 16 * 1024, pieceSize: 16 * 1024 };
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
/** A full GC, then a loop turn: external Buffers' finalizers (slabs going back for reuse) run on it. */
async function collect(): Promise<void> {
  gc();
  await turn();
  gc();
  await turn();
}

test('aheadPush buffers of any sizes come back in order as zstd -dc bytes, with their checksums', (t) => {
  const codec = loadCodec();
  const fd = openSync(zst, 'r');
  const h = codec.open(CodecFormat.Zstd, fd, statSync(zst).size);
  try {
    codec.decodeSync(h, 3, 0, null, Buffer.alloc(0), 1, null); // seek to the frame at 0
    codec.aheadStart(h, null);
    t.throws(() => codec.decodeSync(h, 0, 0, null, Buffer.alloc(16), 16, null), { code: 'EBUSY' });
    const sizes = seededBytes(64, 5);
    const pushed: Array<{ out: Buffer; crcs: Uint32Array }> = [];
    let at = 0;
    const got: Buffer[] = [];
    for (let i = 0; at < decoded.length + 1; i++) {
      const len = 1 + ((sizes[i % 64] * 9973 + i * 131) % 400_000);
      const out = Buffer.alloc(len);
      const crcs = new Uint32Array(Math.ceil(len / 4096));
      codec.aheadPush(h, out, 4096, crcs);
      pushed.push({ out, crcs });
      at += len;
      if (pushed.length > 3) {
        const p = pushed.shift()!;
        const r = codec.aheadPop(h, true)!;
        got.push(p.out.subarray(0, r[0]));
      }
    }
    for (const p of pushed) {
      const r = codec.aheadPop(h, true)!;
      got.push(p.out.subarray(0, r[0]));
      for (let k = 0; k * 4096 < r[0]; k++) t.is(p.crcs[k], crc32(p.out.subarray(k * 4096, Math.min(r[0], (k + 1) * 4096))));
    }
    t.is(codec.aheadPop(h, true), null, 'nothing pushed: no wait');
    t.true(Buffer.concat(got).equals(decoded));
  } finally {
    codec.close(h);
    closeSync(fd);
  }
});

test('piece checksums made on the thread, serving or not, equal zlib crc32 for every piece size and tail', async (t) => {
  const codec = loadCodec();
  const fd = openSync(zst, 'r');
  try {
    for (const serving of [false, true]) {
      const h = codec.open(CodecFormat.Zstd, fd, statSync(zst).size);
      codec.decodeSync(h, 3, 0, null, Buffer.alloc(0), 1, null);
      let ready = (): void => undefined;
      codec.aheadStart(h, serving ? () => ready() : null);
      // sizes around the folding code's steps (16, 64, 256 bytes) and pieces that end in every tail
      const pushed: Array<{ out: Buffer; crcs: Uint32Array; piece: number }> = [];
      for (const piece of [1, 15, 16, 17, 63, 64, 65, 255, 256, 257, 271, 1000, 4144, 65553, 262144]) {
        const out = Buffer.alloc(piece * 3 + 200);
        const crcs = new Uint32Array(Math.ceil(out.length / piece));
        codec.aheadPush(h, out, piece, crcs);
        pushed.push({ out, crcs, piece });
      }
      for (const p of pushed) {
        let r = codec.aheadPop(h, !serving);
        while (!r) {
          await new Promise<void>((res) => (ready = res));
          r = codec.aheadPop(h, false);
        }
        t.is(r[0], p.out.length);
        for (let k = 0; k * p.piece < r[0]; k++) {
          t.is(p.crcs[k], crc32(p.out.subarray(k * p.piece, Math.min(r[0], (k + 1) * p.piece))), `piece size ${p.piece}, piece ${k}`);
        }
      }
      codec.aheadStop(h);
      codec.close(h);
    }
  } finally {
    closeSync(fd);
  }
});

test('stopping or closing a handle while its thread decodes drops what was pushed; the handle is usable again after a stop', (t) => {
  const codec = loadCodec();
  const fd = openSync(zst, 'r');
  try {
    for (const how of ['stop', 'close'] as const) {
      const h = codec.open(CodecFormat.Zstd, fd, statSync(zst).size);
      codec.decodeSync(h, 3, 0, null, Buffer.alloc(0), 1, null);
      let called = 0;
      codec.aheadStart(h, () => called++);
      for (let i = 0; i < 40; i++) codec.aheadPush(h, Buffer.alloc(256 * 1024), 16384, new Uint32Array(16));
      if (how === 'close') {
        codec.close(h);
        t.throws(() => codec.aheadPop(h, true), { code: 'EBADF' });
        continue;
      }
      codec.aheadStop(h);
      t.is(codec.aheadPop(h, false), null);
      const again = Buffer.alloc(1000);
      t.is(codec.decodeSync(h, 3, 0, null, again, 1000, null), 1000, 'seeks and decodes on this thread again');
      t.true(again.equals(decoded.subarray(0, 1000)));
      codec.close(h);
    }
  } finally {
    closeSync(fd);
  }
});

test('sequential reads stream ahead; reads at random offsets meanwhile, near the stream and far from it, equal zstd -dc', async (t) => {
  const { data } = indexTarFile(zst, { seek: SEEK });
  t.is(data.seek!.count, 1, 'one frame: one seek point');
  const a = new SeekableArchive(openSync(zst, 'r'), data.seek!, zst);
  try {
    const r = seededBytes(400, 9);
    let streamed = false;
    for (let pos = 0, i = 0; pos < decoded.length; pos += 65536, i++) {
      const reads = [a.read(pos, 65536)];
      // a readahead-like read a little further on, and a random one anywhere
      const near = Math.min(decoded.length - 1, pos + (r[i % 400] % 8) * 65536);
      const far = (r.readUInt32LE((i * 4) % 396) * 7) % decoded.length;
      if (i % 5 === 0) reads.push(a.read(near, 4096), a.read(far, 5000));
      const got = await Promise.all(reads);
      t.true(got[0].equals(decoded.subarray(pos, pos + 65536)), `sequential read at ${pos}`);
      if (got.length > 1) {
        t.true(got[1].equals(decoded.subarray(near, near + 4096)), `read at ${near}`);
        t.true(got[2].equals(decoded.subarray(far, far + 5000)), `read at ${far}`);
      }
      streamed ||= (a as unknown as { streams: Map<unknown, unknown> }).streams.size > 0;
    }
    t.true(streamed, 'a decoder streamed ahead of the sequential reader');
  } finally {
    a.close();
  }
});

test('streamed reads at odd offsets across pieces of different jobs equal zstd -dc, and are views of the decoded pieces', async (t) => {
  const { data } = indexTarFile(zst, { seek: SEEK });
  const a = new SeekableArchive(openSync(zst, 'r'), data.seek!, zst);
  try {
    let views = 0;
    // like a member whose data starts 1 KiB into the tar: every read spans pieces, most two jobs
    for (let pos = 1024; pos < decoded.length; pos += 100_000) {
      const got = await a.read(pos, 100_000);
      t.true(got.equals(decoded.subarray(pos, pos + 100_000)), `read at ${pos}`);
      // a copy has a buffer of its own (100,000 bytes); a job's is 4 pieces (64 KiB); a slab holds several jobs
      if (got.buffer.byteLength > 2 * 4 * SEEK.pieceSize) views++;
    }
    t.true(views > 0, 'reads of a streamed member are views of its slab, not copies');
  } finally {
    a.close();
  }
});

test('a slab is reused only once the GC has collected it and every view of it', async (t) => {
  const codec = loadCodec();
  let whole: Buffer | null = codec.slab();
  whole.fill(7);
  const view = Buffer.from(whole.buffer, whole.byteOffset + 4096, 100_000);
  whole = null;
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 12; i++) codec.slab().fill(9);
    await collect();
  }
  t.true(view.equals(Buffer.alloc(100_000, 7)), 'a view alone keeps its slab');
  codec.slabsRelease();
});

test('a stream through many slabs, the GC collecting them as it reads, equals zstd -dc', async (t) => {
  // 40 MiB: the stream's slabs grow to full size (8 MiB) and the first ones are reused
  const text = Buffer.from('slabs are reused once collected; '.repeat(1 << 20)).subarray(0, 32 << 20);
  const body = Buffer.concat([seededBytes(8 << 20, 11), text]);
  const dir = join(tmp.dir, 'slabs');
  mkdirSync(dir);
  writeFileSync(join(dir, 'member.bin'), body);
  const tarFile = join(dir, 'one.tar');
  execFileSync('tar', ['-cf', tarFile, '--format=gnu', '-C', dir, 'member.bin']);
  execFileSync('zstd', ['-q', '-1', '-f', tarFile, '-o', `${tarFile}.zst`]);
  const want = readFileSync(tarFile);
  const { data } = indexTarFile(`${tarFile}.zst`, {});
  const a = new SeekableArchive(openSync(`${tarFile}.zst`, 'r'), data.seek!, tarFile);
  try {
    let read = 0;
    for (let pos = 512 + 1024, i = 0; pos < want.length; pos += 1 << 20, i++) {
      const got = await a.read(pos, 1 << 20);
      if (!got.equals(want.subarray(pos, pos + (1 << 20)))) return t.fail(`read at ${pos}`);
      read += got.length;
      if (i % 6 === 5) await collect();
    }
    t.is(read, want.length - 1536);
  } finally {
    a.close();
  }
});

test('closing the archive while its stream decodes: waiting reads fail with EIO, later ones too, and nothing hangs', async (t) => {
  const { data } = indexTarFile(zst, { seek: SEEK });
  const a = new SeekableArchive(openSync(zst, 'r'), data.seek!, zst);
  t.true((await a.read(0, 65536)).equals(decoded.subarray(0, 65536)));
  t.true((await a.read(65536, 65536)).equals(decoded.subarray(65536, 131072)));
  const pending = Promise.allSettled([a.read(131072 + 16 * 16384, 4096), a.read(131072 + 40 * 16384, 4096)]);
  a.close();
  for (const r of await pending) {
    if (r.status === 'rejected') t.true(r.reason instanceof FsError && r.reason.code === 'EIO');
    else t.pass('decoded before the close');
  }
  await t.throwsAsync(async () => a.read(decoded.length - 10, 10), { code: 'EIO' });
});

test('codec crc32 (folded with carry-less multiplies, 128- and 512-bit) equals zlib.crc32 at every length, alignment and starting value', (t) => {
  const codec = loadCodec();
  const bytes = seededBytes((1 << 20) + 64, 9);
  for (let len = 0; len < 1100; len++) {
    for (const off of [0, 1, 7, 16, 33]) {
      const seed = (len * 2654435761 + off) >>> 0;
      const b = bytes.subarray(off, off + len);
      if (codec.crc32(b, seed) !== crc32(b, seed)) return t.fail(`length ${len} at offset ${off}`);
    }
  }
  for (const len of [1 << 16, (1 << 20) + 13]) t.is(codec.crc32(bytes.subarray(3, 3 + len), 0), crc32(bytes.subarray(3, 3 + len)));
  t.is(codec.crc32(Buffer.alloc(0), 0x1234), 0x1234);
});

test('a native stream says at once that a piece it let go of is not its own: a reader there gets another decoder, the stream runs on', async (t) => {
  const { data } = indexTarFile(zst, { seek: SEEK });
  const fd = openSync(zst, 'r');
  const a = new SeekableArchive(fd, data.seek!, 'one.tar.zst');
  const piece = SEEK.pieceSize;
  try {
    t.is(a.fileStream(0), undefined, 'no decoder there yet: the next read starts one, to stream natively');
    t.true(Buffer.from(await a.read(0, piece)).equals(decoded.subarray(0, piece)));
    const s = a.fileStream(piece);
    if (!s) return t.fail('no native stream after the first read');
    const far = Math.floor(decoded.length / piece) - 8; // far past what its slabs hold (8 x 16 pieces)
    for (let k = 8; k <= far; k += 8) t.true((await s.piece(k))?.equals(decoded.subarray(k * piece, (k + 1) * piece)), `piece ${k} from the stream`);
    t.is(await s.piece(1), null, 'piece 1: let go of, so not waited for');
    t.true(s.has(far), 'while the stream runs on');
    t.not(a.fileStream(piece), s, 'a read there is not handed to it');
    t.true(Buffer.from(await a.read(piece, 3 * piece)).equals(decoded.subarray(piece, 4 * piece)), 'read there by another decoder');
  } finally {
    a.close();
    closeSync(fd);
  }
});
