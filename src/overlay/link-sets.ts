// Hard-link sets in the upper. In tarstack's own format a set's one upper inode lives in the index
// (work/index/<ino>), every upper name of it a hard link to that file, and the set's link count
// (its names, upper and still lower) is kept on it (user.tarstack.nlink): a lower set's names that
// were never copied up still count, and still show the copy. In a standard upper (no private
// metadata) there is no index: a set is plain upper hard links, as kernel overlayfs makes them
// with index=off, and a lower set is split by copy-up (inodes.ts numbers its names apart).
import type * as fs from 'node:fs';
import type { Inode } from './inode.js';
import type { UpperStore } from './upper.js';
import { X_LAZY, X_NLINK } from './upper-format.js';
import { LazyMap } from './lazy.js';
import { S_IFDIR } from '../vfs/mode.js';

export class LinkSets {
  constructor(private readonly store: UpperStore) {}

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
      if (upperSt.nlink > 1n && this.store.exists(this.store.indexPath(node.ino))) node.indexed = true;
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

  /** Copy-up of a lower set's first name: the copy built at `tmp` becomes the index, its name links to it. */
  adopt(node: Inode, tmp: string, nlink: number): void {
    this.store.setX(tmp, X_NLINK, String(nlink));
    this.store.rename(tmp, this.store.indexPath(node.ino));
    node.indexed = true;
    this.linkName(node, node.link.dir!, node.link.name);
  }

  /** Link an indexed inode into the upper under (dir, name), one of its lower names. */
  linkName(node: Inode, dir: Inode, name: string): void {
    const abs = this.store.abs(dir.childPath(name));
    this.store.keepingTimes(this.store.abs(dir.relPath()), () => this.store.hardLink(this.store.indexPath(node.ino), abs));
  }

  /** Link count of an indexed inode (its names, upper and still lower). */
  count(node: Inode): number {
    return Number(this.store.getX(this.store.indexPath(node.ino), X_NLINK)?.toString('latin1') ?? '1');
  }

  private setCount(node: Inode, n: number): void {
    const idx = this.store.indexPath(node.ino);
    if (n <= 0) this.store.removeIfThere(idx);
    else this.store.setX(idx, X_NLINK, String(n));
  }

  /**
   * Before a new name is linked to an upper inode (link(2)): in tarstack's format the inode moves
   * into the index, if not there yet. Returns its link count before the new name.
   */
  prepareLink(node: Inode): number {
    if (!this.indexing) return 0;
    if (node.indexed) return this.count(node);
    const abs = this.store.abs(node.relPath());
    const links = Number(this.store.stat(abs).nlink);
    this.store.setX(abs, X_NLINK, String(links));
    this.store.hardLink(abs, this.store.indexPath(node.ino));
    node.indexed = true;
    return links;
  }

  /** The new name is in place: the set counts it. */
  linked(node: Inode, before: number): void {
    if (node.indexed) this.setCount(node, before + 1);
  }

  /** One name of the inode is gone: its set counts one less; with no name left (or no set), it is unlinked. */
  dropName(node: Inode): void {
    if (!node.indexed) {
      node.unlinked = true;
      return;
    }
    const left = this.count(node) - 1;
    this.setCount(node, left);
    if (left <= 0) node.unlinked = true;
  }
}
