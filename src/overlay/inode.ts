// The objects a writable instance serves, modelled apart as memfs does: an Inode is an identity
// (what the kernel holds by number: where its data lives, its lower origin, its reference counts),
// a Link is one name of it (entry `name` in directory `dir`), and an open file is a FileHandle
// (handles.ts), which holds the inode, not a name, so a file unlinked while open stays usable.
// Links chain through their directories, so a directory rename moves its whole subtree at once.
import type { Parts } from './lower-stack.js';
import type { LazyMap } from './lazy.js';
import type { KeptStat } from './kept.js';
import type { Attr } from '../vfs/api.js';
import { S_IFDIR } from '../vfs/mode.js';

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
  /** A removed directory's last attributes (link count 0): what fstat of a descriptor still open on it shows. */
  removedAttr: Attr | undefined = undefined;
  /** Owner and mode kept by tarstack (kept.ts): null when the real ones hold, undefined until read. */
  kept: KeptStat | null | undefined = undefined;
  /**
   * Its names: a directory's one name; a non-directory's every name this mount has met (looked up,
   * made, linked or moved to) and not seen go. The first is the one paths are taken from; once the
   * last is gone it stays, stale, beside `unlinked`. The first is held apart: most inodes have one
   * name, and an array for it cost ~56 bytes of every entry a mount looked up (issue 14).
   */
  private first: Link;
  private others: Link[] | undefined = undefined;
  /**
   * Set when its last known name went while its upper object kept other links (names this mount
   * has not met): that object's upper inode number, by which a lookup of one of them finds it again.
   */
  otherLinksOf: bigint | undefined = undefined;

  constructor(
    readonly ino: number,
    public type: number,
    dir: Inode | null,
    name: string,
    /** Directories: merged lower parts (none when opaque); others: [layer, node] of the lower origin. */
    public lower: Parts | null,
    upper: boolean,
  ) {
    this.first = new Link(dir, name);
    this.up = upper;
  }

  private up: boolean;
  /**
   * Told once, when the inode gets an upper object: its bytes stop being its lower file's, so a
   * backend answering its reads from the lower by itself must stop (lower-reads.ts).
   */
  onUpper: ((ino: number) => void) | undefined = undefined;

  /** An upper object exists for it (at its link's path, or in the index). */
  get upper(): boolean {
    return this.up;
  }

  set upper(v: boolean) {
    this.up = v;
    const told = v ? this.onUpper : undefined;
    if (told) (this.onUpper = undefined), told(this.ino);
  }

  /** The name its upper path is taken from. */
  get link(): Link {
    return this.first;
  }

  private find(dir: Inode, name: string): Link | undefined {
    // by number: a directory may be met again as a new object
    if (this.first.dir?.ino === dir.ino && this.first.name === name) return this.first;
    if (this.others) for (const l of this.others) if (l.dir?.ino === dir.ino && l.name === name) return l;
    return undefined;
  }

  /** It was reached as entry `name` of `dir`: one of its names (a directory's only one). */
  reachedAs(dir: Inode, name: string): void {
    const l = this.find(dir, name);
    if (l) l.set(dir, name);
    else if (this.unlinked || this.type === S_IFDIR) this.first.set(dir, name);
    else (this.others ??= []).push(new Link(dir, name));
    this.unlinked = false;
    this.otherLinksOf = undefined;
  }

  /** Its name (dir, name) moved to (to, newName) (rename). */
  moved(dir: Inode, name: string, to: Inode, newName: string): void {
    const l = this.find(dir, name);
    if (l) l.set(to, newName);
    else this.reachedAs(to, newName);
  }

  /** Its name (dir, name) is gone: true when another name it is known by is left. */
  lostName(dir: Inode, name: string): boolean {
    const l = this.find(dir, name);
    if (!l) return true; // never met under that name: the names it is known by stay
    if (!this.others) return false;
    if (l === this.first) this.first = this.others.shift()!;
    else this.others.splice(this.others.indexOf(l), 1);
    if (this.others.length === 0) this.others = undefined;
    return true;
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
