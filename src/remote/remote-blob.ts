// A remote blob read through the store's chunk cache: a read makes sure the chunks it covers are on
// disk (missing neighbours fetched in one range request, sequential reading fetching ahead), every
// fetched chunk checked against the sha256 the index recorded for it before it is written or used.
// A mismatch or a registry that stays unreachable past the retry deadline is EIO, with one log line
// naming the blob and the offset; never wrong bytes.
import { readSync } from 'node:fs';
import { readFully } from '../tar/reader.js';
import { fsError, FsError } from '../util/errors.js';
import { hostOf, type Remote } from './http.js';
import type { BlobFile, ChunkCache } from './chunk-cache.js';
import { chunkMatches } from './chunk-digests.js';
import { ChunkJob, ChunkMismatch, fetchChunksSync } from './fetch-thread.js';

/**
 * Bytes fetched in one request at most. Chunks are stored as their bytes arrive, so a long request
 * costs no wait; a registry spends milliseconds of CPU a request (docker-registry: ~5 ms), so fewer
 * requests pay (a 1 GiB sequential read: 1,030 requests at 1 MiB, 263 at 4 MiB, 64 at 16 MiB).
 */
const RUN_BYTES = 16 << 20;
/**
 * Read-ahead of a sequential reader: the first sequential read fetches AHEAD_MIN bytes ahead, each
 * next one twice as many, up to AHEAD_MAX, and from then on to the end of an aligned RUN_BYTES block
 * (aheadEnd); a read elsewhere starts over. Two reads in a row from one small file must not cost a
 * megabyte, a long sequential read must not cost a request a chunk (nor one a kernel read).
 */
const AHEAD_MIN = 32 * 1024;
const AHEAD_MAX = RUN_BYTES;
/** Compressed bytes a decoder of a remote blob reads at a time (the codec's default is 128 KiB). */
const DECODER_READ_SIZE = 4 * 1024;

/** What an image records of a remote layer's blob. */
export interface RemoteBlobInfo {
  /** sha256:HEX of the blob's bytes (its identity and the cache file's name). */
  digest: string;
  size: number;
  chunkSize: number;
}

type Unpin = () => void;

export class RemoteBlob {
  readonly file: BlobFile;
  readonly hex: string;
  /** Requests in flight (a few at a time): each is fetching its chunks [next, last]. */
  private runs: Run[] = [];
  private readonly reported = new Set<number>();
  private lastStart = -1;
  private lastEnd = -1;
  private ahead = 0;
  /** Bytes fetched by this blob's reads (tests and `image info` read the cache map instead). */
  fetched = 0;
  /** ArchiveInput: decoders of this blob read little ahead, every byte they read is fetched first. */
  readonly readSize = DECODER_READ_SIZE;
  /** The blob holding its index's seek windows, when they stay remote (closed with this one). */
  windows?: RemoteBlob;

  /**
   * `digests` null: a layer indexed from its own TOC, whose chunks nothing hashed; its decoded bytes
   * are checked instead (SeekTable.pieceSha), and its chunks here are never marked checked.
   */
  constructor(private readonly cache: ChunkCache, readonly info: RemoteBlobInfo, private readonly digests: Buffer | null, private readonly remote: Remote, private readonly readAheadOn = true) {
    this.hex = info.digest.replace(/^sha256:/, '');
    if (digests && digests.length !== Math.ceil(info.size / info.chunkSize) * 32) throw new Error(`${info.digest}: its chunk digests do not cover the blob`);
    this.file = cache.open(this.hex, info.size, info.chunkSize);
  }

  get fd(): number {
    return this.file.fd;
  }

  get label(): string {
    return `${hostOf(this.remote.url)} blob ${this.info.digest}`;
  }

  /** Make bytes [start, end) present and pinned (not evicted) until the returned function is called. */
  async ensure(start: number, end: number): Promise<Unpin> {
    end = Math.min(end, this.info.size);
    if (end <= start) return () => undefined;
    const [k0, k1] = this.chunks(start, end);
    const unpin = this.pin(k0, k1);
    try {
      // Reading on from where the last read ended (not the same range again: a decoder's repeated range).
      // (A decoder asks for its seek point's whole range for every job in it: the same range again changes nothing.)
      const again = start === this.lastStart && end === this.lastEnd;
      const sequential = !again && start >= this.lastStart && start <= this.lastEnd && end > this.lastEnd;
      if (!again) this.ahead = sequential ? Math.min(AHEAD_MAX, this.ahead ? this.ahead * 2 : AHEAD_MIN) : 0;
      this.lastStart = start;
      this.lastEnd = end;
      // A sequential reader's read-ahead goes out with its read, in the same requests.
      const to = sequential && this.readAheadOn ? this.aheadEnd(k1 + 1) : k1;
      for (const [a, b] of this.plan(k0, to)) this.fetchRun(a, b);
      // each request the range waits on, up to the last chunk wanted from it
      const waits = [];
      for (const run of this.runs) if (run.next <= k1 && run.last >= k0) waits.push(run.until(Math.min(k1, run.last)));
      if (waits.length) await Promise.all(waits);
      this.cache.touch(this.file, k0, k1);
      return unpin;
    } catch (err) {
      unpin();
      throw err;
    }
  }

