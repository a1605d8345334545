// A decoder streaming in C (native-bindings/src/stream.c): for a local archive's member read
// sequentially through an openless mount, the decoder decodes ahead on its own thread into C
// memory and checks each piece against the seek table's crc32 there; the FUSE session answers the
// member's READs from those bytes without JS (fuse/direct-reads.ts registers them), and JS never
// holds a Buffer of them (no slab for the GC). It stops when seekable.ts ends it (it wants the
// decoder, or a read it cannot serve), at close, or on a failure (the READs waiting get EIO).
// Unlike decode-ahead.ts it puts nothing into the piece cache while it runs: a stream no READ came
// to for IDLE_MS (a reader that paused, or finished) hands the pieces around where reads stopped to
// the cache and ends, so its slabs and thread do not outlive their use.
import type { Decoder } from './piece-decoder.js';
import type { SeekIndex, SeekTable } from './seek-table.js';
import { loadCodec, type NativeStreamHandle } from '../native/codec.js';

/** A stream without READs for this long (checked every IDLE_MS) ends. */
const IDLE_MS = 1000;
/**
 * Pieces before where the stream stands handed to the piece cache when it ends idle (those it still
 * holds of them): the kernel's readahead may have asked for up to this much past where the reader
 * stopped, and the pages it got may be gone again when the reader goes on.
 */
const KEEP = 64;
/** How often piece() looks whether its piece is decoded. */
const POLL_MS = 1;

export class NativeStream {
  readonly handle: NativeStreamHandle;
  readonly base: number;
  readonly limit: number;
  private ended = false;
  private resolveDone!: () => void;
  private readonly idle: NodeJS.Timeout;
  private reads = -1;
  /** Settles once the thread is stopped and the decoder is one-call-at-a-time again (cur.next valid). */
  readonly done: Promise<void>;

  /**
   * `cur` stands at piece cur.next; the stream runs on through the chunks after while the pieces
   * stay evenly spaced (each chunk a whole number of pieces: zstd-seekable's 4 MiB frames), to the
   * end of the first chunk that is not (a gzip seek point's) at most.
   */
  constructor(index: SeekIndex, table: SeekTable, readonly cur: Decoder, keep: (piece: number, b: Buffer) => void) {
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    this.base = cur.next;
    let chunk = index.chunkOfPiece(this.base);
    while (chunk + 1 < table.count && index.chunkLen(chunk) % table.pieceSize === 0) chunk++;
    this.limit = index.pieceFirst[chunk + 1];
    const endOff = index.pieceStart(this.limit - 1) + index.pieceLen(this.limit - 1);
    const crcs = table.pieceCrc.subarray(this.base, this.limit);
    this.handle = loadCodec().streamStart(cur.h, this.base, index.pieceStart(this.base), this.limit, endOff, table.pieceSize, crcs, (at) => this.finish(at));
    this.idle = setInterval(() => this.check(keep), IDLE_MS).unref();
  }

  /** No READ since the last check: the pieces held around the end of reading go to the cache, then the stream ends. */
  private check(keep: (piece: number, b: Buffer) => void): void {
    const codec = loadCodec();
    const [at, , reads] = codec.streamInfo(this.handle);
    if (this.ended || reads !== this.reads) return void (this.reads = reads);
    for (let piece = Math.max(this.base, at - KEEP); piece < at; piece++) {
      const b = codec.streamCopy(this.handle, piece);
      if (b) keep(piece, b);
    }
    this.end();
  }

  /**
   * Whether piece `piece` is this stream's to serve (C decides about each READ): not before the
   * pieces it still holds, whose slabs it reused (a second reader, or the same one reading again).
   */
  has(piece: number): boolean {
    return this.holds(piece, false);
  }

  /** has(piece), and with `inReach` also that piece is within the stream's reach: one question to C. */
  private holds(piece: number, inReach: boolean): boolean {
    if (this.ended || piece < this.base || piece >= this.limit) return false;
    const [, reach, , low] = loadCodec().streamInfo(this.handle);
    return piece >= low && (!inReach || piece < reach);
  }

  get position(): number {
    return this.ended ? -1 : loadCodec().streamInfo(this.handle)[0];
  }

  get reach(): number {
    return this.ended ? -1 : loadCodec().streamInfo(this.handle)[1];
  }

  /**
   * A copy of piece `piece` once decoded and checked, if it is within the stream's reach and the
   * stream still holds it (a READ JS answers, across the piece the stream started at); null if
   * not, at once for a piece it has let go of. Polled: rare.
   */
  async piece(piece: number): Promise<Buffer | null> {
    const codec = loadCodec();
    while (this.holds(piece, true)) {
      const b = codec.streamCopy(this.handle, piece);
      if (b) return b;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    return null;
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
    clearInterval(this.idle);
    this.cur.next = at;
    this.resolveDone();
  }
}
