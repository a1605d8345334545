// A plain directory served as a read-only layer, never modified and never scanned whole: a directory
// is listed (and its children numbered, contiguously, in name-byte order) on first use, a child is
// lstat'ed on first need. Whiteouts decode here: char device 0/0 and `.wh.NAME` hide NAME; opaque is
// trusted.overlay.opaque or user.overlay.opaque = "y", or a `.wh..wh..opq` entry (overlayfs(5), OCI);
// a renamed directory's trusted.overlay.redirect or user.overlay.redirect is read for the stack to follow.
import * as fs from 'node:fs';
import type { Attr, FdRange } from '../vfs/api.js';
import { ABSENT, type Layer } from './layer.js';
import { loadSys, type Sys } from '../native/sys.js';
import { splitNs } from '../util/attr.js';
import { fsError } from '../util/errors.js';
import { readFully } from '../tar/reader.js';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK } from '../vfs/mode.js';
import { b, fromByteString, toByteString } from '../util/latin1.js';
import { OPAQUE_MARKER, WHITEOUT_PREFIX } from '../tar/names.js';
import { DirFds } from '../util/dir-fds.js';

/** Inode keys: st_ino below 2^32 (same device as the root) as is; others numbered from 2^32 on. */
const DIRECT_SPAN = 2 ** 32;
export const DIR_LAYER_SPAN = 2 ** 33;

const enum F {
  Whiteout = 1,
  Opaque = 2,
  OpaqueKnown = 4,
  Listed = 8,
  Statted = 16,
  RedirectKnown = 32,
}
/** Stat fields kept per node once lstat'ed (the layer never changes, so they never go stale). */
const STRIDE = 14;
const enum A { Mode, Nlink, Uid, Gid, Rdev, Size, Blocks, ASec, ANsec, MSec, MNsec, CSec, CNsec, Key }

/** xattrs that encode the overlay (whiteouts, opaque, redirects) are layer format, not file data. */
const isOverlayXattr = (n: string): boolean => n.startsWith('trusted.overlay.') || n.startsWith('user.overlay.');

export class DirLayer implements Layer {
  readonly nodeCount = DIR_LAYER_SPAN;
  readonly storageBytes: number;
  private readonly sys: Sys;
  /** Paths below the root at any depth (dir-fds.ts); names are byte strings (latin1 of their bytes). */
  private readonly fds: DirFds;
  private readonly rootDev: bigint;
  private names: string[] = [''];
  private parents: number[] = [ABSENT];
  private flags: number[] = [0];
  /** Type bits from the directory entry, before any lstat. */
  private types: number[] = [S_IFDIR];
  private first: number[] = [0];
  private counts: number[] = [0];
  private attrs = new Float64Array(STRIDE * 1024);
  /** Paths of directories relative to the root, as they are built. */
  private readonly dirPaths = new Map<number, string>();
  private readonly byKey = new Map<number, number>();
  /** Keys of inodes whose st_ino does not fit (or that sit on another device), by "dev:ino". */
  private readonly overflow = new Map<string, number>();
  private nextOverflow = DIRECT_SPAN;
  /** Open descriptors of files being read, counted by the handles that hold them. */
  private readonly held = new Map<number, { fd: number; refs: number }>();
  private readonly transient = new Map<number, number>();
  /** Redirects read so far (directories that have one). */
  private readonly redirects = new Map<number, string>();

  constructor(readonly source: string) {
    this.sys = loadSys();
    this.fds = new DirFds(toByteString(source));
    const st = fs.statSync(source, { bigint: true });
    if (!st.isDirectory()) throw new Error(`${source} is not a directory`);
    this.rootDev = st.dev;
    this.dirPaths.set(0, '');
    const s = fs.statfsSync(source);
    this.storageBytes = (s.blocks - s.bfree) * s.bsize;
  }

  // ---- structure -------------------------------------------------------------------------------

  /** A path of the node for immediate use: absolute, or through a directory descriptor when deep. */
  private pathOf(node: number): string {
    return this.fds.path(this.relPathOf(node));
  }

  private relPathOf(node: number): string {
    const d = this.dirPaths.get(node);
    if (d !== undefined) return d;
    const parent = this.relPathOf(this.parents[node]);
    const p = parent === '' ? this.names[node] : `${parent}/${this.names[node]}`;
    if (this.types[node] === S_IFDIR) this.dirPaths.set(node, p);
    return p;
  }

