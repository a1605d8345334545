// Do-nothing read-only FileSystems for benchmarking the FUSE backends: `many` is 100,000 files of
// 0-8 KiB in 5,000 leaf directories (50 x 100), served from memory; `big` is one file backed by a
// real file's fd. The same bytes can be written to disk (writeManyTree) for kernel overlayfs.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fsError } from '../src/util/errors.js';
import type { Attr, DirEntry, Entry, FileSystem, OpenReply, ReadReply, Statfs } from '../src/vfs/api.js';
import { S_IFDIR, S_IFREG } from '../src/vfs/mode.js';

export const TOPS = 50;
export const LEAVES_PER_TOP = 100;
export const FILES_PER_LEAF = 20;
export const LEAVES = TOPS * LEAVES_PER_TOP;
export const FILES = LEAVES * FILES_PER_LEAF;

const TOP0 = 2; // inode numbers: root 1, tops 2.., leaves 1000.., files 100000.., big 999
const LEAF0 = 1000;
const FILE0 = 100_000;
const BIG_INO = 999;
const MTIME = 1_700_000_000;

/** File k's size, 0..8192, fixed by a cheap hash. */
export function fileSize(k: number): number {
  return (Math.imul(k + 1, 2654435761) >>> 0) % 8193;
}

const PATTERN = (() => {
  const b = Buffer.alloc(8192 + 256);
  let x = 12345;
  for (let i = 0; i < b.length; i++) (x = (Math.imul(x, 1103515245) + 12345) >>> 0), (b[i] = x >>> 24);
  return b;
})();

/** File k's bytes. */
export function fileData(k: number): Buffer {
  const off = k % 251;
  return PATTERN.subarray(off, off + fileSize(k));
}

const pad = (n: number, w: number) => String(n).padStart(w, '0');
const topName = (t: number) => `d${pad(t, 2)}`;
const leafName = (s: number) => `s${pad(s, 2)}`;
const fileName = (i: number) => `f${pad(i, 2)}`;

export class ManyFs implements FileSystem {
  readonly immutable = true;
  private readonly attr: Attr = {
    ino: 0, mode: 0, nlink: 1, uid: 0, gid: 0, rdev: 0, size: 0, blocks: 0,
    atimeSec: MTIME, atimeNsec: 0, mtimeSec: MTIME, mtimeNsec: 0, ctimeSec: MTIME, ctimeNsec: 0,
  };
  private readonly entry: Entry = { ino: 0, generation: 0, attr: this.attr };

  constructor(private readonly big?: { fd: number; size: number }) {}

  /** Inode of `name` in directory `parent`, or 0. */
  child(parent: number, name: string): number {
    if (parent === 1) {
      if (name === 'big.bin' && this.big) return BIG_INO;
      const t = name[0] === 'd' && name.length === 3 ? Number(name.slice(1)) : NaN;
      return t >= 0 && t < TOPS ? TOP0 + t : 0;
    }
    if (parent >= TOP0 && parent < TOP0 + TOPS) {
      const s = name[0] === 's' && name.length === 3 ? Number(name.slice(1)) : NaN;
      return s >= 0 && s < LEAVES_PER_TOP ? LEAF0 + (parent - TOP0) * LEAVES_PER_TOP + s : 0;
    }
    if (parent >= LEAF0 && parent < LEAF0 + LEAVES) {
      const i = name[0] === 'f' && name.length === 3 ? Number(name.slice(1)) : NaN;
      return i >= 0 && i < FILES_PER_LEAF ? FILE0 + (parent - LEAF0) * FILES_PER_LEAF + i : 0;
    }
    return 0;
  }

  private isDir(ino: number): boolean {
    return ino === 1 || (ino >= TOP0 && ino < TOP0 + TOPS) || (ino >= LEAF0 && ino < LEAF0 + LEAVES);
  }
  private exists(ino: number): boolean {
    return this.isDir(ino) || (ino >= FILE0 && ino < FILE0 + FILES) || (ino === BIG_INO && !!this.big);
  }

