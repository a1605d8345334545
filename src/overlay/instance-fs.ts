// A writable instance: the image's lower layers under an upper directory, served as a
// WritableFileSystem, one short method per operation (go-fuse's fs/api.go). Lookups check the upper
// first (whiteouts hide, opaque and redirected directories decide what merges below), then the lower
// stack. Every change lands in the upper only, after copy-up; deletions of lower names leave
// whiteouts; a directory rename is O(1) (a redirect plus a whiteout). The parts, one concept per
// file: inodes, links and their numbers (inode.ts, inodes.ts), what stat shows (inode-attr.ts), open
// handles (handles.ts), directory merge rules (directories.ts), hard-link sets (link-sets.ts),
// copy-up (copyup.ts), file bytes (file-data.ts), the size limit (space.ts), and the upper on disk
// (upper.ts, whiteouts.ts, upper-format.ts), through which every upper operation goes.
import * as fs from 'node:fs';
import type { Attr, Caller, CreateReply, DirEntry, Entry, FdRange, FileStream, OpenReply, ReadReply, SetAttr, Statfs, WritableFileSystem } from '../vfs/api.js';
import { ROOT_INO } from '../vfs/api.js';
import { fsError } from '../util/errors.js';
import { RENAME_EXCHANGE, RENAME_NOREPLACE, UTIME_NOW, UTIME_OMIT } from '../native/sys.js';
import { CopyUp } from './copyup.js';
import { FileData } from './file-data.js';
import { Handles } from './handles.js';
import type { Inode } from './inode.js';
import { InodeTable, UPPER_BASE } from './inodes.js';
import { LinkSets } from './link-sets.js';
import { LowerReads } from './lower-reads.js';
import { LowerStack, type Parts } from './lower-stack.js';
import { Directories, NAME_MAX } from './directories.js';
import { InodeAttr } from './inode-attr.js';
import { dataSpace, type DataSpace } from './space.js';
import { UpperStore } from './upper.js';
import type { NewObject } from './new-entry.js';
import type { InstanceOptions } from './instance-options.js';
import { isWhiteoutNode } from './whiteouts.js';
import { TARSTACK_FORMAT, isInternalXattr } from './upper-format.js';
import type { Layer } from '../layer/layer.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../vfs/mode.js';

const { O_RDONLY, O_TRUNC, O_DIRECT, O_APPEND } = fs.constants;
const O_ACCMODE = 3;

export class InstanceFs implements WritableFileSystem {
  readonly immutable = false;
  private readonly stack: LowerStack;
  private readonly store: UpperStore;
  private readonly links: LinkSets;
  private readonly copy: CopyUp;
  private readonly inodes: InodeTable;
  private readonly handles = new Handles();
  private readonly data: FileData;
  private readonly dirs: Directories;
  private readonly attrs: InodeAttr;
  private readonly lowerReads: LowerReads;
  /** The size limit and its running count (a no-limit object when the instance has none). */
  private readonly space: DataSpace;
  /** The daemon's umask is 0: objects it makes get exactly the mode asked for. */
  private readonly umaskZero: boolean;

  constructor(layers: Layer[], upperDir: string, workDir: string, readonly opts: InstanceOptions = {}) {
    if (!opts.offline) process.umask(0); // modes come from the kernel already masked; the daemon must not mask again
    this.umaskZero = !opts.offline;
    this.stack = new LowerStack(layers);
    const format = opts.format ?? TARSTACK_FORMAT;
    // What the host refuses an ordinary user is kept in tarstack's metadata, which a standard upper may not hold.
    const keepRefused = opts.keepRefused ?? (format.privateMetadata && process.getuid?.() !== 0);
    this.store = new UpperStore(upperDir, workDir, { readOnly: opts.offline, format, keepRefused, whiteoutFiles: opts.whiteoutFiles });
    this.space = dataSpace(opts.sizeLimit, this.store, [upperDir, `${workDir}/index`]);
    this.links = new LinkSets(this.store, this.space);
    this.copy = new CopyUp(this.store, this.stack, this.links, !!opts.wholeFiles);
    this.data = new FileData(this.store, this.stack, this.links, this.copy, this.space, !!opts.fillsOffLoop);
    this.inodes = new InodeTable(this.stack, this.store, this.links, !!opts.offline);
    this.dirs = new Directories(this.stack, this.store, this.inodes);
    this.attrs = new InodeAttr(this.stack, this.store, this.links, this.inodes, opts.owners === 'mapped');
    this.lowerReads = new LowerReads(this.inodes, this.stack);
  }

  // ---- shared steps ---------------------------------------------------------------------------

