// A small read-only in-memory FileSystem for end-to-end tests of the FUSE backends: directories,
// files held in memory, a file backed by a real file descriptor, a sparse file (holes as fd -1
// ranges), symlinks, hard links, xattrs, inode numbers above 2^32, nanosecond times. It counts
// kernel references (lookups minus forgets) so tests can check the balance.
import { constants } from 'node:fs';
import { fsError } from '../../src/util/errors.js';
import type { Attr, DirEntry, Entry, FdRange, FileSystem, OpenReply, ReadReply, Statfs } from '../../src/vfs/api.js';
import { ROOT_INO } from '../../src/vfs/api.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../../src/vfs/mode.js';

export const INO_BASE = 2 ** 40; // every inode but the root is above 2^32

type Content =
  | { kind: 'mem'; data: Buffer }
  | { kind: 'fd'; fd: number; pos: number }
  | { kind: 'sparse'; extents: { off: number; len: number; fd: number; pos: number }[] };

interface Node {
  attr: Attr;
  children?: Map<string, number>;
  parent: number;
  target?: string;
  content?: Content;
  xattrs: Map<string, Buffer>;
}

export class ToyFs implements FileSystem {
  readonly immutable = true;
  private readonly nodes = new Map<number, Node>();
  private nextIno = INO_BASE + 1;
  private readonly dirHandles = new Map<number, DirEntry[]>();
  private nextFh = 1;
  readonly refs = new Map<number, number>();
  destroyed = false;

  constructor() {
    this.nodes.set(ROOT_INO, this.makeNode(ROOT_INO, S_IFDIR | 0o755, ROOT_INO, 0));
    this.nodes.get(ROOT_INO)!.children = new Map();
  }

  private makeNode(ino: number, mode: number, parent: number, size: number): Node {
    const nsec = (ino % 1_000_000_000) | 1; // distinct, odd nanoseconds: rounding would show
    return {
      attr: {
        ino, mode, nlink: 1, uid: 1234, gid: 5678, rdev: 0, size, blocks: Math.ceil(size / 512),
        atimeSec: 1_600_000_000, atimeNsec: 1, mtimeSec: 1_700_000_000, mtimeNsec: nsec,
        ctimeSec: 1_700_000_001, ctimeNsec: 999_999_999,
      },
      parent,
      xattrs: new Map(),
    };
  }

  private add(parent: number, name: string, mode: number, size: number): Node {
    const dir = this.nodes.get(parent)!;
    const ino = this.nextIno++;
    const node = this.makeNode(ino, mode, parent, size);
    this.nodes.set(ino, node);
    dir.children!.set(name, ino);
    if ((mode & S_IFMT) === S_IFDIR) {
      node.children = new Map();
      node.attr.nlink = 2;
      dir.attr.nlink++;
    }
    return node;
  }

  mkdir(parent: number, name: string): number {
    return this.add(parent, name, S_IFDIR | 0o755, 4096).attr.ino;
  }
  file(parent: number, name: string, data: Buffer, mode = 0o644): number {
    const n = this.add(parent, name, S_IFREG | mode, data.length);
    n.content = { kind: 'mem', data };
    return n.attr.ino;
  }
  fdFile(parent: number, name: string, fd: number, pos: number, size: number): number {
    const n = this.add(parent, name, S_IFREG | 0o644, size);
    n.content = { kind: 'fd', fd, pos };
    return n.attr.ino;
  }
  sparseFile(parent: number, name: string, size: number, extents: { off: number; len: number; fd: number; pos: number }[]): number {
    const n = this.add(parent, name, S_IFREG | 0o644, size);
    n.content = { kind: 'sparse', extents };
    n.attr.blocks = Math.ceil(extents.reduce((s, e) => s + e.len, 0) / 512);
    return n.attr.ino;
  }
  symlink(parent: number, name: string, target: string): number {
    const n = this.add(parent, name, S_IFLNK | 0o777, Buffer.byteLength(target, 'latin1'));
    n.target = target;
    return n.attr.ino;
  }
  hardlink(parent: number, name: string, ino: number): void {
    this.nodes.get(parent)!.children!.set(name, ino);
    this.nodes.get(ino)!.attr.nlink++;
  }
  /** Changes behind the kernel's back, as a test of invalidation. */
  replaceData(ino: number, data: Buffer): void {
    const n = this.node(ino);
    n.content = { kind: 'mem', data };
    n.attr.size = data.length;
  }
  removeName(parent: number, name: string): void {
    this.node(parent).children!.delete(name);
  }
  setXattr(ino: number, name: string, value: Buffer): void {
    this.nodes.get(ino)!.xattrs.set(name, value);
  }

