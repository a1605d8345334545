// The objects a writable instance serves, modelled apart as memfs does: an Inode is an identity
// (what the kernel holds by number: where its data lives, its lower origin, its reference counts),
// a Link is one name of it (entry `name` in directory `dir`), and an open file is a FileHandle
// (handles.ts), which holds the inode, not a name, so a file unlinked while open stays usable.
// Links chain through their directories, so a directory rename moves its whole subtree at once.
import type { Parts } from './lower-stack.js';
import type { LazyMap } from './lazy.js';
import type { KeptStat } from './kept.js';

/** A name: entry `name` of directory `dir` (no directory: the root). */
export class Link {
  constructor(
    public dir: Inode | null,
    public name: string,
  ) {}

  /** The name moves (rename), or the inode was reached by another of its names. */
  set(dir: Inode, name: string): void {
    this.dir = dir;
    this.name = name;
  }

  /** Upper-relative path of this name ('' for the root). */
  relPath(): string {
    if (!this.dir) return '';
    const names: string[] = [];
    for (let l: Link = this; l.dir; l = l.dir.link) names.push(l.name);
    return names.reverse().join('/');
  }
}

export class Inode {
  /** The kernel's references (lookups not yet forgotten). */
  nlookup = 0;
  /** Open file handles on it. */
  opens = 0;
  /** The upper copy is work/index/<ino>, shared by every name of a lower hard-link set (link-sets.ts). */
  indexed = false;
  lazy: LazyMap | null = null;
  /** Unlinked while open: reachable only through its open handles. */
  unlinked = false;
  /** st_ino when it is not the inode's number (a per-name inode of a lower hard-link set, standard upper only). */
  stIno: number | undefined = undefined;
  /** An open upper descriptor, for fstat once the inode has no name. */
  anyFd = -1;
  /** Owner and mode kept by tarstack (kept.ts): null when the real ones hold, undefined until read. */
  kept: KeptStat | null | undefined = undefined;
  /**
   * Its name: a directory's one name; a non-directory's, the name it was last reached by (a hard-link
   * set's other names are not tracked; an indexed set is reached through the index).
   */
  readonly link: Link;

  constructor(
    readonly ino: number,
    public type: number,
    dir: Inode | null,
    name: string,
    /** Directories: merged lower parts (none when opaque); others: [layer, node] of the lower origin. */
    public lower: Parts | null,
    /** An upper object exists for it (at its link's path, or in the index). */
    public upper: boolean,
  ) {
    this.link = new Link(dir, name);
  }

  /** Upper-relative path of its link. */
  relPath(): string {
    return this.link.relPath();
  }

  /** Upper-relative path of entry `name` in this directory. */
  childPath(name: string): string {
    return this.link.dir ? `${this.link.relPath()}/${name}` : name;
  }
}
