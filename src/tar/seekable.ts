// Random access to a compressed tar through its seek table: a read decodes the pieces it needs
// from the nearest seek point (or from a decoder already positioned there), checks each against
// its crc32 in the table, and caches it. Serving decodes on the libuv threadpool (Node's thread
// answers FUSE requests); copy-up and checks decode synchronously. A changed archive is an EIO.
import { closeSync, openSync, readSync } from 'node:fs';
import { LRUCache } from 'lru-cache';
import { codecFormat } from './compression.js';
import { SeekIndex, type SeekTable } from './seek-table.js';
import { isCodecError, loadCodec, type Codec, type CodecHandle } from '../native/codec.js';
import { fsError, FsError } from '../util/errors.js';
import type { ArchiveReader } from './reader.js';

/**
 * Decoded pieces of every archive in the process, bounded in bytes: 32 MiB holds 128 pieces, enough
 * for a dozen files read sequentially at once (4 pieces ahead each) plus pieces random reads revisit.
 */
export const PIECE_CACHE_BYTES = 32 * 1024 * 1024;
const cache = new LRUCache<number, Buffer>({ maxSize: PIECE_CACHE_BYTES, sizeCalculation: (b) => b.length });
let serials = 0;

/** Decoders per archive for serving: the libuv threadpool's 4 threads; more would only queue. */
const MAX_CURSORS = 4;
/** Pieces per decode job (1 MiB): bounds a job's buffer and how long it holds a worker. */
const JOB_PIECES = 4;
/** Sequential reading keeps this many pieces (1 MiB) decoded or decoding ahead of the reader. */
const AHEAD = 4;

interface Cursor {
  h: CodecHandle;
  /** The piece the decoder's next output byte starts; -1: it must seek first. */
  next: number;
  /** While a job runs: settles when it ends; `until` is where it will then stand. */
  busy: Promise<void> | null;
  until: number;
  used: number;
  /**
   * Where this decoder writes what it only passes through on the way to a wanted piece: reused,
   * so a random read allocates (and the GC tracks) only the piece it keeps. Allocating every
   * skipped megabyte cost a 7-15 ms mark-sweep every few reads.
   */
  scratch?: Buffer;
}

interface Seek {
  kind: number;
  inBit: number;
  window: Buffer | null;
}
const NO_SEEK: Seek = { kind: 0, inBit: 0, window: null };

export class SeekableArchive {
  readonly size: number;
  readonly ix: SeekIndex;
  private readonly codec: Codec;
  private readonly serial = ++serials * 2 ** 32;
  private readonly cursors: Cursor[] = [];
  private syncCursor: Cursor | undefined;
  private readonly inflight = new Map<number, Promise<Buffer>>();
  private windowFd = -1;
  private closed = false;
  private clock = 0;

  constructor(private readonly fd: number, readonly table: SeekTable, private readonly label: string) {
    this.codec = loadCodec();
    this.ix = new SeekIndex(table);
    this.size = table.size;
  }

  /** Bytes [pos, pos+len) clamped to the size: at once when cached, else once decoded. */
  read(pos: number, len: number): Buffer | Promise<Buffer> {
    const end = Math.min(this.size, pos + len);
    if (end <= pos) return Buffer.alloc(0);
    const g0 = this.ix.pieceAt(pos);
    const g1 = this.ix.pieceAt(end - 1);
    const bufs: Buffer[] = [];
    for (let g = g0; g <= g1; g++) {
      const b = cache.get(this.serial + g);
      if (!b) return this.readAsync(pos, end, g0, g1);
      bufs.push(b);
    }
    this.prefetch(g1 + 1);
    return this.assemble(bufs, g0, pos, end);
  }

  /** Synchronous read into `buf` (copy-up, checks): returns the bytes filled, short only at the end. */
  readInto(pos: number, buf: Buffer, off: number, len: number): number {
    const end = Math.min(this.size, pos + len);
    let at = pos;
    while (at < end) {
      const g = this.ix.pieceAt(at);
      const b = cache.get(this.serial + g) ?? this.pieceSync(g);
      const start = this.ix.pieceStart(g);
      const n = b.copy(buf, off + (at - pos), at - start, Math.min(b.length, end - start));
      at += n;
    }
    return end > pos ? end - pos : 0;
  }

  /** Decode everything once, checking every piece (image verify). */
  verifyAll(onProgress?: (done: number, total: number) => void): void {
    const cur = this.sync();
    for (let c = 0; c < this.table.count; c++) {
      const first = this.ix.pieceFirst[c];
      const last = this.ix.pieceFirst[c + 1] - 1;
      let seek = cur.next === first ? NO_SEEK : this.seekOf(c);
      for (let from = first; from <= last; from += JOB_PIECES) {
        this.jobSync(cur, seek, from, Math.min(last, from + JOB_PIECES - 1), false);
        seek = NO_SEEK;
        onProgress?.(this.table.inBit[c] / 8, this.table.compressedSize);
      }
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of [...this.cursors, ...(this.syncCursor ? [this.syncCursor] : [])]) {
      if (c.busy) void c.busy.then(() => this.codec.close(c.h));
      else this.codec.close(c.h);
    }
    if (this.windowFd >= 0) closeSync(this.windowFd);
  }

