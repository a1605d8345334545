// The upper and work directories of an instance, written as upper-format.ts describes. Every upper
// operation of an instance goes through UpperStore (new objects through its `make`, new-entry.ts),
// and whiteouts (both encodings) are decoded here only: above it, a name is an object, hidden, or
// absent. Paths here are byte strings: absolute, or relative to the upper root ('' is the root).
// The absolute paths abs() gives are for immediate use only: deep ones go through a descriptor of
// their directory (dir-fds.ts), so the only limit on a path is the one the kernel applies to the
// caller's own.
import * as fs from 'node:fs';
import { KIND_WHITEOUT, loadSys, RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT, UTIME_NOW, type Sys } from '../native/sys.js';
import { Kept } from './kept.js';
import { EntryMaker } from './new-entry.js';
import { removeTree } from '../util/remove-tree.js';
import { DirFds } from '../util/dir-fds.js';
import { S_IFDIR, S_IFMT, S_IFREG } from '../vfs/mode.js';
import { b, toByteString } from '../util/latin1.js';
import { splitNs } from '../util/attr.js';
import { Whiteouts, isWhiteout } from './whiteouts.js';
import { T_OPAQUE, T_REDIRECT, TARSTACK_FORMAT, X_INO, isInternalXattr, X_INO_LINK, X_OPAQUE, X_REDIRECT, userXattrOk, type UpperFormat } from './upper-format.js';

export { TARSTACK_FORMAT, X_LAZY, X_NLINK, isInternalXattr, prepareUpperRoot, type UpperFormat } from './upper-format.js';

/** What the upper holds at a name: `upper: true` tells it from a lower find. `fresh`: just made by this daemon, none of tarstack's metadata on it yet. */
export interface UpperFound {
  upper: true;
  abs: string;
  st: fs.BigIntStats;
  fresh?: boolean;
  /** made just now (an entry-making call): its times are its birth's */
  born?: boolean;
}

/** A name the upper hides: a whiteout, or a name its format reserves (`.wh.NAME` files). */
export const HIDDEN: unique symbol = Symbol('hidden');

export class UpperStore {
  readonly sys: Sys;
  /** Absolute roots as byte strings (latin1 of their UTF-8 bytes). */
  private readonly upper: string;
  private readonly work: string;
  /** Descriptors of deep upper directories (dir-fds.ts). */
  private readonly dirs: DirFds;
  private tmpSeq = 0;
  /** Owners, modes, devices and xattrs the host refuses, kept by tarstack. */
  readonly kept: Kept;
  /** New objects, made with their owner and mode (new-entry.ts). */
  readonly make: EntryMaker;

  /**
   * Inode numbers copied-up entries keep when no private xattr may hold them (this mount only), by
   * upper st_ino and birth time: the upper filesystem reuses a deleted object's number, never its
   * birth time (where it keeps none, 0, the number alone decides).
   */
  private readonly inoByUpper = new Map<string, number>();
  private static readonly upperKey = (st: fs.BigIntStats): string => `${st.ino}:${st.birthtimeNs}`;

  /**
   * `readOnly`: only look (another process may be serving this upper). `keepRefused`: see kept.ts.
   * `whiteoutFiles`: the upper may hold `.wh.NAME` whiteout files (an upper another tool wrote).
   */
  constructor(upperDir: string, workDir: string, opts: { readOnly?: boolean; format?: UpperFormat; keepRefused?: boolean; whiteoutFiles?: boolean } = {}) {
    const { readOnly = false, format = TARSTACK_FORMAT, keepRefused = false } = opts;
    this.format = format;
    this.sys = loadSys();
    this.upper = toByteString(upperDir);
    this.work = toByteString(workDir);
    this.dirs = new DirFds(this.upper);
    // fuse-overlayfs writes `.wh.` files where mknod is refused: read them when told, or when writing them.
    this.whiteouts = new Whiteouts(this.sys, format.whiteouts, format.whiteouts === 'files' || !!opts.whiteoutFiles, () => this.tmp(), `${this.work}/tmp/whiteout`);
    this.kept = new Kept(this.sys, this.work, () => this.tmp(), keepRefused);
    this.make = new EntryMaker(this, keepRefused);
    if (readOnly) return;
    for (const d of format.privateMetadata ? ['tmp', 'index'] : ['tmp']) fs.mkdirSync(b(`${this.work}/${d}`), { recursive: true, mode: 0o700 });
    // Leftovers of a crash: temp files were never visible, so they simply go.
    removeTree(b(`${this.work}/tmp`));
    fs.mkdirSync(b(`${this.work}/tmp`), { mode: 0o700 });
  }

