// Indexing a compressed tar: one sequential decode of the whole file that serves the header
// scanner as an ArchiveReader and, on the way, builds the seek table (points from the native
// decoder, their gzip windows deflated, a crc32 of every piece). The decoder runs ahead on a thread
// of its own (codec aheadStart), AHEAD blocks in front of the scan, so decoding overlaps checksumming
// and header scanning. Recent output is kept in 1 MiB blocks; the rare read behind them (a huge
// extension header) re-decodes from the points so far.
import { deflateRawSync } from 'node:zlib';
import type { ArchiveReader } from './reader.js';
import { codecFormat } from './compression.js';
import { CHEAP_SPACING, PIECE, SAMPLE_BYTES, SPACING, sampleCrc, type Compression, type SeekTable } from './seek-table.js';
import { loadCodec, isCodecError, type Codec, type CodecHandle } from '../native/codec.js';
import { TarFormatError } from './scan.js';

const STEP = 1024 * 1024;
/** Blocks decoding ahead of the scan (a file still being written is decoded in step instead). */
const AHEAD = 4;

export interface ScanOptions {
  spacing?: number;
  cheapSpacing?: number;
  pieceSize?: number;
  /** Output kept around the last read and behind the decoding head (tests shrink it). */
  retain?: number;
  onProgress?(done: number, total: number): void;
  /**
   * Deflate level of the stored gzip windows (default zlib's): 0 stores them as one raw deflate block,
   * no compression and no zlib call, where indexing time counts more than the index's size (a
   * streaming pull: a deflate call per window cost half as much as the decoding).
   */
  windowLevel?: number;
  /** The file is still being written: returns once its bytes [0, end) are there (indexer.ts). */
  gate?(end: number): void;
}

/**
 * Compressed bytes one step can consume at most: its 1 MiB of output stored uncompressed (gzip's
 * stored blocks, zstd's raw blocks, xz's uncompressed chunks cost a few bytes per 64 KiB), the
 * decoder's read-ahead (codec_impl.h's 128 KiB) twice over, and headers between members.
 */
const STEP_INPUT = STEP + 512 * 1024;

interface Block {
  start: number;
  buf: Buffer;
  len: number;
}

export class ScanReader implements ArchiveReader {
  bytesRead = 0;
  private readonly codec: Codec;
  private readonly h: CodecHandle;
  private blocks: Block[] = [];
  private readonly queue: Buffer[] = []; // pushed to the decode-ahead thread, oldest first
  private spare: Buffer[] = [];
  private head = 0; // uncompressed bytes decoded
  private ended = false;
  private lowWater = 0; // start of the last read: kept for the scanner's look-backs
  private inPos = 0; // compressed bytes consumed by the decoded blocks
  private readonly ahead: boolean;
  private readonly retain: number;
  private readonly pieceSize: number;
  // the table being built
  private readonly inBit: number[] = [];
  private readonly outOff: number[] = [];
  private readonly kinds: number[] = [];
  private readonly winOff: number[] = [];
  private readonly winLen: number[] = [];
  private readonly windows: Buffer[] = [];
  private windowBytes = 0;
  private readonly pieceCrc: number[] = [];
  private pending: Array<[number, number, number, Buffer | null]> = [];
  private pieceStart = 0; // start of the piece being summed
  private pieceEnd = 0; // where it ends (a piece boundary or the next point)
  private crc = 0;

  constructor(private readonly fd: number, readonly format: Compression, private readonly compressedSize: number, private readonly opts: ScanOptions = {}) {
    this.codec = loadCodec();
    this.retain = opts.retain ?? STEP;
    this.pieceSize = opts.pieceSize ?? PIECE;
    // xz's scan starts from the stream's index at the end of the file: it needs all of it.
    if (format === 'xz') opts.gate?.(compressedSize);
    this.h = this.codec.open(codecFormat(format), fd, compressedSize);
    this.guard(() => this.codec.scanBegin(this.h, opts.spacing ?? SPACING, opts.cheapSpacing ?? CHEAP_SPACING));
    // gate() must run before each block's input is read, on this thread: no decoding ahead then.
    this.ahead = !opts.gate;
    if (this.ahead) {
      this.codec.aheadStart(this.h, null);
      while (this.queue.length < AHEAD) this.push();
    }
  }

  get size(): number {
    return this.head;
  }

