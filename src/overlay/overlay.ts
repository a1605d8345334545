// A read-only merge of lower layers (top first), served as a FileSystem. Lookup goes top to
// bottom: a whiteout hides the name below, a non-directory ends the search, directories merge until
// one is opaque. Inode numbers come from (layer, node): unique in the mount, stable across remounts,
// shared by a tar's hard-linked names. A merged directory's parts are recomputed from its inode
// number when not cached, so memory stays bounded whatever the kernel holds.
import { LRUCache } from 'lru-cache';
import { constants } from 'node:fs';
import type { Attr, DirEntry, Entry, FdRange, FileSystem, OpenReply, Statfs } from '../fuse/ops.js';
import { ROOT_INO } from '../fuse/ops.js';
import { ABSENT, type Layer } from '../layer/layer.js';
import { fsError } from '../util/errors.js';
import { emptyAttr } from '../util/attr.js';
import { DirCursor, type MergedChild } from './dir-cursor.js';

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

/** A directory's parts: pairs (layer index, node), topmost first. */
type Parts = number[];

export class Overlay implements FileSystem {
  readonly immutable = true;
  /** ino = base[k] + node for layer k; the bottom layer starts at 1, so its root is ROOT_INO. */
  private readonly base: number[];
  private readonly rootParts: Parts;
  private readonly partsCache = new LRUCache<number, Parts>({ max: 65536 });
  private readonly dirHandles = new Map<number, DirCursor>();
  private nextFh = 1;

  constructor(private readonly layers: Layer[]) {
    if (layers.length === 0) throw new Error('an overlay needs at least one layer');
    this.base = new Array<number>(layers.length);
    let next = 1;
    for (let k = layers.length - 1; k >= 0; k--) {
      this.base[k] = next;
      next += layers[k].nodeCount;
    }
    this.rootParts = [];
    for (let k = 0; k < layers.length; k++) {
      this.rootParts.push(k, 0);
      if (layers[k].isOpaque(0)) break;
    }
  }

  private inoOf(k: number, node: number): number {
    return this.base[k] + this.layers[k].inodeOf(node);
  }

  /** The (layer, node) an inode number stands for. */
  private locate(ino: number): [number, number] {
    if (ino === ROOT_INO) return [this.rootParts[0], 0];
    for (let k = 0; k < this.layers.length; k++) {
      const node = ino - this.base[k];
      if (node >= 0 && node < this.layers[k].nodeCount) return [k, node];
    }
    throw fsError('ESTALE');
  }

  private partsOf(ino: number): Parts {
    if (ino === ROOT_INO) return this.rootParts;
    const cached = this.partsCache.get(ino);
    if (cached) return cached;
    const [k, node] = this.locate(ino);
    if (!this.layers[k].isDir(node)) throw fsError('ENOTDIR');
    let parts: Parts = [k, node];
    if (this.layers.length > 1) {
      // Re-walk the directory's path from the merged root.
      const path: string[] = [];
      for (let n = node; this.layers[k].parentOf(n) !== ABSENT; n = this.layers[k].parentOf(n)) path.push(this.layers[k].nameOf(n));
      let cur = this.rootParts;
      for (let i = path.length - 1; i >= 0; i--) {
        const r = this.lookupParts(cur, path[i]);
        if (r.length < 2 || !this.layers[r[0]].isDir(r[1])) throw fsError('ESTALE');
        cur = r;
      }
      parts = cur;
    }
    this.partsCache.set(ino, parts);
    return parts;
  }

  /** Merged lookup of `name` below a directory's parts: the parts of the result ([] when absent). */
  private lookupParts(parts: Parts, name: string): Parts {
    const found: Parts = [];
    for (let i = 0; i < parts.length; i += 2) {
      const k = parts[i];
      const L = this.layers[k];
      const c = L.lookup(parts[i + 1], name);
      if (c === ABSENT) continue;
      if (L.isWhiteout(c)) break;
      if (!L.isDir(c)) {
        if (found.length === 0) found.push(k, c);
        break; // a file ends the search; below a directory it is hidden
      }
      found.push(k, c);
      if (L.isOpaque(c)) break;
    }
    return found;
  }