  /** List a directory once: its children get consecutive node ids in name-byte order. */
  private list(dir: number): void {
    if (this.flags[dir] & F.Listed) return;
    const path = this.pathOf(dir);
    let entries: fs.Dirent<Buffer>[];
    try {
      entries = fs.readdirSync(b(path), { encoding: 'buffer', withFileTypes: true });
    } catch (err) {
      throw fsError('EIO', `directory layer ${this.source}: cannot list ${fromByteString(path)}: ${(err as NodeJS.ErrnoException).code}`);
    }
    const kids = new Map<string, { type: number; whiteout: boolean }>();
    let opaque = false;
    for (const e of entries) {
      const name = e.name.toString('latin1');
      if (name.startsWith(WHITEOUT_PREFIX)) {
        if (name === OPAQUE_MARKER) opaque = true;
        else if (!name.startsWith(WHITEOUT_PREFIX + WHITEOUT_PREFIX) && !kids.has(name.slice(WHITEOUT_PREFIX.length))) kids.set(name.slice(WHITEOUT_PREFIX.length), { type: S_IFCHR, whiteout: true });
        continue; // other `.wh..wh.` names are aufs metadata
      }
      const type = direntType(e);
      let whiteout = false;
      if (type === S_IFCHR) whiteout = fs.lstatSync(b(`${path}/${name}`), { bigint: true }).rdev === 0n;
      kids.set(name, { type, whiteout }); // a real entry beats a `.wh.` of its own layer
    }
    const sorted = [...kids.keys()].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
    const start = this.names.length;
    for (const name of sorted) {
      const k = kids.get(name)!;
      this.names.push(name);
      this.parents.push(dir);
      this.flags.push(k.whiteout ? F.Whiteout : 0);
      this.types.push(k.type);
      this.first.push(0);
      this.counts.push(0);
    }
    this.first[dir] = start;
    this.counts[dir] = sorted.length;
    this.flags[dir] |= F.Listed;
    if (opaque) this.flags[dir] |= F.Opaque | F.OpaqueKnown;
  }