  progress(): [number, number] {
    return [this.inPos, this.compressedSize];
  }

  has(end: number): boolean {
    while (this.head < end && !this.ended) this.step();
    return this.head >= end;
  }

  read(pos: number, len: number): Buffer {
    this.lowWater = pos;
    this.has(pos + len);
    const end = Math.min(pos + len, this.head);
    if (end <= pos) return Buffer.alloc(0);
    const first = this.blocks.findIndex((b) => b.start + b.len > pos);
    if (first < 0 || this.blocks[first].start > pos) return this.readBehind(pos, end - pos);
    const b = this.blocks[first];
    if (end <= b.start + b.len) return b.buf.subarray(pos - b.start, end - b.start);
    const parts: Buffer[] = [];
    for (let i = first; i < this.blocks.length && this.blocks[i].start < end; i++) {
      const x = this.blocks[i];
      parts.push(x.buf.subarray(Math.max(0, pos - x.start), Math.min(x.len, end - x.start)));
    }
    return Buffer.concat(parts);
  }

  /** Decode the rest of the file, then hand over the finished seek table. */
  finish(): { table: SeekTable; trailingGarbage: boolean } {
    while (!this.ended) this.step();
    this.opts.gate?.(this.compressedSize); // the samples below read compressed bytes anywhere
    this.sum(Buffer.alloc(0), this.head, 0); // points at the very end (a trailing skippable frame)
    this.endPiece(this.head);
    const tail = Math.min(SAMPLE_BYTES, this.compressedSize);
    const t: SeekTable = {
      format: this.format,
      compressedSize: this.compressedSize,
      size: this.head,
      pieceSize: this.pieceSize,
      spacing: this.opts.spacing ?? SPACING,
      count: this.outOff.length,
      inBit: Float64Array.from(this.inBit),
      outOff: Float64Array.from(this.outOff),
      kind: Uint32Array.from(this.kinds),
      winOff: Float64Array.from(this.winOff),
      winLen: Uint32Array.from(this.winLen),
      inCrc: Uint32Array.from(this.inBit, (b) => sampleCrc(this.fd, Math.floor(b / 8), SAMPLE_BYTES)),
      pieceCrc: Uint32Array.from(this.pieceCrc),
      tailCrc: sampleCrc(this.fd, this.compressedSize - tail, tail),
      windows: Buffer.concat(this.windows, this.windowBytes),
    };
    if (this.ahead) this.codec.aheadStop(this.h);
    const trailingGarbage = this.codec.trailingGarbage(this.h);
    this.close();
    return { table: t, trailingGarbage };
  }

  close(): void {
    try {
      this.codec.close(this.h);
    } catch {
      // already closed
    }
  }

  private step(): void {
    // Keep the blocks around the scanner's last read (it looks back at headers) and the last two
    // (a body's tail, the next header); recycle the rest.
    const near = (b: Block) => b.start + b.len > this.lowWater - this.retain && b.start < this.lowWater + this.retain;
    const kept: Block[] = [];
    this.blocks.forEach((b, i) => (i >= this.blocks.length - 2 || near(b) ? kept.push(b) : this.spare.push(b.buf)));
    this.blocks = kept;
    const [buf, n] = this.ahead ? this.popAhead() : this.decodeHere();
    this.bytesRead = this.inPos;
    this.sum(buf, this.head, n);
    if (n > 0) this.blocks.push({ start: this.head, buf, len: n });
    this.head += n;
    if (n < STEP) this.ended = true;
    if (this.ahead && !this.ended) this.push();
    if (this.opts.onProgress) this.opts.onProgress(...this.progress());
  }

  /** The next block, decoded on this thread (after gate() says its input is there). */
  private decodeHere(): [Buffer, number] {
    const buf = this.spare.pop() ?? Buffer.allocUnsafe(STEP);
    this.opts.gate?.(Math.min(this.compressedSize, this.inPos + STEP_INPUT));
    const n = this.guard(() => this.codec.decodeSync(this.h, 0, 0, null, buf, STEP, null));
    this.inPos = this.codec.inPos(this.h);
    for (const p of this.codec.takePoints(this.h)) this.pending.push(p);
    return [buf, n];
  }

