// A writable instance: the image's lower layers under an upper directory, served as a
// WritableFileSystem. Lookups check the upper first (whiteouts hide, opaque and redirected
// directories decide what merges below), then the lower stack. Every change lands in the upper
// only, after copy-up; deletions of lower names leave whiteouts; a directory rename is O(1)
// (a redirect plus a whiteout). Inode numbers: lower entries keep theirs through copy-up
// (user.tarstack.ino), upper-only entries get UPPER_BASE + their upper inode number, unless the
// kernel still holds that number for a deleted entry (the upper filesystem reuses inode numbers):
// then a fresh one, stored like a copied-up entry's, so the kernel never sees one number name two
// objects and the new one keeps its number across remounts.
import * as fs from 'node:fs';
import type { Attr, Caller, CreateReply, DirEntry, Entry, OpenReply, ReadReply, SetAttr, Statfs, WritableFileSystem } from '../vfs/api.js';
import { ROOT_INO } from '../vfs/api.js';
import { fsError } from '../util/errors.js';
import { emptyAttr, majorOf, minorOf, splitNs } from '../util/attr.js';
import { RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT, UTIME_NOW, UTIME_OMIT } from '../native/sys.js';
import { CopyUp } from './copyup.js';
import { dataSpace, type DataSpace } from './space.js';
import { LowerStack, type Parts } from './lower-stack.js';
import { MergedListing, type UpperEntry } from './merged-listing.js';
import { WNode } from './node.js';
import { b } from '../util/latin1.js';
import { TARSTACK_FORMAT, UpperStore, X_LAZY, isInternalXattr, type UpperFormat } from './upper.js';
import { CHUNK, LazyMap } from './lazy.js';
import type { KeptStat } from './kept.js';
import type { Layer } from '../layer/layer.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../vfs/mode.js';

const EUID = process.geteuid?.() ?? 0;
const EGID = process.getegid?.() ?? 0;
/** Who mounted: what mapped owners show (read once, not per attr). */
const UID = process.getuid?.() ?? 0;
const GID = process.getgid?.() ?? 0;

/** Upper-only inode numbers start here, far above any lower one. */
export const UPPER_BASE = 2 ** 40;
/**
 * Node ids of the names of lower hard-link sets in a standard upper, one per name (see nodeFor); their
 * st_ino is reported apart from the node id.
 */
const NAME_BASE = 2 ** 50;
/** Fresh inode numbers (see upperIno) start here, above the others: FRESH_BASE + upper inode + k * 2^40. */
const FRESH_BASE = 2 ** 51;
const isNameNode = (ino: number): boolean => ino >= NAME_BASE && ino < FRESH_BASE;
const { O_RDONLY, O_TRUNC, O_CREAT, O_EXCL, O_NOCTTY, O_DIRECT, O_APPEND, O_RDWR } = fs.constants;
const O_ACCMODE = 3;
const NAME_MAX = 255;

/** What a name resolves to, before it becomes a node. */
/** `fresh`: an upper object this daemon has just made, so none of tarstack's metadata is on it yet. */
type Found = { upper: true; abs: string; st: fs.BigIntStats; fresh?: boolean } | { upper: false; parts: Parts };

export interface InstanceOptions {
  /** Read the instance without serving it (e.g. `diff` while it may be mounted elsewhere). */
  offline?: boolean;
  /** The upper may hold `.wh.NAME` whiteout files (an upper another tool wrote). */
  whiteoutFiles?: boolean;
  /** What the upper looks like on disk (default: tarstack's, with its private xattrs). */
  format?: UpperFormat;
  /** Copy-up copies whole files, never lazily (an upper that other tools read directly). */
  wholeFiles?: boolean;
  /** Bytes of file data the upper may hold (`create --size`): past it writes fail with ENOSPC. */
  sizeLimit?: number;
  /** Keep owners, modes, devices and xattrs the host refuses in tarstack's metadata (kept.ts). Default: not root. */
  keepRefused?: boolean;
  /**
   * Owners shown: 'stored' (the tar's, and what chown set), or 'mapped': everything shows as owned
   * by the mounting user, as after `tar -x` run by that user. Default 'stored'.
   */
  owners?: 'stored' | 'mapped';
}

interface Handle {
  node: WNode;
  /** Upper file descriptor; -1 while the file is read from the lower. */
  fd: number;
  flags: number;
  /** The lower file this handle holds open in its layer (layers that read through descriptors). */
  held?: [number, number];
}

export class InstanceFs implements WritableFileSystem {
  readonly immutable = false;
  private readonly stack: LowerStack;
  private readonly store: UpperStore;
  private readonly copy: CopyUp;
  private readonly nodes = new Map<number, WNode>();
  private readonly handles = new Map<number, Handle>();
  private readonly dirs = new Map<number, MergedListing>();
  private nextFh = 1;
  private readonly root: WNode;
  private readonly format: UpperFormat;
  /** The size limit and its running count (a no-limit object when the instance has none). */
  private readonly space: DataSpace;

  /** The daemon's umask is 0: objects it makes get exactly the mode asked for. */
  private readonly umaskZero: boolean;

