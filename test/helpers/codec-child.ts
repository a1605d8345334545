// Exercises every path of the native codecs once on small archives, for a run under valgrind
// memcheck (test/codec-memcheck.test.ts, scripts/native-memcheck): scans, seeks with and without
// windows, async and sync decodes, decoding ahead, damaged and truncated input, handles closed while
// busy or streaming, zstd frames. Exits 0 when every result was right; valgrind turns any memory
// error into exit 99.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, openSync, rmSync, truncateSync, writeFileSync, statSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { indexTarFile } from '../../src/tar/indexer.js';
import { SeekableArchive } from '../../src/tar/seekable.js';
import { recompressToZstd } from '../../src/tar/recompress.js';
import { compress, flipByte, type Shape } from './compressed.js';

const SEEK = { spacing: 32 * 1024, cheapSpacing: 8 * 1024, pieceSize: 8 * 1024 };

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tarstack-codec-'));
  try {
    mkdirSync(join(dir, 'src'));
    const body = Buffer.concat([randomBytes(150_000), Buffer.from('codec under memcheck '.repeat(8000))]);
    writeFileSync(join(dir, 'src', 'f'), body);
    const tar = join(dir, 'a.tar');
    execFileSync('tar', ['-cf', tar, '-C', join(dir, 'src'), 'f']);
    const shapes: Shape[] = ['gzip', 'gzip-multi', 'zstd', 'zstd-multi', 'xz-blocks'];
    for (const shape of shapes) {
      const v = compress(tar, dir, shape, 64 * 1024);
      const { data } = indexTarFile(v.path, { seek: SEEK });
      const a = new SeekableArchive(openSync(v.path, 'r'), data.seek!, v.path);
      const want = Buffer.concat([Buffer.alloc(512), body]); // header block, then the body
      const got = await Promise.all(Array.from({ length: 12 }, (_, i) => a.read(512 + i * 20_000, 3000)));
      got.forEach((b, i) => {
        if (!b.equals(want.subarray(512 + i * 20_000, 512 + i * 20_000 + 3000))) throw new Error(`${shape}: async read ${i} wrong`);
      });
      const all = Buffer.alloc(body.length);
      a.readInto(512, all, 0, body.length);
      if (!all.equals(body)) throw new Error(`${shape}: readInto wrong`);
      a.verifyAll();
      // sequential reads: a decoder streams ahead on its own thread, then is closed mid-stream
      for (let pos = 512; pos < 120_000; pos += 8192) {
        if (!(await a.read(pos, 8192)).equals(want.subarray(pos, pos + 8192))) throw new Error(`${shape}: sequential read at ${pos} wrong`);
      }
      Promise.resolve(a.read(100_000, 4096)).catch(() => undefined); // closed while a decode may be in flight
      a.close();
      flipByte(v.path, Math.floor(statSync(v.path).size / 2));
      try {
        indexTarFile(v.path, { seek: SEEK });
        throw new Error(`${shape}: damage not reported`);
      } catch (err) {
        if (!/data|corrupt|check/i.test((err as Error).message)) throw err;
      }
      truncateSync(v.path, Math.floor(statSync(v.path).size / 3));
      try {
        indexTarFile(v.path, { seek: SEEK });
        throw new Error(`${shape}: truncation not reported`);
      } catch (err) {
        if (!/truncated|cut short|damaged|corrupt/i.test((err as Error).message)) throw err;
      }
    }
    const r = await recompressToZstd(tar, join(dir, 'copy.tar.zst'));
    if (r.bytesIn !== statSync(tar).size) throw new Error('recompress lost bytes');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error('codec child:', err);
    process.exit(1);
  },
);