  /** The same, on this thread (copy-up, checks): missing chunks fetched, checked and written while it waits. */
  ensureSync(start: number, end: number): Unpin {
    end = Math.min(end, this.info.size);
    if (end <= start) return () => undefined;
    const [k0, k1] = this.chunks(start, end);
    const unpin = this.pin(k0, k1);
    try {
      // Chunks an async read is fetching are fetched here too: their answer cannot arrive while this
      // thread waits, and the caller reads the cache file as soon as this returns (holes read as zeros).
      // Both fetches write the same checked bytes.
      for (const [a, b] of this.plan(k0, k1, false)) {
        let next = b + 1;
        try {
          fetchChunksSync(this.remote, { fd: this.fd, size: this.info.size, chunkSize: this.info.chunkSize, first: a, last: b, digests: this.digests && this.digests.subarray(a * 32, (b + 1) * 32) });
        } catch (err) {
          next = (err as { stored?: number }).stored ?? a;
          throw err instanceof ChunkMismatch ? this.mismatch(err.chunk) : err;
        } finally {
          this.storedHere(a, next - 1);
        }
      }
      this.cache.touch(this.file, k0, k1);
      return unpin;
    } catch (err) {
      unpin();
      throw this.failure(err, start);
    }
  }

  /** Bytes [pos, pos+len) now present, as a new buffer (read while pinned: no eviction in between). */
  async read(pos: number, len: number): Promise<Buffer> {
    const unpin = await this.ensure(pos, pos + len);
    try {
      const out = Buffer.allocUnsafe(Math.max(0, Math.min(len, this.info.size - pos)));
      readFully(this.fd, out, out.length, pos);
      return out;
    } finally {
      unpin();
    }
  }

  /**
   * Chunks covering [start, end) no longer trusted (a TOC layer's decoded bytes did not match): marked
   * missing, so the next read fetches them again instead of serving the same bad bytes from the cache.
   */
  invalidate(start: number, end: number): void {
    end = Math.min(end, this.info.size);
    if (end <= start) return;
    const [k0, k1] = this.chunks(start, end);
    for (let k = k0; k <= k1; k++) {
      if (!this.file.present[k]) continue;
      this.cache.forget(this.file, k);
      this.file.mark(k, false);
    }
  }

  forgetAll(): void {
    this.invalidate(0, this.info.size);
  }

  /** Chunks on disk now, in bytes. */
  cachedBytes(): number {
    let bytes = 0;
    for (let k = 0; k < this.file.count; k++) if (this.file.present[k]) bytes += this.file.chunkLen(k);
    return bytes;
  }

  close(): void {
    this.cache.release(this.file);
    this.windows?.close();
  }

  private chunks(start: number, end: number): [number, number] {
    return [Math.floor(start / this.info.chunkSize), Math.floor((end - 1) / this.info.chunkSize)];
  }

