// Typed access to the system calls Node's fs lacks (native-bindings/src/sys.c). Paths and names
// are byte strings (latin1); failures throw Errors with Node's `code`, like fs does.
import { loadAddon } from './addon.js';

export interface Sys {
  /** The value, or null when the attribute is unset. Symlinks are not followed. */
  getxattr(target: string | number, name: string): Buffer | null;
  setxattr(target: string | number, name: string, value: Buffer, flags: number): void;
  removexattr(target: string | number, name: string): void;
  listxattr(target: string | number): string[];
  /** `uid`, `gid` (both or neither): made with these filesystem ids (see openAs). */
  mknod(path: string, mode: number, major: number, minor: number, uid?: number, gid?: number): void;
  /**
   * open(2) (with O_CREAT, and O_CLOEXEC always) as filesystem ids `uid`, `gid`, taken by the calling
   * thread for this one call (-1, -1: as it is): a new file is born with that owner. Where the ids
   * cannot be taken (not root, an id a user namespace does not map) the error's syscall is 'setfsuid'.
   */
  openAs(path: string, flags: number, mode: number, uid: number, gid: number): number;
  mkdirAs(path: string, mode: number, uid: number, gid: number): void;
  symlinkAs(target: string, path: string, uid: number, gid: number): void;
  /** nsec -1 leaves a time alone (UTIME_OMIT), -2 sets it to now (UTIME_NOW). Symlinks are not followed. */
  utimens(target: string | number, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): void;
  rename2(from: string, to: string, flags: number): void;
  fallocate(fd: number, mode: number, offset: number, length: number): void;
  /** posix_fadvise(2); `length` 0 means to the end of the file. */
  fadvise(fd: number, offset: number, length: number, advice: number): void;
  flock(fd: number, op: number): void;
  dup2(from: number, to: number): void;
  /** rm -rf by directory descriptors (tree.c); throws EXDEV at a mount below, ELOOP past its depth bound. */
  removeTree(path: Buffer): void;
  /** A directory's entries as [name, kind, ...]: kind is the d_type, or KIND_WHITEOUT for a character device 0/0. */
  entryKinds(path: Buffer): Array<string | number>;
}

/** entryKinds' kind of a whiteout (d_type values are below 16). */
export const KIND_WHITEOUT = 255;

export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;
export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;
export const RENAME_WHITEOUT = 4;
export const UTIME_OMIT = -1;
export const UTIME_NOW = -2;
export const POSIX_FADV_SEQUENTIAL = 2;
export const LOCK_EX = 2;
export const LOCK_NB = 4;

let sys: Sys | undefined;
export function loadSys(): Sys {
  sys ??= (loadAddon() as { sys: Sys }).sys;
  return sys;
}