  private node(ino: number): Node {
    const n = this.nodes.get(ino);
    if (!n) throw fsError('ESTALE');
    return n;
  }

  lookup(parent: number, name: string): Entry {
    const dir = this.node(parent);
    if (!dir.children) throw fsError('ENOTDIR');
    const ino = dir.children.get(name);
    if (ino === undefined) throw fsError('ENOENT');
    this.refs.set(ino, (this.refs.get(ino) ?? 0) + 1);
    return { ino, generation: 0, attr: this.node(ino).attr };
  }
  forget(ino: number, nlookup: number): void {
    const left = (this.refs.get(ino) ?? 0) - nlookup;
    if (left < 0) throw new Error(`forget of ino ${ino} below zero`);
    if (left === 0) this.refs.delete(ino);
    else this.refs.set(ino, left);
  }
  getattr(ino: number): Attr {
    return this.node(ino).attr;
  }
  readlink(ino: number): string {
    const t = this.node(ino).target;
    if (t === undefined) throw fsError('EINVAL');
    return t;
  }

  opendir(ino: number): number {
    const n = this.node(ino);
    if (!n.children) throw fsError('ENOTDIR');
    const entries: DirEntry[] = [
      { name: '.', ino, mode: S_IFDIR, next: 1 },
      { name: '..', ino: n.parent, mode: S_IFDIR, next: 2 },
    ];
    for (const [name, child] of n.children) {
      entries.push({ name, ino: child, mode: this.node(child).attr.mode, next: entries.length + 1 });
    }
    const fh = this.nextFh++;
    this.dirHandles.set(fh, entries);
    return fh;
  }
  *readdir(_ino: number, fh: number, offset: number): Iterable<DirEntry> {
    const entries = this.dirHandles.get(fh);
    if (!entries) throw fsError('EBADF');
    for (let i = offset; i < entries.length; i++) yield entries[i]!;
  }
  releasedir(_ino: number, fh: number): void {
    this.dirHandles.delete(fh);
  }

  open(ino: number, flags: number): OpenReply {
    const n = this.node(ino);
    if (n.children) throw fsError('EISDIR');
    if ((flags & 3) !== constants.O_RDONLY) throw fsError('EROFS');
    return { fh: this.nextFh++, keepCache: true, directIo: false };
  }
  read(ino: number, _fh: number, pos: number, len: number): ReadReply | Promise<ReadReply> {
    const n = this.node(ino);
    const size = n.attr.size;
    const end = Math.min(size, pos + len);
    if (pos >= end) return Buffer.alloc(0);
    const c = n.content!;
    if (c.kind === 'mem') {
      const out = c.data.subarray(pos, end);
      return pos % 3 === 1 ? Promise.resolve(out) : out; // exercise the async reply path too
    }
    if (c.kind === 'fd') return [{ fd: c.fd, pos: c.pos + pos, len: end - pos }];
    const ranges: FdRange[] = [];
    let at = pos;
    for (const e of c.extents) {
      if (e.off + e.len <= at) continue;
      if (e.off >= end) break;
      if (e.off > at) ranges.push({ fd: -1, pos: 0, len: e.off - at }), (at = e.off);
      const stop = Math.min(end, e.off + e.len);
      ranges.push({ fd: e.fd, pos: e.pos + (at - e.off), len: stop - at });
      at = stop;
    }
    if (at < end) ranges.push({ fd: -1, pos: 0, len: end - at });
    return ranges;
  }
  release(): void {}

  statfs(): Statfs {
    return { bsize: 4096, frsize: 4096, blocks: 1000, bfree: 0, bavail: 0, files: this.nodes.size, ffree: 0, favail: 0, namemax: 255 };
  }
  getxattr(ino: number, name: string): Buffer {
    const v = this.node(ino).xattrs.get(name);
    if (!v) throw fsError('ENODATA');
    return v;
  }
  listxattr(ino: number): string[] {
    return [...this.node(ino).xattrs.keys()];
  }
  destroy(): void {
    this.destroyed = true;
  }
}