  private childAbs(dir: Inode, name: string): string {
    return this.store.abs(dir.childPath(name));
  }

  /** `st`: the inode's upper lstat, when the caller has just taken it. */
  private entry(node: Inode, st?: fs.BigIntStats): Entry {
    node.nlookup++;
    return { ino: node.ino, generation: 0, attr: this.attrs.of(node, st) };
  }

  /** Give an inode an upper object (lazily for big files), without changing what it shows. */
  private materialize(node: Inode): Inode {
    if (!node.upper) {
      if (node.type === S_IFDIR) this.copy.dir(node);
      else this.copy.file(node, this.space.copyOnChange);
    }
    return node;
  }

  /** Has this inode an upper copy? (diff descends only there) */
  isUpper(ino: number): boolean {
    return this.inodes.get(ino).upper;
  }

  /** Lower paths of the hard-link sets copied up into the index: every one of them shows the copy. */
  indexedLowerPaths(): string[][] {
    const inos = new Set(this.store.indexed().filter((ino) => ino < UPPER_BASE));
    return [...this.stack.pathsOfInodes(inos).values()].flat();
  }

  /** Every lower path naming one of these inode numbers (the names of lower hard-link sets). */
  lowerPathsOf(inos: Set<number>): Map<number, string[][]> {
    return this.stack.pathsOfInodes(inos);
  }

  // ---- FileSystem: reading ------------------------------------------------------------------

  lookup(parent: number, name: string): Entry {
    const dir = this.inodes.dir(parent);
    const f = this.dirs.find(dir, name);
    if (!f) throw fsError('ENOENT');
    return this.entry(this.inodes.inodeFor(dir, name, f));
  }

  forget(ino: number, nlookup: number): void {
    this.inodes.forget(ino, nlookup);
  }

  getattr(ino: number): Attr {
    return this.attrs.of(this.inodes.get(ino));
  }

  readlink(ino: number): string {
    const n = this.inodes.get(ino);
    if (n.type !== S_IFLNK) throw fsError('EINVAL');
    return n.upper ? this.store.readlink(this.links.upperPath(n)) : this.stack.readlink(n.lower!);
  }

  opendir(ino: number): number {
    return this.handles.openDir(this.dirs.listing(this.inodes.dir(ino)));
  }

  *readdir(ino: number, fh: number, offset: number): Iterable<DirEntry> {
    let listing = this.handles.dir(fh);
    if (offset === 0) {
      // rewinddir: show the directory as it is now.
      listing = this.dirs.listing(this.inodes.dir(ino));
      this.handles.relist(fh, listing);
      yield { name: '.', ino: this.inodes.get(ino).ino, mode: S_IFDIR, next: 1 }; // its inode number, not the kernel's nodeid
    }
    if (offset <= 1) yield { name: '..', ino: this.inodes.get(ino).link.dir?.ino ?? ROOT_INO, mode: S_IFDIR, next: 2 };
    for (listing.seek(Math.max(0, offset - 2)); ; ) {
      const e = listing.next();
      if (!e) return;
      yield { name: e.name, ino: e.ino, mode: e.mode, next: e.position + 3 };
    }
  }

  releasedir(_ino: number, fh: number): void {
    this.handles.closeDir(fh);
  }

  open(ino: number, flags: number): OpenReply {
    const node = this.inodes.get(ino);
    if (node.type === S_IFDIR) throw fsError('EISDIR');
    const writing = (flags & O_ACCMODE) !== O_RDONLY || (flags & O_TRUNC) !== 0;
    if (writing && !node.upper) this.copy.file(node, flags & O_TRUNC ? 'none' : this.space.copyOnChange);
    return this.openHandle(node, node.upper ? this.data.openUpper(node, flags) : -1, flags);
  }

  private openHandle(node: Inode, fd: number, flags: number): OpenReply {
    let held: Parts | null = null;
    if (!node.upper && node.lower && this.stack.readsByHandle(node.lower)) {
      held = [node.lower[0], node.lower[1]];
      this.stack.openFile(held);
    }
    const reply: OpenReply = { fh: this.handles.openFile(node, fd, flags, held), keepCache: true, directIo: (flags & O_DIRECT) !== 0 };
    // Every byte in the upper file and no limit to count writes against: the kernel may do the
    // reads and writes itself (passthrough); copy-up, truncate and the like still come here.
    if (fd >= 0 && node.upper && node.lazy === null && !this.space.limited) reply.backingFd = fd;
    return reply;
  }

  read(_ino: number, fh: number, pos: number, len: number): ReadReply | Promise<ReadReply> {
    return this.data.read(this.handles.file(fh), pos, len);
  }

