// Decoding a compressed tar's pieces: one job runs a decoder from its seek point (or from where it
// stands) through a run of pieces, makes the compressed bytes and seek windows it reads present
// first (a remote blob), and checks every piece against its crc32 in the seek table (a TOC layer's:
// against its TOC chunk's sha256) before it is kept; a mismatch or a short stream is an EIO. Which
// decoder runs which job is seekable.ts's.
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { codecFormat } from './compression.js';
import type { SeekIndex, SeekTable } from './seek-table.js';
import { isCodecError, loadCodec, type Codec, type CodecHandle } from '../native/codec.js';
import { fsError, FsError } from '../util/errors.js';

/** Pieces per decode job (1 MiB): bounds a job's buffer and how long it holds a worker. */
export const JOB_PIECES = 4;

/** One codec handle over the archive, and where it stands. */
export interface Decoder {
  h: CodecHandle;
  /** The piece the decoder's next output byte starts; -1: it must seek first. */
  next: number;
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
export interface Seek {
  kind: number;
  inBit: number;
  chunk: number;
}
export const NO_SEEK: Seek = { kind: 0, inBit: 0, chunk: -1 };

/** One decode call: pieces [from, to] after `seek`, kept (cached, returned) or only checked. */
export interface Job {
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
export function planJobs(seek: Seek, from: number, last: number, keepFrom: number): Job[] {
  const keepAt = Math.min(last + 1, Math.max(from, keepFrom, last - JOB_PIECES + 1));
  const jobs: Job[] = [];
  for (; from < keepAt; from += JOB_PIECES, seek = NO_SEEK) jobs.push({ seek, from, to: Math.min(keepAt - 1, from + JOB_PIECES - 1), keep: false });
  if (keepAt <= last) jobs.push({ seek, from: keepAt, to: last, keep: true });
  return jobs;
}

export class PieceDecoder {
  private readonly codec: Codec = loadCodec();
  private windowFd = -1;
  /** TOC chunks found damaged (logged once each). */
  private readonly reported = new Set<number>();

  /** `keep`: a checked piece of a kept job, before it is returned (the cache). */
  constructor(
    private readonly fd: number,
    private readonly table: SeekTable,
    private readonly index: SeekIndex,
    private readonly label: string,
    private readonly input: ArchiveInput | undefined,
    private readonly keep: (piece: number, b: Buffer) => void,
  ) {}

  /** A new decoder over the archive, standing nowhere yet. */
  open(): Decoder {
    const h = this.codec.open(codecFormat(this.table.format), this.fd, this.table.compressedSize);
    if (this.input?.readSize) this.codec.setReadSize(h, this.input.readSize);
    return { h, next: -1 };
  }

  closeDecoder(d: Decoder): void {
    this.codec.close(d.h);
  }

  /** The seek windows' file, if one was opened. */
  close(): void {
    if (this.windowFd >= 0) closeSync(this.windowFd);
    this.windowFd = -1;
  }

  /** Where a job that starts at seek point `chunk` starts. */
  seekOf(chunk: number): Seek {
    return { kind: this.table.kind[chunk], inBit: this.table.inBit[chunk], chunk };
  }

