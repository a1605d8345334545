// A remote blob read through the store's chunk cache: a read makes sure the chunks it covers are on
// disk (missing neighbours fetched in one range request, sequential reading fetching ahead), every
// fetched chunk checked against the sha256 the index recorded for it before it is written or used.
// A mismatch or a registry that stays unreachable past the retry deadline is EIO, with one log line
// naming the blob and the offset; never wrong bytes.
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Worker } from 'node:worker_threads';
import { fsError, FsError } from '../util/errors.js';
import { getRange, hostOf, retryDeadlineMs, type Remote } from './http.js';
import type { BlobFile, ChunkCache } from './chunk-cache.js';
import type { SyncFetch } from './sync-fetch-worker.js';

/**
 * Bytes per chunk: the unit fetched, checked and cached. Measured with the bench's `remote` suite
 * (ls -R and 10 small files of a 25 MiB gzip layer, index pushed): 256 KiB chunks put 8.5 MiB on the
 * wire, 64 KiB 1.7 MiB, most of it rounding up the compressed range a read needs (a seek point's
 * 256 KiB piece is ~50 KiB compressed); 16 KiB keeps a small read near its own size, while neighbours
 * missing together still go in one request (RUN) and sequential reading fetches ahead (AHEAD_MIN
 * doubling to AHEAD_MAX bytes), so a large read costs few requests. The digests cost 0.2 %.
 */
export const CHUNK_SIZE = 16 * 1024;
/** Chunks of a pushed index's seek windows: a window is 5-32 KiB deflated, and only those seeked to are read. */
export const WINDOW_CHUNK_SIZE = 4 * 1024;
/** Bytes fetched in one request at most. */
const RUN_BYTES = 4 << 20;
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

