// The size limit of an instance (`create --size`): data an upper may hold, counted as the bytes
// its regular files have allocated for data (st_blocks; a hard-linked file once), so directories,
// symlinks, whiteouts, owners, modes and xattrs need no data space. Counted in full at mount, then kept up to
// date by each change; a write that would pass the limit fails with ENOSPC before touching the file
// (after one recount, so an undercounted free never refuses wrongly). Without a limit, nothing is counted.
import * as fs from 'node:fs';
import { DirFds } from '../util/dir-fds.js';
import { fsError } from '../util/errors.js';
import { loadSys } from '../native/sys.js';
import { CHUNK, LazyMap } from './lazy.js';
import { X_LAZY, type UpperStore } from './upper.js';
import type { DataMode } from './copyup.js';
import { b } from '../util/latin1.js';

const BLOCK = 4096;

/**
 * Data bytes of one regular file: its allocated blocks, but never more than its size rounded up to
 * a block (ext4 counts an external xattr block in st_blocks) and, for a lazily copied file, never
 * more than its chunks present (a metadata-only copy-up has none).
 */
export function fileData(target: Buffer | number, st: fs.BigIntStats): number {
  let bytes = Math.min(Number(st.blocks) * 512, Math.ceil(Number(st.size) / BLOCK) * BLOCK);
  if (bytes === 0) return 0;
  const lazy = loadSys().getxattr(typeof target === 'number' ? target : target.toString('latin1'), X_LAZY);
  if (lazy) bytes = Math.min(bytes, LazyMap.decode(lazy).presentChunks() * CHUNK);
  return bytes;
}

/** Data bytes of the regular files under the given directories (any depth), each inode once. */
export function dataBytes(dirs: string[]): number {
  const seen = new Set<bigint>();
  let total = 0;
  for (const d of dirs) {
    const paths = new DirFds(Buffer.from(d).toString('latin1'));
    const walk = (rel: string): void => {
      let names: Buffer[];
      try {
        names = fs.readdirSync(b(paths.path(rel)), { encoding: 'buffer' });
      } catch {
        return; // gone meanwhile, or not a directory
      }
      for (const n of names) {
        const childRel = rel === '' ? n.toString('latin1') : `${rel}/${n.toString('latin1')}`;
        const child = b(paths.path(childRel)); // anew each time: a walk below may reuse a descriptor
        const st = fs.lstatSync(child, { bigint: true, throwIfNoEntry: false });
        if (!st) continue;
        if (st.isDirectory()) walk(childRel);
        else if (st.isFile() && !seen.has(st.ino)) {
          seen.add(st.ino);
          total += fileData(child, st);
        }
      }
    };
    try {
      walk('');
    } finally {
      paths.close();
    }
  }
  return total;
}

/** Parse "1G", "512M", "1.5GiB", "4096": binary units, as df and Apptainer count. */
export function parseSize(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*$/i.exec(text);
  if (!m) return undefined;
  const scale = 1024 ** ' kmgtp'.indexOf((m[2] || ' ').toLowerCase());
  const v = Math.floor(Number(m[1]) * scale);
  return Number.isSafeInteger(v) && v > 0 ? v : undefined;
}

/**
 * The data space of an instance, always there: a limit (`create --size`), or none, whose every call
 * costs nothing (no syscall). Each write, fallocate, truncate and last-name removal goes through it.
 */
export interface DataSpace {
  /** How copy-up serves a change that needs no data: 'meta' (no bytes, so no space) under a limit, else 'lazy'. */
  readonly copyOnChange: DataMode;
  /** Changes are counted against a limit: every write must come through reserveWrite/settle. */
  readonly limited: boolean;
  /** ENOSPC unless `need` more bytes fit. */
  reserve(need: number): void;
  /** Bytes an open file has allocated now: the `before` of `settle` (0 when nothing is counted). */
  allocated(fd: number): number;
  /** Count what a change to the open file allocated since `before`. */
  settle(fd: number, before: number): void;
  /**
   * Before a write of `len` bytes at `pos` (or appended): ENOSPC before anything is written unless
   * its worst case fits, the lazy chunks it must fill included. Returns `allocated(fd)`.
   */
  reserveWrite(fd: number, lazy: LazyMap | null, append: boolean, pos: number, len: number): number;
  /**
   * The upper object at `abs` is about to lose its last link (unlink, a rename over it, the index
   * object of a hard-link set after its last name), or the open descriptor `fd` of a file with no
   * link left is about to be closed: its data space comes back. An object with another link keeps
   * it; the caller makes sure nothing else has it open.
   */
  release(target: string | number): void;
  /** The size and free space shown, from the upper filesystem's statfs. */
  shown(upper: fs.StatsFs): { blocks: number; bfree: number; bavail: number };
}

