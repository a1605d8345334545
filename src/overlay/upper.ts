// The upper and work directories of an instance, and the on-disk conventions tarstack writes, which
// are kernel overlayfs's (userxattr flavour by default) so an upper stays readable by standard tools:
//   whiteout      a character device 0/0 named NAME (or a `.wh.NAME` file; both are read)
//   opaque dir    xattr user.overlay.opaque = "y" (or trusted.overlay.opaque in a standard upper)
//   renamed dir   xattr user.overlay.redirect = "/lower/path" of its lower origin (or trusted.…)
// plus tarstack's own, unless the format forbids private metadata: user.tarstack.ino (the inode number
// a copied-up entry keeps), user.tarstack.lazy (a lazily copied file's chunk map) and
// user.tarstack.nlink (link count of an indexed hard link); what the host refuses an ordinary user
// is kept as kept.ts describes. Paths here are byte strings relative to the upper root ('' is the root).
import * as fs from 'node:fs';
import { loadSys, RENAME_EXCHANGE, type Sys } from '../native/sys.js';
import { Kept, type KeptStat } from './kept.js';
import { removeTree } from '../util/remove-tree.js';
import { fsError } from '../util/errors.js';
import { S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../vfs/mode.js';
import { b } from '../util/latin1.js';

export const X_OPAQUE = 'user.overlay.opaque';
export const X_REDIRECT = 'user.overlay.redirect';
const T_OPAQUE = 'trusted.overlay.opaque';
const T_REDIRECT = 'trusted.overlay.redirect';
export const X_INO = 'user.tarstack.ino';
export const X_LAZY = 'user.tarstack.lazy';
export const X_NLINK = 'user.tarstack.nlink';
const X_INO_LINK = 'trusted.tarstack.ino';
/** Attribute names the user never sees or sets: they describe the overlay, not the file (user.tarstack.* includes kept.ts's). */
export const isInternalXattr = (name: string): boolean =>
  name.startsWith('user.overlay.') || name.startsWith('user.tarstack.') || name.startsWith('trusted.overlay.') || name.startsWith('trusted.tarstack.');

const WH_PREFIX = '.wh.';
const PATH_MAX = 4096;


/** What an upper written for other readers (kernel overlayfs, containers/storage) looks like. */
export interface UpperFormat {
  /** Namespace of the opaque and redirect xattrs written: kernel overlayfs reads trusted.* by default, user.* with `userxattr`. */
  xattrs: 'user' | 'trusted';
  /** Whiteouts written: character devices 0/0, or `.wh.NAME` files where mknod is refused. */
  whiteouts: 'chardev' | 'files';
  /** tarstack's own xattrs (user.tarstack.*) and the work/index hard-link index may be written. */
  privateMetadata: boolean;
}

export const TARSTACK_FORMAT: UpperFormat = { xattrs: 'user', whiteouts: 'chardev', privateMetadata: true };

/**
 * Give a fresh upper root the image root's owner, mode, xattrs and times (and its inode number, 1).
 * What the host refuses an ordinary user is kept (kept.ts); the mode goes last, as it may take away
 * our own write permission.
 */
export function prepareUpperRoot(upper: string, a: KeptStat & { atimeSec: number; atimeNsec: number; mtimeSec: number; mtimeNsec: number }, xattrs: Array<[string, Buffer]>): void {
  const sys = loadSys();
  const kept = new Kept(sys, null, () => '', process.getuid?.() !== 0);
  fs.mkdirSync(upper, { mode: 0o700 });
  if (!kept.active) fs.chownSync(upper, a.uid, a.gid);
  for (const [name, value] of xattrs) if (!kept.setX(upper, name, value, 0)) sys.setxattr(upper, name, value, 0);
  sys.setxattr(upper, X_INO, b('1'), 0);
  if (kept.active) kept.setStat(upper, a);
  sys.utimens(upper, a.atimeSec, a.atimeNsec, a.mtimeSec, a.mtimeNsec);
  if (!kept.active) fs.chmodSync(upper, a.mode & 0o7777);
}

/** user.* extended attributes exist for regular files and directories only (xattr(7)). */
export const userXattrOk = (type: number): boolean => type === S_IFREG || type === S_IFDIR;

export class UpperStore {
  readonly sys: Sys;
  /** Absolute roots as byte strings (latin1 of their UTF-8 bytes). */
  private readonly upper: string;
  private readonly work: string;
  private tmpSeq = 0;
  /** Owners, modes, devices and xattrs the host refuses, kept by tarstack. */
  readonly kept: Kept;

  /**
   * Inode numbers copied-up entries keep when no private xattr may hold them (this mount only), by
   * upper st_ino and birth time: the upper filesystem reuses a deleted object's number, never its
   * birth time (where it keeps none, 0, the number alone decides).
   */
  private readonly inoByUpper = new Map<string, number>();
  private static upperKey(st: fs.BigIntStats): string {
    return `${st.ino}:${st.birthtimeNs}`;
  }

  /** `readOnly`: only look (another process may be serving this upper). `keepRefused`: see kept.ts. */
  constructor(upperDir: string, workDir: string, readOnly = false, readonly format: UpperFormat = TARSTACK_FORMAT, keepRefused = false) {
    this.sys = loadSys();
    this.upper = Buffer.from(upperDir, 'utf8').toString('latin1');
    this.work = Buffer.from(workDir, 'utf8').toString('latin1');
    if (format.whiteouts === 'files') this.whFiles = true;
    this.kept = new Kept(this.sys, this.work, () => this.tmp(), keepRefused);
    if (readOnly) return;
    for (const d of format.privateMetadata ? ['tmp', 'index'] : ['tmp']) fs.mkdirSync(b(`${this.work}/${d}`), { recursive: true, mode: 0o700 });
    // Leftovers of a crash: temp files were never visible, so they simply go.
    removeTree(b(`${this.work}/tmp`));
    fs.mkdirSync(b(`${this.work}/tmp`), { mode: 0o700 });
  }

  /** Absolute byte-string path of an upper-relative path. */
  abs(rel: string): string {
    return rel === '' ? this.upper : `${this.upper}/${rel}`;
  }

  /**
   * The upper is written by absolute paths, which Linux limits to PATH_MAX: a deeper entry (a tar can
   * nest 10,000 directories) is refused with ENAMETOOLONG before anything is copied, so no upper
   * entry ever lies past the limit and a lookup there finds only the lower.
   */
  checkFits(absPath: string): void {
    if (absPath.length >= PATH_MAX) throw fsError('ENAMETOOLONG');
  }

  /** A fresh name in the work dir (same filesystem as the upper, so rename is atomic). */
  tmp(): string {
    return `${this.work}/tmp/${process.pid}.${++this.tmpSeq}`;
  }

  /** Where a copied-up lower hard-link set lives, shared by all its names. */
  indexPath(ino: number): string {
    return `${this.work}/index/${ino}`;
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
    if (absPath.length >= PATH_MAX) return undefined; // see checkFits
    return fs.lstatSync(b(absPath), { bigint: true, throwIfNoEntry: false });
  }

  static isWhiteout(st: fs.BigIntStats): boolean {
    return (Number(st.mode) & S_IFMT) === S_IFCHR && st.rdev === 0n;
  }

  /**
   * Is `name` in upper directory `dirAbs` a whiteout of the `.wh.` kind? tarstack writes character
   * device whiteouts, so only an upper written by another tool (`whFiles`) is worth the extra stat.
   */
  hasWhFile(dirAbs: string, name: string): boolean {
    return this.whFiles && fs.existsSync(b(`${dirAbs}/${WH_PREFIX}${name}`));
  }

  /** The upper may hold `.wh.NAME` whiteout files (fuse-overlayfs writes them where mknod is refused). */
  whFiles = false;


  /** `.wh.NAME` beside `absPath` (.../NAME): where a whiteout file for it lives. */
  private whFileFor(absPath: string): string {
    const slash = absPath.lastIndexOf('/');
    return `${absPath.slice(0, slash + 1)}${WH_PREFIX}${absPath.slice(slash + 1)}`;
  }

  /** Atomically replace whatever is at `absPath` by a whiteout; a directory goes to the work dir to be removed. */
  whiteoutOver(absPath: string, isDir: boolean): void {
    if (this.format.whiteouts === 'files') {
      // The `.wh.` file first: until the entry goes, the entry wins, so a crash shows the old state.
      this.whiteoutAt(absPath);
      const aside = this.tmp();
      fs.renameSync(b(absPath), b(aside));
      this.removeTree(aside);
      return;
    }
    const wh = this.tmp();
    this.sys.mknod(wh, S_IFCHR | 0o000, 0, 0);
    if (isDir) {
      this.sys.rename2(wh, absPath, RENAME_EXCHANGE);
      this.removeTree(wh); // the old directory, now at the temp name
    } else {
      fs.renameSync(b(wh), b(absPath));
    }
  }

  /**
   * Put a whiteout at `absPath`, where nothing is: made in place, since mknod (and an O_EXCL create)
   * make a name whole at once, without a temp name and a rename.
   */
  whiteoutAt(absPath: string): void {
    if (this.format.whiteouts === 'files') fs.closeSync(fs.openSync(b(this.whFileFor(absPath)), 'wx', 0o600));
    else this.sys.mknod(absPath, S_IFCHR | 0o000, 0, 0);
  }

  removeTree(absPath: string): void {
    removeTree(b(absPath));
  }

  getX(absPath: string, name: string): Buffer | null {
    return this.sys.getxattr(absPath, name);
  }

  setX(target: string | number, name: string, value: string | Buffer): void {
    this.sys.setxattr(target, name, typeof value === 'string' ? b(value) : value, 0);
  }

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

  setIno(target: string | number, ino: number, type: number): void {
    if (!this.format.privateMetadata) {
      this.inoByUpper.set(UpperStore.upperKey(typeof target === 'number' ? fs.fstatSync(target, { bigint: true }) : fs.lstatSync(b(target), { bigint: true })), ino);
      return;
    }
    if (userXattrOk(type)) this.setX(target, X_INO, String(ino));
    else if (this.canTrust) this.setX(target, X_INO_LINK, String(ino));
    else this.kept.setIno(target, ino);
  }

  /**
   * Give a freshly built object its owner and mode: for real as root, else kept (kept.ts). A fresh
   * symlink, fifo or socket first sheds what an old object of the same upper inode number kept.
   */
  own(path: string, want: KeptStat, made?: { uid: number; gid: number }): void {
    this.kept.fresh(path);
    if (this.kept.active) return this.kept.setStat(path, want);
    // Made by this process with exactly the wanted owner and mode (umask 0, no set-id bits): done.
    if (made && made.uid === want.uid && made.gid === want.gid && (want.mode & 0o6000) === 0) return;
    fs.lchownSync(b(path), want.uid, want.gid);
    if ((want.mode & S_IFMT) !== S_IFLNK) fs.chmodSync(b(path), want.mode & 0o7777); // after chown, which clears set-id bits
  }

  /** Set an xattr where it can live: the real object, or tarstack's kept metadata when the host refuses it. */
  setXattr(target: string | number, name: string, value: Buffer, flags: number): void {
    if (!this.kept.setX(target, name, value, flags)) this.sys.setxattr(target, name, value, flags);
  }

  /** mknod, or where the host refuses the device to an ordinary user, an empty file standing in for it. */
  makeNode(path: string, mode: number, major: number, minor: number): void {
    if (this.kept.refusedDevice(mode, major || minor)) fs.closeSync(fs.openSync(b(path), 'wx', 0o600));
    else this.sys.mknod(path, mode, major, minor);
  }

  private readonly canTrust = process.getuid?.() === 0;

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
      if (name.startsWith(WH_PREFIX)) {
        if (name !== '.wh..wh..opq') out.push({ name: name.slice(WH_PREFIX.length), st: undefined, whiteout: true });
        continue;
      }
      const st = this.lstat(`${dirAbs}/${name}`);
      if (!st) continue; // removed meanwhile
      out.push({ name, st, whiteout: UpperStore.isWhiteout(st) });
    }
    return out;
  }
}