  lookup(dir: number, name: string): number {
    if (!this.isDir(dir)) return ABSENT;
    this.list(dir);
    let lo = this.first[dir];
    let hi = lo + this.counts[dir] - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const n = this.names[mid];
      if (n === name) return mid;
      if (n < name) lo = mid + 1;
      else hi = mid - 1;
    }
    return ABSENT;
  }

  childCount(dir: number): number {
    if (!this.isDir(dir)) return 0;
    this.list(dir);
    return this.counts[dir];
  }

  childAt(dir: number, position: number): number {
    return this.first[dir] + position;
  }

  nameOf(node: number): string {
    return this.names[node];
  }

  parentOf(node: number): number {
    return this.parents[node];
  }

  isDir(node: number): boolean {
    return this.types[node] === S_IFDIR && !(this.flags[node] & F.Whiteout);
  }

  isWhiteout(node: number): boolean {
    return (this.flags[node] & F.Whiteout) !== 0;
  }

  isOpaque(dir: number): boolean {
    const f = this.flags[dir];
    if (f & F.OpaqueKnown) return (f & F.Opaque) !== 0;
    const path = this.pathOf(dir);
    const opaque =
      ['trusted.overlay.opaque', 'user.overlay.opaque'].some((x) => this.sys.getxattr(path, x)?.toString('latin1') === 'y') ||
      (f & F.Listed ? false : fs.existsSync(b(`${path}/${OPAQUE_MARKER}`)));
    this.flags[dir] |= F.OpaqueKnown | (opaque ? F.Opaque : 0);
    return opaque;
  }

  redirectOf(dir: number): string | undefined {
    if (this.flags[dir] & F.RedirectKnown) return this.redirects.get(dir);
    this.flags[dir] |= F.RedirectKnown;
    if (!this.isDir(dir)) return undefined;
    const path = this.pathOf(dir);
    const value = this.sys.getxattr(path, 'trusted.overlay.redirect') ?? this.sys.getxattr(path, 'user.overlay.redirect');
    if (!value) return undefined;
    const redirect = value.toString('latin1');
    this.redirects.set(dir, redirect);
    return redirect;
  }

  // ---- attributes ------------------------------------------------------------------------------

  /** The node's row in `attrs`, lstat'ing it on first need. */
  private row(node: number): number {
    const at = node * STRIDE;
    if (this.flags[node] & F.Statted) return at;
    if (at + STRIDE > this.attrs.length) {
      const grown = new Float64Array(Math.max(this.attrs.length * 2, at + STRIDE));
      grown.set(this.attrs);
      this.attrs = grown;
    }
    let st: fs.BigIntStats;
    try {
      st = fs.lstatSync(b(this.pathOf(node)), { bigint: true });
    } catch (err) {
      throw fsError('EIO', `directory layer ${this.source}: ${(err as NodeJS.ErrnoException).code} on an entry listed before`);
    }
    const a = this.attrs;
    a[at + A.Mode] = Number(st.mode);
    a[at + A.Nlink] = Number(st.nlink);
    a[at + A.Uid] = Number(st.uid);
    a[at + A.Gid] = Number(st.gid);
    a[at + A.Rdev] = Number(st.rdev);
    a[at + A.Size] = Number(st.size);
    a[at + A.Blocks] = Number(st.blocks);
    [a[at + A.ASec], a[at + A.ANsec]] = splitNs(st.atimeNs);
    [a[at + A.MSec], a[at + A.MNsec]] = splitNs(st.mtimeNs);
    [a[at + A.CSec], a[at + A.CNsec]] = splitNs(st.ctimeNs);
    // Names of one file (hard links) share a key; a key stays the same across mounts when st_ino fits.
    let key: number;
    if (st.dev === this.rootDev && st.ino < BigInt(DIRECT_SPAN)) key = Number(st.ino);
    else {
      const id = `${st.dev}:${st.ino}`;
      key = this.overflow.get(id) ?? this.nextOverflow++;
      this.overflow.set(id, key);
    }
    a[at + A.Key] = key;
    if (!this.byKey.has(key)) this.byKey.set(key, node);
    this.flags[node] |= F.Statted;
    return at;
  }

  modeOf(node: number): number {
    if (this.flags[node] & F.Whiteout) return S_IFCHR;
    const at = this.row(node); // first: it may grow (replace) attrs
    return this.attrs[at + A.Mode];
  }

  inodeOf(node: number): number {
    const at = this.row(node);
    return this.attrs[at + A.Key];
  }

  nodeOfInode(key: number): number {
    return this.byKey.get(key) ?? ABSENT;
  }

  fillAttr(node: number, attr: Attr): void {
    const at = this.row(node);
    const a = this.attrs;
    attr.mode = a[at + A.Mode];
    attr.nlink = a[at + A.Nlink];
    attr.uid = a[at + A.Uid];
    attr.gid = a[at + A.Gid];
    attr.rdev = a[at + A.Rdev];
    attr.size = a[at + A.Size];
    attr.blocks = a[at + A.Blocks];
    attr.atimeSec = a[at + A.ASec];
    attr.atimeNsec = a[at + A.ANsec];
    attr.mtimeSec = a[at + A.MSec];
    attr.mtimeNsec = a[at + A.MNsec];
    attr.ctimeSec = a[at + A.CSec];
    attr.ctimeNsec = a[at + A.CNsec];
  }

  readlink(node: number): string {
    return (fs.readlinkSync(b(this.pathOf(node)), { encoding: 'buffer' }) as Buffer).toString('latin1');
  }

  xattrNames(node: number): string[] {
    return this.sys.listxattr(this.pathOf(node)).filter((n) => !isOverlayXattr(n));
  }

  getxattr(node: number, name: string): Buffer | undefined {
    if (isOverlayXattr(name)) return undefined;
    return this.sys.getxattr(this.pathOf(node), name) ?? undefined;
  }

  // ---- data ------------------------------------------------------------------------------------

  /** An open handle reads through one descriptor, kept until the last handle lets go. */
  openFile(node: number): void {
    const h = this.held.get(node);
    if (h) h.refs++;
    else this.held.set(node, { fd: this.openRaw(node), refs: 1 });
  }

  closeFile(node: number): void {
    const h = this.held.get(node);
    if (!h || --h.refs > 0) return;
    this.held.delete(node);
    fs.closeSync(h.fd);
  }

  private openRaw(node: number): number {
    return fs.openSync(b(this.pathOf(node)), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  }

  /** The file's own descriptor as the one range: the backend copies it (a file that shrank is EIO). */
  read(node: number, pos: number, len: number): FdRange[] {
    const at = this.row(node);
    const size = this.attrs[at + A.Size];
    if (pos >= size || len <= 0) return [];
    return [{ fd: this.fdFor(node), pos, len: Math.min(size, pos + len) - pos }];
  }

  readInto(node: number, pos: number, buf: Buffer, off: number, len: number): number {
    const [r] = this.read(node, pos, len);
    if (!r) return 0;
    if (readFully(r.fd, buf, r.len, r.pos, off) !== r.len) throw fsError('EIO', `${this.source}/${fromByteString(this.relPathOf(node))} is shorter than when it was listed`);
    return r.len;
  }

  /**
   * A held descriptor, or (for synchronous readers such as copy-up, which hold none) one of a few
   * recent ones; a FUSE read always comes through a handle, so a transient one is never in flight.
   */
  private fdFor(node: number): number {
    const h = this.held.get(node);
    if (h) return h.fd;
    let fd = this.transient.get(node);
    if (fd === undefined) {
      fd = this.openRaw(node);
      this.transient.set(node, fd);
      if (this.transient.size > 8) {
        const [oldest, ofd] = this.transient.entries().next().value as [number, number];
        this.transient.delete(oldest);
        fs.closeSync(ofd);
      }
    }
    return fd;
  }

  close(): void {
    for (const h of this.held.values()) fs.closeSync(h.fd);
    for (const fd of this.transient.values()) fs.closeSync(fd);
    this.held.clear();
    this.transient.clear();
    this.fds.close();
  }
}

function direntType(e: fs.Dirent<Buffer>): number {
  if (e.isDirectory()) return S_IFDIR;
  if (e.isFile()) return S_IFREG;
  if (e.isSymbolicLink()) return S_IFLNK;
  if (e.isCharacterDevice()) return S_IFCHR;
  if (e.isBlockDevice()) return S_IFBLK;
  if (e.isFIFO()) return S_IFIFO;
  if (e.isSocket()) return S_IFSOCK;
  return S_IFMT; // unknown: never a directory
}
