// The merge rules of a writable instance's directories: what a name in a directory is (the upper
// first: an object, or hidden by a whiteout; then the lower stack below it, unless the directory is
// opaque), what a directory lists (its upper entries as a snapshot over the lower stream), and what
// a directory keeps when it moves (its lower origin, by redirect) or is made over a deleted lower one
// (opacity), as kernel overlayfs's redirect_dir and opaque xattrs say.
import { fsError } from '../util/errors.js';
import { S_IFDIR } from '../vfs/mode.js';
import type { Inode } from './inode.js';
import { UPPER_BASE, type Found, type InodeTable } from './inodes.js';
import type { LowerStack } from './lower-stack.js';
import { MergedListing, type UpperEntry } from './merged-listing.js';
import { HIDDEN, type UpperStore } from './upper.js';

/** The longest name (bytes) a directory entry may have (NAME_MAX of limits.h). */
export const NAME_MAX = 255;

export class Directories {
  constructor(
    private readonly stack: LowerStack,
    private readonly store: UpperStore,
    private readonly inodes: InodeTable,
  ) {}

  /** What `name` in directory `dir` is, or undefined when absent (or hidden by the upper). ENAMETOOLONG past NAME_MAX. */
  find(dir: Inode, name: string): Found | undefined {
    if (name.length > NAME_MAX) throw fsError('ENAMETOOLONG');
    const up = this.store.find(dir.upper ? dir.relPath() : null, name);
    if (up !== undefined) return up === HIDDEN ? undefined : up;
    if (dir.lower) {
      const parts = this.stack.lookupParts(dir.lower, name);
      if (parts.length) return { upper: false, parts };
    }
    return undefined;
  }

  /** Does a lower layer show `name` below `dir` (so removing its upper copy needs a whiteout)? */
  lowerHas(dir: Inode, name: string): boolean {
    return dir.lower !== null && this.stack.lookupParts(dir.lower, name).length > 0;
  }

  /** A snapshot of the directory's upper entries over its lower stream. */
  listing(dir: Inode): MergedListing {
    const upper: UpperEntry[] = [];
    const hides = new Set<string>();
    if (dir.upper) {
      const dirAbs = this.store.abs(dir.relPath());
      for (const e of this.store.list(dirAbs)) {
        hides.add(e.name);
        if (e.whiteout || !e.st) continue;
        const abs = `${dirAbs}/${e.name}`;
        upper.push({ name: e.name, ino: this.inodes.listedIno(abs, e.st), mode: this.store.shownType(abs, e.st) });
      }
      upper.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
    }
    return new MergedListing(this.stack, dir.lower, upper, hides);
  }

  /** Does the directory show no entry at all (rmdir's test)? */
  isEmpty(dir: Inode): boolean {
    const hides = dir.upper ? this.store.hiddenOnly(this.store.abs(dir.relPath())) : new Set<string>();
    return hides !== undefined && new MergedListing(this.stack, dir.lower, [], hides).isEmpty();
  }

  /**
   * Where a directory's lower origin is found from the root of the lower stack, as kernel overlayfs
   * computes it (ovl_get_redirect in fs/overlayfs/dir.c): the names from the root down to it, where a
   * relative redirect stands for the name it is on and an absolute one for the whole path above. Not
   * the path within the origin's own layer: a lower layer's redirect may have put it elsewhere.
   */
  private lowerPathOf(node: Inode): string {
    const names: string[] = [];
    for (let n = node; n.link.dir; n = n.link.dir) {
      const redirect = n.upper ? this.store.redirectOf(this.store.abs(n.relPath())) : undefined;
      if (redirect?.startsWith('/')) return [redirect.replace(/\/+$/, ''), ...names.reverse()].join('/');
      names.push(redirect ?? n.link.name);
    }
    return '/' + names.reverse().join('/');
  }

  /**
   * A directory about to live at (to, newName), its upper copy at `abs`: it keeps its lower origin
   * through a redirect, and one with no lower origin becomes opaque where a lower directory of the
   * new name would merge. Its inode number is stored, as the name no longer gives it.
   */
  moving(node: Inode, abs: string, to: Inode, newName: string): void {
    if (node.lower) {
      // An absolute redirect holds wherever the directory goes; a relative one only in its parent.
      const redirect = this.store.redirectOf(abs);
      if (redirect === undefined || (!redirect.startsWith('/') && to !== node.link.dir)) this.store.setRedirect(abs, this.lowerPathOf(node));
    }
    if (!node.lower && !this.store.isOpaque(abs)) {
      const below = to.lower ? this.stack.lookupParts(to.lower, newName) : [];
      if (this.stack.isDir(below)) this.store.markOpaque(abs);
    }
    if (this.store.storedIno(abs, this.store.stat(abs)) === undefined && node.ino < UPPER_BASE) this.store.setIno(abs, node.ino, S_IFDIR);
  }
}
