// The seek table of a compressed tar: where decoding can start (seek points, in compressed and
// uncompressed coordinates, with the gzip window each needs) and a crc32 of every decoded piece, so
// a byte served from a changed archive is an EIO, never a wrong byte. A chunk runs from one point to
// the next; pieces split each chunk from its start into PIECE-sized runs (the cache's unit).
import { readSync } from 'node:fs';
import { crc32 } from 'node:zlib';

export type Compression = 'gzip' | 'zstd' | 'xz';

/** Output between seek points where one needs a stored window (gzip inside a member): ≤ 0.8 % of the data. */
export const SPACING = 4 * 1024 * 1024;
/** Output between points that need no window (member, frame and block starts): they cost 36 bytes. */
export const CHEAP_SPACING = 1024 * 1024;
/** The unit decoded, verified and cached: two 128 KiB FUSE reads. */
export const PIECE = 256 * 1024;
/** A chunk longer than this means random reads decode a lot from its start: `image info` says so. */
export const SEQUENTIAL_CHUNK = 32 * 1024 * 1024;
/** Compressed bytes hashed at each point (and at the end of the file) for the mount-time sample. */
export const SAMPLE_BYTES = 1024;

/** Where the stored gzip windows are: in memory (fresh from indexing) or in the index file. */
export type WindowStore = Buffer | { path: string; offset: number; bytes: number };

export interface SeekTable {
  format: Compression;
  compressedSize: number;
  /** Uncompressed bytes: the whole decoded stream, the tar and whatever padding follows it. */
  size: number;
  pieceSize: number;
  spacing: number;
  count: number;
  inBit: Float64Array;
  outOff: Float64Array;
  kind: Uint32Array;
  winOff: Float64Array;
  winLen: Uint32Array;
  /** crc32 of SAMPLE_BYTES compressed bytes from each point's byte offset. */
  inCrc: Uint32Array;
  /** crc32 of each piece, chunk after chunk. */
  pieceCrc: Uint32Array;
  /** crc32 of the last SAMPLE_BYTES bytes of the compressed file. */
  tailCrc: number;
  windows: WindowStore;
  /**
   * A layer indexed from its own TOC (eStargz, zstd:chunked): sha256 of each piece (32 bytes each),
   * checked instead of pieceCrc (which is not known: nothing decoded the layer), every piece one TOC
   * chunk whose point decodes nothing but it before the next, so a decoder never runs on from one.
   * Not in the index file: attached when the layer opens (remote/toc.ts).
   */
  pieceSha?: Buffer;
}

/** Lookups over a table: chunk of an offset, pieces of a chunk. */
export class SeekIndex {
  /** pieceFirst[c]: global number of chunk c's first piece; pieceFirst[count]: the total. */
  readonly pieceFirst: Uint32Array;
  readonly pieces: number;

  constructor(readonly t: SeekTable) {
    this.pieceFirst = new Uint32Array(t.count + 1);
    let total = 0;
    for (let c = 0; c < t.count; c++) {
      this.pieceFirst[c] = total;
      total += Math.ceil(this.chunkLen(c) / t.pieceSize);
    }
    this.pieceFirst[t.count] = total;
    this.pieces = total;
  }

  chunkEnd(c: number): number {
    return c + 1 < this.t.count ? this.t.outOff[c + 1] : this.t.size;
  }

  chunkLen(c: number): number {
    return this.chunkEnd(c) - this.t.outOff[c];
  }

  /** The chunk holding uncompressed offset `pos` (< size). */
  chunkAt(pos: number): number {
    return lastAtMost(this.t.outOff, this.t.count, pos);
  }

  /** The chunk of global piece `g`. */
  chunkOfPiece(g: number): number {
    return lastAtMost(this.pieceFirst, this.t.count, g);
  }

  pieceAt(pos: number): number {
    const c = this.chunkAt(pos);
    return this.pieceFirst[c] + Math.floor((pos - this.t.outOff[c]) / this.t.pieceSize);
  }

  pieceStart(g: number): number {
    const c = this.chunkOfPiece(g);
    return this.t.outOff[c] + (g - this.pieceFirst[c]) * this.t.pieceSize;
  }

  pieceLen(g: number): number {
    const c = this.chunkOfPiece(g);
    return Math.min(this.t.pieceSize, this.chunkEnd(c) - this.pieceStart(g));
  }

  /** The longest run a read may have to decode from its seek point. */
  maxChunk(): number {
    let m = 0;
    for (let c = 0; c < this.t.count; c++) m = Math.max(m, this.chunkLen(c));
    return m;
  }
}

/** Largest i in [0, n) with a[i] <= v (a sorted ascending, a[0] <= v). */
function lastAtMost(a: ArrayLike<number>, n: number, v: number): number {
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (a[mid] <= v) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** One line for `image info` and `image add`: how reads find their place in the archive. */
export function accessNote(t: SeekTable, maxChunk: number): { randomAccess: boolean; note: string } {
  const unit = t.format === 'gzip' ? 'seek point' : t.format === 'zstd' ? 'zstd frame' : 'xz block';
  if (t.count <= 1 && t.size > SEQUENTIAL_CHUNK) {
    return { randomAccess: false, note: `one ${unit} for the whole archive: a read decodes from its start; \`image add --recompress\` writes a seekable copy` };
  }
  if (maxChunk > SEQUENTIAL_CHUNK) {
    return { randomAccess: false, note: `${t.count} ${unit}s, up to ${Math.round(maxChunk / 1048576)} MiB apart: random reads decode that much; \`image add --recompress\` writes a seekable copy` };
  }
  return { randomAccess: true, note: `random access: ${t.count} ${unit}${t.count === 1 ? '' : 's'}; a read decodes at most ${Math.max(1, Math.round(maxChunk / 1048576))} MiB` };
}

/** crc32 of up to `len` compressed bytes at `pos` (fewer at the end of the file). */
export function sampleCrc(fd: number, pos: number, len: number): number {
  const b = Buffer.alloc(len);
  let done = 0;
  while (done < len) {
    const n = readSync(fd, b, done, len - done, pos + done);
    if (n === 0) break;
    done += n;
  }
  return crc32(b.subarray(0, done)) >>> 0;
}

/**
 * The mount-time check of a compressed tar: its compressed bytes at `n` points spread over the file
 * and at its end, against the crcs taken while indexing. Returns the first differing offset.
 */
export function sampleMismatch(fd: number, t: SeekTable, n: number): number | undefined {
  const picks = t.count <= n ? Array.from({ length: t.count }, (_, i) => i) : Array.from({ length: n }, (_, s) => Math.floor((s * (t.count - 1)) / (n - 1)));
  for (const i of picks) {
    const pos = Math.floor(t.inBit[i] / 8);
    if (sampleCrc(fd, pos, SAMPLE_BYTES) !== t.inCrc[i]) return pos;
  }
  const tail = Math.min(SAMPLE_BYTES, t.compressedSize);
  if (sampleCrc(fd, t.compressedSize - tail, tail) !== t.tailCrc) return t.compressedSize - tail;
  return undefined;
}