  private async readAsync(pos: number, end: number, g0: number, g1: number): Promise<Buffer> {
    const wanted: Array<Promise<Buffer>> = [];
    for (let g = g0; g <= g1; g++) wanted.push(this.piece(g));
    const bufs = await Promise.all(wanted);
    this.prefetch(g1 + 1);
    return this.assemble(bufs, g0, pos, end);
  }

  private assemble(bufs: Buffer[], g0: number, pos: number, end: number): Buffer {
    const start = this.ix.pieceStart(g0);
    if (bufs.length === 1) return bufs[0].subarray(pos - start, end - start);
    const out = Buffer.allocUnsafe(end - pos);
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
   * Sequential reading: keep the AHEAD pieces after the one just read decoded or decoding, as one job
   * on a decoder already standing at the first missing one (so random reads start nothing).
   */
  private prefetch(g: number): void {
    if (this.closed) return;
    for (let k = g; k < g + AHEAD && k < this.ix.pieces; k++) {
      if (cache.has(this.serial + k) || this.inflight.has(k)) continue;
      const cur = this.cursors.find((c) => !c.busy && c.next === k);
      if (!cur) return;
      const c = this.ix.chunkOfPiece(k);
      const to = Math.min(k + AHEAD - 1, this.ix.pieceFirst[c + 1] - 1);
      this.start(cur, to, -1, k).catch(() => undefined); // a real read of these pieces reports any failure
      return;
    }
  }

  private piece(g: number): Promise<Buffer> {
    const hit = cache.get(this.serial + g);
    if (hit) return Promise.resolve(hit);
    return this.inflight.get(g) ?? this.produce(g);
  }

  /** Pick a decoder for piece g: one standing in g's chunk at or before g, else a free one to seek. */
  private async produce(g: number): Promise<Buffer> {
    for (;;) {
      if (this.closed) throw fsError('EIO', `${this.label}: the layer is closed`);
      const hit = cache.get(this.serial + g);
      if (hit) return hit;
      const pending = this.inflight.get(g);
      if (pending) return pending;
      const c = this.ix.chunkOfPiece(g);
      const first = this.ix.pieceFirst[c];
      let best: Cursor | undefined;
      for (const cur of this.cursors) {
        const at = cur.busy ? cur.until : cur.next;
        if (at >= first && at <= g && (!best || at > (best.busy ? best.until : best.next))) best = cur;
      }
      if (best?.busy) {
        await best.busy;
        continue;
      }
      if (best) return this.start(best, g, -1);
      let free = this.cursors.filter((x) => !x.busy).sort((a, b) => a.used - b.used)[0];
      if (!free && this.cursors.length < MAX_CURSORS) {
        free = this.newCursor();
        this.cursors.push(free);
      }
      if (free) return this.start(free, g, c);
      await Promise.race(this.cursors.map((x) => x.busy));
    }
  }

  /**
   * Run jobs on `cur` up to piece g (seeking to chunk `seekChunk` first unless -1). Pieces before
   * `keepFrom` are decoded (and checked) in the cursor's scratch and dropped; the rest are cached.
   */
  private start(cur: Cursor, g: number, seekChunk: number, keepFrom = g): Promise<Buffer> {
    let from = seekChunk >= 0 ? this.ix.pieceFirst[seekChunk] : cur.next;
    const finalFrom = Math.max(from, keepFrom, g - JOB_PIECES + 1);
    let seek = seekChunk >= 0 ? this.seekOf(seekChunk) : NO_SEEK;
    const work = (async () => {
      while (from < finalFrom) {
        const to = Math.min(finalFrom - 1, from + JOB_PIECES - 1);
        await this.job(cur, seek, from, to, false);
        seek = NO_SEEK;
        from = to + 1;
      }
      return this.job(cur, seek, from, g, true);
    })();
    cur.until = g + 1;
    cur.used = ++this.clock;
    cur.busy = work.then(
      () => undefined,
      () => undefined,
    ).finally(() => (cur.busy = null));
    for (let k = finalFrom; k <= g; k++) {
      const p = work.then((bufs) => bufs[k - finalFrom]);
      p.catch(() => undefined); // handled by whoever awaits it; unrequested pieces must not crash the daemon
      this.inflight.set(k, p);
      void p.finally(() => this.inflight.get(k) === p && this.inflight.delete(k)).catch(() => undefined);
    }
    return this.inflight.get(g)!;
  }

  private async job(cur: Cursor, seek: Seek, from: number, to: number, keep: boolean): Promise<Buffer[]> {
    const { out, crcs } = this.jobBuffers(cur, from, to, keep);
    let n: number;
    try {
      n = await this.codec.decode(cur.h, seek.kind, seek.inBit, seek.window, out, this.table.pieceSize, crcs);
    } catch (err) {
      cur.next = -1;
      throw this.failure(err, from);
    }
    return this.finishJob(cur, from, to, out, n, crcs, keep);
  }

  private jobSync(cur: Cursor, seek: Seek, from: number, to: number, keep: boolean): Buffer[] {
    const { out, crcs } = this.jobBuffers(cur, from, to, keep);
    let n: number;
    try {
      n = this.codec.decodeSync(cur.h, seek.kind, seek.inBit, seek.window, out, this.table.pieceSize, crcs);
    } catch (err) {
      cur.next = -1;
      throw this.failure(err, from);
    }
    return this.finishJob(cur, from, to, out, n, crcs, keep);
  }

  private jobBuffers(cur: Cursor, from: number, to: number, keep: boolean): { out: Buffer; crcs: Uint32Array } {
    const start = this.ix.pieceStart(from);
    const len = this.ix.pieceStart(to) + this.ix.pieceLen(to) - start;
    let out: Buffer;
    if (keep) out = Buffer.allocUnsafe(len);
    else {
      cur.scratch ??= Buffer.allocUnsafe(JOB_PIECES * this.table.pieceSize);
      out = cur.scratch.subarray(0, len);
    }
    return { out, crcs: new Uint32Array(to - from + 1) };
  }

  /** Check every piece against the table; only then may it be cached or served. */
  private finishJob(cur: Cursor, from: number, to: number, out: Buffer, n: number, crcs: Uint32Array, keep: boolean): Buffer[] {
    cur.next = -1;
    const at = this.ix.pieceStart(from);
    if (n !== out.length) throw fsError('EIO', `${this.label}: the compressed data ends early (decoded byte ${at + n} of ${this.size}); the archive changed since it was indexed`);
    for (let k = from; k <= to; k++) {
      if (crcs[k - from] !== this.table.pieceCrc[k]) {
        throw fsError('EIO', `${this.label}: decoded bytes at ${this.ix.pieceStart(k)} do not match the index; the archive changed since it was indexed`);
      }
    }
    const pieces: Buffer[] = [];
    let off = 0;
    for (let k = from; keep && k <= to; k++) {
      const len = this.ix.pieceLen(k);
      const b = out.subarray(off, off + len);
      off += len;
      pieces.push(b);
      cache.set(this.serial + k, b);
    }
    // The decoder continues into the next chunk except for xz, whose points are separate blocks.
    const next = to + 1;
    cur.next = this.table.format === 'xz' && this.ix.chunkOfPiece(next) !== this.ix.chunkOfPiece(to) ? -1 : next;
    return pieces;
  }

  private pieceSync(g: number): Buffer {
    if (this.closed) throw fsError('EIO', `${this.label}: the layer is closed`);
    const cur = this.sync();
    const c = this.ix.chunkOfPiece(g);
    const first = this.ix.pieceFirst[c];
    let from = cur.next >= first && cur.next <= g ? cur.next : first;
    let seek = from === cur.next ? NO_SEEK : this.seekOf(c);
    const finalFrom = g;
    while (from < finalFrom) {
      const to = Math.min(finalFrom - 1, from + JOB_PIECES - 1);
      this.jobSync(cur, seek, from, to, false);
      seek = NO_SEEK;
      from = to + 1;
    }
    const pieces = this.jobSync(cur, seek, from, g, true);
    return pieces[pieces.length - 1];
  }

  private sync(): Cursor {
    this.syncCursor ??= this.newCursor();
    return this.syncCursor;
  }

  private newCursor(): Cursor {
    const h = this.codec.open(codecFormat(this.table.format), this.fd, this.table.compressedSize);
    return { h, next: -1, busy: null, until: -1, used: 0 };
  }

  private seekOf(c: number): Seek {
    return { kind: this.table.kind[c], inBit: this.table.inBit[c], window: this.window(c) };
  }

  private window(c: number): Buffer | null {
    const len = this.table.winLen[c];
    if (len === 0) return null;
    const off = this.table.winOff[c];
    const w = this.table.windows;
    if (Buffer.isBuffer(w)) return w.subarray(off, off + len);
    if (this.windowFd < 0) this.windowFd = openSync(w.path, 'r');
    const buf = Buffer.allocUnsafe(len);
    if (readSync(this.windowFd, buf, 0, len, w.offset + off) !== len) throw fsError('EIO', `${this.label}: its index is truncated (seek window ${c})`);
    return buf;
  }

  private failure(err: unknown, piece: number): FsError {
    if (err instanceof FsError) return err;
    const at = this.ix.pieceStart(piece);
    if (isCodecError(err)) return fsError(err.code === 'ENOMEM' ? 'ENOMEM' : 'EIO', `${this.label}: decoding from byte ${at}: ${err.message}`);
    return fsError('EIO', `${this.label}: decoding from byte ${at}: ${String(err)}`);
  }
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
