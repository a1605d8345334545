// Random access to a compressed tar through its seek table: a read decodes the pieces it needs
// from the nearest seek point (or from a decoder already positioned there), checks each against
// its crc32 in the table and caches it; which decoder decodes what is decided here, the decoding
// and checking is piece-decoder.ts's. Serving decodes on the libuv threadpool (Node's thread
// answers FUSE requests); copy-up and checks decode synchronously. A changed archive is an EIO.
import { LRUCache } from 'lru-cache';
import { SeekIndex, type SeekTable } from './seek-table.js';
import { NO_SEEK, PieceDecoder, planJobs, type ArchiveInput, type Decoder } from './piece-decoder.js';
import { AheadStream, SLAB, WINDOW } from './decode-ahead.js';
import { NativeStream } from './native-stream.js';
import { fsError } from '../util/errors.js';
import type { ArchiveReader } from './reader.js';

export type { ArchiveInput } from './piece-decoder.js';

/**
 * Decoded pieces of every archive in the process, bounded in bytes: 32 MiB holds 128 pieces, enough
 * for a dozen files read sequentially at once (4 pieces ahead each) plus pieces random reads revisit.
 */
export const PIECE_CACHE_BYTES = 32 * 1024 * 1024;
const cache = new LRUCache<number, Buffer>({ maxSize: PIECE_CACHE_BYTES, sizeCalculation: (b) => b.length });
let serials = 0;

/** Copies of at least this many bytes are slices of a shared arena slab (copyTarget). */
const ARENA_MIN = 64 * 1024;
let arena: Buffer | null = null;
let arenaUsed = 0;

/** Decoders per archive for serving: the libuv threadpool's 4 threads; more would only queue. */
const MAX_CURSORS = 4;
/** Sequential reading keeps this many pieces (1 MiB) decoded or decoding ahead of the reader. */
const AHEAD = 4;
/** TARSTACK_NATIVE_STREAMS=0: members read sequentially are served by JS (decode-ahead.ts) only. */
const NATIVE_STREAMS = process.env.TARSTACK_NATIVE_STREAMS !== '0';
/** Read ends remembered to tell a continued read (files read at once, each sequentially). */
const READ_ENDS = 32;

/** A decoder (piece-decoder.ts) as the scheduler uses it. */
interface Cursor extends Decoder {
  /** While a job runs: settles when it ends; `until` is where it will then stand. */
  busy: Promise<void> | null;
  until: number;
  used: number;
}

export class SeekableArchive {
  readonly size: number;
  private readonly index: SeekIndex;
  private readonly decoder: PieceDecoder;
  private readonly serial = ++serials * 2 ** 32;
  private readonly cursors: Cursor[] = [];
  private syncCursor: Cursor | undefined;
  private readonly inflight = new Map<number, Promise<Buffer>>();
  /** Decoders decoding ahead of a sequential reader on their own thread (local archives only). */
  private readonly streams = new Map<Cursor, AheadStream | NativeStream>();
  /** Decoders whose JS stream was ended for a native one (fileStream): it starts once they are free. */
  private readonly handover = new Set<Cursor>();
  /** A file read through a FUSE session that reads natively starts at this piece (fileStream); -1: none. */
  private nativeWanted = -1;
  private closed = false;
  /** Where recent reads ended (remote input: a read starting at one continues it). */
  private readonly readEnds = new Set<number>();
  private clock = 0;

  constructor(fd: number, readonly table: SeekTable, private readonly label: string, private readonly input?: ArchiveInput) {
    this.index = new SeekIndex(table);
    this.size = table.size;
    this.decoder = new PieceDecoder(fd, table, this.index, label, input, (piece, b) => cache.set(this.serial + piece, b));
  }

  /** Bytes [pos, pos+len) clamped to the size: at once when cached, else once decoded. */
  read(pos: number, len: number): Buffer | Promise<Buffer> {
    const end = Math.min(this.size, pos + len);
    if (end <= pos) return Buffer.alloc(0);
    const first = this.index.pieceAt(pos);
    const last = this.index.pieceAt(end - 1);
    const bufs: Buffer[] = [];
    for (let piece = first; piece <= last; piece++) {
      const b = cache.get(this.serial + piece);
      if (!b) return this.readAsync(pos, end, first, last);
      bufs.push(b);
    }
    this.prefetch(last + 1, pos, end);
    return this.assemble(bufs, first, pos, end);
  }