/** A limit of `limit` bytes (none when undefined) over the upper and the index. */
export function dataSpace(limit: number | undefined, store: UpperStore, dirs: string[]): DataSpace {
  return limit ? new SpaceLimit(limit, dirs, store) : new NoLimit();
}

class NoLimit implements DataSpace {
  readonly copyOnChange = 'lazy';
  readonly limited = false;
  reserve(): void {}
  allocated(): number {
    return 0;
  }
  settle(): void {}
  reserveWrite(): number {
    return 0;
  }
  release(): void {}
  shown(upper: fs.StatsFs): { blocks: number; bfree: number; bavail: number } {
    return { blocks: upper.blocks, bfree: upper.bfree, bavail: upper.bavail };
  }
}

class SpaceLimit implements DataSpace {
  readonly copyOnChange = 'meta';
  readonly limited = true;
  used: number;
  private lastRecount = 0;

  constructor(
    readonly limit: number,
    private readonly dirs: string[],
    private readonly store: UpperStore,
  ) {
    this.used = dataBytes(dirs);
  }

  get free(): number {
    return Math.max(0, this.limit - this.used);
  }

  /** Recounts once a second at most before refusing, so an undercounted free never refuses wrongly. */
  reserve(need: number): void {
    if (need <= this.free) return;
    const now = Date.now();
    if (now - this.lastRecount > 1000) {
      this.lastRecount = now;
      this.used = dataBytes(this.dirs);
      if (need <= this.free) return;
    }
    throw fsError('ENOSPC');
  }

  allocated(fd: number): number {
    return Number(fs.fstatSync(fd).blocks) * 512;
  }

  settle(fd: number, before: number): void {
    this.charge(this.allocated(fd) - before);
  }

  reserveWrite(fd: number, lazy: LazyMap | null, append: boolean, pos: number, len: number): number {
    const st = fs.fstatSync(fd);
    const at = append ? st.size : pos;
    const allocated = st.blocks * 512;
    const lazyChunks = lazy && !append ? lazy.missing(at, at + len).length : 0;
    this.reserve(writeCost(st.size, allocated, at, at + len) + lazyChunks * CHUNK);
    return allocated;
  }

  release(target: string | number): void {
    const st = typeof target === 'number' ? fs.fstatSync(target, { bigint: true }) : this.store.lstat(target);
    if (st && st.isFile() && st.nlink <= (typeof target === 'number' ? 0n : 1n)) this.charge(-fileData(typeof target === 'number' ? target : b(target), st));
  }

  private charge(delta: number): void {
    this.used = Math.max(0, this.used + delta);
  }

  /** The limit as the size, what is left of it (or of the upper filesystem, if less) as free. */
  shown(upper: fs.StatsFs): { blocks: number; bfree: number; bavail: number } {
    const free = Math.min(Math.floor(this.free / upper.bsize), upper.bavail);
    return { blocks: Math.ceil(this.limit / upper.bsize), bfree: free, bavail: free };
  }
}

/** Worst case a write of [pos, end) allocates in a file of this size and allocation, in whole blocks. */
function writeCost(size: number, allocated: number, pos: number, end: number): number {
  if (end <= pos) return 0;
  const blocks = (from: number, to: number): number => (to > from ? (Math.ceil(to / BLOCK) - Math.floor(from / BLOCK)) * BLOCK : 0);
  const holes = allocated < Math.floor(size / BLOCK) * BLOCK; // a sparse file: what it has may be unallocated
  return holes ? blocks(pos, end) : blocks(Math.max(pos, size), end);
}
