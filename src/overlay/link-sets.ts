// Hard-link sets in the upper. In tarstack's own format a set's one upper inode lives in the index
// (work/index/<ino>), every upper name of it a hard link to that file. A set's link count is its
// upper names, which the index object's own link count tells (less the index's link), plus the
// names of a lower set that still show from the lower, kept in lower-names.ts: both hold for every
// file type, so fifos, symlinks, sockets and devices link like regular files. In a standard upper
// (no private metadata) there is no index: a set is plain upper hard links, as kernel overlayfs
// makes them with index=off, and a lower set is split by copy-up (inodes.ts numbers its names apart).
import type * as fs from 'node:fs';
import type { Inode } from './inode.js';
import type { UpperStore } from './upper.js';
import { X_LAZY } from './upper-format.js';
import { LazyMap } from './lazy.js';
import { LowerNames } from './lower-names.js';
import { S_IFDIR } from '../vfs/mode.js';
import type { DataSpace } from './space.js';

export class LinkSets {
  private readonly lowerNames: LowerNames;

  constructor(
    private readonly store: UpperStore,
    private readonly space: DataSpace,
  ) {
    this.lowerNames = new LowerNames(store);
  }

  /** Sets live in the index (tarstack's format), so a set's count and its lower names are kept. */
  get indexing(): boolean {
    return this.store.format.privateMetadata;
  }

  /** Absolute upper path of an inode's object: the index for a set, else its link's path. */
  upperPath(node: Inode): string {
    return node.indexed ? this.store.indexPath(node.ino) : this.store.abs(node.relPath());
  }

  /**
   * A newly met inode that is a set copied into the index is that copy: an upper name with more
   * than one link (`upperSt`, its lstat), or a lower name another name of whose set was copied up.
   */
  joinIndexed(node: Inode, upperSt: fs.BigIntStats | undefined): void {
    if (!this.indexing || node.type === S_IFDIR) return;
    if (upperSt) {
      if (upperSt.nlink > 1n && this.store.lstat(this.store.indexPath(node.ino))) node.indexed = true; // lstat: the index may be a symlink
      return;
    }
    const idx = this.store.indexPath(node.ino);
    const st = this.store.lstat(idx);
    if (!st) return;
    node.indexed = true;
    node.upper = true;
    const lazy = this.store.getX(idx, X_LAZY);
    if (lazy) node.lazy = LazyMap.decode(lazy).clamp(Number(st.size));
  }

  /**
   * Copy-up of a lower set's first name: the copy built at `tmp` becomes the index, its name links
   * to it. Every name counts as lower until linked, so a crash in between errs high (a kept index)
   * and never low (an index dropped while a name still shows it).
   */
  adopt(node: Inode, tmp: string, nlink: number): void {
    this.lowerNames.set(node.ino, nlink);
    this.store.rename(tmp, this.store.indexPath(node.ino));
    node.indexed = true;
    this.linkName(node, node.link.dir!, node.link.name);
  }

  /** Link an indexed inode into the upper under (dir, name), one of its lower names, which stops counting as lower. */
  linkName(node: Inode, dir: Inode, name: string): void {
    const abs = this.store.abs(dir.childPath(name));
    const idx = this.store.indexPath(node.ino);
    this.store.keepingTimes(this.store.abs(dir.relPath()), () => this.store.hardLink(idx, abs));
    this.lowerNames.drop(node.ino, this.store.stat(idx));
  }

  /** Link count of an indexed inode: its upper names and its names still lower. `st`: the index object's lstat, if at hand. */
  count(node: Inode, st?: fs.BigIntStats): number {
    const s = st ?? this.store.stat(this.store.indexPath(node.ino));
    return Number(s.nlink) - 1 + this.lowerNames.get(node.ino, s);
  }

  /**
   * Before a new name is linked to an upper inode (link(2)): in tarstack's format the inode moves
   * into the index, if not there yet; the new link then counts itself.
   */
  prepareLink(node: Inode): void {
    if (!this.indexing || node.indexed) return;
    this.lowerNames.set(node.ino, 0); // an upper-only set: all its names are upper links
    this.store.hardLink(this.store.abs(node.relPath()), this.store.indexPath(node.ino));
    node.indexed = true;
  }

  /**
   * Name (dir, name) of the inode is gone: `was`, the upper object's lstat there before, or none when
   * the name showed from the lower (now hidden). With no name left, it is unlinked. A set in the
   * index counts its names; otherwise the inode's other names are the ones this mount has met, and
   * when it has met no other but the object kept more links, a lookup of one of those finds it again.
   * A set's data goes with its index object, so its space comes back then, or at the last close.
   */
  dropName(node: Inode, dir: Inode, name: string, was: fs.BigIntStats | undefined): void {
    const left = node.lostName(dir, name);
    if (!node.indexed) {
      if (left) return;
      node.unlinked = true;
      if (was && was.nlink > 1n) node.otherLinksOf = was.ino;
      return;
    }
    const lower = was === undefined;
    const idx = this.store.indexPath(node.ino);
    const st = this.store.stat(idx);
    if (lower) this.lowerNames.drop(node.ino, st);
    if (this.count(node, st) > 0) return;
    if (node.opens === 0) this.space.release(idx);
    this.store.removeIfThere(idx);
    this.lowerNames.set(node.ino, 0);
    node.unlinked = true;
  }
}