  /** Synchronous read into `buf` (copy-up, checks): returns the bytes filled, short only at the end. */
  readInto(pos: number, buf: Buffer, off: number, len: number): number {
    const end = Math.min(this.size, pos + len);
    let at = pos;
    while (at < end) {
      const piece = this.index.pieceAt(at);
      const b = cache.get(this.serial + piece) ?? this.pieceSync(piece);
      const start = this.index.pieceStart(piece);
      at += b.copy(buf, off + (at - pos), at - start, Math.min(b.length, end - start));
    }
    return end > pos ? end - pos : 0;
  }

  /**
   * The native stream (native-stream.ts) that serves decoded byte `pos` on, if any: started here
   * when an idle decoder stands within WINDOW pieces of it (a file read sequentially), after a JS
   * stream there is ended (its decoder then streams natively at a later read). Local archives
   * whose decoder runs on through its chunk only (not xz, not a TOC layer).
   */
  fileStream(pos: number): NativeStream | undefined {
    if (this.closed || this.input || this.table.format === 'xz' || this.table.pieceSha || pos >= this.size || !NATIVE_STREAMS) return undefined;
    const piece = this.index.pieceAt(pos);
    for (const s of this.streams.values()) {
      if (s instanceof NativeStream && s.has(piece)) return s;
      if (s instanceof AheadStream && near(s, piece)) {
        s.end(); // its decoder streams natively once the pieces it pushed are decoded
        this.handover.add(s.cur as Cursor);
        return undefined;
      }
    }
    const cur = this.cursors.find((c) => !c.busy && c.next >= 0 && c.next < this.index.pieces && Math.abs(c.next - piece) <= WINDOW);
    if (cur) return this.streamNatively(cur);
    this.nativeWanted = piece; // the decoder this read starts streams natively (prefetch)
    return undefined;
  }

  private streamNatively(cur: Cursor): NativeStream {
    const s = new NativeStream(this.index, this.table, cur, (piece, b) => cache.set(this.serial + piece, b));
    this.track(cur, s);
    return s;
  }

  /** Decode everything once, checking every piece (image verify). */
  verifyAll(onProgress?: (done: number, total: number) => void): void {
    const cur = this.sync();
    for (let chunk = 0; chunk < this.table.count; chunk++) {
      const first = this.index.pieceFirst[chunk];
      const seek = cur.next === first ? NO_SEEK : this.decoder.seekOf(chunk);
      for (const job of planJobs(seek, first, this.index.pieceFirst[chunk + 1] - 1, Infinity)) {
        this.decoder.run(cur, job, 'sync');
        onProgress?.(this.table.inBit[chunk] / 8, this.table.compressedSize);
      }
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.streams.values()) s.abort(fsError('EIO', `${this.label}: the layer is closed`));
    for (const c of [...this.cursors, ...(this.syncCursor ? [this.syncCursor] : [])]) {
      if (c.busy) void c.busy.then(() => this.decoder.closeDecoder(c));
      else this.decoder.closeDecoder(c);
    }
    this.decoder.close();
  }

  private async readAsync(pos: number, end: number, first: number, last: number): Promise<Buffer> {
    const wanted: Array<Promise<Buffer>> = [];
    for (let piece = first; piece <= last; piece++) wanted.push(this.piece(piece));
    const bufs = await Promise.all(wanted);
    this.prefetch(last + 1, pos, end);
    return this.assemble(bufs, first, pos, end);
  }

  /**
   * Bytes [pos, end) out of the consecutive pieces `bufs`, the first of which is piece `first`: a view
   * when they lie side by side in memory (a stream's slab, decode-ahead.ts; pieces are never written
   * once checked), else a copy.
   */
  private assemble(bufs: Buffer[], first: number, pos: number, end: number): Buffer {
    const start = this.index.pieceStart(first);
    if (bufs.length === 1 || adjacent(bufs)) return Buffer.from(bufs[0].buffer, bufs[0].byteOffset + pos - start, end - pos);
    const out = this.copyTarget(end - pos);
    let at = 0;
    let pieceStart = start;
    for (const b of bufs) {
      const from = Math.max(0, pos - pieceStart);
      at += b.copy(out, at, from, Math.min(b.length, end - pieceStart));
      pieceStart += b.length;
    }
    return out;
  }