  lookup(parent: number, name: string): Entry {
    const found = this.lookupParts(this.partsOf(parent), name);
    if (found.length === 0) throw fsError('ENOENT');
    const ino = this.inoOf(found[0], found[1]);
    if (this.layers[found[0]].isDir(found[1])) this.partsCache.set(ino, found);
    return { ino, generation: 0, attr: this.attrOf(ino, found[0], found[1]) };
  }

  forget(): void {
    // Nothing is pinned by kernel references: parts are recomputed on a cache miss.
  }

  getattr(ino: number): Attr {
    const [k, node] = this.locate(ino);
    return this.attrOf(ino, k, node);
  }

  private attrOf(ino: number, k: number, node: number): Attr {
    const attr = emptyAttr();
    this.layers[k].fillAttr(node, attr);
    attr.ino = ino;
    // As kernel overlayfs: a directory merged from several layers has no meaningful link count.
    if ((attr.mode & S_IFMT) === S_IFDIR && this.layers.length > 1 && this.partsOf(ino).length > 2) attr.nlink = 1;
    return attr;
  }

  readlink(ino: number): string {
    const [k, node] = this.locate(ino);
    if ((this.layers[k].modeOf(node) & S_IFMT) !== S_IFLNK) throw fsError('EINVAL');
    return this.layers[k].readlink(node);
  }

  opendir(ino: number): number {
    const parts = this.partsOf(ino);
    const fh = this.nextFh++;
    this.dirHandles.set(fh, new DirCursor(this.layers, parts, (k, n) => this.inoOf(k, n)));
    return fh;
  }

  *readdir(ino: number, fh: number, offset: number): Iterable<DirEntry> {
    const cursor = this.dirHandles.get(fh);
    if (!cursor) throw fsError('EBADF');
    // Positions: 0 is ".", 1 is "..", then the merged children; a cookie is the next position.
    if (offset === 0) yield { name: '.', ino, mode: S_IFDIR, next: 1 };
    if (offset <= 1) yield { name: '..', ino: this.parentIno(ino), mode: S_IFDIR, next: 2 };
    let child: MergedChild | undefined;
    for (cursor.seek(Math.max(0, offset - 2)); (child = cursor.next()); ) {
      yield { name: child.name, ino: child.ino, mode: child.mode, next: child.position + 3 };
    }
  }

  private parentIno(ino: number): number {
    if (ino === ROOT_INO) return ROOT_INO;
    const [k, node] = this.locate(ino);
    const p = this.layers[k].parentOf(node);
    return p === ABSENT || p === 0 ? ROOT_INO : this.inoOf(k, p);
  }

  releasedir(_ino: number, fh: number): void {
    this.dirHandles.delete(fh);
  }

  open(ino: number, flags: number): OpenReply {
    const [k, node] = this.locate(ino);
    if (this.layers[k].isDir(node)) throw fsError('EISDIR');
    if ((flags & 3) !== constants.O_RDONLY || flags & constants.O_TRUNC) throw fsError('EROFS');
    return { fh: 0, keepCache: true, directIo: false };
  }

  read(ino: number, _fh: number, pos: number, len: number): FdRange[] {
    const [k, node] = this.locate(ino);
    return this.layers[k].readRanges(node, pos, len);
  }

  release(): void {}

  statfs(): Statfs {
    let bytes = 0;
    let files = 0;
    for (const L of this.layers) {
      bytes += L.storageBytes;
      files += L.nodeCount;
    }
    const bsize = 4096;
    return { bsize, frsize: bsize, blocks: Math.ceil(bytes / bsize), bfree: 0, bavail: 0, files, ffree: 0, favail: 0, namemax: 255 };
  }

  getxattr(ino: number, name: string): Buffer {
    const [k, node] = this.locate(ino);
    const v = this.layers[k].getxattr(node, name);
    if (v === undefined) throw fsError('ENODATA');
    return v;
  }

  listxattr(ino: number): string[] {
    const [k, node] = this.locate(ino);
    return this.layers[k].xattrNames(node);
  }

  destroy(): void {
    for (const L of this.layers) L.close();
    this.dirHandles.clear();
  }
}
