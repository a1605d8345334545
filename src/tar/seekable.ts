// Random access to a compressed tar through its seek table: a read decodes the pieces it needs
// from the nearest seek point (or from a decoder already positioned there), checks each against
// its crc32 in the table, and caches it. Serving decodes on the libuv threadpool (Node's thread
// answers FUSE requests); copy-up and checks decode synchronously. A changed archive is an EIO.
import { createHash } from 'node:crypto';
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
/** Read ends remembered to tell a continued read (files read at once, each sequentially). */
const READ_ENDS = 32;

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

/**
 * Where the compressed bytes come from when they are not all on disk (a remote blob): the range a
 * decode reads is made present, and kept so, while it runs: its seek point's chunk and the codec's
 * input buffer past it (`readSize`). Less is not safe: a decoder keeps its buffer across a seek that
 * lands inside it, so holes read past a chunk would be decoded later (a crc32 mismatch, EIO).
 * `windows`, when the stored gzip windows are not all on disk either (a pulled index whose windows
 * stay in the registry): the byte range of the window a seek needs is made present the same way.
 */
export interface ArchiveInput {
  ensure(start: number, end: number): Promise<() => void>;
  ensureSync(start: number, end: number): () => void;
  /** Compressed bytes a decoder reads at a time (codec.setReadSize); default the codec's 128 KiB. */
  readSize?: number;
  windows?: Pick<ArchiveInput, 'ensure' | 'ensureSync'>;
  /** Bytes [start, end) decoded into bytes that failed their check: not to be served from a cache again. */
  invalidate?(start: number, end: number): void;
}
const CODEC_READ_AHEAD = 128 * 1024;

/** Where a job starts decoding: at seek point `chunk` (its window read when the job runs), or -1: where the decoder stands. */
interface Seek {
  kind: number;
  inBit: number;
  chunk: number;
}
const NO_SEEK: Seek = { kind: 0, inBit: 0, chunk: -1 };

/** One decode call: pieces [from, to] after `seek`, kept (cached, returned) or only checked. */
interface Job {
  seek: Seek;
  from: number;
  to: number;
  keep: boolean;
}

/**
 * The jobs that take a decoder standing at piece `from` (after `seek`) through piece `last`: pieces
 * before `keepFrom` (and all but the last JOB_PIECES) are passed through in jobs of JOB_PIECES,
 * decoded and checked in the decoder's scratch; the rest are one kept job. keepFrom > last: none kept.
 */
function planJobs(seek: Seek, from: number, last: number, keepFrom: number): Job[] {
  const keepAt = Math.min(last + 1, Math.max(from, keepFrom, last - JOB_PIECES + 1));
  const jobs: Job[] = [];
  for (; from < keepAt; from += JOB_PIECES, seek = NO_SEEK) jobs.push({ seek, from, to: Math.min(keepAt - 1, from + JOB_PIECES - 1), keep: false });
  if (keepAt <= last) jobs.push({ seek, from: keepAt, to: last, keep: true });
  return jobs;
}

export class SeekableArchive {
  readonly size: number;
  private readonly index: SeekIndex;
  private readonly codec: Codec;
  private readonly serial = ++serials * 2 ** 32;
  private readonly cursors: Cursor[] = [];
  private syncCursor: Cursor | undefined;
  private readonly inflight = new Map<number, Promise<Buffer>>();
  private windowFd = -1;
  private closed = false;
  /** Where recent reads ended (remote input: a read starting at one continues it). */
  private readonly readEnds = new Set<number>();
  /** TOC chunks found damaged (logged once each). */
  private readonly reported = new Set<number>();
  private clock = 0;

