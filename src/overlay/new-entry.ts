// Making objects on an instance's upper with the owner and mode they must have: born in place where
// the one call that makes them can give both (as root, through the maker's filesystem ids, which
// native-bindings/src/sys.c takes for that one call; else when they are this process's own), or
// built at a temp name in the work dir, owned (for real, or kept: kept.ts) and placed (upper.ts).
import * as fs from 'node:fs';
import type { KeptStat } from './kept.js';
import type { UpperStore } from './upper.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../vfs/mode.js';
import { b } from '../util/latin1.js';
import { majorOf, minorOf } from '../util/attr.js';
import { newEntryOwner } from './new-owner.js';

/** What a new entry is: its type and mode bits in `mode`; a file's open flags (beyond O_CREAT|O_EXCL|O_RDWR), a symlink's target, a node's device. */
export type NewObject = { mode: number; rdev?: number } & ({ kind: 'file'; flags: number } | { kind: 'dir' } | { kind: 'symlink'; target: string } | { kind: 'node' });

/** Filesystem ids an object is made with. */
export interface Ids {
  uid: number;
  gid: number;
}

const { O_CREAT, O_EXCL, O_RDWR } = fs.constants;
const EUID = process.geteuid?.() ?? 0;
const EGID = process.getegid?.() ?? 0;

export class EntryMaker {
  /**
   * Does this process make objects with their maker's owner (root: setfsuid and setfsgid around the
   * one call that makes an object), so that none is chowned after? Until the ids are refused once (a
   * user namespace's root, no CAP_SETPCAP): then chown it is.
   */
  private makesAs: boolean;

  /** `keepRefused`: kept.ts keeps what the host refuses, so objects are made as this process. */
  constructor(private readonly store: UpperStore, keepRefused: boolean) {
    this.makesAs = !keepRefused && EUID === 0;
  }

  dir(path: string, mode: number, as?: Ids): void {
    if (as) this.store.sys.mkdirAs(path, mode & 0o7777, as.uid, as.gid);
    else fs.mkdirSync(b(path), { mode: mode & 0o7777 });
  }

  symlink(path: string, target: string, as?: Ids): void {
    if (as) this.store.sys.symlinkAs(target, path, as.uid, as.gid);
    else fs.symlinkSync(b(target), b(path));
  }

  /** A new regular file, open: its descriptor. */
  file(path: string, flags: number, mode: number, as?: Ids): number {
    return as ? this.store.sys.openAs(path, flags, mode & 0o7777, as.uid, as.gid) : fs.openSync(b(path), flags, mode & 0o7777);
  }

  /** mknod, or where the host refuses the device to an ordinary user, an empty file standing in for it. */
  node(path: string, mode: number, major: number, minor: number, as?: Ids): void {
    if (this.store.kept.refusedDevice(mode, major || minor)) fs.closeSync(fs.openSync(b(path), 'wx', 0o600));
    else if (as) this.store.sys.mknod(path, mode, major, minor, as.uid, as.gid);
    else this.store.sys.mknod(path, mode, major, minor);
  }

  /**
   * A new entry for `maker` at `abs` in directory `dirAbs` (`what.mode`: type and permissions as
   * asked; `exactMode`: this process's umask is 0). Where the one call that makes it can give it its
   * owner and mode (as root, through the maker's filesystem ids; else when they are this process's
   * own), it is made in its place and nothing follows, so its atime, mtime and ctime are one time,
   * as on kernel overlayfs. Else (a whiteout or a `.wh.` file there, an opaque directory, a mode
   * or owner kept.ts keeps) it is built at a temp name, owned and placed, and its ctime may be later.
   * A file's descriptor (open for reading and writing) is returned.
   */
  entry(dirAbs: string, abs: string, maker: Ids, what: NewObject, exactMode: boolean, opaque: boolean): number | undefined {
    try {
      return this.entryOnce(dirAbs, abs, maker, what, exactMode, opaque);
    } catch (err) {
      // the ids would not take (a user namespace's root, no CAP_SETPCAP), so nothing was made: as this process, then chown
      if ((err as NodeJS.ErrnoException).syscall !== 'setfsuid' || !this.makesAs) throw err;
      this.makesAs = false;
      return this.entryOnce(dirAbs, abs, maker, what, exactMode, opaque);
    }
  }