  /**
   * A byte-string path of an upper-relative path that the kernel accepts at any depth and that
   * leaves room for one more name: absolute, or through a descriptor of its directory (dir-fds.ts).
   * Use it at once; never keep it.
   */
  abs(rel: string): string {
    return this.dirs.path(rel);
  }

  /** Descriptors this store holds (of deep directories) are closed. */
  close(): void {
    this.dirs.close();
  }

  /** A fresh name in the work dir (same filesystem as the upper, so rename is atomic). */
  tmp(): string {
    return `${this.work}/tmp/${process.pid}.${++this.tmpSeq}`;
  }

  /** Where a copied-up lower hard-link set lives, shared by all its names. */
  indexPath(ino: number): string {
    return `${this.work}/index/${ino}`;
  }

  /** Absolute path of a work-dir entry tarstack keeps (tarstack's format only). */
  workPath(rel: string): string {
    return `${this.work}/${rel}`;
  }

  /** Inode numbers with a copy in the hard-link index. */
  indexed(): number[] {
    try {
      return fs.readdirSync(b(`${this.work}/index`), { encoding: 'buffer' }).map((n) => Number(n.toString('latin1'))).filter(Number.isFinite);
    } catch {
      return [];
    }
  }

  lstat(absPath: string): fs.BigIntStats | undefined {
    return fs.lstatSync(b(absPath), { bigint: true, throwIfNoEntry: false });
  }

  readonly format: UpperFormat;
  /** Whiteouts written and read (whiteouts.ts). */
  private readonly whiteouts: Whiteouts;

  /** The upper may hold `.wh.NAME` whiteout files, so a name may be taken by one. */
  get readsWhiteoutFiles(): boolean {
    return this.whiteouts.readsFiles;
  }

  removeTree(absPath: string): void {
    removeTree(b(absPath));
  }

  // ---- metadata: the xattrs overlayfs and tarstack write, and the user's xattrs -------------

  getX(absPath: string, name: string): Buffer | null {
    return this.sys.getxattr(absPath, name);
  }

  setX(target: string | number, name: string, value: string | Buffer): void {
    this.sys.setxattr(target, name, typeof value === 'string' ? b(value) : value, 0);
  }

  private readonly canTrust = process.getuid?.() === 0;

  /**
   * A standard upper may come from kernel overlayfs, fuse-overlayfs or tarstack, so both namespaces
   * are read (trusted.* by root only); a tarstack instance's own upper holds user.* alone.
   */
  private get readTrusted(): boolean {
    return this.canTrust && !this.format.privateMetadata;
  }

  isOpaque(absPath: string): boolean {
    return this.getX(absPath, X_OPAQUE)?.toString('latin1') === 'y' || (this.readTrusted && this.getX(absPath, T_OPAQUE)?.toString('latin1') === 'y');
  }

  redirectOf(absPath: string): string | undefined {
    return (this.getX(absPath, X_REDIRECT) ?? (this.readTrusted ? this.getX(absPath, T_REDIRECT) : null))?.toString('latin1');
  }

  markOpaque(target: string | number): void {
    this.setX(target, this.format.xattrs === 'trusted' ? T_OPAQUE : X_OPAQUE, 'y');
  }

  setRedirect(target: string, lowerPath: string): void {
    this.setX(target, this.format.xattrs === 'trusted' ? T_REDIRECT : X_REDIRECT, lowerPath);
  }

