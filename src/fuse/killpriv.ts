// FUSE_HANDLE_KILLPRIV_V2 as the translator keeps it (native-bindings/README.md). The kernel has
// stopped clearing set-id bits itself (before, fuse_setattr sent a SETATTR of the mode with the
// writer's credentials) and marks the requests after which the filesystem must (kext.c puts the
// mark in scratch CALLER_KILL): a write or truncate without CAP_FSETID, a chown, an O_TRUNC open.
// The VFS's rule (setattr_should_drop_suidgid) is kept on the attributes the filesystem has now: a
// regular file loses suid, and sgid when group-executable or when the caller is not in its group
// (ext4 and kernel overlayfs; the kernel's FUSE code without V2 kept the latter). Nothing is
// needed for security.capability: the kernel still removes it (file_remove_privs asks GETXATTR
// while an inode may have one).
import { readFileSync } from 'node:fs';
import type { Attr, Caller, SetAttr, WritableFileSystem } from '../vfs/api.js';
import { S_IFMT, S_IFREG } from '../vfs/mode.js';

const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const S_IXGRP = 0o010;

type Maybe<T> = T | Promise<T>;
const isThenable = <T>(v: Maybe<T>): v is Promise<T> => typeof (v as { then?: unknown } | null)?.then === 'function';

/** Whether `caller` is in group `gid` (its fsgid or a supplementary group, from /proc). */
function inGroup(caller: Caller, gid: number): boolean {
  if (caller.gid === gid) return true;
  try {
    const m = /^Groups:(.*)$/m.exec(readFileSync(`/proc/${caller.pid}/status`, 'latin1'));
    return !!m && m[1]!.trim().split(/\s+/).includes(String(gid)); // '' for none: never a match
  } catch {
    return false; // gone already: as a stranger
  }
}

export class KillPriv {
  /** Set-id clearings done. */
  killed = 0;
  private fs: WritableFileSystem | null = null;
  /** Drops the kernel's cached attributes of an inode (not awaited: see the invalidation rule).
   *  A write's reply carries none, and the kernel's copy of the mode is from before the clearing. */
  private invalAttr: (ino: number) => void = () => undefined;
  /** Files made through this mount without set-id bits and given no SETATTR since: nothing else
   *  can give them one (the upper is this mount's alone), so a marked write needs no look (the
   *  common case: every write of an ordinary user's new files). Dropped at FORGET. */
  private readonly plain = new Set<number>();

  /** V2 was negotiated: marked requests arrive from now on. */
  enable(fs: WritableFileSystem, invalAttr: (ino: number) => void): void {
    this.fs = fs;
    this.invalAttr = invalAttr;
  }

  created(ino: number, mode: number): void {
    if (this.fs && (mode & (S_ISUID | S_ISGID)) === 0) this.plain.add(ino);
  }

  /** A SETATTR (a chmod may add set-id bits). */
  changed(ino: number): void {
    this.plain.delete(ino);
  }

  forgot(ino: number): void {
    this.plain.delete(ino);
  }

  /**
   * Clears what the rule says, then `next()`; a failure goes to `fail` instead. `into`: fold the
   * new mode into that setattr (truncate, chown) rather than a setattr of its own (write, open).
   */
  before(ino: number, fh: number | undefined, caller: Caller, into: SetAttr | null, next: () => void, fail: (e: unknown) => void): void {
    const fs = this.fs;
    if (fs === null || (into === null && this.plain.has(ino))) return next();
    // A chown is marked whoever makes it; root's keeps sgid without g+x (CAP_FSETID), as ext4's.
    const capable = into !== null && (into.uid !== undefined || into.gid !== undefined) && caller.uid === 0;
    const apply = (a: Attr): Maybe<unknown> => {
      const mode = a.mode;
      if ((mode & S_IFMT) !== S_IFREG) return undefined;
      let kill = mode & S_ISUID;
      if (mode & S_ISGID && (mode & S_IXGRP || (!capable && !inGroup(caller, a.gid)))) kill |= S_ISGID;
      if (kill === 0) return undefined;
      this.killed++;
      if (into) return void (into.mode = (into.mode ?? mode) & 0o7777 & ~kill);
      const done = (): void => this.invalAttr(ino);
      const r = fs.setattr(ino, { mode: mode & 0o7777 & ~kill }, fh, caller);
      return isThenable(r) ? r.then(done) : done();
    };
    let r: Maybe<unknown>;
    try {
      const a = fs.getattr(ino);
      r = isThenable(a) ? a.then(apply) : apply(a);
    } catch (e) {
      return fail(e);
    }
    if (isThenable(r)) r.then(next, fail);
    else next();
  }
}
