// The store's cache of remote blob bytes: one sparse file per blob, named by the blob's digest
// (cache/blobs/sha256/HEX, so every image and instance using a blob shares it), and beside it a map
// of the chunks it holds (HEX.map, one byte per chunk). Bounded in bytes: the least recently used
// chunks not in use are punched out of their file. One instance per store in a process (the store's
// server); a chunk read from disk is checked against its digest once per process before use, so a
// map that outlived its data (a crash) costs a refetch, never a wrong byte.
import { closeSync, fstatSync, ftruncateSync, mkdirSync, openSync, readdirSync, readSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { loadSys } from '../native/sys.js';

const FALLOC_FL_KEEP_SIZE = 1;
const FALLOC_FL_PUNCH_HOLE = 2;

/** Default bound of a store's chunk cache; TARSTACK_CACHE_SIZE (bytes, or with K/M/G) overrides. */
export const DEFAULT_CACHE_BYTES = 2 * 1024 ** 3;

export function cacheBytesLimit(): number {
  const v = process.env.TARSTACK_CACHE_SIZE;
  return (v ? parseCacheSize(v) : undefined) ?? DEFAULT_CACHE_BYTES;
}

/** Bytes, or a number with K, M or G (KiB, MiB, GiB; "4G", "512MiB"); undefined if it is neither. */
export function parseCacheSize(v: string): number | undefined {
  const m = /^(\d+)([KMG]?)i?B?$/i.exec(v.trim());
  if (!m) return undefined;
  return Number(m[1]) * 1024 ** ' KMG'.indexOf((m[2] || ' ').toUpperCase());
}

export function cacheDir(storeRoot: string): string {
  return join(storeRoot, 'cache', 'blobs', 'sha256');
}

/** A blob's cache file, opened by every layer that reads it; `present[k]` = chunk k is on disk. */
export class BlobFile {
  readonly fd: number;
  private readonly mapFd: number;
  readonly present: Uint8Array;
  /** Checked against its digest since this process opened the file. */
  readonly verified: Uint8Array;
  readonly pins: Uint16Array;
  /** The cache's record of the chunk's last use (ChunkCache.touch), 0: not in its LRU. */
  readonly used: Float64Array;
  users = 0;

  constructor(readonly hex: string, readonly path: string, readonly size: number, readonly chunkSize: number) {
    const n = Math.ceil(size / chunkSize);
    this.fd = openSync(path, 'a+'); // created if missing, never truncated
    closeSync(this.fd);
    this.fd = openSync(path, 'r+');
    if (fstatSync(this.fd).size !== size) ftruncateSync(this.fd, size);
    this.mapFd = openSync(`${path}.map`, 'a+');
    closeSync(this.mapFd);
    this.mapFd = openSync(`${path}.map`, 'r+');
    this.present = new Uint8Array(n);
    readSync(this.mapFd, this.present, 0, n, 0);
    this.verified = new Uint8Array(n);
    this.pins = new Uint16Array(n);
    this.used = new Float64Array(n);
  }

  get count(): number {
    return this.present.length;
  }

  chunkLen(k: number): number {
    return Math.min(this.chunkSize, this.size - k * this.chunkSize);
  }

  mark(k: number, on: boolean): void {
    this.present[k] = on ? 1 : 0;
    if (!on) this.verified[k] = 0;
    writeSync(this.mapFd, this.present, k, 1, k);
  }

  /** Chunks [a, b] are on disk (one write of the map). */
  markRange(a: number, b: number): void {
    this.present.fill(1, a, b + 1);
    writeSync(this.mapFd, this.present, a, b + 1 - a, a);
  }

  punch(k: number): void {
    loadSys().fallocate(this.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, k * this.chunkSize, this.chunkLen(k));
    this.mark(k, false);
  }

  close(): void {
    closeSync(this.fd);
    closeSync(this.mapFd);
  }
}

/**
 * A use of chunks [a, b] of a file, record `t`. The LRU is the queue of these records, least recent
 * first: a chunk belongs to its latest record only (f.used[k] === t); its older records are stale
 * for it. One record a read, not a Map entry a chunk: a 1 MiB read of 16 KiB chunks touches 64.
 */
interface Use {
  f: BlobFile;
  a: number;
  b: number;
  t: number;
}

/** The chunk cache of one store: blob files shared by digest, chunks evicted least recently used first. */
export class ChunkCache {
  private readonly files = new Map<string, BlobFile>();
  /** Uses, least recent first from `head` (see Use). */
  private uses: Use[] = [];
  private head = 0;
  private clock = 0;
  /** Queue length that triggers dropping records stale for every chunk (twice what was kept). */
  private compactAt = 1024;
  private bytes = 0;

  constructor(readonly dir: string, readonly limit: number) {}

  /** The blob's file (opened once, shared); the chunks it already holds join the LRU as oldest. */
  open(hex: string, size: number, chunkSize: number): BlobFile {
    let f = this.files.get(hex);
    if (!f) {
      mkdirSync(this.dir, { recursive: true });
      f = new BlobFile(hex, join(this.dir, hex), size, chunkSize);
      this.files.set(hex, f);
      const old: Use[] = [];
      for (let k = 0; k < f.count; k++) {
        if (!f.present[k]) continue;
        const t = ++this.clock;
        let b = k;
        while (b + 1 < f.count && f.present[b + 1]) b++;
        for (let j = k; j <= b; j++) (f.used[j] = t), (this.bytes += f.chunkLen(j));
        old.push({ f, a: k, b, t });
        k = b;
      }
      this.uses.splice(this.head, 0, ...old);
    }
    f.users++;
    return f;
  }

  release(f: BlobFile): void {
    if (--f.users > 0) return;
    // Kept open while it has chunks in the LRU: their eviction needs the descriptor.
    if (!f.present.some((p) => p === 1)) {
      this.files.delete(f.hex);
      f.close();
    }
  }

  /** Chunks [a, b] on disk were used (or just written): they become the most recent. */
  touch(f: BlobFile, a: number, b = a): void {
    const t = ++this.clock;
    let any = false;
    for (let k = a; k <= b; k++) {
      // Only chunks marked on disk: a chunk a fetch in flight owns may already be written there, and
      // punched out before the fetch marks it, it would be marked over a hole.
      if (!f.present[k]) continue;
      if (f.used[k] === 0) this.bytes += f.chunkLen(k);
      f.used[k] = t;
      any = true;
    }
    if (!any) return;
    this.uses.push({ f, a, b, t });
    if (this.uses.length - this.head > this.compactAt) this.compact();
    this.evict();
  }

  forget(f: BlobFile, k: number): void {
    if (f.used[k] === 0) return;
    f.used[k] = 0;
    this.bytes -= f.chunkLen(k);
  }

  /**
   * Punch out the least recently used chunks not pinned by a read in progress until under the limit.
   * Called on every use and when a read's pins go: chunks pinned while the cache filled up are then
   * evicted too, or the cache would stay over its bound after the reads ended.
   */
  evict(): void {
    if (this.bytes <= this.limit) return;
    for (let i = this.head; i < this.uses.length && this.bytes > this.limit; i++) {
      const { f, a, b, t } = this.uses[i]!;
      for (let k = a; k <= b && this.bytes > this.limit; k++) {
        if (f.used[k] !== t || f.pins[k] > 0) continue;
        f.used[k] = 0;
        this.bytes -= f.chunkLen(k);
        f.punch(k);
      }
    }
    while (this.head < this.uses.length && !holds(this.uses[this.head]!)) this.head++;
    if (this.head > 1024 && this.head * 2 > this.uses.length) {
      this.uses = this.uses.slice(this.head);
      this.head = 0;
    }
  }

  /** Drops the records no chunk belongs to any more (chunks used again and again, never evicted). */
  private compact(): void {
    this.uses = this.uses.slice(this.head).filter(holds);
    this.head = 0;
    this.compactAt = Math.max(1024, 2 * this.uses.length);
  }

  stats(): { bytes: number; limit: number } {
    return { bytes: this.bytes, limit: this.limit };
  }
}

/** Whether some chunk still belongs to this record (is in the LRU under it). */
function holds(u: Use): boolean {
  for (let k = u.a; k <= u.b; k++) if (u.f.used[k] === u.t) return true;
  return false;
}

const caches = new Map<string, ChunkCache>();

/** The process's cache for the store at `root` (the server serves every mount of a store). */
export function chunkCacheOf(root: string): ChunkCache {
  let c = caches.get(root);
  if (!c) {
    c = new ChunkCache(cacheDir(root), cacheBytesLimit());
    caches.set(root, c);
  }
  return c;
}

/** Bytes of a blob held in a store's cache, from its map (for `image info`; no process state needed). */
export function cachedBytes(root: string, hex: string, size: number, chunkSize: number): number {
  const path = join(cacheDir(root), `${hex}.map`);
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st) return 0;
  const fd = openSync(path, 'r');
  try {
    const n = Math.ceil(size / chunkSize);
    const map = new Uint8Array(n);
    readSync(fd, map, 0, n, 0);
    let bytes = 0;
    for (let k = 0; k < n; k++) if (map[k]) bytes += Math.min(chunkSize, size - k * chunkSize);
    return bytes;
  } finally {
    closeSync(fd);
  }
}

/** Blob files in a store's cache (tests, `image info`). */
export function cachedBlobs(root: string): string[] {
  try {
    return readdirSync(cacheDir(root)).filter((n) => !n.endsWith('.map'));
  } catch {
    return [];
  }
}