  /**
   * The inode number an entry keeps through copy-up. Linux allows user.* xattrs on regular files
   * and directories only, so symlinks, fifos and devices carry it in trusted.* (root only; an
   * ordinary user's copies of those get a new number).
   */
  storedIno(absPath: string, st: fs.BigIntStats): number | undefined {
    if (!this.format.privateMetadata) return this.inoByUpper.get(UpperStore.upperKey(st));
    const type = Number(st.mode) & S_IFMT;
    const v = userXattrOk(type) ? this.getX(absPath, X_INO) : this.canTrust ? this.getX(absPath, X_INO_LINK) : null;
    return v ? Number(v.toString('latin1')) : userXattrOk(type) ? undefined : this.kept.ino(st.ino);
  }

  /** Stores an object's inode number; true when that changed the object (an xattr on it: its ctime moved). */
  setIno(target: string | number, ino: number, type: number): boolean {
    if (!this.format.privateMetadata) {
      this.inoByUpper.set(UpperStore.upperKey(typeof target === 'number' ? fs.fstatSync(target, { bigint: true }) : fs.lstatSync(b(target), { bigint: true })), ino);
      return false;
    }
    if (userXattrOk(type)) this.setX(target, X_INO, String(ino));
    else if (this.canTrust) this.setX(target, X_INO_LINK, String(ino));
    else {
      this.kept.setIno(target, ino);
      return false;
    }
    return true;
  }

  /** A new object's atime, mtime and ctime one time again (now), after a change of tarstack's own made just after its birth. */
  restamp(abs: string): void {
    this.sys.utimens(abs, 0, UTIME_NOW, 0, UTIME_NOW);
  }

  /** An xattr's value, real or kept (kept.ts); null when unset. `type`: the object's, which spares files and directories an lstat. */
  getXattr(absPath: string, type: number, name: string): Buffer | null {
    const kept = this.kept.getX(absPath, this.kindOf(absPath, type), name);
    return kept !== undefined ? kept : this.getX(absPath, name);
  }

  /** The names of the xattrs a user sees, real and kept. */
  listXattr(absPath: string, type: number): string[] {
    const real = this.sys.listxattr(absPath);
    const kept = this.kept.listX(this.kindOf(absPath, type), real);
    return [...new Set([...real.filter((x) => !isInternalXattr(x)), ...kept])];
  }

  removeXattr(absPath: string, name: string): void {
    if (!this.kept.removeX(absPath, name)) this.sys.removexattr(absPath, name);
  }

  /** Type and upper inode of an object (a file for a device stand-in); lstat only when it matters. */
  private kindOf(absPath: string, type: number): { mode: number | bigint; ino: number | bigint } {
    if (type === S_IFREG || type === S_IFDIR) return { mode: type, ino: 0 };
    return this.stat(absPath);
  }

  /** Set an xattr where it can live: the real object, or tarstack's kept metadata when the host refuses it. */
  setXattr(target: string | number, name: string, value: Buffer, flags: number): void {
    if (!this.kept.setX(target, name, value, flags)) this.sys.setxattr(target, name, value, flags);
  }

  // ---- names: what the upper shows, and changes to its entries -------------------------------

  /**
   * What the upper shows at `name` in directory `dirRel` (null: the directory has no upper copy):
   * the object, HIDDEN (a whiteout, or a `.wh.` name, which is format, never a name), or undefined:
   * nothing, so the lower layers decide.
   */
  find(dirRel: string | null, name: string): UpperFound | typeof HIDDEN | undefined {
    if (this.whiteouts.reserved(name)) return HIDDEN;
    if (dirRel === null) return undefined;
    const abs = this.abs(dirRel === '' ? name : `${dirRel}/${name}`);
    const st = this.lstat(abs);
    if (st) return isWhiteout(st) ? HIDDEN : { upper: true, abs, st };
    return this.whiteouts.hasFile(abs) ? HIDDEN : undefined;
  }

