// Paths the kernel accepts at any depth below a root directory. Linux refuses a path of PATH_MAX
// bytes or more, so a tree served from a directory (an upper, a directory lower) would lose the room
// its own prefix takes, and a deeper tree entirely; and the kernel walks every name of a path on
// every call, so a path of 1,000 names costs ~1,000 times a short one. A path of a few names that
// leaves room for one more name is used as it is; any other is made relative to a descriptor of its
// parent directory: `/proc/self/fd/N/name`, which the kernel resolves from the directory N refers
// to (like openat), at the cost of a few names (/proc/self/fd/N) whatever the depth.
// Descriptors are O_PATH, kept in a bounded LRU by relative path; they follow their directory
// through renames, so a rename or removal of a directory drops the ones at and below its old path.
//
// A path from path() is good until `capacity` more directories have been opened here (an evicted
// descriptor is closed and its number reused): use it at once, never keep it.
import * as fs from 'node:fs';
import { b } from './latin1.js';

const PATH_MAX = 4096;
/** Room a returned path leaves for one more name (NAME_MAX 255, a slash, a `.wh.` prefix). */
const ROOM = 300;
const FITS = PATH_MAX - ROOM;
/** At most this much of a relative path is resolved by one open (below `/proc/self/fd/N/`). */
const CHUNK = FITS - 32;
const O_PATH = 0o10000000;
const OPEN_DIR = O_PATH | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW;
/** Cached ancestors looked for above a missing parent before resolving from the root. */
const ANCESTORS = 8;
/**
 * Names in a relative path beyond which its parent's descriptor is used. Reaching a descriptor
 * through /proc costs about what walking 10 to 15 more names does (lstat on the 2-vCPU VM: 11 names
 * absolute 6-10 us, /proc/self/fd/N/name 9-16 us; 1,000 names absolute 860 us), so shallower paths
 * go absolute.
 */
const SHALLOW = 16;

const shallow = (rel: string): boolean => {
  for (let i = 0, at = -1; i < SHALLOW; i++) if ((at = rel.indexOf('/', at + 1)) < 0) return true;
  return false;
};

const PROC_FD = '/proc/self/fd/';
const proc = (fd: number): string => `${PROC_FD}${fd}`;

export class DirFds {
  /** Descriptors by the relative path of their directory, least recently used first. */
  private readonly fds = new Map<string, number>();
  private readonly relOf = new Map<number, string>();
  /** Of the root itself, opened on first need and kept. */
  private rootFd = -1;

  /** `root`: an absolute path as a byte string (latin1 of its bytes). */
  constructor(readonly root: string, readonly capacity = 64) {}

  /**
   * A path to `rel` (relative to the root, '' for the root; names separated by single slashes)
   * that leaves room for one more name. Where a directory on the way is missing or no directory,
   * whatever is done with the path fails as at a short path (ENOENT when the rest is too long).
   */
  path(rel: string): string {
    if (rel === '') return this.root;
    if (this.root.length + 1 + rel.length <= FITS && shallow(rel)) return `${this.root}/${rel}`;
    const slash = rel.lastIndexOf('/');
    return `${this.dirPath(slash < 0 ? '' : rel.slice(0, slash))}/${rel.slice(slash + 1)}`;
  }

  /** A short path of directory `dir`: `/proc/self/fd/N` of its descriptor (or a failing path below the last directory found). */
  private dirPath(dir: string): string {
    if (dir === '') return proc(this.root_());
    const hit = this.fds.get(dir);
    if (hit !== undefined) {
      this.fds.delete(dir);
      this.fds.set(dir, hit);
      return proc(hit);
    }
    let base = proc(this.root_());
    let at = 0;
    for (let cut = dir.length, i = 0; i < ANCESTORS; i++) {
      cut = dir.lastIndexOf('/', cut - 1);
      if (cut <= 0) break;
      const fd = this.fds.get(dir.slice(0, cut));
      if (fd !== undefined) {
        [base, at] = [proc(fd), cut + 1];
        break;
      }
    }
    // Down from there, as many names per open as fit.
    let held = -1;
    while (at < dir.length) {
      const end = dir.length - at <= CHUNK ? dir.length : dir.lastIndexOf('/', at + CHUNK);
      if (end <= at) throw Object.assign(new Error(`a name longer than ${CHUNK} bytes in ${dir.slice(0, 64)}…`), { code: 'ENAMETOOLONG' });
      const chunk = dir.slice(at, end);
      let fd: number;
      try {
        fd = fs.openSync(b(`${base}/${chunk}`), OPEN_DIR);
      } catch {
        // Missing, not a directory, not searchable: the caller's operation meets the same error, at
        // the same name should the directories appear before it is used; past PATH_MAX, a name
        // that never exists (ENOENT).
        if (held >= 0) this.remember(dir.slice(0, at - 1), held);
        const rest = `${base}/${dir.slice(at)}`;
        return rest.length <= FITS ? rest : `${PROC_FD}absent`;
      }
      if (held >= 0) fs.closeSync(held);
      [held, base, at] = [fd, proc(fd), end + 1];
    }
    this.remember(dir, held);
    return base;
  }

  private root_(): number {
    if (this.rootFd < 0) this.rootFd = fs.openSync(b(this.root), OPEN_DIR);
    return this.rootFd;
  }

  private remember(dir: string, fd: number): void {
    const old = this.fds.get(dir);
    if (old !== undefined) this.drop(dir, old);
    this.fds.set(dir, fd);
    this.relOf.set(fd, dir);
    if (this.fds.size > this.capacity) {
      const [oldest, ofd] = this.fds.entries().next().value as [string, number];
      this.drop(oldest, ofd);
    }
  }

  private drop(dir: string, fd: number): void {
    this.fds.delete(dir);
    this.relOf.delete(fd);
    fs.closeSync(fd);
  }

  /**
   * The directory at `p` (a path from path(), or any path below the root) is renamed or removed:
   * descriptors cached for it and below are dropped, since they would follow it.
   */
  forget(p: string): void {
    if (this.fds.size === 0) return;
    const rel = this.relative(p);
    if (rel === undefined) return;
    for (const [dir, fd] of [...this.fds]) if (rel === '' || dir === rel || (dir.startsWith(rel) && dir.charCodeAt(rel.length) === 0x2f)) this.drop(dir, fd);
  }

  /** The relative path a path from path() names; undefined for one outside the root. */
  private relative(p: string): string | undefined {
    if (p === this.root) return '';
    if (p.startsWith(this.root) && p.charCodeAt(this.root.length) === 0x2f) return p.slice(this.root.length + 1);
    if (!p.startsWith(PROC_FD)) return undefined;
    const slash = p.indexOf('/', PROC_FD.length);
    const fd = Number(p.slice(PROC_FD.length, slash < 0 ? undefined : slash));
    const dir = fd === this.rootFd ? '' : this.relOf.get(fd);
    if (dir === undefined) return undefined;
    const rest = slash < 0 ? '' : p.slice(slash + 1);
    return dir === '' ? rest : rest === '' ? dir : `${dir}/${rest}`;
  }

  /** Close every descriptor (the root's too); path() opens them again as needed. */
  close(): void {
    for (const [dir, fd] of [...this.fds]) this.drop(dir, fd);
    if (this.rootFd >= 0) fs.closeSync(this.rootFd);
    this.rootFd = -1;
  }
}