  /**
   * Where a read across two slabs is copied: a slice of a shared slab (the codec's, reused once the
   * GC has collected every slice of it), so that a stream's READ in eight is not a fresh 1 MiB
   * mapping faulted in page by page. Small copies are ordinary Buffers.
   */
  private copyTarget(len: number): Buffer {
    if (len < ARENA_MIN) return Buffer.allocUnsafe(len);
    if (!arena || arena.length - arenaUsed < len) {
      arena = len <= SLAB ? this.decoder.slab() : Buffer.allocUnsafe(len);
      arenaUsed = 0;
    }
    arenaUsed += len;
    return arena.subarray(arenaUsed - len, arenaUsed);
  }

  /**
   * Sequential reading: keep the AHEAD pieces after the one just read decoded or decoding, as one job
   * on a decoder already standing at the first missing one (so random reads start nothing); a local
   * archive's decoder then goes on decoding ahead on its own thread (decode-ahead.ts). A remote
   * blob's pieces cost bytes on the wire: there, only a read that continues an earlier one (a file
   * read on, not a small file read whole) prefetches.
   */
  private prefetch(next: number, pos: number, end: number): void {
    if (this.closed) return;
    if (this.input) {
      const continues = this.readEnds.has(pos);
      this.readEnds.add(end);
      if (this.readEnds.size > READ_ENDS) this.readEnds.delete(this.readEnds.values().next().value as number);
      if (!continues) return;
    }
    for (const s of this.streams.values()) {
      if (near(s, next)) return s.advance(next - 1);
    }
    for (let piece = next; piece < next + AHEAD && piece < this.index.pieces; piece++) {
      if (cache.has(this.serial + piece) || this.inflight.has(piece)) continue;
      const cur = this.cursors.find((c) => !c.busy && c.next === piece);
      if (!cur) return;
      if (this.nativeWanted >= 0 && Math.abs(next - this.nativeWanted) <= WINDOW) return void ((this.nativeWanted = -1), this.streamNatively(cur));
      if (!this.input) return this.stream(cur, next - 1);
      const chunk = this.index.chunkOfPiece(piece);
      const last = Math.min(piece + AHEAD - 1, this.index.pieceFirst[chunk + 1] - 1);
      this.start(cur, last, -1, piece).catch(() => undefined); // a real read of these pieces reports any failure
      return;
    }
  }

  private piece(piece: number): Promise<Buffer> {
    const hit = cache.get(this.serial + piece);
    if (hit) return Promise.resolve(hit);
    return this.inflight.get(piece) ?? this.produce(piece);
  }

  /** Pick a decoder for `piece`: one standing in its chunk at or before it, else a free one to seek. */
  private async produce(piece: number): Promise<Buffer> {
    for (;;) {
      if (this.closed) throw fsError('EIO', `${this.label}: the layer is closed`);
      const hit = cache.get(this.serial + piece);
      if (hit) return hit;
      const pending = this.inflight.get(piece);
      if (pending) return pending;
      const chunk = this.index.chunkOfPiece(piece);
      const first = this.index.pieceFirst[chunk];
      for (const s of this.streams.values()) {
        const copy = s instanceof NativeStream ? await s.piece(piece) : null; // pushed, held in C
        if (copy) return cache.set(this.serial + piece, copy), copy;
        if (piece >= s.position && piece < s.reach) {
          s.advance(piece);
          const p = this.inflight.get(piece);
          if (p) return p;
        }
      }
      let best: Cursor | undefined;
      for (const cur of this.cursors) {
        const at = this.streams.get(cur)?.position ?? (cur.busy ? cur.until : cur.next);
        if (at >= first && at <= piece && (!best || at > (best.busy ? best.until : best.next))) best = cur;
      }
      if (best?.busy) {
        this.streams.get(best)?.end(); // too far ahead of its stream: it stops, then decodes this
        await best.busy;
        continue;
      }
      if (best) return this.start(best, piece, -1);
      let free = this.cursors.filter((x) => !x.busy).sort((a, b) => a.used - b.used)[0];
      if (!free && this.cursors.length < MAX_CURSORS) {
        free = this.newCursor();
        this.cursors.push(free);
      }
      if (free) return this.start(free, piece, chunk);
      for (const s of this.streams.values()) s.end(); // a stream left idle would never free its decoder
      await Promise.race(this.cursors.map((x) => x.busy));
    }
  }

