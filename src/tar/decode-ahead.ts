// A file read sequentially from a local compressed archive: one decoder decodes ahead of the reader
// on a thread of its own (codec aheadStart), job after job with no round trip through Node's thread
// between them, while the pieces before are served. At most WINDOW pieces are pushed past the last
// piece read (bounded memory, and a reader that stops costs at most that much decoding). Pieces are
// checked and cached exactly as a threadpool job's are (piece-decoder.ts), so the bytes served are
// the same. seekable.ts decides when a decoder streams and ends the stream.
import { JOB_PIECES, NO_SEEK, type Decoder, type Job, type PieceDecoder } from './piece-decoder.js';
import type { SeekIndex, SeekTable } from './seek-table.js';
import { fsError } from '../util/errors.js';

/** Pieces (4 MiB) a stream may decode past the last piece read. */
export const WINDOW = 16;
/**
 * Jobs pushed one after another decode side by side into one slab of this size, so that a read
 * across pieces of different jobs is a view of the slab (seekable.ts assemble), not a new Buffer
 * and a copy per READ: the member's data rarely starts on a piece boundary, so nearly every 1 MiB
 * READ spans two jobs. A stream's slabs grow from one job's size to SLAB, each as big as what the
 * stream has pushed so far, so a stream that stops early pins little more than it decoded (a slab
 * lives while any of its pieces is cached). Full-size slabs come from the codec (slab()): their
 * memory is reused once the GC has collected them, not unmapped and faulted in again.
 */
export const SLAB = 8 << 20;
/** Streams decoding in this process: when the last one stops, the slabs kept for reuse are freed. */
let live = 0;

interface Pushed {
  job: Job;
  out: Buffer;
  crcs: Uint32Array;
  resolve(bufs: Buffer[]): void;
  reject(err: unknown): void;
}

export class AheadStream {
  /** The next piece to push: the stream has pushed [first, pushedTo). */
  private pushedTo: number;
  private readonly jobs: Pushed[] = [];
  private ending = false;
  private ended = false;
  private slab: Buffer | null = null;
  private slabUsed = 0;
  private sliced = 0;
  private resolveEnded!: () => void;
  /** Settles once the thread is stopped and the decoder is one-call-at-a-time again (cur.next valid). */
  readonly done: Promise<void>;

  constructor(
    private readonly decoder: PieceDecoder,
    private readonly table: SeekTable,
    private readonly index: SeekIndex,
    readonly cur: Decoder,
    private readonly inflight: Map<number, Promise<Buffer>>,
    /** The last piece read: how far reads have come decides how far the stream may go. */
    private lastRead: number,
  ) {
    this.pushedTo = cur.next;
    this.done = new Promise((resolve) => (this.resolveEnded = resolve));
    decoder.aheadStart(cur, () => this.drain());
    live++;
  }

  /**
   * Reads of pieces up to here wait for the stream (advancing it) rather than end it: the kernel's
   * readahead asks up to read_ahead_kb (4 MiB) past the reader, several requests at once.
   */
  get reach(): number {
    return this.ending ? this.pushedTo : Math.max(this.lastRead, this.pushedTo) + 2 * WINDOW;
  }

  get position(): number {
    return this.pushedTo;
  }

  /** A read got to piece `piece`: push jobs until WINDOW pieces past it (never across a seek). */
  advance(piece: number): void {
    if (this.ending) return;
    this.lastRead = Math.max(this.lastRead, piece);
    try {
      while (this.pushedTo < this.lastRead + WINDOW && this.pushedTo < this.index.pieces) {
        const chunk = this.index.chunkOfPiece(this.pushedTo);
        // xz blocks and TOC chunks are each sought: the decoder does not run on into the next one
        if (this.pushedTo === this.index.pieceFirst[chunk] && (this.table.format === 'xz' || this.table.pieceSha)) break;
        const to = Math.min(this.pushedTo + JOB_PIECES - 1, this.index.pieceFirst[chunk + 1] - 1);
        this.push({ seek: NO_SEEK, from: this.pushedTo, to, keep: true });
        this.pushedTo = to + 1;
      }
    } catch (err) {
      this.fail(err);
    }
    // An idle stream keeps its (sleeping) thread: the kernel's readahead sends reads out of order,
    // and ending at each one behind the window started a thread per MiB. seekable.ts ends streams
    // when it needs their decoders, and at close.
    if (this.pushedTo >= this.index.pieces) this.end();
  }

  /** No more pushes; the stream stops once what was pushed is decoded (the decoder then stands after it). */
  end(): void {
    this.ending = true;
    if (this.jobs.length === 0) this.stop();
  }

  /** Stop now (closing): what is still decoding is dropped and its readers get EIO. */
  abort(err: Error): void {
    this.ending = true;
    const left = this.jobs.splice(0);
    if (left.length > 0) this.cur.next = -1;
    this.stop();
    for (const p of left) p.reject(err);
  }

  private push(job: Job): void {
    const { out, crcs } = this.decoder.aheadPush(this.cur, job, (len) => this.slice(len));
    let resolve!: (bufs: Buffer[]) => void;
    let reject!: (err: unknown) => void;
    const work = new Promise<Buffer[]>((res, rej) => ((resolve = res), (reject = rej)));
    this.jobs.push({ job, out, crcs, resolve, reject });
    for (let piece = job.from; piece <= job.to; piece++) {
      const p = work.then((bufs) => bufs[piece - job.from]);
      p.catch(() => undefined); // handled by whoever awaits it; unrequested pieces must not crash the daemon
      this.inflight.set(piece, p);
      void p.finally(() => this.inflight.get(piece) === p && this.inflight.delete(piece)).catch(() => undefined);
    }
  }

  /** The next `len` bytes of the slab; a new slab when they do not fit (the old one lives while its pieces do). */
  private slice(len: number): Buffer {
    if (!this.slab || this.slab.length - this.slabUsed < len) {
      const size = Math.max(len, Math.min(SLAB, this.sliced));
      this.slab = size === SLAB ? this.decoder.slab() : Buffer.allocUnsafe(size);
      this.slabUsed = 0;
    }
    this.sliced += len;
    this.slabUsed += len;
    return this.slab.subarray(this.slabUsed - len, this.slabUsed);
  }

  /** Called on Node's thread when jobs are done (also late, once stopped: then a no-op): check and cache them, in order. Never throws. */
  private drain(): void {
    try {
      while (this.jobs.length > 0 && !this.ended) {
        const p = this.jobs[0];
        const bufs = this.decoder.aheadPop(this.cur, p.job, p.out, p.crcs);
        if (!bufs) return;
        this.jobs.shift();
        p.resolve(bufs);
      }
      if (this.ending && this.jobs.length === 0) this.stop();
    } catch (err) {
      this.fail(err);
    }
  }

  /** A failed job fails the ones after it; the decoder must seek again. */
  private fail(err: unknown): void {
    this.cur.next = -1;
    this.abort(err instanceof Error ? err : fsError('EIO', String(err)));
  }

  private stop(): void {
    if (this.ended) return;
    this.ended = true;
    try {
      this.decoder.aheadStop(this.cur);
    } catch {
      // closed already
    }
    if (--live === 0) this.decoder.slabsRelease();
    this.resolveEnded();
  }
}
