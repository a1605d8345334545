// What the host refuses an ordinary user, kept by tarstack so copy-up never fails with EPERM: owner,
// mode and device type (xattr user.tarstack.stat "uid gid mode rdev" on files and directories, whose
// real mode stays owner-accessible for the daemon), xattrs outside user.* (user.tarstack.x.NAME), and
// for symlinks, fifos and sockets, which cannot carry user.* xattrs, a side table in the work dir:
// work/meta/<upper inode>, one JSON file per object, replaced atomically (temp, fsync, rename).
import * as fs from 'node:fs';
import type { Sys } from '../native/sys.js';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../vfs/mode.js';
import { b } from '../util/latin1.js';

export const X_STAT = 'user.tarstack.stat';
export const X_KEPT = 'user.tarstack.x.';

/** Owner, mode (with type bits) and device number as the tar, chown or chmod said. */
export interface KeptStat {
  uid: number;
  gid: number;
  mode: number;
  rdev: number;
}

interface SideEntry {
  stat?: KeptStat;
  ino?: number;
  xattrs?: Record<string, string>; // base64 values
}

type Target = string | number; // byte-string path (latin1) or descriptor

const carriesUserX = (type: number): boolean => type === S_IFREG || type === S_IFDIR;

export class Kept {
  private readonly metaDir: string;
  private readonly side = new Map<number, SideEntry>();

  /** `active`: keep what the host refuses (not root); reading kept values works either way. No `workDir`: no side table. */
  constructor(
    private readonly sys: Sys,
    workDir: string | null,
    private readonly tmp: () => string,
    readonly active: boolean,
  ) {
    this.metaDir = `${workDir}/meta`;
    let names: Buffer[] = [];
    try {
      if (workDir !== null) names = fs.readdirSync(b(this.metaDir), { encoding: 'buffer' });
    } catch {
      /* no side table yet */
    }
    for (const n of names) {
      const ino = Number(n.toString('latin1'));
      if (!Number.isSafeInteger(ino)) continue;
      try {
        this.side.set(ino, JSON.parse(fs.readFileSync(b(`${this.metaDir}/${ino}`), 'utf8')) as SideEntry);
      } catch {
        /* a damaged entry loses only what it kept: the object shows its real values */
      }
    }
  }

  private static lst(t: Target): fs.Stats {
    return typeof t === 'number' ? fs.fstatSync(t) : fs.lstatSync(b(t));
  }

  /** Is this a device that only root may create (a 0/0 character device is a whiteout, which anyone may)? */
  refusedDevice(mode: number, rdev: number): boolean {
    const type = mode & S_IFMT;
    return this.active && (type === S_IFBLK || (type === S_IFCHR && rdev !== 0));
  }

  /** The kept stat of an upper object, if it has one. `st`: its lstat (mode and ino). */
  stat(t: Target, st: { mode: number | bigint; ino: number | bigint }): KeptStat | undefined {
    const type = Number(st.mode) & S_IFMT;
    if (!carriesUserX(type)) return this.side.get(Number(st.ino))?.stat;
    const v = this.sys.getxattr(t, X_STAT);
    if (!v) return undefined;
    const [uid, gid, mode, rdev] = v.toString('latin1').split(' ').map(Number);
    return Number.isSafeInteger(mode) ? { uid, gid, mode, rdev: rdev || 0 } : undefined;
  }

  /**
   * Record `want` for an object the daemon owns. Files and directories get an owner-accessible real
   * mode (the daemon must keep reading, writing and copying into them); the kept xattr is dropped
   * again when the real values already say it all.
   */
  setStat(t: Target, want: KeptStat): void {
    const st = Kept.lst(t);
    const type = st.mode & S_IFMT;
    let realMode = st.mode;
    if (type !== S_IFLNK) {
      const perm = this.realPerm(type, want.mode);
      // a chmod moves ctime even when it changes nothing
      if ((st.mode & 0o7777) !== perm) {
        if (typeof t === 'number') fs.fchmodSync(t, perm);
        else fs.chmodSync(b(t), perm);
      }
      realMode = type | perm;
    }
    const same = want.uid === st.uid && want.gid === st.gid && want.mode === realMode && want.rdev === 0;
    if (!carriesUserX(type)) return this.updateSide(st.ino, (e) => (same ? delete e.stat : (e.stat = want)));
    if (same) this.removeQuiet(t, X_STAT);
    else this.sys.setxattr(t, X_STAT, b(`${want.uid} ${want.gid} ${want.mode} ${want.rdev}`), 0);
  }

  /** The real permissions an object of `type` kept as `mode` gets: a file or directory's stay owner-accessible. */
  realPerm(type: number, mode: number): number {
    if (type === S_IFLNK) return 0o777;
    return carriesUserX(type) ? (mode & 0o777) | (type === S_IFDIR ? 0o700 : 0o600) : mode & 0o777;
  }

  /**
   * chown and chmod where the host refuses them: kept, with the kernel's rule that chown clears the
   * set-id bits of a non-directory (set-gid only when group-executable).
   */
  chownChmod(t: Target, type: number, set: { uid?: number; gid?: number; mode?: number }): void {
    const st = Kept.lst(t);
    const cur: KeptStat = this.stat(t, st) ?? { uid: st.uid, gid: st.gid, mode: st.mode, rdev: st.rdev };
    const want = { ...cur };
    if (set.uid !== undefined || set.gid !== undefined) {
      want.uid = set.uid ?? cur.uid;
      want.gid = set.gid ?? cur.gid;
      if (type !== S_IFDIR) want.mode &= want.mode & 0o010 ? ~0o6000 : ~0o4000;
    }
    if (set.mode !== undefined && type !== S_IFLNK) want.mode = (cur.mode & S_IFMT) | (set.mode & 0o7777);
    this.setStat(t, want);
  }

