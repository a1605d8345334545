// Inode numbers of a writable instance and the table of the inodes the kernel holds. Lower entries
// keep the number the lower stack gives them, through copy-up (stored on the upper copy); upper-only
// entries get UPPER_BASE + their upper inode number, unless the kernel still holds that number for a
// deleted entry (the upper filesystem reuses inode numbers): then a fresh one, stored like a
// copied-up entry's, so the kernel never sees one number name two objects and the new one keeps its
// number across remounts. An inode stays in the table while the kernel references it or a handle
// has it open.
import { ROOT_INO } from '../vfs/api.js';
import { fsError } from '../util/errors.js';
import { emptyAttr } from '../util/attr.js';
import { S_IFDIR, S_IFMT, S_IFREG } from '../vfs/mode.js';
import { Inode } from './inode.js';
import { LazyMap } from './lazy.js';
import type { LinkSets } from './link-sets.js';
import type { LowerStack, Parts } from './lower-stack.js';
import type { UpperFound, UpperStore } from './upper.js';
import { X_LAZY } from './upper-format.js';
import type * as fs from 'node:fs';

/** Upper-only inode numbers start here, far above any lower one. */
export const UPPER_BASE = 2 ** 40;
/**
 * Inode numbers of the names of lower hard-link sets in a standard upper, one per name (see inodeFor);
 * their st_ino is reported apart from the number.
 */
const NAME_BASE = 2 ** 50;
/** Fresh inode numbers (see upperIno) start here, above the others: FRESH_BASE + upper inode + k * 2^40. */
const FRESH_BASE = 2 ** 51;
const isNameNode = (ino: number): boolean => ino >= NAME_BASE && ino < FRESH_BASE;

/** What a name resolves to, before it becomes an inode: an upper object, or lower parts. */
export type Found = UpperFound | { upper: false; parts: Parts };

export class InodeTable {
  readonly root: Inode;
  private readonly nodes = new Map<number, Inode>();

  constructor(
    private readonly stack: LowerStack,
    private readonly store: UpperStore,
    private readonly links: LinkSets,
    /** Only reading the instance: store nothing on the upper. */
    private readonly offline: boolean,
  ) {
    this.root = new Inode(ROOT_INO, S_IFDIR, null, '', store.isOpaque(store.abs('')) ? null : stack.rootParts, true);
    this.root.nlookup = 1;
    this.nodes.set(ROOT_INO, this.root);
  }

  /** The inode of a number the kernel holds: ESTALE when it is not (or no longer) known. */
  get(ino: number): Inode {
    const n = this.nodes.get(ino);
    if (!n) throw fsError('ESTALE');
    return n;
  }

  /** The inode of a number, if the kernel holds it. */
  known(ino: number): Inode | undefined {
    return this.nodes.get(ino);
  }

  /** The directory inode of a number: ENOTDIR when it is none, ENOENT once it was removed. */
  dir(ino: number): Inode {
    const n = this.get(ino);
    if (n.type !== S_IFDIR) throw fsError('ENOTDIR');
    if (n.unlinked) throw fsError('ENOENT');
    return n;
  }

  /** The kernel drops `nlookup` references. */
  forget(ino: number, nlookup: number): void {
    const n = this.nodes.get(ino);
    if (!n || n === this.root) return;
    n.nlookup -= nlookup;
    if (n.nlookup <= 0 && n.opens === 0) this.nodes.delete(ino);
  }

  /** Its last handle closed: the inode goes unless the kernel still references it. */
  closed(node: Inode): void {
    if (node.opens === 0 && node.nlookup <= 0 && node !== this.root) this.nodes.delete(node.ino);
  }