  private entryOnce(dirAbs: string, abs: string, maker: Ids, what: NewObject, exactMode: boolean, opaque: boolean): number | undefined {
    const { store } = this;
    const type = what.mode & S_IFMT;
    const dirSt = fs.lstatSync(b(dirAbs));
    const want = newEntryOwner(store.kept.stat(dirAbs, dirSt) ?? dirSt, maker, what.mode, what.rdev ?? 0);
    const make = (path: string, mode: number, as?: Ids): number | undefined => {
      switch (what.kind) {
        case 'file': return this.file(path, O_CREAT | O_EXCL | O_RDWR | what.flags, mode, as);
        case 'dir': return void this.dir(path, mode, as);
        case 'symlink': return void this.symlink(path, what.target, as);
        case 'node': return void this.node(path, type | (mode & 0o7777), majorOf(what.rdev ?? 0), minorOf(what.rdev ?? 0), as);
      }
    };
    const born = exactMode && !opaque && !store.readsWhiteoutFiles ? this.bornRight(want, dirSt) : undefined;
    if (born) {
      try {
        const fd = make(abs, born.mode, born.as);
        store.kept.fresh(abs);
        return fd;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err; // a whiteout there: built aside, placed over it
      }
    }
    const as = this.idsFor(want);
    const tmp = store.tmp();
    const fd = make(tmp, what.mode, as);
    try {
      // What it has now: made in the work dir (not set-gid) with the mode asked, which mkdir takes without set-id bits.
      const made = exactMode ? { ...(as ?? { uid: EUID, gid: EGID }), mode: type === S_IFDIR ? what.mode & ~0o6000 : what.mode, rdev: want.rdev } : undefined;
      this.own(tmp, want, type === S_IFREG || type === S_IFDIR || type === S_IFLNK || this.makesAs ? made : undefined);
      if (opaque) store.markOpaque(tmp);
      store.place(tmp, abs, type === S_IFDIR);
    } catch (err) {
      if (fd !== undefined) fs.closeSync(fd);
      throw err;
    }
    return fd;
  }

  /**
   * The filesystem ids to make an object owned by `want` with; none when they are this process's
   * own (root making as root: nothing to take, which spares each create three prctl and six
   * setfs*id calls, issue 17) or when it cannot take ids.
   */
  private idsFor(want: Ids): Ids | undefined {
    return this.makesAs && (want.uid !== EUID || want.gid !== EGID) ? { uid: want.uid, gid: want.gid } : undefined;
  }

  /**
   * How the one call that makes an object gives it `want` in its directory (`dirSt`): the filesystem
   * ids to make it with and the mode to ask for; undefined when it cannot (kept.ts must keep an owner
   * or mode the host refuses, or this process cannot take the maker's ids).
   */
  private bornRight(want: KeptStat, dirSt: fs.Stats): { as?: Ids; mode: number } | undefined {
    const { kept } = this.store;
    const type = want.mode & S_IFMT;
    const mode = kept.active ? kept.realPerm(type, want.mode) : want.mode & 0o7777;
    if (kept.active && (want.rdev !== 0 || (type | mode) !== want.mode)) return undefined;
    const as = this.idsFor(want);
    // what the kernel gives an object made there (a set-gid directory's group, its set-gid bit on a new directory)
    const got = newEntryOwner(dirSt, as ?? { uid: EUID, gid: EGID }, type | (type === S_IFDIR ? mode & ~0o6000 : mode));
    return got.uid === want.uid && got.gid === want.gid && got.mode === want.mode ? { as, mode } : undefined;
  }

  /**
   * Give a freshly built object its owner and mode: for real as root, else kept (kept.ts). A fresh
   * symlink, fifo or socket first sheds what an old object of the same upper inode number kept.
   * `made`: what it has already (made by this process with umask 0).
   */
  own(path: string, want: KeptStat, made?: KeptStat): void {
    const { kept } = this.store;
    kept.fresh(path);
    if (kept.active) return kept.setStat(path, want);
    if (made && made.uid === want.uid && made.gid === want.gid && made.mode === want.mode) return;
    if (!made || made.uid !== want.uid || made.gid !== want.gid) fs.lchownSync(b(path), want.uid, want.gid);
    if ((want.mode & S_IFMT) !== S_IFLNK) fs.chmodSync(b(path), want.mode & 0o7777); // after chown, which clears set-id bits
  }
}