  private pin(k0: number, k1: number): Unpin {
    for (let k = k0; k <= k1; k++) this.file.pins[k]++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      for (let k = k0; k <= k1; k++) this.file.pins[k]--;
      this.cache.evict();
    };
  }

  /**
   * The requests that make chunks [k0, k1] present: runs of missing chunks (at most RUN each), each a
   * range request; chunks already being fetched are left out (the caller awaits them) unless
   * `skipInflight` is false. A chunk on disk not yet checked in this process is checked now (and
   * refetched if it fails).
   */
  private plan(k0: number, k1: number, skipInflight = true): Array<[number, number]> {
    const runs: Array<[number, number]> = [];
    for (let k = k0; k <= k1; k++) {
      const run = skipInflight ? this.fetching(k) : undefined;
      if (run) k = run.last; // a sequential reader's plan spans the request it started earlier: skipped whole
      if (run || this.usable(k)) continue;
      const last = runs[runs.length - 1];
      if (last && last[1] === k - 1 && (k - last[0]) * this.info.chunkSize < RUN_BYTES) last[1] = k;
      else runs.push([k, k]);
    }
    return runs;
  }

  /** The request in flight that is fetching chunk k (not yet stored), if any. */
  private fetching(k: number): Run | undefined {
    for (const run of this.runs) if (k >= run.next && k <= run.last) return run;
    return undefined;
  }

  private usable(k: number): boolean {
    const f = this.file;
    if (!f.present[k]) return false;
    if (f.verified[k] || !this.digests) return true;
    const buf = Buffer.allocUnsafe(f.chunkLen(k));
    const n = readSync(f.fd, buf, 0, buf.length, k * f.chunkSize);
    if (n === buf.length && this.matches(k, buf)) {
      f.verified[k] = 1;
      return true;
    }
    this.cache.forget(f, k);
    f.mark(k, false);
    return false;
  }

  /**
   * One range request for chunks [a, b], streamed by the fetch thread, which checks each chunk and
   * writes it to the cache file; here they are marked present as it reports them, and waiting reads
   * go on. The blob's file stays open until the request ends (its descriptor is written to there).
   */
  private fetchRun(a: number, b: number): void {
    const cs = this.info.chunkSize;
    const run = new Run(a, b);
    this.runs.push(run);
    const leave = (): void => {
      this.runs = this.runs.filter((r) => r !== run);
      this.cache.release(this.file);
    };
    this.file.users++;
    const progress = (next: number): void => {
      // stored chunks leave the request at once: from now on they are the cache's (and may be evicted)
      const from = run.next;
      run.next = Math.max(from, next);
      if (next > from) this.stored(from, next - 1);
      run.advanced();
    };
    run.job = new ChunkJob(this.remote, { fd: this.fd, size: this.info.size, chunkSize: cs, first: a, last: b, digests: this.digests && Buffer.from(this.digests.subarray(a * 32, (b + 1) * 32)) }, progress);
    run.job.done.then(
      () => {
        leave();
        run.advanced();
      },
      (err: unknown) => {
        leave();
        run.fail(err instanceof ChunkMismatch ? this.mismatch(err.chunk) : this.failure(err, run.next * cs));
      },
    );
  }

  /**
   * Chunks [a, b] checked and written here (ensureSync): marked present unless a fetch in flight
   * owns them, which marks them when it has written them too. Marked here, they could be evicted
   * (punched out) before its news arrives, and then marked again over the hole.
   */
  private storedHere(a: number, b: number): void {
    for (let j = a; j <= b; j++) {
      if (this.fetching(j)) continue;
      let e = j;
      while (e < b && !this.fetching(e + 1)) e++;
      this.stored(j, e);
      j = e;
    }
  }

  /** Chunks [a, b] are written and checked: present from now on. */
  private stored(a: number, b: number): void {
    this.file.markRange(a, b);
    if (this.digests) this.file.verified.fill(1, a, b + 1);
    this.cache.touch(this.file, a, b);
    this.fetched += Math.min(this.info.size, (b + 1) * this.info.chunkSize) - a * this.info.chunkSize;
  }

  /** EIO for chunk k, whose bytes did not match the index (logged once). */
  private mismatch(k: number): FsError {
    const msg = `${this.label}: the bytes at offset ${k * this.info.chunkSize} do not match the index (chunk ${k}); not served`;
    if (!this.reported.has(k)) console.error(`tarstack: ${msg}`); // once per chunk, however often it is read
    this.reported.add(k);
    return fsError('EIO', msg);
  }

  /** The last chunk a sequential reader's read-ahead reaches, from chunk `from` on. */
  private aheadEnd(from: number): number {
    const to = Math.min(this.file.count - 1, from + Math.ceil(this.ahead / this.info.chunkSize) - 1);
    if (this.ahead < AHEAD_MAX) return Math.max(from - 1, to);
    // At full speed, to the end of an aligned RUN_BYTES block: one request a block, not one a read.
    // The kernel keeps several 1 MiB reads in flight, each would fetch its own megabyte, and a
    // registry spends ~3 ms of CPU a request (measured: 1030 requests for 1 GiB, 3x curl's CPU).
    const block = RUN_BYTES / this.info.chunkSize;
    return Math.min(this.file.count - 1, (Math.floor(to / block) + 1) * block - 1);
  }

  private matches(k: number, bytes: Buffer): boolean {
    return !this.digests || chunkMatches(this.digests, k, bytes);
  }

  private failure(err: unknown, offset: number): FsError {
    if (err instanceof FsError) return err;
    const msg = `${this.label}: reading offset ${offset}: ${(err as Error).message ?? String(err)}`;
    console.error(`tarstack: ${msg}`);
    return fsError('EIO', msg);
  }
}

/** A range request in flight: which of its chunks are stored, and who waits for which. */
class Run {
  /** The first chunk not yet stored. */
  next: number;
  constructor(first: number, readonly last: number) {
    this.next = first;
  }

  job?: ChunkJob;
  private failure: unknown;
  private waiters: Array<{ k: number; resolve: () => void; reject: (err: unknown) => void }> = [];

  /** Settles once chunk k is stored, or rejects if the request fails before. */
  until(k: number): Promise<void> {
    if (k < this.next) return Promise.resolve();
    if (this.failure !== undefined) return Promise.reject(this.failure);
    this.job?.want(k);
    return new Promise((resolve, reject) => this.waiters.push({ k, resolve, reject }));
  }

  /** `next` moved on: the reads it covers go on; the fetch is asked to tell when the next one can. */
  advanced(): void {
    if (this.waiters.length === 0) return;
    const left = [];
    let want = Infinity;
    for (const w of this.waiters) {
      if (w.k < this.next) w.resolve();
      else left.push(w), (want = Math.min(want, w.k));
    }
    this.waiters = left;
    if (left.length && this.failure === undefined) this.job?.want(want);
  }

  fail(err: unknown): void {
    this.advanced();
    this.failure = err;
    for (const w of this.waiters) w.reject(err);
    this.waiters = [];
  }
}