  constructor(layers: Layer[], upperDir: string, workDir: string, readonly opts: InstanceOptions = {}) {
    if (!opts.offline) process.umask(0); // modes come from the kernel already masked; the daemon must not mask again
    this.umaskZero = !opts.offline;
    this.stack = new LowerStack(layers);
    this.format = opts.format ?? TARSTACK_FORMAT;
    // What the host refuses an ordinary user is kept in tarstack's metadata, which a standard upper may not hold.
    this.store = new UpperStore(upperDir, workDir, opts.offline, this.format, opts.keepRefused ?? (this.format.privateMetadata && process.getuid?.() !== 0));
    this.store.whFiles ||= !!opts.whiteoutFiles;
    this.copy = new CopyUp(this.store, this.stack, !!opts.wholeFiles);
    this.space = dataSpace(opts.sizeLimit, this.store, [upperDir, `${workDir}/index`]);
    const rootAbs = this.store.abs('');
    this.root = new WNode(ROOT_INO, S_IFDIR, null, '', this.store.isOpaque(rootAbs) ? null : this.stack.rootParts, true);
    this.root.nlookup = 1;
    this.nodes.set(ROOT_INO, this.root);
  }

  // ---- resolving names to nodes --------------------------------------------------------------

  private node(ino: number): WNode {
    const n = this.nodes.get(ino);
    if (!n) throw fsError('ESTALE');
    return n;
  }

  private dirNode(ino: number): WNode {
    const n = this.node(ino);
    if (n.type !== S_IFDIR) throw fsError('ENOTDIR');
    if (n.unlinked) throw fsError('ENOENT');
    return n;
  }

  private childAbs(dir: WNode, name: string): string {
    return this.store.abs(dir.parent ? `${dir.relPath()}/${name}` : name);
  }

  /** What `name` in directory `dir` is, or undefined when absent (or whited out). */
  private find(dir: WNode, name: string): Found | undefined {
    if (name.length > NAME_MAX) throw fsError('ENAMETOOLONG');
    if (this.store.whFiles && name.startsWith('.wh.')) return undefined; // whiteout files are format, never names
    if (dir.upper) {
      const abs = this.childAbs(dir, name);
      const st = this.store.lstat(abs);
      if (st) return UpperStore.isWhiteout(st) ? undefined : { upper: true, abs, st };
      if (this.store.hasWhFile(this.store.abs(dir.relPath()), name)) return undefined;
    }
    if (dir.lower) {
      const parts = this.stack.lookupParts(dir.lower, name);
      if (parts.length) return { upper: false, parts };
    }
    return undefined;
  }

  /** Does a lower layer show `name` below `dir` (so removing its upper copy needs a whiteout)? */
  private lowerHas(dir: WNode, name: string): boolean {
    return dir.lower !== null && this.stack.lookupParts(dir.lower, name).length > 0;
  }

  /** The node for a found name, registered (or updated) in the table. */
  private nodeFor(dir: WNode, name: string, f: Found): WNode {
    let ino: number;
    let type: number;
    let stIno: number | undefined;
    if (f.upper && f.fresh) {
      type = Number(f.st.mode) & S_IFMT;
      ino = this.upperIno(f.abs, f.st, type);
    } else if (f.upper) {
      type = this.upperType(f.abs, f.st);
      ino = this.store.storedIno(f.abs, f.st) ?? this.upperIno(f.abs, f.st, type);
    } else {
      type = this.stack.modeOf(f.parts) & S_IFMT;
      ino = this.stack.inoOf(f.parts[0], f.parts[1]);
      if (!this.format.privateMetadata && type !== S_IFDIR && this.lowerNlink(f.parts) > 1) {
        // Without an index, copying up one name of a lower hard-link set splits the set (as kernel
        // overlayfs with index=off does), so each name is its own node from the start, sharing the
        // set's st_ino only while it stays in the lower; the kernel's cached names stay right.
        stIno = ino;
        ino = NAME_BASE + this.stack.nameIdOf(f.parts[0], f.parts[1]);
      }
    }
    let node = this.nodes.get(ino);
    if (node && !node.unlinked && node.type === type) {
      if (!node.indexed || type === S_IFDIR) {
        node.parent = dir;
        node.name = name;
      }
      return node;
    }
    if (f.upper) {
      let lower: Parts | null = null;
      if (type === S_IFDIR && !this.store.isOpaque(f.abs)) {
        const redirect = this.store.redirectOf(f.abs);
        const parts = redirect !== undefined ? this.stack.partsOfPath(redirect.split('/').filter(Boolean)) : dir.lower ? this.stack.lookupParts(dir.lower, name) : [];
        lower = this.stack.isDir(parts) ? parts : null;
      }
      node = new WNode(ino, type, dir, name, lower, true);
      const priv = this.format.privateMetadata;
      if (f.fresh) node.kept = this.store.kept.active ? undefined : null;
      else if (type === S_IFREG && priv) {
        const lazy = this.store.getX(f.abs, X_LAZY);
        if (lazy) {
          node.lazy = LazyMap.decode(lazy).clamp(Number(f.st.size));
          node.lower = this.stack.locate(ino) ?? null;
        }
      }
      if (priv && type !== S_IFDIR && f.st.nlink > 1n && fs.existsSync(b(this.store.indexPath(ino)))) node.indexed = true;
    } else {
      const single = type === S_IFDIR ? f.parts : f.parts.slice(0, 2);
      node = new WNode(ino, type, dir, name, single, false);
      node.stIno = stIno;
      if (this.format.privateMetadata && type !== S_IFDIR && this.store.lstat(this.store.indexPath(ino))) {
        // Another name of this lower hard-link set was copied up: all its names are that copy.
        node.indexed = true;
        node.upper = true;
        const lazy = this.store.getX(this.store.indexPath(ino), X_LAZY);
        if (lazy) node.lazy = LazyMap.decode(lazy).clamp(Number(this.store.lstat(this.store.indexPath(ino))!.size));
      }
    }
    this.nodes.set(ino, node);
    return node;
  }