  /** One job on `cur`: on the libuv threadpool ('async', serving) or this thread ('sync'). */
  run(cur: Decoder, job: Job, on: 'sync'): Buffer[];
  run(cur: Decoder, job: Job, on: 'async'): Promise<Buffer[]>;
  run(cur: Decoder, job: Job, on: 'sync' | 'async'): Buffer[] | Promise<Buffer[]> {
    const input = this.input;
    if (!input) return this.decode(cur, job, on);
    const [start, end] = this.inputRange(job.from);
    const win = input.windows && job.seek.chunk >= 0 && this.table.winLen[job.seek.chunk] > 0 ? input.windows : undefined;
    const wStart = win ? this.table.winOff[job.seek.chunk] : 0;
    const wEnd = win ? wStart + this.table.winLen[job.seek.chunk] : 0;
    if (on === 'sync') {
      const release = input.ensureSync(start, end);
      try {
        const releaseWin = win?.ensureSync(wStart, wEnd);
        try {
          return this.decode(cur, job, 'sync');
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
      return this.decode(cur, job, 'async').finally(releaseAll);
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

  private decode(cur: Decoder, job: Job, on: 'sync'): Buffer[];
  private decode(cur: Decoder, job: Job, on: 'async'): Promise<Buffer[]>;
  private decode(cur: Decoder, job: Job, on: 'sync' | 'async'): Buffer[] | Promise<Buffer[]>;
  private decode(cur: Decoder, job: Job, on: 'sync' | 'async'): Buffer[] | Promise<Buffer[]> {
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
      return decoding.then((n) => this.finish(cur, job, out, n, crcs), failed);
    }
    let n = 0;
    try {
      n = this.codec.decodeSync(cur.h, kind, inBit, window, out, this.table.pieceSize, crcs);
    } catch (err) {
      failed(err);
    }
    return this.finish(cur, job, out, n, crcs);
  }

  /**
   * Decoding ahead on `cur`'s own thread (codec aheadStart), for a local archive read sequentially:
   * jobs pushed run back to back; `onReady` (Node's thread) says some are done. Kept jobs only.
   */
  aheadStart(cur: Decoder, onReady: () => void): void {
    this.codec.aheadStart(cur.h, onReady);
  }

  /** `out(len)`: where the job's pieces decode (the stream's slab); kept, so never written again once checked. */
  aheadPush(cur: Decoder, job: Job, out: (len: number) => Buffer): { out: Buffer; crcs: Uint32Array } {
    const buf = out(this.jobLength(job));
    const crcs = new Uint32Array(job.to - job.from + 1);
    this.codec.aheadPush(cur.h, buf, this.table.pieceSize, crcs);
    return { out: buf, crcs };
  }

  /** The oldest pushed job's pieces once decoded and checked (then cached), null while it decodes; throws its failure. */
  aheadPop(cur: Decoder, job: Job, out: Buffer, crcs: Uint32Array): Buffer[] | null {
    let r: ReturnType<Codec['aheadPop']>;
    try {
      r = this.codec.aheadPop(cur.h, false);
    } catch (err) {
      cur.next = -1;
      throw this.failure(err, job.from);
    }
    return r && this.finish(cur, job, out, r[0], crcs);
  }

  /** An 8 MiB slab for decode-ahead output (SLAB in decode-ahead.ts), reused once the GC has collected it; `release`: free the ones kept. */
  slab(): Buffer {
    return this.codec.slab();
  }

  slabsRelease(): void {
    this.codec.slabsRelease();
  }

  /** Back to one call at a time; where the decoder stands is `cur.next` as the last aheadPop left it. */
  aheadStop(cur: Decoder): void {
    this.codec.aheadStop(cur.h);
  }

  /** Where a job decodes: a new buffer for kept pieces, else the decoder's reused scratch. */
  private jobBuffer(cur: Decoder, job: Job): Buffer {
    const len = this.jobLength(job);
    if (job.keep) return Buffer.allocUnsafe(len);
    cur.scratch ??= Buffer.allocUnsafe(JOB_PIECES * this.table.pieceSize);
    return cur.scratch.subarray(0, len);
  }

  private jobLength(job: Job): number {
    return this.index.pieceStart(job.to) + this.index.pieceLen(job.to) - this.index.pieceStart(job.from);
  }

  /** Check every piece against the table; only then may it be cached or served. */
  private finish(cur: Decoder, job: Job, out: Buffer, n: number, crcs: Uint32Array): Buffer[] {
    cur.next = -1;
    const at = this.index.pieceStart(job.from);
    if (n !== out.length) throw fsError('EIO', `${this.label}: the compressed data ends early (decoded byte ${at + n} of ${this.table.size}); the archive changed since it was indexed`);
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
      this.keep(piece, b);
    }
    // The decoder continues into the next chunk except for xz, whose points are separate blocks.
    const next = job.to + 1;
    // A TOC layer's chunks are not contiguous in the blob's decoded bytes: each is sought.
    cur.next = (this.table.format === 'xz' || sha) && this.index.chunkOfPiece(next) !== this.index.chunkOfPiece(job.to) ? -1 : next;
    return pieces;
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
