// A read-only merge of lower layers (top first), served as a FileSystem. A merged directory's parts
// are recomputed from its inode number when not cached, so memory stays bounded whatever the kernel
// holds and a path-based backend needs no table at all.
import { LRUCache } from 'lru-cache';
import { constants } from 'node:fs';
import type { Attr, DirEntry, Entry, FdRange, FileStream, FileSystem, OpenReply, ReadReply, Statfs } from '../vfs/api.js';
import { ROOT_INO } from '../vfs/api.js';
import { ABSENT, type Layer } from '../layer/layer.js';
import { fsError } from '../util/errors.js';
import { emptyAttr } from '../util/attr.js';
import { DirCursor } from './dir-cursor.js';
import { LowerStack, type Parts } from './lower-stack.js';
import { S_IFDIR, S_IFLNK, S_IFMT } from '../vfs/mode.js';

export class Overlay implements FileSystem {
  readonly immutable = true;
  readonly needsOpen: boolean;
  private readonly stack: LowerStack;
  private readonly partsCache = new LRUCache<number, Parts>({ max: 65536 });
  private readonly dirHandles = new Map<number, DirCursor>();
  private readonly fileHandles = new Map<number, [number, number]>();
  private nextFh = 1;

  constructor(layers: Layer[]) {
    if (layers.length === 0) throw new Error('an overlay needs at least one layer');
    this.stack = new LowerStack(layers);
    this.needsOpen = layers.some((L) => L.openFile !== undefined);
  }

  /** The parts an inode number stands for: a directory's merged parts, or [layer, node]. */
  private partsOf(ino: number): Parts {
    if (ino === ROOT_INO) return this.stack.rootParts;
    const cached = this.partsCache.get(ino);
    if (cached) return cached;
    const at = this.stack.locate(ino);
    if (!at) throw fsError('ESTALE');
    let parts: Parts = at;
    if (this.stack.layers.length > 1 && this.stack.isDir(at)) {
      // from its own layer down: a directory reached through a redirect has another path above it
      parts = this.stack.partsOfPath(this.stack.pathOf(at[0], at[1]), at[0]);
      if (!this.stack.isDir(parts) || parts[0] !== at[0]) throw fsError('ESTALE');
    }
    this.partsCache.set(ino, parts);
    return parts;
  }

  private dirParts(ino: number): Parts {
    const parts = this.partsOf(ino);
    if (!this.stack.isDir(parts)) throw fsError('ENOTDIR');
    return parts;
  }

  lookup(parent: number, name: string): Entry {
    const found = this.stack.lookupParts(this.dirParts(parent), name);
    if (found.length === 0) throw fsError('ENOENT');
    const attr = this.attrOf(found);
    if (found.length > 2) this.partsCache.set(attr.ino, found);
    return { ino: attr.ino, generation: 0, attr };
  }

  forget(): void {
    // Nothing is pinned by kernel references: parts are recomputed on a cache miss.
  }

  getattr(ino: number): Attr {
    const attr = this.attrOf(this.partsOf(ino));
    if (ino === ROOT_INO) attr.ino = ROOT_INO;
    return attr;
  }

  private attrOf(parts: Parts): Attr {
    const attr = emptyAttr();
    this.stack.fillAttr(parts, attr);
    return attr;
  }

  readlink(ino: number): string {
    const parts = this.partsOf(ino);
    if ((this.stack.modeOf(parts) & S_IFMT) !== S_IFLNK) throw fsError('EINVAL');
    return this.stack.readlink(parts);
  }

  opendir(ino: number): number {
    const parts = this.dirParts(ino);
    const fh = this.nextFh++;
    this.dirHandles.set(fh, new DirCursor(this.stack.layers, parts, (k, n) => this.stack.inoOf(k, n)));
    return fh;
  }

  *readdir(ino: number, fh: number, offset: number): Iterable<DirEntry> {
    const cursor = this.dirHandles.get(fh);
    if (!cursor) throw fsError('EBADF');
    // Positions: 0 is ".", 1 is "..", then the merged children; a cookie is the next position.
    if (offset === 0) yield { name: '.', ino, mode: S_IFDIR, next: 1 };
    if (offset <= 1) yield { name: '..', ino: this.parentIno(ino), mode: S_IFDIR, next: 2 };
    for (cursor.seek(Math.max(0, offset - 2)); ; ) {
      const child = cursor.next();
      if (!child) return;
      yield { name: child.name, ino: child.ino, mode: child.mode, next: child.position + 3 };
    }
  }

  private parentIno(ino: number): number {
    if (ino === ROOT_INO) return ROOT_INO;
    const [k, node] = this.partsOf(ino);
    const p = this.stack.layers[k].parentOf(node);
    return p === ABSENT || p === 0 ? ROOT_INO : this.stack.inoOf(k, p);
  }

  releasedir(_ino: number, fh: number): void {
    this.dirHandles.delete(fh);
  }

  open(ino: number, flags: number): OpenReply {
    const parts = this.partsOf(ino);
    if (this.stack.isDir(parts)) throw fsError('EISDIR');
    if ((flags & 3) !== constants.O_RDONLY || flags & constants.O_TRUNC) throw fsError('EROFS');
    if (!this.stack.readsByHandle(parts)) return { fh: 0, keepCache: true, directIo: false };
    // A layer reading through per-file descriptors keeps one open while a handle is.
    this.stack.openFile(parts);
    const fh = this.nextFh++;
    this.fileHandles.set(fh, [parts[0], parts[1]]);
    return { fh, keepCache: true, directIo: false };
  }

  read(ino: number, _fh: number, pos: number, len: number): ReadReply | Promise<ReadReply> {
    return this.stack.read(this.partsOf(ino), pos, len);
  }

  fileRange(ino: number): FdRange | undefined {
    const parts = this.partsOf(ino);
    return this.stack.readsByHandle(parts) ? undefined : this.stack.fileRange(parts);
  }

  fileStream(ino: number, pos: number): FileStream | undefined {
    const parts = this.partsOf(ino);
    return this.stack.readsByHandle(parts) ? undefined : this.stack.fileStream(parts, pos);
  }

  release(_ino: number, fh: number): void {
    const held = this.fileHandles.get(fh);
    if (!held) return;
    this.fileHandles.delete(fh);
    this.stack.closeFile(held);
  }

  statfs(): Statfs {
    const bsize = 4096;
    return { bsize, frsize: bsize, blocks: Math.ceil(this.stack.storageBytes() / bsize), bfree: 0, bavail: 0, files: this.stack.nodeCount(), ffree: 0, favail: 0, namemax: 255 };
  }

  getxattr(ino: number, name: string): Buffer {
    const v = this.stack.getxattr(this.partsOf(ino), name);
    if (v === undefined) throw fsError('ENODATA');
    return v;
  }

  listxattr(ino: number): string[] {
    return this.stack.xattrNames(this.partsOf(ino));
  }

  destroy(): void {
    this.stack.close();
    this.dirHandles.clear();
  }
}
