// `image add --recompress`: any tar (plain or compressed) rewritten as seekable zstd: independent
// frames of FRAME bytes of tar, each with its size and checksum, then the seek table of the zstd
// seekable format (contrib/seekable_format/zstd_seekable_compression_format.md) in a skippable
// frame, so other readers get random access too. Frames compress on the threadpool while this
// thread decodes the next ones.
import { closeSync, fstatSync, openSync, writeSync } from 'node:fs';
import { detectCompression, codecFormat } from './compression.js';
import { readFully } from './reader.js';
import { TarFormatError } from './scan.js';
import { isCodecError, loadCodec } from '../native/codec.js';

/** Tar bytes per frame: the random-access unit of the copy, as the gzip seek point spacing. */
export const FRAME = 4 * 1024 * 1024;
const LEVEL = 3;
const IN_FLIGHT = 3;
const SKIPPABLE_SEEK_TABLE = 0x184d2a5e;
const SEEKABLE_MAGIC = 0x8f92eab1;

export interface RecompressResult {
  frames: number;
  bytesIn: number; // tar bytes
  bytesOut: number;
}

export async function recompressToZstd(src: string, dest: string, onProgress?: (done: number, total: number) => void): Promise<RecompressResult> {
  const codec = loadCodec();
  const fd = openSync(src, 'r');
  const out = openSync(dest, 'wx');
  const size = fstatSync(fd).size;
  const format = detectCompression(fd);
  const h = format ? codec.open(codecFormat(format), fd, size) : undefined;
  try {
    if (h) guard(format!, () => codec.scanBegin(h, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER));
    let pos = 0;
    let written = 0;
    const sizes: Array<[compressed: number, decompressed: number]> = [];
    const pending: Array<Promise<Buffer>> = [];
    let flushed = 0;
    const flush = async (): Promise<void> => {
      const frame = await pending.shift()!;
      for (let w = 0; w < frame.length; ) w += writeSync(out, frame, w, frame.length - w, written + w);
      written += frame.length;
      sizes[flushed++][0] = frame.length;
    };
    for (;;) {
      const buf = Buffer.allocUnsafe(FRAME);
      const n = h ? guard(format!, () => codec.decodeSync(h, 0, 0, null, buf, FRAME, null)) : readFully(fd, buf, FRAME, pos);
      if (h) codec.takePoints(h); // not wanted: drop them as they come
      if (n > 0) {
        const frame = codec.zstdFrame(buf.subarray(0, n), LEVEL);
        frame.catch(() => undefined); // awaited in order by flush; a failure left behind must not crash
        pending.push(frame);
        sizes.push([0, n]);
        pos += n;
      }
      if (pending.length >= IN_FLIGHT) await flush();
      onProgress?.(h ? codec.inPos(h) : pos, size);
      if (n < FRAME) break;
    }
    while (pending.length) await flush();
    const table = seekTableFrame(sizes);
    writeSync(out, table, 0, table.length, written);
    return { frames: sizes.length, bytesIn: pos, bytesOut: written + table.length };
  } finally {
    if (h) codec.close(h);
    closeSync(fd);
    closeSync(out);
  }
}

function seekTableFrame(sizes: Array<[number, number]>): Buffer {
  const body = 8 * sizes.length + 9;
  const b = Buffer.alloc(8 + body);
  b.writeUInt32LE(SKIPPABLE_SEEK_TABLE, 0);
  b.writeUInt32LE(body, 4);
  sizes.forEach(([c, d], i) => {
    b.writeUInt32LE(c, 8 + 8 * i);
    b.writeUInt32LE(d, 12 + 8 * i);
  });
  const foot = 8 + 8 * sizes.length;
  b.writeUInt32LE(sizes.length, foot);
  b.writeUInt8(0, foot + 4); // no per-frame checksums here: each frame carries its own
  b.writeUInt32LE(SEEKABLE_MAGIC, foot + 5);
  return b;
}

function guard<T>(format: string, f: () => T): T {
  try {
    return f();
  } catch (err) {
    if (isCodecError(err)) throw new TarFormatError(`${format}: ${err.message}`, 0);
    throw err;
  }
}