  readonly fileRange = (ino: number): FdRange | undefined => this.lowerReads.range(ino);
  readonly fileStream = (ino: number, pos: number): FileStream | undefined => this.lowerReads.stream(ino, pos);
  readonly watchData = (moved: (ino: number) => void): (() => void) => this.lowerReads.watch(moved);

  release(_ino: number, fh: number): void {
    // The last close of a file whose last name went while it was open: its data goes now.
    const closing = this.handles.fileOrNone(fh);
    if (closing && closing.fd >= 0 && closing.inode.unlinked && closing.inode.opens === 1) this.space.release(closing.fd);
    const h = this.handles.closeFile(fh);
    if (!h) return;
    if (h.held) this.stack.closeFile(h.held);
    this.inodes.closed(h.inode);
  }

  statfs(): Statfs {
    const s = this.store.statfs();
    const { blocks, bfree, bavail } = this.space.shown(s); // a limited instance: its limit and what is left of it
    return { bsize: s.bsize, frsize: s.bsize, blocks, bfree, bavail, files: s.files, ffree: s.ffree, favail: s.ffree, namemax: NAME_MAX };
  }

  getxattr(ino: number, name: string): Buffer {
    const n = this.inodes.get(ino);
    if (isInternalXattr(name)) throw fsError('ENODATA');
    const v = n.upper ? this.store.getXattr(this.links.upperPath(n), n.type, name) : (this.stack.getxattr(n.lower!, name) ?? null);
    if (v === null) throw fsError('ENODATA');
    return v;
  }

  listxattr(ino: number): string[] {
    const n = this.inodes.get(ino);
    if (!n.upper) return this.stack.xattrNames(n.lower!).filter((x) => !isInternalXattr(x));
    return this.store.listXattr(this.links.upperPath(n), n.type);
  }

  // ---- WritableFileSystem: data -------------------------------------------------------------

  write(_ino: number, fh: number, data: Buffer, pos: number): number | Promise<number> {
    return this.data.write(this.handles.file(fh), data, pos);
  }

  /** A change of `ino`'s data, now or after the one in flight off the loop (src/daemon/served-instance.ts). */
  inTurn<T>(ino: number, change: () => T): T | Promise<T> {
    return this.data.inTurn(this.inodes.get(ino), change);
  }

  fsync(_ino: number, fh: number, datasync: boolean): Promise<void> | void {
    return this.data.fsync(this.handles.file(fh), datasync);
  }

  fsyncdir(ino: number): Promise<void> | void {
    const n = this.inodes.dir(ino);
    if (!n.upper) return;
    const fd = this.store.open(this.links.upperPath(n), O_RDONLY);
    return new Promise((res, rej) =>
      fs.fsync(fd, (err) => {
        fs.closeSync(fd);
        if (err) rej(err);
        else res();
      }),
    );
  }

  fallocate(_ino: number, fh: number, mode: number, pos: number, len: number): void {
    this.data.fallocate(this.handles.file(fh), mode, pos, len);
  }

  // ---- WritableFileSystem: metadata ---------------------------------------------------------

  setattr(ino: number, set: SetAttr, fh: number | undefined, _caller?: Caller): Attr {
    const node = this.inodes.get(ino);
    if (!node.upper) {
      if (node.type === S_IFDIR) this.copy.dir(node);
      else this.copy.file(node, set.size === 0 ? 'none' : this.space.copyOnChange);
    }
    const h = this.handles.fileOrNone(fh);
    const fd = h && h.fd >= 0 ? h.fd : node.unlinked ? node.anyFd : -1;
    const target = fd >= 0 ? fd : this.links.upperPath(node);
    if (set.uid !== undefined || set.gid !== undefined || set.mode !== undefined) this.chownChmod(node, target, set);
    if (set.size !== undefined) this.data.truncate(node, fd, set.size);
    if (set.atime !== undefined || set.mtime !== undefined) {
      const [as, an] = timeArgs(set.atime);
      const [ms, mn] = timeArgs(set.mtime);
      this.store.sys.utimens(target, as, an, ms, mn);
    }
    return this.attrs.of(node);
  }

  /** chown and chmod, on the object or, where the host refuses them, kept (kept.ts). */
  private chownChmod(node: Inode, target: string | number, set: SetAttr): void {
    if (this.store.kept.active) {
      this.store.kept.chownChmod(target, node.type, set);
      node.kept = undefined;
      return;
    }
    if (set.uid !== undefined || set.gid !== undefined) this.store.chown(target, set.uid ?? -1, set.gid ?? -1);
    if (set.mode !== undefined && node.type !== S_IFLNK) this.store.chmod(target, set.mode);
  }