/** sha256 of every chunk of a file, concatenated (what the index records, 32 bytes a chunk). */
export function chunkDigestsOf(path: string, size: number, chunkSize: number): Buffer {
  const n = Math.ceil(size / chunkSize);
  const out = Buffer.alloc(n * 32);
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(chunkSize);
  try {
    for (let k = 0; k < n; k++) {
      const len = Math.min(chunkSize, size - k * chunkSize);
      let got = 0;
      while (got < len) got += readSync(fd, buf, got, len - got, k * chunkSize + got) || len;
      createHash('sha256').update(buf.subarray(0, len)).digest().copy(out, k * 32);
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

/** The same, of bytes in memory. */
export function chunkDigestsOfBuffer(b: Buffer, chunkSize: number): Buffer {
  const h = new ChunkHasher(chunkSize);
  h.update(b);
  return h.digests();
}

/** The same, of bytes as they arrive (a download). */
export class ChunkHasher {
  private readonly out: Buffer[] = [];
  private h = createHash('sha256');
  private left: number;

  constructor(private readonly chunkSize: number) {
    this.left = chunkSize;
  }

  update(b: Buffer): void {
    let at = 0;
    while (at < b.length) {
      const n = Math.min(this.left, b.length - at);
      this.h.update(b.subarray(at, at + n));
      at += n;
      this.left -= n;
      if (this.left === 0) {
        this.out.push(this.h.digest());
        this.h = createHash('sha256');
        this.left = this.chunkSize;
      }
    }
  }

  /** The digests of every chunk, the last (short) one included. */
  digests(): Buffer {
    if (this.left < this.chunkSize) {
      this.out.push(this.h.digest());
      this.left = this.chunkSize;
    }
    return Buffer.concat(this.out);
  }
}

type Unpin = () => void;

export class RemoteBlob {
  readonly file: BlobFile;
  readonly hex: string;
  private readonly inflight = new Map<number, Promise<void>>();
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
      for (const [a, b] of this.plan(k0, to)) void this.fetchRun(a, b).catch(() => undefined); // the waits below report failures
      const waits = new Set<Promise<void>>();
      for (let k = k0; k <= k1; k++) {
        const w = this.inflight.get(k);
        if (w) waits.add(w);
      }
      await Promise.all(waits);
      for (let k = k0; k <= k1; k++) this.cache.touch(this.file, k);
      return unpin;
    } catch (err) {
      unpin();
      throw err;
    }
  }

  /** The same, on this thread (copy-up, checks): missing chunks fetched by a worker while it waits. */
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
        const from = a * this.info.chunkSize;
        this.store(a, b, fetchSync(this.remote, from, Math.min(this.info.size, (b + 1) * this.info.chunkSize)));
      }
      for (let k = k0; k <= k1; k++) this.cache.touch(this.file, k);
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
      let got = 0;
      while (got < out.length) {
        const n = readSync(this.fd, out, got, out.length - got, pos + got);
        if (n === 0) break;
        got += n;
      }
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
      if (this.usable(k) || (skipInflight && this.inflight.has(k))) continue;
      const last = runs[runs.length - 1];
      if (last && last[1] === k - 1 && (k - last[0]) * this.info.chunkSize < RUN_BYTES) last[1] = k;
      else runs.push([k, k]);
    }
    return runs;
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

  private fetchRun(a: number, b: number): Promise<void> {
    const cs = this.info.chunkSize;
    const work = getRange(this.remote, a * cs, Math.min(this.info.size, (b + 1) * cs)).then(
      (body) => this.store(a, b, body),
      (err: unknown) => {
        throw this.failure(err, a * cs);
      },
    );
    for (let k = a; k <= b; k++) {
      this.inflight.set(k, work);
      void work.finally(() => this.inflight.get(k) === work && this.inflight.delete(k)).catch(() => undefined);
    }
    return work;
  }

  /** Check chunks [a, b] of `body` against the index, then write them to the cache file. */
  private store(a: number, b: number, body: Buffer): void {
    const cs = this.info.chunkSize;
    for (let k = a; k <= b; k++) {
      const chunk = body.subarray((k - a) * cs, (k - a) * cs + this.file.chunkLen(k));
      if (!this.matches(k, chunk)) {
        const msg = `${this.label}: the bytes at offset ${k * cs} do not match the index (chunk ${k}); not served`;
        if (!this.reported.has(k)) console.error(`tarstack: ${msg}`); // once per chunk, however often it is read
        this.reported.add(k);
        throw fsError('EIO', msg);
      }
    }
    writeAll(this.fd, body, a * cs);
    for (let k = a; k <= b; k++) {
      this.file.mark(k, true);
      if (this.digests) this.file.verified[k] = 1;
      this.cache.touch(this.file, k);
    }
    this.fetched += body.length;
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
    if (!this.digests) return true;
    return createHash('sha256').update(bytes).digest().equals(this.digests.subarray(k * 32, k * 32 + 32));
  }

  private failure(err: unknown, offset: number): FsError {
    if (err instanceof FsError) return err;
    const msg = `${this.label}: reading offset ${offset}: ${(err as Error).message ?? String(err)}`;
    console.error(`tarstack: ${msg}`);
    return fsError('EIO', msg);
  }
}

function writeAll(fd: number, b: Buffer, pos: number): void {
  let done = 0;
  while (done < b.length) done += writeSync(fd, b, done, b.length - done, pos + done);
}

let worker: Worker | undefined;

/** Bytes [start, end) fetched by the sync-fetch worker while this thread waits (bounded by the retry deadline). */
function fetchSync(remote: Remote, start: number, end: number): Buffer {
  if (!worker) {
    // loaded at the first remote read, not with every mount (the server's start-up)
    const { Worker } = createRequire(import.meta.url)('node:worker_threads') as typeof import('node:worker_threads');
    worker = new Worker(new URL('../remote/sync-fetch-worker.js', import.meta.url));
    worker.unref();
  }
  const sab = new SharedArrayBuffer(8 + Math.max(end - start, 1024));
  const state = new Int32Array(sab, 0, 2);
  const msg: SyncFetch = { url: remote.url, tlsVerify: remote.tlsVerify, ...(remote.certDir ? { certDir: remote.certDir } : {}), headers: remote.headers(), start, end, deadline: Date.now() + retryDeadlineMs(), sab };
  worker.postMessage(msg);
  const limit = Date.now() + retryDeadlineMs() + 10_000;
  while (Atomics.load(state, 0) === 0 && Date.now() < limit) Atomics.wait(state, 0, 0, limit - Date.now());
  if (state[0] === 0) throw new Error(`no answer from ${hostOf(remote.url)}`);
  if (state[0] === 2) throw new Error(Buffer.from(sab, 8, state[1]).toString());
  return Buffer.from(Buffer.from(sab, 8, end - start));
}