  /** Where xattr `name` of an object of this type lives: 'real', or kept ('x' xattr or side table). */
  private route(type: number, name: string): 'real' | 'x' | 'side' {
    // The kernel knows these namespaces only (fs/xattr.c): kept metadata must not take others either.
    if (!/^(user|trusted|security|system)\./.test(name)) throw Object.assign(new Error('EOPNOTSUPP'), { code: 'EOPNOTSUPP' });
    const user = name.startsWith('user.');
    if (user ? carriesUserX(type) : !this.active) return 'real';
    return carriesUserX(type) ? 'x' : 'side';
  }

  /** A kept xattr value: null when unset there, undefined when such a name is not kept (ask the real file). */
  getX(t: Target, st: { mode: number | bigint; ino: number | bigint }, name: string): Buffer | null | undefined {
    const type = Number(st.mode) & S_IFMT;
    const user = name.startsWith('user.');
    if (user && carriesUserX(type)) return undefined;
    if (carriesUserX(type)) return this.sys.getxattr(t, X_KEPT + name) ?? undefined;
    const v = this.side.get(Number(st.ino))?.xattrs?.[name];
    return v !== undefined ? Buffer.from(v, 'base64') : user ? null : undefined;
  }

  /** Keep an xattr the host refuses; false when the real file takes it. */
  setX(t: Target, name: string, value: Buffer, flags: number): boolean {
    const st = Kept.lst(t);
    const where = this.route(st.mode & S_IFMT, name);
    if (where === 'real') return false;
    if (where === 'x') {
      this.sys.setxattr(t, X_KEPT + name, value, flags);
      return true;
    }
    const had = this.side.get(st.ino)?.xattrs?.[name] !== undefined;
    if (flags === 1 && had) throw Object.assign(new Error('EEXIST'), { code: 'EEXIST' });
    if (flags === 2 && !had) throw Object.assign(new Error('ENODATA'), { code: 'ENODATA' });
    this.updateSide(st.ino, (e) => ((e.xattrs ??= {})[name] = value.toString('base64')));
    return true;
  }

  /** Remove a kept xattr; true when it was kept. */
  removeX(t: Target, name: string): boolean {
    const st = Kept.lst(t);
    const type = st.mode & S_IFMT;
    if (carriesUserX(type)) {
      if (name.startsWith('user.')) return false;
      return this.removeQuiet(t, X_KEPT + name);
    }
    const e = this.side.get(st.ino);
    if (e?.xattrs?.[name] === undefined) return false;
    this.updateSide(st.ino, (x) => delete x.xattrs![name]);
    return true;
  }

  /** Names of the kept xattrs. */
  listX(st: { mode: number | bigint; ino: number | bigint }, realNames: string[]): string[] {
    if (carriesUserX(Number(st.mode) & S_IFMT)) return realNames.filter((n) => n.startsWith(X_KEPT)).map((n) => n.slice(X_KEPT.length));
    return Object.keys(this.side.get(Number(st.ino))?.xattrs ?? {});
  }

  /** The inode number a symlink, fifo or socket keeps (files and directories carry user.tarstack.ino). */
  ino(upperIno: number | bigint): number | undefined {
    return this.side.get(Number(upperIno))?.ino;
  }

  setIno(t: Target, ino: number): void {
    this.updateSide(Kept.lst(t).ino, (e) => (e.ino = ino));
  }

  /** A fresh symlink, fifo or socket: whatever an earlier object of its upper inode number kept goes. */
  fresh(t: Target): void {
    if (this.side.size === 0) return;
    const st = Kept.lst(t);
    if (!carriesUserX(st.mode & S_IFMT) && this.side.has(st.ino)) this.updateSide(st.ino, (e) => Object.keys(e).forEach((k) => delete e[k as keyof SideEntry]));
  }

  private updateSide(ino: number, change: (e: SideEntry) => unknown): void {
    const e: SideEntry = { ...(this.side.get(ino) ?? {}) };
    if (e.xattrs) e.xattrs = { ...e.xattrs };
    change(e);
    if (e.xattrs && Object.keys(e.xattrs).length === 0) delete e.xattrs;
    const path = `${this.metaDir}/${ino}`;
    if (Object.keys(e).length === 0) {
      if (!this.side.delete(ino)) return;
      fs.rmSync(b(path), { force: true });
      return;
    }
    fs.mkdirSync(b(this.metaDir), { recursive: true, mode: 0o700 });
    const tmp = this.tmp();
    const fd = fs.openSync(b(tmp), 'w', 0o600);
    try {
      fs.writeSync(fd, Buffer.from(JSON.stringify(e)));
      fs.fsyncSync(fd); // the entry's bytes before its name: a crash shows the old entry or the new
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(b(tmp), b(path));
    this.side.set(ino, e);
  }

  private removeQuiet(t: Target, name: string): boolean {
    try {
      this.sys.removexattr(t, name);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENODATA') return false;
      throw err;
    }
  }
}