  /**
   * Run jobs on `cur` up to piece `last` (seeking to chunk `seekChunk` first unless -1). Pieces before
   * `keepFrom` are passed through (decoded and checked, not kept); the rest are cached, each
   * awaitable in `inflight` meanwhile. Resolves with piece `last`.
   */
  private start(cur: Cursor, last: number, seekChunk: number, keepFrom = last): Promise<Buffer> {
    const from = seekChunk >= 0 ? this.index.pieceFirst[seekChunk] : cur.next;
    const jobs = planJobs(seekChunk >= 0 ? this.decoder.seekOf(seekChunk) : NO_SEEK, from, last, keepFrom);
    const kept = jobs[jobs.length - 1];
    const work = (async () => {
      for (const job of jobs.slice(0, -1)) await this.decoder.run(cur, job, 'async');
      return this.decoder.run(cur, kept, 'async');
    })();
    cur.until = last + 1;
    cur.used = ++this.clock;
    cur.busy = work.then(
      () => undefined,
      () => undefined,
    ).finally(() => (cur.busy = null));
    for (let piece = kept.from; piece <= last; piece++) {
      const p = work.then((bufs) => bufs[piece - kept.from]);
      p.catch(() => undefined); // handled by whoever awaits it; unrequested pieces must not crash the daemon
      this.inflight.set(piece, p);
      void p.finally(() => this.inflight.get(piece) === p && this.inflight.delete(piece)).catch(() => undefined);
    }
    return this.inflight.get(last)!;
  }

  /** `cur` decodes ahead of a reader that has read up to piece `lastRead`, until the stream ends. */
  private stream(cur: Cursor, lastRead: number): void {
    const s = new AheadStream(this.decoder, this.table, this.index, cur, this.inflight, lastRead);
    this.track(cur, s);
    s.advance(lastRead);
  }

  /** `cur` is busy with stream `s` until it is done. */
  private track(cur: Cursor, s: AheadStream | NativeStream): void {
    this.streams.set(cur, s);
    cur.used = ++this.clock;
    cur.busy = s.done.finally(() => {
      cur.busy = null;
      this.streams.delete(cur);
      if (!this.handover.delete(cur) || this.closed || cur.next < 0 || cur.next >= this.index.pieces) return;
      try {
        this.streamNatively(cur);
      } catch (err) {
        console.error(`tarstack: ${this.label}: cannot stream natively:`, err);
      }
    });
  }

  /** Piece `piece` decoded on this thread (copy-up, checks), by the one synchronous decoder. */
  private pieceSync(piece: number): Buffer {
    if (this.closed) throw fsError('EIO', `${this.label}: the layer is closed`);
    const cur = this.sync();
    const chunk = this.index.chunkOfPiece(piece);
    const first = this.index.pieceFirst[chunk];
    const from = cur.next >= first && cur.next <= piece ? cur.next : first;
    let pieces: Buffer[] = [];
    for (const job of planJobs(from === cur.next ? NO_SEEK : this.decoder.seekOf(chunk), from, piece, piece)) pieces = this.decoder.run(cur, job, 'sync');
    return pieces[pieces.length - 1];
  }

  private newCursor(): Cursor {
    return { ...this.decoder.open(), busy: null, until: -1, used: 0 };
  }

  private sync(): Cursor {
    this.syncCursor ??= this.newCursor();
    return this.syncCursor;
  }


}

/** Whether a read of `piece` continues what stream `s` serves: from two windows behind where it stands to its reach. */
function near(s: AheadStream | NativeStream, piece: number): boolean {
  return piece >= s.position - 2 * WINDOW && piece < s.reach;
}

/** Whether each buffer starts in memory where the one before ends. */
function adjacent(bufs: Buffer[]): boolean {
  for (let i = 1; i < bufs.length; i++) {
    if (bufs[i].buffer !== bufs[0].buffer || bufs[i].byteOffset !== bufs[i - 1].byteOffset + bufs[i - 1].length) return false;
  }
  return true;
}

/** The decoded tar as an ArchiveReader (synchronous): member checksums, image verify. */
export class DecodedReader implements ArchiveReader {
  bytesRead = 0;
  constructor(private readonly a: SeekableArchive) {}
  get size(): number {
    return this.a.size;
  }
  has(end: number): boolean {
    return end <= this.a.size;
  }
  progress(pos: number): [number, number] {
    return [pos, this.a.size];
  }
  read(pos: number, len: number): Buffer {
    const b = Buffer.allocUnsafe(Math.max(0, Math.min(len, this.a.size - pos)));
    const n = this.a.readInto(pos, b, 0, b.length);
    this.bytesRead += n;
    return b.subarray(0, n);
  }
}