  setxattr(ino: number, name: string, value: Buffer, flags: number): void {
    if (isInternalXattr(name)) throw fsError('EPERM');
    const node = this.materialize(this.inodes.get(ino));
    this.store.setXattr(this.links.upperPath(node), name, value, flags);
  }

  removexattr(ino: number, name: string): void {
    if (isInternalXattr(name)) throw fsError('ENODATA');
    const node = this.inodes.get(ino);
    if (!node.upper && this.stack.getxattr(node.lower!, name) === undefined) throw fsError('ENODATA');
    this.store.removeXattr(this.links.upperPath(this.materialize(node)), name);
  }

  // ---- WritableFileSystem: namespace --------------------------------------------------------

  mkdir(parent: number, name: string, mode: number, caller: Caller): Entry {
    const c = this.createEntry(parent, name, caller, { kind: 'dir', mode: S_IFDIR | (mode & 0o7777) });
    return this.entry(c.node, c.st);
  }

  /** A character device 0/0 is EPERM: it is a whiteout's encoding in the upper, and would hide itself (kernel overlayfs refuses it too). */
  mknod(parent: number, name: string, mode: number, rdev: number, caller: Caller): Entry {
    if (isWhiteoutNode(mode, rdev)) throw fsError('EPERM');
    return this.entry(this.createEntry(parent, name, caller, { kind: 'node', mode, rdev }).node);
  }

  symlink(parent: number, name: string, target: string, caller: Caller): Entry {
    const c = this.createEntry(parent, name, caller, { kind: 'symlink', mode: S_IFLNK | 0o777, target });
    return this.entry(c.node, c.st);
  }

  create(parent: number, name: string, mode: number, flags: number, caller: Caller): CreateReply {
    const c = this.createEntry(parent, name, caller, { kind: 'file', mode: S_IFREG | (mode & 0o7777), flags: flags & O_APPEND });
    return { entry: this.entry(c.node, c.st), open: this.openHandle(c.node, c.fd!, flags) };
  }

  /**
   * A new entry, owned by the caller: born in its place where it can be, else built under a temp
   * name and placed, over a whiteout if one is there (new-entry.ts). A directory placed where a
   * lower directory was deleted is opaque, so nothing below shows.
   */
  private createEntry(parent: number, name: string, caller: Caller, what: NewObject): { node: Inode; st: fs.BigIntStats; fd: number | undefined } {
    const dir = this.inodes.dir(parent);
    if (this.dirs.find(dir, name)) throw fsError('EEXIST');
    this.copy.dir(dir);
    const opaque = (what.mode & S_IFMT) === S_IFDIR && this.dirs.lowerHas(dir, name);
    const abs = this.childAbs(dir, name); // after the copy-up: a path is for immediate use (upper.ts)
    const fd = this.store.make.entry(this.store.abs(dir.relPath()), abs, caller, what, this.umaskZero, opaque);
    const found = { upper: true as const, abs, st: this.store.stat(fd ?? abs), fresh: !this.store.kept.active, born: true };
    // A device the host refused stands in as an empty file (kept.ts): its type is read back as usual.
    const node = this.inodes.inodeFor(dir, name, found);
    return { node, st: found.st, fd };
  }

  link(ino: number, newParent: number, newName: string): Entry {
    const node = this.inodes.get(ino);
    if (node.type === S_IFDIR) throw fsError('EPERM');
    const dir = this.inodes.dir(newParent);
    if (this.dirs.find(dir, newName)) throw fsError('EEXIST');
    this.materialize(node);
    this.links.prepareLink(node);
    this.copy.dir(dir);
    this.store.placeLink(this.links.upperPath(node), this.childAbs(dir, newName));
    node.reachedAs(dir, newName);
    return this.entry(node);
  }

  unlink(parent: number, name: string): void {
    const dir = this.inodes.dir(parent);
    const f = this.dirs.find(dir, name);
    if (!f) throw fsError('ENOENT');
    const node = this.inodes.inodeFor(dir, name, f);
    if (node.type === S_IFDIR) throw fsError('EISDIR');
    const lowerLinks = !node.upper && this.links.indexing ? this.copy.lowerAttr(node).nlink : 1;
    if (lowerLinks > 1) this.copy.file(node, this.space.copyOnChange); // the set's link count must live somewhere
    this.copy.dir(dir);
    const abs = f.upper ? f.abs : this.childAbs(dir, name);
    const was = f.upper ? f.st : this.store.lstat(abs);
    const present = was !== undefined;
    if (present && node.opens === 0) this.space.release(abs);
    this.store.remove(abs, present, false, this.dirs.lowerHas(dir, name));
    this.links.dropName(node, dir, name, was);
  }