  /** The oldest block queued on the decode-ahead thread, waiting for it if need be. */
  private popAhead(): [Buffer, number] {
    const buf = this.queue.shift()!;
    const r = this.guard(() => this.codec.aheadPop(this.h, true));
    if (!r) throw new Error('tarstack: the decode-ahead queue is empty'); // a bug: step() pushes one per pop
    const [n, inPos, points] = r;
    this.inPos = inPos;
    for (const p of points) this.pending.push(p);
    return [buf, n];
  }

  private push(): void {
    const buf = this.spare.pop() ?? Buffer.allocUnsafe(STEP);
    this.codec.aheadPush(this.h, buf, STEP, null);
    this.queue.push(buf);
  }

  /** Piece checksums over [at, at+n): pieces restart at every seek point. */
  private sum(buf: Buffer, at: number, n: number): void {
    let pos = at;
    const end = at + n;
    for (;;) {
      while (this.pending.length && this.pending[0][1] <= pos) this.addPoint(this.pending.shift()!);
      if (pos >= end) break;
      const nextPoint = this.pending.length ? this.pending[0][1] : Infinity;
      const stop = Math.min(end, this.pieceEnd, nextPoint);
      this.crc = this.codec.crc32(buf.subarray(pos - at, stop - at), this.crc);
      pos = stop;
      if (pos === this.pieceEnd) this.endPiece(pos);
    }
  }

  private addPoint([inBit, out, kind, window]: [number, number, number, Buffer | null]): void {
    if (this.outOff.length > 0) this.endPiece(out);
    this.inBit.push(inBit);
    this.outOff.push(out);
    this.kinds.push(kind);
    const w = window ? (this.opts.windowLevel === 0 ? storedBlock(window) : deflateRawSync(window, this.opts.windowLevel === undefined ? {} : { level: this.opts.windowLevel })) : null;
    this.winOff.push(this.windowBytes);
    this.winLen.push(w ? w.length : 0);
    if (w) {
      this.windows.push(w);
      this.windowBytes += w.length;
    }
    this.pieceStart = out;
    this.pieceEnd = out + this.pieceSize;
    this.crc = 0;
  }

  /** The piece being summed ends at `at` (a piece boundary, a new point, the end of the data). */
  private endPiece(at: number): void {
    if (at > this.pieceStart) this.pieceCrc.push(this.crc >>> 0);
    this.pieceStart = at;
    this.pieceEnd = at + this.pieceSize;
    this.crc = 0;
  }

  /** A read behind the kept blocks: decode again from the last point at or before it. */
  private readBehind(pos: number, len: number): Buffer {
    let i = this.outOff.length - 1;
    while (i > 0 && this.outOff[i] > pos) i--;
    const h = this.codec.open(codecFormat(this.format), this.fd, this.compressedSize);
    try {
      const w = this.winLen[i] ? Buffer.concat(this.windows).subarray(this.winOff[i], this.winOff[i] + this.winLen[i]) : null;
      const skip = Buffer.allocUnsafe(STEP);
      let at = this.outOff[i];
      let kind = this.kinds[i];
      while (at < pos) {
        const n = this.guard(() => this.codec.decodeSync(h, kind, this.inBit[i], w, skip.subarray(0, Math.min(STEP, pos - at)), STEP, null));
        kind = 0;
        if (n === 0) return Buffer.alloc(0);
        at += n;
      }
      const out = Buffer.allocUnsafe(len);
      const n = this.guard(() => this.codec.decodeSync(h, kind, this.inBit[i], w, out, len, null));
      return out.subarray(0, n);
    } finally {
      this.codec.close(h);
    }
  }

  /** Decoder failures become one clear line about the archive. */
  private guard<T>(f: () => T): T {
    try {
      return f();
    } catch (err) {
      if (isCodecError(err) && err.code !== 'EBUSY' && err.code !== 'EBADF') {
        throw new TarFormatError(`${this.format}: ${err.message}`, this.inPos);
      }
      throw err;
    }
  }
}

/** `b` as one final stored deflate block (RFC 1951 3.2.4): what level 0 makes, without a zlib stream. */
function storedBlock(b: Buffer): Buffer {
  if (b.length > 0xffff) return deflateRawSync(b, { level: 0 });
  const h = Buffer.alloc(5);
  h[0] = 1; // BFINAL, BTYPE 00
  h.writeUInt16LE(b.length, 1);
  h.writeUInt16LE(~b.length & 0xffff, 3);
  return Buffer.concat([h, b]);
}