  constructor(private readonly fd: number, readonly table: SeekTable, private readonly label: string, private readonly input?: ArchiveInput) {
    this.codec = loadCodec();
    this.index = new SeekIndex(table);
    this.size = table.size;
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

  /** Decode everything once, checking every piece (image verify). */
  verifyAll(onProgress?: (done: number, total: number) => void): void {
    const cur = this.sync();
    for (let chunk = 0; chunk < this.table.count; chunk++) {
      const first = this.index.pieceFirst[chunk];
      const seek = cur.next === first ? NO_SEEK : this.seekOf(chunk);
      for (const job of planJobs(seek, first, this.index.pieceFirst[chunk + 1] - 1, Infinity)) {
        this.runJob(cur, job, 'sync');
        onProgress?.(this.table.inBit[chunk] / 8, this.table.compressedSize);
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

  private async readAsync(pos: number, end: number, first: number, last: number): Promise<Buffer> {
    const wanted: Array<Promise<Buffer>> = [];
    for (let piece = first; piece <= last; piece++) wanted.push(this.piece(piece));
    const bufs = await Promise.all(wanted);
    this.prefetch(last + 1, pos, end);
    return this.assemble(bufs, first, pos, end);
  }

  /** Bytes [pos, end) out of the consecutive pieces `bufs`, the first of which is piece `first`. */
  private assemble(bufs: Buffer[], first: number, pos: number, end: number): Buffer {
    const start = this.index.pieceStart(first);
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
   * on a decoder already standing at the first missing one (so random reads start nothing). A remote
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
    for (let piece = next; piece < next + AHEAD && piece < this.index.pieces; piece++) {
      if (cache.has(this.serial + piece) || this.inflight.has(piece)) continue;
      const cur = this.cursors.find((c) => !c.busy && c.next === piece);
      if (!cur) return;
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
      let best: Cursor | undefined;
      for (const cur of this.cursors) {
        const at = cur.busy ? cur.until : cur.next;
        if (at >= first && at <= piece && (!best || at > (best.busy ? best.until : best.next))) best = cur;
      }
      if (best?.busy) {
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
    const jobs = planJobs(seekChunk >= 0 ? this.seekOf(seekChunk) : NO_SEEK, from, last, keepFrom);
    const kept = jobs[jobs.length - 1];
    const work = (async () => {
      for (const job of jobs.slice(0, -1)) await this.runJob(cur, job, 'async');
      return this.runJob(cur, kept, 'async');
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

  /** Piece `piece` decoded on this thread (copy-up, checks), by the one synchronous decoder. */
  private pieceSync(piece: number): Buffer {
    if (this.closed) throw fsError('EIO', `${this.label}: the layer is closed`);
    const cur = this.sync();
    const chunk = this.index.chunkOfPiece(piece);
    const first = this.index.pieceFirst[chunk];
    const from = cur.next >= first && cur.next <= piece ? cur.next : first;
    let pieces: Buffer[] = [];
    for (const job of planJobs(from === cur.next ? NO_SEEK : this.seekOf(chunk), from, piece, piece)) pieces = this.runJob(cur, job, 'sync');
    return pieces[pieces.length - 1];
  }

  /** One job on `cur`: on the libuv threadpool ('async', serving) or this thread ('sync'). */
  private runJob(cur: Cursor, job: Job, on: 'sync'): Buffer[];
  private runJob(cur: Cursor, job: Job, on: 'async'): Promise<Buffer[]>;
  private runJob(cur: Cursor, job: Job, on: 'sync' | 'async'): Buffer[] | Promise<Buffer[]> {
    const input = this.input;
    if (!input) return this.decodeJob(cur, job, on);
    const [start, end] = this.inputRange(job.from);
    const win = input.windows && job.seek.chunk >= 0 && this.table.winLen[job.seek.chunk] > 0 ? input.windows : undefined;
    const wStart = win ? this.table.winOff[job.seek.chunk] : 0;
    const wEnd = win ? wStart + this.table.winLen[job.seek.chunk] : 0;
    if (on === 'sync') {
      const release = input.ensureSync(start, end);
      try {
        const releaseWin = win?.ensureSync(wStart, wEnd);
        try {
          return this.decodeJob(cur, job, 'sync');
        } finally {
          releaseWin?.();
        }
      } finally {
        release();
      }
    }
    const ensured = Promise.allSettled([input.ensure(start, end), win ? win.ensure(wStart, wEnd) : Promise.resolve(() => undefined)]);
    return ensured.then((got) => {
      const releases = got.flatMap((g) => (g.status === 'fulfilled' ? [g.value] : []));
      const releaseAll = (): void => releases.forEach((r) => r());
      const bad = got.find((g): g is PromiseRejectedResult => g.status === 'rejected');
      if (bad) {
        releaseAll();
        cur.next = -1;
        throw this.failure(bad.reason, job.from);
      }
      return this.decodeJob(cur, job, 'async').finally(releaseAll);
    });
  }

  /** The compressed bytes a job starting at `piece` may read: its seek point's chunk, plus the codec's read-ahead. */
  private inputRange(piece: number): [number, number] {
    const t = this.table;
    const chunk = this.index.chunkOfPiece(piece);
    const start = Math.floor(t.inBit[chunk] / 8);
    const end = chunk + 1 < t.count ? Math.ceil(t.inBit[chunk + 1] / 8) + 1 : t.compressedSize;
    return [start, Math.min(t.compressedSize, end + (this.input?.readSize ?? CODEC_READ_AHEAD))];
  }

  private decodeJob(cur: Cursor, job: Job, on: 'sync'): Buffer[];
  private decodeJob(cur: Cursor, job: Job, on: 'async'): Promise<Buffer[]>;
  private decodeJob(cur: Cursor, job: Job, on: 'sync' | 'async'): Buffer[] | Promise<Buffer[]>;
  private decodeJob(cur: Cursor, job: Job, on: 'sync' | 'async'): Buffer[] | Promise<Buffer[]> {
    const out = this.jobBuffer(cur, job);
    const crcs = new Uint32Array(job.to - job.from + 1);
    const { kind, inBit } = job.seek;
    const failed = (err: unknown): never => {
      cur.next = -1;
      throw this.failure(err, job.from);
    };
    let window: Buffer | null = null;
    try {
      window = job.seek.chunk >= 0 ? this.window(job.seek.chunk) : null;
    } catch (err) {
      if (on === 'sync') failed(err);
      cur.next = -1;
      return Promise.reject(this.failure(err, job.from));
    }
    if (on === 'async') {
      let decoding: Promise<number>;
      try {
        decoding = this.codec.decode(cur.h, kind, inBit, window, out, this.table.pieceSize, crcs);
      } catch (err) {
        cur.next = -1;
        return Promise.reject(this.failure(err, job.from));
      }
      return decoding.then((n) => this.finishJob(cur, job, out, n, crcs), failed);
    }
    let n = 0;
    try {
      n = this.codec.decodeSync(cur.h, kind, inBit, window, out, this.table.pieceSize, crcs);
    } catch (err) {
      failed(err);
    }
    return this.finishJob(cur, job, out, n, crcs);
  }

  /** Where a job decodes: a new buffer for kept pieces, else the decoder's reused scratch. */
  private jobBuffer(cur: Cursor, job: Job): Buffer {
    const start = this.index.pieceStart(job.from);
    const len = this.index.pieceStart(job.to) + this.index.pieceLen(job.to) - start;
    if (job.keep) return Buffer.allocUnsafe(len);
    cur.scratch ??= Buffer.allocUnsafe(JOB_PIECES * this.table.pieceSize);
    return cur.scratch.subarray(0, len);
  }

  /** Check every piece against the table; only then may it be cached or served. */
  private finishJob(cur: Cursor, job: Job, out: Buffer, n: number, crcs: Uint32Array): Buffer[] {
    cur.next = -1;
    const at = this.index.pieceStart(job.from);
    if (n !== out.length) throw fsError('EIO', `${this.label}: the compressed data ends early (decoded byte ${at + n} of ${this.size}); the archive changed since it was indexed`);
    const sha = this.table.pieceSha;
    for (let piece = job.from, off = 0; piece <= job.to; off += this.index.pieceLen(piece), piece++) {
      const bad = sha
        ? !createHash('sha256').update(out.subarray(off, off + this.index.pieceLen(piece))).digest().equals(sha.subarray(piece * 32, piece * 32 + 32))
        : crcs[piece - job.from] !== this.table.pieceCrc[piece];
      if (bad && sha) throw this.tocDamage(piece, "its decoded bytes do not match the TOC's digest");
      if (bad) {
        throw fsError('EIO', `${this.label}: decoded bytes at ${this.index.pieceStart(piece)} do not match the index; the archive changed since it was indexed`);
      }
    }
    const pieces: Buffer[] = [];
    let off = 0;
    for (let piece = job.from; job.keep && piece <= job.to; piece++) {
      const len = this.index.pieceLen(piece);
      const b = out.subarray(off, off + len);
      off += len;
      pieces.push(b);
      cache.set(this.serial + piece, b);
    }
    // The decoder continues into the next chunk except for xz, whose points are separate blocks.
    const next = job.to + 1;
    // A TOC layer's chunks are not contiguous in the blob's decoded bytes: each is sought.
    cur.next = (this.table.format === 'xz' || sha) && this.index.chunkOfPiece(next) !== this.index.chunkOfPiece(job.to) ? -1 : next;
    return pieces;
  }

  private sync(): Cursor {
    this.syncCursor ??= this.newCursor();
    return this.syncCursor;
  }

  private newCursor(): Cursor {
    const h = this.codec.open(codecFormat(this.table.format), this.fd, this.table.compressedSize);
    if (this.input?.readSize) this.codec.setReadSize(h, this.input.readSize);
    return { h, next: -1, busy: null, until: -1, used: 0 };
  }

  private seekOf(chunk: number): Seek {
    return { kind: this.table.kind[chunk], inBit: this.table.inBit[chunk], chunk };
  }

  private window(chunk: number): Buffer | null {
    const len = this.table.winLen[chunk];
    if (len === 0) return null;
    const off = this.table.winOff[chunk];
    const w = this.table.windows;
    if (Buffer.isBuffer(w)) return w.subarray(off, off + len);
    if (this.windowFd < 0) this.windowFd = openSync(w.path, 'r');
    const buf = Buffer.allocUnsafe(len);
    if (readSync(this.windowFd, buf, 0, len, w.offset + off) !== len) throw fsError('EIO', `${this.label}: its index is truncated (seek window ${chunk})`);
    return buf;
  }

  /**
   * A TOC layer's chunk that does not decode to its digest's bytes: one log line naming the blob's
   * offset (once per chunk, however often it is read), and the compressed bytes dropped from the
   * cache, so a later read fetches them again instead of failing on the same copy.
   */
  private tocDamage(piece: number, why: string): FsError {
    const msg = `${this.label}: TOC chunk ${piece} at blob offset ${this.table.inBit[this.index.chunkOfPiece(piece)] / 8}: ${why}; not served`;
    if (!this.reported.has(piece)) console.error(`tarstack: ${msg}`);
    this.reported.add(piece);
    this.input?.invalidate?.(...this.inputRange(piece));
    return fsError('EIO', msg);
  }

  private failure(err: unknown, piece: number): FsError {
    if (err instanceof FsError) return err;
    if (this.table.pieceSha && isCodecError(err) && err.code !== 'ENOMEM') return this.tocDamage(piece, `it does not decode (${err.message})`);
    const at = this.index.pieceStart(piece);
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