  private lowerNlink(parts: Parts): number {
    const a = emptyAttr();
    this.stack.fillAttr(parts, a);
    return a.nlink;
  }

  /** st_ino: the node id, but for a per-name node (NAME_BASE): the set's while lower, its own once copied. */
  private stInoOf(node: WNode, st: fs.BigIntStats | undefined): number {
    if (!isNameNode(node.ino)) return node.ino;
    return st ? UPPER_BASE + Number(st.ino) : (node.stIno ?? node.ino);
  }

  /**
   * An upper-only entry's inode number: UPPER_BASE + its upper inode, or when the kernel still holds
   * that number for another (deleted) object, a fresh one, stored on the entry (see the header).
   */
  private upperIno(abs: string, st: fs.BigIntStats, type: number): number {
    const plain = UPPER_BASE + Number(st.ino);
    const held = (n: number): boolean => {
      const node = this.nodes.get(n);
      return node !== undefined && (node.unlinked || node.type !== type);
    };
    if (!held(plain)) return plain;
    let fresh = FRESH_BASE + Number(st.ino);
    while (this.nodes.has(fresh)) fresh += UPPER_BASE;
    if (!this.opts.offline) this.store.setIno(abs, fresh, Number(st.mode) & S_IFMT);
    return fresh;
  }

  /** The type an upper object shows: its own, or the device an empty file stands in for (kept.ts). */
  private upperType(abs: string, st: fs.BigIntStats): number {
    const type = Number(st.mode) & S_IFMT;
    if (type !== S_IFREG || st.size !== 0n) return type;
    return (this.store.kept.stat(abs, st)?.mode ?? type) & S_IFMT;
  }

  /** `st`: the node's upper lstat, when the caller has just taken it. */
  private entry(node: WNode, st?: fs.BigIntStats): Entry {
    node.nlookup++;
    return { ino: node.ino, generation: 0, attr: this.attr(node, st) };
  }

  private attr(node: WNode, fresh?: fs.BigIntStats): Attr {
    const a = emptyAttr();
    if (!node.upper) {
      this.stack.fillAttr(node.lower!, a);
      a.ino = this.stInoOf(node, undefined);
      return this.mapOwner(a);
    }
    const byFd = node.unlinked && node.anyFd >= 0;
    const st = fresh && !byFd ? fresh : byFd ? fs.fstatSync(node.anyFd, { bigint: true }) : fs.lstatSync(b(this.copy.abs(node)), { bigint: true });
    fillFromStats(a, st);
    if (node.kept === undefined) node.kept = this.store.kept.stat(byFd ? node.anyFd : this.copy.abs(node), st) ?? null;
    if (node.kept) ({ uid: a.uid, gid: a.gid, mode: a.mode, rdev: a.rdev } = node.kept);
    a.ino = this.stInoOf(node, st);
    if (node.indexed) a.nlink = node.unlinked ? 0 : this.copy.nlink(node);
    return this.mapOwner(a);
  }

  private mapOwner(a: Attr): Attr {
    if (this.opts.owners === 'mapped') {
      a.uid = UID;
      a.gid = GID;
    }
    return a;
  }

  /** Has this inode an upper copy? (diff descends only there) */
  isUpper(ino: number): boolean {
    return this.node(ino).upper;
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
    const dir = this.dirNode(parent);
    const f = this.find(dir, name);
    if (!f) throw fsError('ENOENT');
    return this.entry(this.nodeFor(dir, name, f));
  }

  forget(ino: number, nlookup: number): void {
    const n = this.nodes.get(ino);
    if (!n || n === this.root) return;
    n.nlookup -= nlookup;
    if (n.nlookup <= 0 && n.opens === 0) this.nodes.delete(ino);
  }

  getattr(ino: number): Attr {
    return this.attr(this.node(ino));
  }

  readlink(ino: number): string {
    const n = this.node(ino);
    if (n.type !== S_IFLNK) throw fsError('EINVAL');
    if (!n.upper) return this.stack.readlink(n.lower!);
    return (fs.readlinkSync(b(this.copy.abs(n)), { encoding: 'buffer' }) as Buffer).toString('latin1');
  }

  opendir(ino: number): number {
    const dir = this.dirNode(ino);
    const fh = this.nextFh++;
    this.dirs.set(fh, this.listing(dir));
    return fh;
  }

  /** A snapshot of the directory's upper entries over its lower stream. */
  private listing(dir: WNode): MergedListing {
    const upper: UpperEntry[] = [];
    const hides = new Set<string>();
    if (dir.upper) {
      const dirAbs = this.store.abs(dir.relPath());
      for (const e of this.store.list(dirAbs)) {
        hides.add(e.name);
        if (e.whiteout || !e.st) continue;
        const abs = `${dirAbs}/${e.name}`;
        const stored = this.store.storedIno(abs, e.st);
        upper.push({ name: e.name, ino: stored === undefined || isNameNode(stored) ? UPPER_BASE + Number(e.st.ino) : stored, mode: this.upperType(abs, e.st) });
      }
      upper.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
    }
    return new MergedListing(this.stack, dir.lower, upper, hides);
  }

  *readdir(ino: number, fh: number, offset: number): Iterable<DirEntry> {
    let listing = this.dirs.get(fh);
    if (!listing) throw fsError('EBADF');
    if (offset === 0) {
      // rewinddir: show the directory as it is now.
      listing = this.listing(this.dirNode(ino));
      this.dirs.set(fh, listing);
      yield { name: '.', ino: this.node(ino).ino, mode: S_IFDIR, next: 1 }; // its inode number, not the kernel's nodeid
    }
    if (offset <= 1) yield { name: '..', ino: this.node(ino).parent?.ino ?? ROOT_INO, mode: S_IFDIR, next: 2 };
    for (listing.seek(Math.max(0, offset - 2)); ; ) {
      const e = listing.next();
      if (!e) return;
      yield { name: e.name, ino: e.ino, mode: e.mode, next: e.position + 3 };
    }
  }

