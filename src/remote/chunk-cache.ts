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
  /** The file's number in its cache (LRU keys). */
  id = 0;
  readonly fd: number;
  private readonly mapFd: number;
  readonly present: Uint8Array;
  /** Checked against its digest since this process opened the file. */
  readonly verified: Uint8Array;
  readonly pins: Uint16Array;
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

/** The chunk cache of one store: blob files shared by digest, chunks evicted least recently used first. */
export class ChunkCache {
  private readonly files = new Map<string, BlobFile>();
  private readonly byId = new Map<number, BlobFile>();
  private nextId = 1;
  /** Chunks on disk, least recently used first: key (see key()) → bytes. */
  private readonly lru = new Map<number, number>();
  private bytes = 0;

  constructor(readonly dir: string, readonly limit: number) {}

  /** The blob's file (opened once, shared); the chunks it already holds join the LRU as oldest. */
  open(hex: string, size: number, chunkSize: number): BlobFile {
    let f = this.files.get(hex);
    if (!f) {
      mkdirSync(this.dir, { recursive: true });
      f = new BlobFile(hex, join(this.dir, hex), size, chunkSize);
      f.id = this.nextId++;
      this.files.set(hex, f);
      this.byId.set(f.id, f);
      const old = new Map<number, number>();
      for (let k = 0; k < f.count; k++) if (f.present[k]) old.set(key(f, k), f.chunkLen(k));
      for (const [at, len] of this.lru) old.set(at, len);
      this.lru.clear();
      for (const [at, len] of old) this.lru.set(at, len);
      this.bytes = [...this.lru.values()].reduce((a, b) => a + b, 0);
    }
    f.users++;
    return f;
  }

  release(f: BlobFile): void {
    if (--f.users > 0) return;
    // Kept open while it has chunks in the LRU: their eviction needs the descriptor.
    if (!f.present.some((p) => p === 1)) {
      this.files.delete(f.hex);
      this.byId.delete(f.id);
      f.close();
    }
  }

  /** A chunk on disk was used (or just written): it becomes the most recent. */
  touch(f: BlobFile, k: number): void {
    // Only chunks marked on disk: a chunk a fetch in flight owns may already be written there, and
    // punched out before the fetch marks it, it would be marked over a hole.
    if (!f.present[k]) return;
    const at = key(f, k);
    const had = this.lru.get(at);
    if (had !== undefined) this.lru.delete(at);
    else this.bytes += f.chunkLen(k);
    this.lru.set(at, f.chunkLen(k));
    this.evict();
  }

  forget(f: BlobFile, k: number): void {
    const at = key(f, k);
    const had = this.lru.get(at);
    if (had === undefined) return;
    this.lru.delete(at);
    this.bytes -= had;
  }

  /**
   * Punch out the least recently used chunks not pinned by a read in progress until under the limit.
   * Called on every use and when a read's pins go: chunks pinned while the cache filled up are then
   * evicted too, or the cache would stay over its bound after the reads ended.
   */
  evict(): void {
    if (this.bytes <= this.limit) return;
    for (const [at, len] of this.lru) {
      if (this.bytes <= this.limit) break;
      const f = this.byId.get(Math.floor(at / CHUNKS_PER_FILE));
      const k = at % CHUNKS_PER_FILE;
      if (f && f.pins[k] > 0) continue;
      this.lru.delete(at);
      this.bytes -= len;
      if (f) f.punch(k);
    }
  }

  stats(): { bytes: number; limit: number } {
    return { bytes: this.bytes, limit: this.limit };
  }
}

/** LRU keys: a number per chunk, file id × CHUNKS_PER_FILE + chunk (no string built per use). */
const CHUNKS_PER_FILE = 2 ** 32;
const key = (f: BlobFile, k: number): number => f.id * CHUNKS_PER_FILE + k;

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
