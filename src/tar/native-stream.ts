// A decoder streaming in C (native-bindings/src/stream.c): for a local archive's member read
// sequentially through an openless mount, the decoder decodes ahead on its own thread into C
// memory and checks each piece against the seek table's crc32 there; the FUSE session answers the
// member's READs from those bytes without JS (fuse/direct-reads.ts registers them), and JS never
// holds a Buffer of them (no slab for the GC). It stops when seekable.ts ends it (it wants the
// decoder, or a read it cannot serve), at close, or on a failure (the READs waiting get EIO).
// Unlike decode-ahead.ts it puts nothing into the piece cache.
import type { Decoder } from './piece-decoder.js';
import type { SeekIndex, SeekTable } from './seek-table.js';
import { loadCodec, type NativeStreamHandle } from '../native/codec.js';

export class NativeStream {
  readonly handle: NativeStreamHandle;
  readonly base: number;
  readonly limit: number;
  private ended = false;
  private resolveDone!: () => void;
  /** Settles once the thread is stopped and the decoder is one-call-at-a-time again (cur.next valid). */
  readonly done: Promise<void>;

  /**
   * `cur` stands at piece cur.next; the stream runs on through the chunks after while the pieces
   * stay evenly spaced (each chunk a whole number of pieces: zstd-seekable's 4 MiB frames), to the
   * end of the first chunk that is not (a gzip seek point's) at most.
   */
  constructor(index: SeekIndex, table: SeekTable, readonly cur: Decoder) {
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    this.base = cur.next;
    let chunk = index.chunkOfPiece(this.base);
    while (chunk + 1 < table.count && index.chunkLen(chunk) % table.pieceSize === 0) chunk++;
    this.limit = index.pieceFirst[chunk + 1];
    const endOff = index.pieceStart(this.limit - 1) + index.pieceLen(this.limit - 1);
    const crcs = table.pieceCrc.subarray(this.base, this.limit);
    this.handle = loadCodec().streamStart(cur.h, this.base, index.pieceStart(this.base), this.limit, endOff, table.pieceSize, crcs, (at) => this.finish(at));
  }

  /** Whether piece `piece` is this stream's to serve (C decides about each READ). */
  has(piece: number): boolean {
    return !this.ended && piece >= this.base && piece < this.limit;
  }

  get position(): number {
    return this.ended ? -1 : loadCodec().streamInfo(this.handle)[0];
  }

  get reach(): number {
    return this.ended ? -1 : loadCodec().streamInfo(this.handle)[1];
  }

  /** READs advance the stream in C. */
  advance(_piece: number): void {}

  /** No more decoding past what waiting READs need; then the decoder stands after it. */
  end(): void {
    if (this.ended) return;
    const at = loadCodec().streamEnd(this.handle);
    if (at !== -2) this.finish(at);
  }

  abort(_err: Error): void {
    if (this.ended) return;
    loadCodec().streamAbort(this.handle);
    this.finish(-1);
  }

  private finish(at: number): void {
    if (this.ended) return;
    this.ended = true;
    this.cur.next = at;
    this.resolveDone();
  }
}