  releasedir(_ino: number, fh: number): void {
    this.dirs.delete(fh);
  }

  open(ino: number, flags: number): OpenReply {
    const node = this.node(ino);
    if (node.type === S_IFDIR) throw fsError('EISDIR');
    const writing = (flags & O_ACCMODE) !== O_RDONLY || (flags & O_TRUNC) !== 0;
    if (writing && !node.upper) this.copy.file(node, flags & O_TRUNC ? 'none' : this.space.copyOnChange);
    let fd = -1;
    if (node.upper) fd = this.openUpper(node, flags);
    return this.newHandle(node, fd, flags);
  }

  private openUpper(node: WNode, flags: number): number {
    const fd = fs.openSync(b(this.copy.abs(node)), flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_DIRECT));
    if (flags & O_TRUNC && node.lazy) {
      node.lazy.limit = 0;
      this.copy.saveLazy(node, fd);
    }
    return fd;
  }

  private newHandle(node: WNode, fd: number, flags: number): OpenReply {
    const fh = this.nextFh++;
    let held: [number, number] | undefined;
    if (!node.upper && node.lower && this.stack.readsByHandle(node.lower)) {
      held = [node.lower[0], node.lower[1]];
      this.stack.openFile(held);
    }
    this.handles.set(fh, { node, fd, flags, held });
    node.opens++;
    if (fd >= 0) node.anyFd = fd;
    return { fh, keepCache: true, directIo: (flags & O_DIRECT) !== 0 };
  }

  private handle(fh: number): Handle {
    const h = this.handles.get(fh);
    if (!h) throw fsError('EBADF');
    return h;
  }

  read(_ino: number, fh: number, pos: number, len: number): ReadReply | Promise<ReadReply> {
    const h = this.handle(fh);
    const node = h.node;
    if (!node.upper) return this.stack.read(node.lower!, pos, len);
    if (h.fd < 0) h.fd = this.openUpper(node, O_RDONLY); // copied up since it was opened
    const size = Number(fs.fstatSync(h.fd).size);
    const end = Math.min(size, pos + len);
    if (end <= pos) return Buffer.alloc(0);
    const out = Buffer.allocUnsafe(end - pos);
    const runs = node.lazy ? node.lazy.runs(pos, end) : [{ lower: false, pos, len: end - pos }];
    for (const r of runs) {
      const at = r.pos - pos;
      if (r.lower) {
        const n = this.stack.readInto(node.lower!, r.pos, out, at, r.len);
        if (n < r.len) out.fill(0, at + n, at + r.len);
      } else {
        let done = 0;
        while (done < r.len) {
          const n = fs.readSync(h.fd, out, at + done, r.len - done, r.pos + done);
          if (n === 0) break;
          done += n;
        }
        if (done < r.len) out.fill(0, at + done, at + r.len);
      }
    }
    return out;
  }

  release(_ino: number, fh: number): void {
    const h = this.handles.get(fh);
    if (!h) return;
    this.handles.delete(fh);
    if (h.fd >= 0) fs.closeSync(h.fd);
    if (h.held) this.stack.closeFile(h.held);
    const node = h.node;
    node.opens--;
    if (node.anyFd === h.fd) node.anyFd = -1;
    if (node.opens === 0 && node.nlookup <= 0 && node !== this.root) this.nodes.delete(node.ino);
  }

  statfs(): Statfs {
    const s = fs.statfsSync(b(this.store.abs('')));
    const { blocks, bfree, bavail } = this.space.shown(s); // a limited instance: its limit and what is left of it
    return { bsize: s.bsize, frsize: s.bsize, blocks, bfree, bavail, files: s.files, ffree: s.ffree, favail: s.ffree, namemax: NAME_MAX };
  }

  getxattr(ino: number, name: string): Buffer {
    const n = this.node(ino);
    if (isInternalXattr(name)) throw fsError('ENODATA');
    let v: Buffer | null;
    if (n.upper) {
      const abs = this.copy.abs(n);
      const kept = this.store.kept.getX(abs, this.realKind(n, abs), name);
      v = kept !== undefined ? kept : this.store.getX(abs, name);
    } else {
      v = this.stack.getxattr(n.lower!, name) ?? null;
    }
    if (v === null) throw fsError('ENODATA');
    return v;
  }

  listxattr(ino: number): string[] {
    const n = this.node(ino);
    if (!n.upper) return this.stack.xattrNames(n.lower!).filter((x) => !isInternalXattr(x));
    const abs = this.copy.abs(n);
    const real = this.store.sys.listxattr(abs);
    const kept = this.store.kept.listX(this.realKind(n, abs), real);
    return [...new Set([...real.filter((x) => !isInternalXattr(x)), ...kept])];
  }

  /** Type and upper inode of a node's real object (a file for a device stand-in); lstat only when it matters. */
  private realKind(n: WNode, abs: string): { mode: number | bigint; ino: number | bigint } {
    if (n.type === S_IFREG || n.type === S_IFDIR) return { mode: n.type, ino: 0 };
    return fs.lstatSync(b(abs), { bigint: true });
  }

  // ---- WritableFileSystem: data -------------------------------------------------------------

  write(_ino: number, fh: number, data: Buffer, pos: number): number {
    const h = this.handle(fh);
    if (h.fd < 0) throw fsError('EBADF');
    const node = h.node;
    const append = (h.flags & O_APPEND) !== 0;
    const before = this.space.reserveWrite(h.fd, node.lazy, append, pos, data.length);
    // Chunks the write covers only in part get their lower bytes first; the ones it covers whole
    // are marked present only once its bytes are in (a crash in between shows the old chunk).
    const covered = node.lazy && !append ? this.prepareLazyWrite(node, h.fd, pos, pos + data.length) : [];
    let done = 0;
    try {
      while (done < data.length) done += fs.writeSync(h.fd, data, done, data.length - done, pos + done);
    } catch (err) {
      if (done === 0 || covered.length) throw err; // ENOSPC half-way: report what was written, unless a chunk is half new
    } finally {
      this.space.settle(h.fd, before);
    }
    if (covered.length && node.lazy) this.copy.markPresent(node, h.fd, covered);
    return done;
  }
  /** Fill the chunks [pos, end) touches in part; returns the ones it covers whole, still to be marked. */
  private prepareLazyWrite(node: WNode, fd: number, pos: number, end: number): number[] {
    const lazy = node.lazy!;
    const touched = lazy.missing(pos, end);
    if (touched.length === 0) return [];
    const whole = (c: number): boolean => pos <= c * CHUNK && end >= Math.min((c + 1) * CHUNK, lazy.limit);
    this.copy.fill(node, fd, touched.filter((c) => !whole(c)));
    return touched.filter(whole);
  }

  fsync(_ino: number, fh: number, datasync: boolean): Promise<void> | void {
    const h = this.handle(fh);
    if (h.fd < 0 && !h.node.upper) return; // read from the lower only: nothing of it was written
    if (h.fd < 0) h.fd = this.openUpper(h.node, O_RDONLY); // copied up through another handle: sync that file
    return new Promise((res, rej) => (datasync ? fs.fdatasync : fs.fsync)(h.fd, (err) => (err ? rej(err) : res())));
  }

  fsyncdir(ino: number): Promise<void> | void {
    const n = this.dirNode(ino);
    if (!n.upper) return;
    const fd = fs.openSync(b(this.copy.abs(n)), 'r');
    return new Promise((res, rej) =>
      fs.fsync(fd, (err) => {
        fs.closeSync(fd);
        if (err) rej(err);
        else res();
      }),
    );
  }

  fallocate(_ino: number, fh: number, mode: number, pos: number, len: number): void {
    const h = this.handle(fh);
    if (h.fd < 0) throw fsError('EBADF');
    const before = this.space.allocated(h.fd);
    this.space.reserve(len + (h.node.lazy ? h.node.lazy.missing(pos, pos + len).length * CHUNK : 0));
    if (h.node.lazy) this.copy.fill(h.node, h.fd, h.node.lazy.missing(pos, pos + len));
    this.store.sys.fallocate(h.fd, mode, pos, len);
    this.space.settle(h.fd, before);
  }

  // ---- WritableFileSystem: metadata ---------------------------------------------------------

  setattr(ino: number, set: SetAttr, fh: number | undefined, _caller?: Caller): Attr {
    const node = this.node(ino);
    if (!node.upper) {
      if (node.type === S_IFDIR) this.copy.dir(node);
      else this.copy.file(node, set.size === 0 ? 'none' : this.space.copyOnChange);
    }
    const h = fh !== undefined ? this.handles.get(fh) : undefined;
    const fd = h && h.fd >= 0 ? h.fd : node.unlinked ? node.anyFd : -1;
    const abs = this.copy.abs(node);
    if (this.store.kept.active && (set.uid !== undefined || set.gid !== undefined || set.mode !== undefined)) {
      this.keepOwnerMode(node, fd >= 0 ? fd : abs, set);
    } else {
      if (set.uid !== undefined || set.gid !== undefined) {
        if (fd >= 0) fs.fchownSync(fd, set.uid ?? -1, set.gid ?? -1);
        else fs.lchownSync(b(abs), set.uid ?? -1, set.gid ?? -1);
      }
      if (set.mode !== undefined && node.type !== S_IFLNK) {
        if (fd >= 0) fs.fchmodSync(fd, set.mode & 0o7777);
        else fs.chmodSync(b(abs), set.mode & 0o7777);
      }
    }
    if (set.size !== undefined) this.truncate(node, fd, abs, set.size);
    if (set.atime !== undefined || set.mtime !== undefined) {
      const [as, an] = timeArgs(set.atime);
      const [ms, mn] = timeArgs(set.mtime);
      this.store.sys.utimens(fd >= 0 ? fd : abs, as, an, ms, mn);
    }
    return this.attr(node);
  }

  /** chown and chmod where the host refuses them: kept (kept.ts), with the kernel's rule that chown clears set-id bits. */
  private keepOwnerMode(node: WNode, target: string | number, set: SetAttr): void {
    const st = typeof target === 'number' ? fs.fstatSync(target) : fs.lstatSync(b(target));
    const cur: KeptStat = this.store.kept.stat(target, st) ?? { uid: st.uid, gid: st.gid, mode: st.mode, rdev: st.rdev };
    const want = { ...cur };
    if (set.uid !== undefined || set.gid !== undefined) {
      want.uid = set.uid ?? cur.uid;
      want.gid = set.gid ?? cur.gid;
      if (node.type !== S_IFDIR) want.mode &= want.mode & 0o010 ? ~0o6000 : ~0o4000;
    }
    if (set.mode !== undefined && node.type !== S_IFLNK) want.mode = (cur.mode & S_IFMT) | (set.mode & 0o7777);
    this.store.kept.setStat(target, want);
    node.kept = undefined;
  }

  private truncate(node: WNode, fd: number, abs: string, size: number): void {
    if (node.type === S_IFDIR) throw fsError('EISDIR');
    const own = fd < 0 ? fs.openSync(b(abs), 'r+') : fd;
    const before = this.space.allocated(own);
    try {
      // Bytes past the new size never come from the lower again; the chunk it cuts keeps its head.
      // The file shrinks before the map's limit does: a crash in between leaves a file shorter than
      // its limit, which loading clamps (LazyMap.clamp).
      const shrinkLazy = node.lazy !== null && size < node.lazy.limit;
      if (shrinkLazy && size % CHUNK !== 0) {
        this.space.reserve(CHUNK); // the cut chunk keeps its head
        this.copy.fill(node, own, node.lazy!.missing(size, size + 1));
      }
      fs.ftruncateSync(own, size);
      if (shrinkLazy && node.lazy) {
        node.lazy.limit = size;
        this.copy.saveLazy(node, own);
      }
      this.space.settle(own, before);
    } finally {
      if (own !== fd) fs.closeSync(own);
    }
  }

  setxattr(ino: number, name: string, value: Buffer, flags: number): void {
    if (isInternalXattr(name)) throw fsError('EPERM');
    const node = this.materialize(this.node(ino));
    this.store.setXattr(this.copy.abs(node), name, value, flags);
  }

  removexattr(ino: number, name: string): void {
    if (isInternalXattr(name)) throw fsError('ENODATA');
    const node = this.node(ino);
    if (!node.upper && this.stack.getxattr(node.lower!, name) === undefined) throw fsError('ENODATA');
    const abs = this.copy.abs(this.materialize(node));
    if (!this.store.kept.removeX(abs, name)) this.store.sys.removexattr(abs, name);
  }

  /** Give a node an upper object (lazily for big files), without changing what it shows. */
  private materialize(node: WNode): WNode {
    if (!node.upper) {
      if (node.type === S_IFDIR) this.copy.dir(node);
      else this.copy.file(node, this.space.copyOnChange);
    }
    return node;
  }

  // ---- WritableFileSystem: namespace --------------------------------------------------------

  /**
   * Create a new entry: build it under a temp name (owned by the caller), then rename it into
   * place, over a whiteout if one is there. A directory placed where a lower directory was
   * deleted is opaque, so nothing below shows through.
   */
  private createEntry(parent: number, name: string, caller: Caller, make: (tmp: string) => void, isDir: boolean, mode: number, rdev = 0): { node: WNode; st: fs.BigIntStats } {
    const dir = this.dirNode(parent);
    if (this.find(dir, name)) throw fsError('EEXIST');
    const abs = this.childAbs(dir, name);
    this.store.checkFits(abs);
    this.copy.dir(dir);
    const dirAbs = this.store.abs(dir.relPath());
    const tmp = this.store.tmp();
    make(tmp);
    const dirSt = fs.lstatSync(b(dirAbs));
    const dirKept = this.store.kept.stat(dirAbs, dirSt);
    const [dirMode, dirGid] = dirKept ? [dirKept.mode, dirKept.gid] : [dirSt.mode, dirSt.gid];
    const gid = dirMode & 0o2000 ? dirGid : caller.gid; // BSD group semantics under setgid directories
    // What the object already has: this process's uid, and its gid or a set-gid upper directory's;
    // its mode is exact (umask 0) unless it is a device (mknod) or wants set-id bits.
    const type = mode & S_IFMT;
    const made = this.umaskZero && (type === S_IFREG || type === S_IFDIR || type === S_IFLNK) ? { uid: EUID, gid: dirSt.mode & 0o2000 ? dirSt.gid : EGID } : undefined;
    this.store.own(tmp, { uid: caller.uid, gid, mode: mode | (isDir && dirMode & 0o2000 ? 0o2000 : 0), rdev }, made);
    if (isDir && this.lowerHas(dir, name)) this.store.markOpaque(tmp);
    this.placeOver(tmp, abs, isDir, dirAbs, name);
    const st = fs.lstatSync(b(abs), { bigint: true });
    // A device the host refused stands in as an empty file (kept.ts): its type is read back as usual.
    return { node: this.nodeFor(dir, name, { upper: true, abs, st, fresh: !this.store.kept.active }), st };
  }

  /** Rename a freshly built entry to `abs`, replacing a whiteout there if any. */
  private placeOver(tmp: string, abs: string, isDir: boolean, dirAbs: string, name: string): void {
    if (!this.store.whFiles) {
      // Nothing there is the common case: one rename that refuses to replace, and done.
      try {
        this.store.sys.rename2(tmp, abs, RENAME_NOREPLACE);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
    const there = this.store.lstat(abs);
    if (there && isDir) {
      this.store.sys.rename2(tmp, abs, RENAME_EXCHANGE); // a directory cannot replace a whiteout by rename
      fs.rmSync(b(tmp), { force: true });
    } else {
      fs.renameSync(b(tmp), b(abs));
    }
    if (!there && this.store.hasWhFile(dirAbs, name)) fs.rmSync(b(`${dirAbs}/.wh.${name}`), { force: true });
  }

  mkdir(parent: number, name: string, mode: number, caller: Caller): Entry {
    const c = this.createEntry(parent, name, caller, (t) => fs.mkdirSync(b(t), { mode: mode & 0o7777 }), true, S_IFDIR | (mode & 0o7777));
    return this.entry(c.node, c.st);
  }

  mknod(parent: number, name: string, mode: number, rdev: number, caller: Caller): Entry {
    return this.entry(this.createEntry(parent, name, caller, (t) => this.store.makeNode(t, mode, majorOf(rdev), minorOf(rdev)), false, mode, rdev).node);
  }

  symlink(parent: number, name: string, target: string, caller: Caller): Entry {
    const c = this.createEntry(parent, name, caller, (t) => fs.symlinkSync(b(target), b(t)), false, S_IFLNK | 0o777);
    return this.entry(c.node, c.st);
  }

  create(parent: number, name: string, mode: number, flags: number, caller: Caller): CreateReply {
    let fd = -1;
    const c = this.createEntry(parent, name, caller, (t) => (fd = fs.openSync(b(t), O_CREAT | O_EXCL | O_RDWR | (flags & O_APPEND), mode & 0o7777)), false, S_IFREG | (mode & 0o7777));
    return { entry: this.entry(c.node, c.st), open: this.newHandle(c.node, fd, flags) };
  }

  link(ino: number, newParent: number, newName: string): Entry {
    const node = this.node(ino);
    if (node.type === S_IFDIR) throw fsError('EPERM');
    const dir = this.dirNode(newParent);
    if (this.find(dir, newName)) throw fsError('EEXIST');
    this.materialize(node);
    if (!this.format.privateMetadata) return this.entry(this.plainLink(node, dir, newName));
    const wasIndexed = node.indexed;
    this.copy.index(node);
    const links = wasIndexed ? this.copy.nlink(node) : Number(fs.lstatSync(b(this.store.indexPath(node.ino))).nlink) - 1;
    this.copy.dir(dir);
    const tmp = this.store.tmp();
    fs.linkSync(b(this.store.indexPath(node.ino)), b(tmp));
    this.placeOver(tmp, this.childAbs(dir, newName), false, this.store.abs(dir.relPath()), newName);
    this.copy.setNlink(node, links + 1);
    return this.entry(node);
  }

  /** A hard link inside the upper alone, as kernel overlayfs makes it (no index to keep a count in). */
  private plainLink(node: WNode, dir: WNode, newName: string): WNode {
    this.copy.dir(dir);
    const tmp = this.store.tmp();
    fs.linkSync(b(this.copy.abs(node)), b(tmp));
    this.placeOver(tmp, this.childAbs(dir, newName), false, this.store.abs(dir.relPath()), newName);
    return node;
  }

  unlink(parent: number, name: string): void {
    const dir = this.dirNode(parent);
    const f = this.find(dir, name);
    if (!f) throw fsError('ENOENT');
    const node = this.nodeFor(dir, name, f);
    if (node.type === S_IFDIR) throw fsError('EISDIR');
    const lowerLinks = !node.upper && node.type === S_IFREG && this.format.privateMetadata ? this.copy.lowerAttr(node).nlink : 1;
    if (lowerLinks > 1) this.copy.file(node, this.space.copyOnChange); // the set's link count must live somewhere
    this.removeName(dir, name, node, f.upper ? f.abs : undefined);
  }

  /** Drop one name of a non-directory: a whiteout where a lower name shows, else a plain unlink. */
  private removeName(dir: WNode, name: string, node: WNode, upperAbs: string | undefined): void {
    this.copy.dir(dir);
    const abs = upperAbs ?? this.childAbs(dir, name);
    const present = upperAbs !== undefined || this.store.lstat(abs) !== undefined;
    if (present && node.opens === 0) this.space.release(abs);
    if (this.lowerHas(dir, name)) {
      if (present) this.store.whiteoutOver(abs, false);
      else this.store.whiteoutAt(abs);
    } else if (present) {
      fs.unlinkSync(b(abs));
    }
    if (node.indexed) {
      const left = this.copy.nlink(node) - 1;
      this.copy.setNlink(node, left);
      if (left <= 0) node.unlinked = true;
    } else {
      node.unlinked = true;
    }
  }

  rmdir(parent: number, name: string): void {
    const dir = this.dirNode(parent);
    const f = this.find(dir, name);
    if (!f) throw fsError('ENOENT');
    const node = this.nodeFor(dir, name, f);
    if (node.type !== S_IFDIR) throw fsError('ENOTDIR');
    if (!this.listing(node).isEmpty()) throw fsError('ENOTEMPTY');
    this.removeDir(dir, name, f.upper ? f.abs : undefined);
    node.unlinked = true;
  }

  /** Remove an (empty-looking) directory: its upper copy holds only whiteouts and collapses into one. */
  private removeDir(dir: WNode, name: string, upperAbs: string | undefined): void {
    this.copy.dir(dir);
    if (this.lowerHas(dir, name)) {
      if (upperAbs) this.store.whiteoutOver(upperAbs, true);
      else this.store.whiteoutAt(this.childAbs(dir, name));
    } else if (upperAbs) {
      const tmp = this.store.tmp();
      fs.renameSync(b(upperAbs), b(tmp));
      this.store.removeTree(tmp);
    }
  }

  rename(parent: number, name: string, newParent: number, newName: string, flags: number): void {
    if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) throw fsError('EINVAL');
    const dir = this.dirNode(parent);
    const to = this.dirNode(newParent);
    const found = this.find(dir, name);
    if (!found) throw fsError('ENOENT');
    if (newName.length > NAME_MAX) throw fsError('ENAMETOOLONG');
    const src = this.nodeFor(dir, name, found);
    const ft = this.find(to, newName);
    const dst = ft ? this.nodeFor(to, newName, ft) : undefined;
    if (flags & RENAME_EXCHANGE) {
      if (!dst) throw fsError('ENOENT');
      return this.exchange(dir, name, src, to, newName, dst);
    }
    if (dst) {
      if (flags & RENAME_NOREPLACE) throw fsError('EEXIST');
      if (dst === src) return; // two names of one inode: POSIX says do nothing
      if (src.type === S_IFDIR && dst.type !== S_IFDIR) throw fsError('ENOTDIR');
      if (src.type !== S_IFDIR && dst.type === S_IFDIR) throw fsError('EISDIR');
      if (dst.type === S_IFDIR && !this.listing(dst).isEmpty()) throw fsError('ENOTEMPTY');
    }
    this.materialize(src); // independent of its name before it moves
    this.copy.dir(to);
    this.nameEntry(dir, name, src);
    const srcAbs = this.childAbs(dir, name);
    const dstAbs = this.childAbs(to, newName);
    if (src.type === S_IFDIR) this.settleDir(src, srcAbs, to, newName);
    const leaveWhiteout = this.lowerHas(dir, name);
    const there = this.store.lstat(dstAbs);
    if (there && src.type !== S_IFDIR && !(dst && dst.opens > 0)) this.space.release(dstAbs);
    if (there && src.type === S_IFDIR) {
      // Over a whiteout or an emptied directory: swap, then deal with what landed at the old name.
      this.store.sys.rename2(srcAbs, dstAbs, RENAME_EXCHANGE);
      if (leaveWhiteout) {
        if (!UpperStore.isWhiteout(there)) this.store.whiteoutOver(srcAbs, Number(there.mode & 0o170000n) === S_IFDIR);
      } else {
        this.store.removeTree(srcAbs);
      }
    } else if (leaveWhiteout && this.format.whiteouts === 'chardev') {
      try {
        this.store.sys.rename2(srcAbs, dstAbs, RENAME_WHITEOUT); // atomic: moved, and a whiteout left
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL' && (err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
        fs.renameSync(b(srcAbs), b(dstAbs));
        this.store.whiteoutAt(srcAbs);
      }
    } else {
      fs.renameSync(b(srcAbs), b(dstAbs));
      if (leaveWhiteout) this.store.whiteoutAt(srcAbs);
    }
    if (dst) {
      if (dst.indexed && dst.type !== S_IFDIR) {
        const left = this.copy.nlink(dst) - 1;
        this.copy.setNlink(dst, left);
        if (left <= 0) dst.unlinked = true;
      } else {
        dst.unlinked = true;
      }
    }
    src.parent = to;
    src.name = newName;
  }

  /**
   * An upper entry for this very name of a node. A copied-up hard-link set is linked into the upper
   * under one of its names only; the others stay lower names until an operation needs them.
   */
  private nameEntry(dir: WNode, name: string, node: WNode): void {
    if (!node.indexed) return;
    const abs = this.childAbs(dir, name);
    if (this.store.lstat(abs)) return;
    this.copy.dir(dir);
    this.copy.linkName(node, dir, name);
  }

  /**
   * A directory about to live at (to, newName): it keeps its lower origin through a redirect, and
   * one with no lower origin becomes opaque where a lower directory of the new name would merge.
   */
  private settleDir(node: WNode, abs: string, to: WNode, newName: string): void {
    if (node.lower && this.store.redirectOf(abs) === undefined) {
      this.store.setRedirect(abs, '/' + this.stack.pathOf(node.lower[0], node.lower[1]).join('/'));
    }
    if (!node.lower && !this.store.isOpaque(abs)) {
      const below = to.lower ? this.stack.lookupParts(to.lower, newName) : [];
      if (this.stack.isDir(below)) this.store.markOpaque(abs);
    }
    if (this.store.storedIno(abs, fs.lstatSync(b(abs), { bigint: true })) === undefined && node.ino < UPPER_BASE) this.store.setIno(abs, node.ino, S_IFDIR);
  }

  private exchange(dir: WNode, name: string, a: WNode, to: WNode, newName: string, bNode: WNode): void {
    if (a === bNode) return;
    this.materialize(a);
    this.materialize(bNode);
    const aAbs = this.childAbs(dir, name);
    const bAbs = this.childAbs(to, newName);
    if (a.type === S_IFDIR) this.settleDir(a, aAbs, to, newName);
    if (bNode.type === S_IFDIR) this.settleDir(bNode, bAbs, dir, name);
    this.nameEntry(dir, name, a);
    this.nameEntry(to, newName, bNode);
    this.store.sys.rename2(aAbs, bAbs, RENAME_EXCHANGE);
    [a.parent, a.name, bNode.parent, bNode.name] = [to, newName, dir, name];
  }

  destroy(): void {
    for (const h of this.handles.values()) if (h.fd >= 0) fs.closeSync(h.fd);
    this.handles.clear();
    this.dirs.clear();
    this.stack.close();
  }
}

function fillFromStats(a: Attr, st: fs.BigIntStats): void {
  a.mode = Number(st.mode);
  a.nlink = Number(st.nlink);
  a.uid = Number(st.uid);
  a.gid = Number(st.gid);
  a.rdev = Number(st.rdev);
  a.size = Number(st.size);
  a.blocks = Number(st.blocks);
  [a.atimeSec, a.atimeNsec] = splitNs(st.atimeNs);
  [a.mtimeSec, a.mtimeNsec] = splitNs(st.mtimeNs);
  [a.ctimeSec, a.ctimeNsec] = splitNs(st.ctimeNs);
}

function timeArgs(t: SetAttr['atime']): [number, number] {
  if (t === undefined) return [0, UTIME_OMIT];
  if (t === 'now') return [0, UTIME_NOW];
  return [t.sec, t.nsec];
}