  rmdir(parent: number, name: string): void {
    const dir = this.inodes.dir(parent);
    const f = this.dirs.find(dir, name);
    if (!f) throw fsError('ENOENT');
    const node = this.inodes.inodeFor(dir, name, f);
    if (node.type !== S_IFDIR) throw fsError('ENOTDIR');
    if (!this.dirs.isEmpty(node)) throw fsError('ENOTEMPTY');
    this.copy.dir(dir);
    const last = this.attrs.of(node);
    // Its upper copy holds only whiteouts: it goes whole, and collapses into one whiteout where a lower one shows.
    this.store.remove(f.upper ? f.abs : this.childAbs(dir, name), f.upper, true, this.dirs.lowerHas(dir, name));
    node.unlinked = true;
    node.removedAttr = { ...last, nlink: 0 };
  }

  rename(parent: number, name: string, newParent: number, newName: string, flags: number): void {
    if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) throw fsError('EINVAL');
    const dir = this.inodes.dir(parent);
    const to = this.inodes.dir(newParent);
    const found = this.dirs.find(dir, name);
    if (!found) throw fsError('ENOENT');
    if (newName.length > NAME_MAX) throw fsError('ENAMETOOLONG');
    const src = this.inodes.inodeFor(dir, name, found);
    const ft = this.dirs.find(to, newName);
    const dst = ft ? this.inodes.inodeFor(to, newName, ft) : undefined;
    if (flags & RENAME_EXCHANGE) {
      if (!dst) throw fsError('ENOENT');
      return this.exchange(dir, name, src, to, newName, dst);
    }
    if (dst) {
      if (flags & RENAME_NOREPLACE) throw fsError('EEXIST');
      if (dst === src) return; // two names of one inode: POSIX says do nothing
      if (src.type === S_IFDIR && dst.type !== S_IFDIR) throw fsError('ENOTDIR');
      if (src.type !== S_IFDIR && dst.type === S_IFDIR) throw fsError('EISDIR');
      if (dst.type === S_IFDIR && !this.dirs.isEmpty(dst)) throw fsError('ENOTEMPTY');
    }
    this.move(dir, name, src, to, newName, dst);
  }

  /** rename's change, its checks passed: `dst` (if any) is replaced. */
  private move(dir: Inode, name: string, src: Inode, to: Inode, newName: string, dst: Inode | undefined): void {
    this.materialize(src); // independent of its name before it moves
    this.copy.dir(to);
    this.copy.name(dir, name, src);
    const srcAbs = this.childAbs(dir, name);
    const dstAbs = this.childAbs(to, newName);
    const isDir = src.type === S_IFDIR;
    if (isDir) this.dirs.moving(src, srcAbs, to, newName);
    const leaveWhiteout = this.dirs.lowerHas(dir, name);
    const there = this.store.lstat(dstAbs);
    if (there && !isDir && !(dst && dst.opens > 0)) this.space.release(dstAbs);
    this.store.move(srcAbs, dstAbs, there, isDir, leaveWhiteout);
    if (dst) this.links.dropName(dst, to, newName, there);
    src.moved(dir, name, to, newName);
  }

  private exchange(dir: Inode, name: string, a: Inode, to: Inode, newName: string, bNode: Inode): void {
    if (a === bNode) return;
    this.materialize(a);
    this.materialize(bNode);
    const aAbs = this.childAbs(dir, name);
    const bAbs = this.childAbs(to, newName);
    if (a.type === S_IFDIR) this.dirs.moving(a, aAbs, to, newName);
    if (bNode.type === S_IFDIR) this.dirs.moving(bNode, bAbs, dir, name);
    this.copy.name(dir, name, a);
    this.copy.name(to, newName, bNode);
    this.store.exchange(aAbs, bAbs);
    a.moved(dir, name, to, newName);
    bNode.moved(to, newName, dir, name);
  }

  destroy(): void | Promise<void> {
    const pending = this.data.settled(); // fills in flight use the descriptors and layers closed here
    if (pending) return pending.then(() => this.destroy());
    this.handles.closeAll();
    this.stack.close();
    this.store.close();
  }
}

function timeArgs(t: SetAttr['atime']): [number, number] {
  if (t === undefined) return [0, UTIME_OMIT];
  if (t === 'now') return [0, UTIME_NOW];
  return [t.sec, t.nsec];
}