  getattr(ino: number): Attr {
    if (!this.exists(ino)) throw fsError('ENOENT');
    const a = this.attr; // reused: backends copy attributes before the next call
    a.ino = ino;
    if (this.isDir(ino)) {
      a.mode = S_IFDIR | 0o755;
      a.nlink = ino === 1 ? 2 + TOPS : ino < LEAF0 ? 2 + LEAVES_PER_TOP : 2;
      a.size = 4096;
    } else {
      a.mode = S_IFREG | 0o644;
      a.nlink = 1;
      a.size = ino === BIG_INO ? this.big!.size : fileSize(ino - FILE0);
    }
    a.blocks = Math.ceil(a.size / 512);
    return a;
  }

  lookup(parent: number, name: string): Entry {
    if (!this.isDir(parent)) throw fsError('ENOTDIR');
    const ino = this.child(parent, name);
    if (ino === 0) throw fsError('ENOENT');
    this.getattr(ino);
    this.entry.ino = ino;
    return this.entry;
  }
  forget(): void {}
  readlink(): string {
    throw fsError('EINVAL');
  }

  /** Names and inodes of a directory's children, in order. */
  *children(ino: number): Generator<[string, number]> {
    if (ino === 1) {
      for (let t = 0; t < TOPS; t++) yield [topName(t), TOP0 + t];
      if (this.big) yield ['big.bin', BIG_INO];
    } else if (ino < LEAF0) {
      const base = LEAF0 + (ino - TOP0) * LEAVES_PER_TOP;
      for (let s = 0; s < LEAVES_PER_TOP; s++) yield [leafName(s), base + s];
    } else {
      const base = FILE0 + (ino - LEAF0) * FILES_PER_LEAF;
      for (let i = 0; i < FILES_PER_LEAF; i++) yield [fileName(i), base + i];
    }
  }

  opendir(ino: number): number {
    if (!this.isDir(ino)) throw fsError(this.exists(ino) ? 'ENOTDIR' : 'ENOENT');
    return ino;
  }
  *readdir(ino: number, _fh: number, offset: number): Iterable<DirEntry> {
    let k = 0;
    const parent = ino === 1 ? 1 : ino < LEAF0 ? 1 : TOP0 + Math.floor((ino - LEAF0) / LEAVES_PER_TOP);
    if (k++ >= offset) yield { name: '.', ino, mode: S_IFDIR, next: k };
    if (k++ >= offset) yield { name: '..', ino: parent, mode: S_IFDIR, next: k };
    for (const [name, child] of this.children(ino)) {
      if (k++ >= offset) yield { name, ino: child, mode: this.isDir(child) ? S_IFDIR : S_IFREG, next: k };
    }
  }
  releasedir(): void {}

  open(ino: number): OpenReply {
    if (this.isDir(ino)) throw fsError('EISDIR');
    return { fh: 0, keepCache: true, directIo: false };
  }
  read(ino: number, _fh: number, pos: number, len: number): ReadReply {
    if (ino === BIG_INO) return [{ fd: this.big!.fd, pos, len: Math.max(0, Math.min(len, this.big!.size - pos)) }];
    return fileData(ino - FILE0).subarray(pos, pos + len);
  }
  release(): void {}
  statfs(): Statfs {
    return { bsize: 4096, frsize: 4096, blocks: 1 << 20, bfree: 0, bavail: 0, files: FILES, ffree: 0, favail: 0, namemax: 255 };
  }
  getxattr(): Buffer {
    throw fsError('ENODATA');
  }
  listxattr(): string[] {
    return [];
  }
  destroy(): void {}
}

/** Writes the `many` tree to disk, byte for byte what ManyFs serves. */
export function writeManyTree(root: string): void {
  for (let t = 0; t < TOPS; t++) {
    for (let s = 0; s < LEAVES_PER_TOP; s++) {
      const dir = join(root, topName(t), leafName(s));
      mkdirSync(dir, { recursive: true });
      const leaf = t * LEAVES_PER_TOP + s;
      for (let i = 0; i < FILES_PER_LEAF; i++) {
        const k = leaf * FILES_PER_LEAF + i;
        writeFileSync(join(dir, fileName(i)), fileData(k));
      }
    }
  }
}