  /** Names in an upper directory with their lstat, whiteouts marked; `.wh.` names mean whiteouts. */
  list(dirAbs: string): Array<{ name: string; st: fs.BigIntStats | undefined; whiteout: boolean }> {
    let names: Buffer[];
    try {
      names = fs.readdirSync(b(dirAbs), { encoding: 'buffer' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: Array<{ name: string; st: fs.BigIntStats | undefined; whiteout: boolean }> = [];
    for (const raw of names) {
      const name = raw.toString('latin1');
      const hidden = Whiteouts.decode(name);
      if (hidden !== undefined) {
        if (hidden !== null) out.push({ name: hidden, st: undefined, whiteout: true });
        continue;
      }
      const st = this.lstat(`${dirAbs}/${name}`);
      if (!st) continue; // removed meanwhile
      out.push({ name, st, whiteout: isWhiteout(st) });
    }
    return out;
  }

  /**
   * The names an upper directory hides when it holds whiteouts only (rmdir's test); undefined as
   * soon as one entry would show. No stat but of character devices (tree.c entryKinds).
   */
  hiddenOnly(dirAbs: string): Set<string> | undefined {
    let kinds: Array<string | number>;
    try {
      kinds = this.sys.entryKinds(b(dirAbs));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Set();
      throw err;
    }
    const hides = new Set<string>();
    for (let i = 0; i < kinds.length; i += 2) {
      const name = kinds[i] as string;
      const hidden = Whiteouts.decode(name);
      if (hidden === undefined && kinds[i + 1] !== KIND_WHITEOUT) return undefined;
      if (hidden !== null) hides.add(hidden ?? name);
    }
    return hides;
  }

  /** Put a freshly built entry `tmp` at `abs`, replacing a whiteout there if any. */
  place(tmp: string, abs: string, isDir: boolean): void {
    if (!this.whiteouts.readsFiles) {
      // Nothing there is the common case: one rename that refuses to replace, and done.
      try {
        this.sys.rename2(tmp, abs, RENAME_NOREPLACE);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
    const there = this.lstat(abs);
    if (there && isDir) {
      this.sys.rename2(tmp, abs, RENAME_EXCHANGE);
      this.moved(abs); // a directory cannot replace a whiteout by rename
      fs.rmSync(b(tmp), { force: true });
    } else {
      fs.renameSync(b(tmp), b(abs));
    }
    if (!there && this.whiteouts.hasFile(abs)) this.whiteouts.dropFile(abs);
  }

  /** A new name `abs` for the object at `target` (a hard link), placed like a new entry. */
  placeLink(target: string, abs: string): void {
    const tmp = this.tmp();
    fs.linkSync(b(target), b(tmp));
    this.place(tmp, abs, false);
  }

  /** A hard link `abs` to `target` where nothing is. */
  hardLink(target: string, abs: string): void {
    fs.linkSync(b(target), b(abs));
  }

  rename(from: string, to: string): void {
    fs.renameSync(b(from), b(to));
    this.moved(from, to);
  }

  /** Entries at `a` and `b` were renamed or removed: descriptors of directories there would follow them. */
  private moved(a: string, b_?: string): void {
    this.dirs.forget(a);
    if (b_ !== undefined) this.dirs.forget(b_);
  }

  /** Remove a non-directory if it is there. */
  removeIfThere(absPath: string): void {
    fs.rmSync(b(absPath), { force: true });
  }

  /**
   * Rename `srcAbs` to `dstAbs`, where `there` (its lstat) may lie: a whiteout or an emptied
   * directory when the source is a directory. `leaveWhiteout`: a lower name shows at the source, so
   * a whiteout takes its place (atomically where the whiteout format allows).
   */
  move(srcAbs: string, dstAbs: string, there: fs.BigIntStats | undefined, isDir: boolean, leaveWhiteout: boolean): void {
    if (there && isDir) {
      // Over a whiteout or an emptied directory: swap, then deal with what landed at the old name.
      this.sys.rename2(srcAbs, dstAbs, RENAME_EXCHANGE);
      this.moved(srcAbs, dstAbs);
      if (leaveWhiteout) {
        if (!isWhiteout(there)) this.whiteouts.over(srcAbs, Number(there.mode & 0o170000n) === S_IFDIR);
      } else {
        // Aside first: the work dir's short path is one rm(1) can reach too, at any depth below.
        const tmp = this.tmp();
        fs.renameSync(b(srcAbs), b(tmp));
        this.removeTree(tmp);
      }
    } else if (leaveWhiteout && this.whiteouts.atomicOnRename) {
      try {
        this.sys.rename2(srcAbs, dstAbs, RENAME_WHITEOUT); // atomic: moved, and a whiteout left
        if (isDir) this.moved(srcAbs, dstAbs);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL' && (err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
        fs.renameSync(b(srcAbs), b(dstAbs));
        if (isDir) this.moved(srcAbs, dstAbs);
        this.whiteouts.at(srcAbs);
      }
    } else {
      fs.renameSync(b(srcAbs), b(dstAbs));
      if (isDir) this.moved(srcAbs, dstAbs);
      if (leaveWhiteout) this.whiteouts.at(srcAbs);
    }
  }

  /** Swap two entries (RENAME_EXCHANGE). */
  exchange(aAbs: string, bAbs: string): void {
    this.sys.rename2(aAbs, bAbs, RENAME_EXCHANGE);
    this.moved(aAbs, bAbs);
  }

  /**
   * Remove the entry at `absPath` (`present`: there is one; a directory holds only whiteouts), and
   * where a lower name shows (`leaveWhiteout`) leave a whiteout. A directory is renamed into the
   * work dir first, so its name goes at once.
   */
  remove(absPath: string, present: boolean, isDir: boolean, leaveWhiteout: boolean): void {
    if (present && isDir) this.moved(absPath);
    if (leaveWhiteout) {
      if (present) this.whiteouts.over(absPath, isDir);
      else this.whiteouts.at(absPath);
    } else if (present && isDir) {
      const tmp = this.tmp();
      fs.renameSync(b(absPath), b(tmp));
      this.removeTree(tmp);
    } else if (present) {
      fs.unlinkSync(b(absPath));
    }
  }

  /**
   * Put the entry `place` makes into directory `dirAbs` without changing the directory's times: a
   * copy-up is not a change of the directory (kernel overlayfs restores them too).
   */
  keepingTimes(dirAbs: string, place: () => void): void {
    const st = fs.lstatSync(b(dirAbs), { bigint: true });
    place();
    const [as, an] = splitNs(st.atimeNs);
    const [ms, mn] = splitNs(st.mtimeNs);
    this.sys.utimens(dirAbs, as, an, ms, mn);
  }

  /** lstat (a path) or fstat (a descriptor) of an object that must exist. */
  stat(target: string | number): fs.BigIntStats {
    return typeof target === 'number' ? fs.fstatSync(target, { bigint: true }) : fs.lstatSync(b(target), { bigint: true });
  }

  open(absPath: string, flags: number): number {
    return fs.openSync(b(absPath), flags);
  }

  readlink(absPath: string): string {
    return (fs.readlinkSync(b(absPath), { encoding: 'buffer' }) as Buffer).toString('latin1');
  }

  chown(target: string | number, uid: number, gid: number): void {
    if (typeof target === 'number') fs.fchownSync(target, uid, gid);
    else fs.lchownSync(b(target), uid, gid);
  }

  chmod(target: string | number, mode: number): void {
    if (typeof target === 'number') fs.fchmodSync(target, mode & 0o7777);
    else fs.chmodSync(b(target), mode & 0o7777);
  }

  statfs(): fs.StatsFs {
    return fs.statfsSync(b(this.upper));
  }

  /** The type an upper object shows: its own, or the device an empty file stands in for (kept.ts). */
  shownType(absPath: string, st: fs.BigIntStats): number {
    const type = Number(st.mode) & S_IFMT;
    if (type !== S_IFREG || st.size !== 0n) return type;
    return (this.kept.stat(absPath, st)?.mode ?? type) & S_IFMT;
  }
}