  /** The inode for a found name, registered (or its link updated) in the table. */
  inodeFor(dir: Inode, name: string, f: Found): Inode {
    let ino: number;
    let type: number;
    let stIno: number | undefined;
    if (f.upper && f.fresh) {
      type = Number(f.st.mode) & S_IFMT;
      ino = this.upperIno(f.abs, f.st, type, f.born ? f : undefined);
    } else if (f.upper) {
      type = this.store.shownType(f.abs, f.st);
      ino = this.store.storedIno(f.abs, f.st) ?? this.upperIno(f.abs, f.st, type, f.born ? f : undefined);
    } else {
      type = this.stack.modeOf(f.parts) & S_IFMT;
      ino = this.stack.inoOf(f.parts[0], f.parts[1]);
      if (!this.links.indexing && type !== S_IFDIR && this.lowerNlink(f.parts) > 1) {
        // Without an index, copying up one name of a lower hard-link set splits the set (as kernel
        // overlayfs with index=off does), so each name is its own inode from the start, sharing the
        // set's st_ino only while it stays in the lower; the kernel's cached names stay right.
        stIno = ino;
        ino = NAME_BASE + this.stack.nameIdOf(f.parts[0], f.parts[1]);
      }
    }
    let node = this.nodes.get(ino);
    if (node && node.type === type && (!node.unlinked || (f.upper && node.otherLinksOf === f.st.ino))) {
      node.reachedAs(dir, name);
      return node;
    }
    node = f.upper ? this.upperInode(ino, type, dir, name, f) : this.lowerInode(ino, type, dir, name, f.parts, stIno);
    this.nodes.set(ino, node);
    return node;
  }

  private upperInode(ino: number, type: number, dir: Inode, name: string, f: UpperFound): Inode {
    let lower: Parts | null = null;
    if (type === S_IFDIR && !this.store.isOpaque(f.abs)) {
      const redirect = this.store.redirectOf(f.abs);
      const parts = redirect !== undefined ? this.stack.redirected(dir.lower, redirect) : dir.lower ? this.stack.lookupParts(dir.lower, name) : [];
      lower = this.stack.isDir(parts) ? parts : null;
    }
    const node = new Inode(ino, type, dir, name, lower, true);
    if (f.fresh) node.kept = this.store.kept.active ? undefined : null;
    else if (type === S_IFREG && this.store.format.privateMetadata) {
      const lazy = this.store.getX(f.abs, X_LAZY);
      if (lazy) {
        node.lazy = LazyMap.decode(lazy).clamp(Number(f.st.size));
        node.lower = this.stack.locate(ino) ?? null;
      }
    }
    this.links.joinIndexed(node, f.st);
    return node;
  }

  private lowerInode(ino: number, type: number, dir: Inode, name: string, parts: Parts, stIno: number | undefined): Inode {
    const node = new Inode(ino, type, dir, name, type === S_IFDIR ? parts : parts.slice(0, 2), false);
    node.stIno = stIno;
    this.links.joinIndexed(node, undefined); // another name of its lower hard-link set was copied up: it is that copy
    return node;
  }

  private lowerNlink(parts: Parts): number {
    const a = emptyAttr();
    this.stack.fillAttr(parts, a);
    return a.nlink;
  }

  /** st_ino: the inode's number, but for a per-name inode (NAME_BASE): the set's while lower, its own once copied. */
  stInoOf(node: Inode, st: fs.BigIntStats | undefined): number {
    if (!isNameNode(node.ino)) return node.ino;
    return st ? UPPER_BASE + Number(st.ino) : (node.stIno ?? node.ino);
  }

  /** The inode number readdir shows for an upper entry (its lstat `st`). */
  listedIno(abs: string, st: fs.BigIntStats): number {
    const stored = this.store.storedIno(abs, st);
    return stored === undefined || isNameNode(stored) ? UPPER_BASE + Number(st.ino) : stored;
  }

  /**
   * An upper-only entry's inode number: UPPER_BASE + its upper inode, or when the kernel still holds
   * that number for another (deleted) object, a fresh one, stored on the entry (see the header).
   * `born`: the entry was made just now; its `st` is updated when storing the number restamps it.
   */
  private upperIno(abs: string, st: fs.BigIntStats, type: number, born?: UpperFound): number {
    const plain = UPPER_BASE + Number(st.ino);
    const held = (n: number): boolean => {
      const node = this.nodes.get(n);
      return node !== undefined && ((node.unlinked && node.otherLinksOf !== st.ino) || node.type !== type);
    };
    if (!held(plain)) return plain;
    let fresh = FRESH_BASE + Number(st.ino);
    while (this.nodes.has(fresh)) fresh += UPPER_BASE;
    if (!this.offline && this.store.setIno(abs, fresh, Number(st.mode) & S_IFMT) && born) {
      // Just made (`born`), and its number stored on it moved its ctime past its birth; a new
      // object's three times are one time (POSIX marks all three at creation): now, for all three.
      this.store.restamp(abs);
      born.st = this.store.stat(abs);
    }
    return fresh;
  }
}
