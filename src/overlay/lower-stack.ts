// The merge rules over the read-only layers, shared by the read-only overlay and writable
// instances: lookup goes top to bottom, a whiteout hides the name below, a non-directory ends the
// search, directories merge until one is opaque. Inode numbers come from (layer, node): unique in
// the mount, stable across remounts, shared by a tar's hard-linked names.
import { ABSENT, type Layer } from '../layer/layer.js';
import type { Attr, FdRange, FileStream, ReadReply } from '../vfs/api.js';
import { S_IFDIR, S_IFMT } from '../vfs/mode.js';

/** A directory's parts, or a single non-directory: pairs (layer index, node), topmost first. */
export type Parts = number[];

/**
 * Redirects the kernel accepts: a relative one is one name (no '/'); an absolute one has no empty
 * component. The kernel fails the lookup on any other; here it is ignored (the merge goes on by name).
 */
const validRedirect = (r: string): boolean => r.length > 0 && (r.startsWith('/') ? !r.slice(1).split('/').includes('') && r !== '/' : !r.includes('/'));


export class LowerStack {
  /** ino = base[k] + node for layer k; the bottom layer starts at 1, so its root is inode 1. */
  private readonly base: number[];
  readonly rootParts: Parts;
  /** First inode number past every lower one: numbers from here on are free for upper files. */
  readonly inoEnd: number;

  constructor(readonly layers: Layer[]) {
    this.base = new Array<number>(layers.length);
    let next = 1;
    for (let k = layers.length - 1; k >= 0; k--) {
      this.base[k] = next;
      next += layers[k].nodeCount;
    }
    this.inoEnd = next;
    if (next > 2 ** 40) throw new Error(`too many layers: their inode numbers (${next}) reach those of upper files; at most 127 directory layers fit`);
    this.rootParts = [];
    for (let k = 0; k < layers.length; k++) {
      this.rootParts.push(k, 0);
      if (layers[k].isOpaque(0)) break;
    }
  }

  inoOf(k: number, node: number): number {
    return this.base[k] + this.layers[k].inodeOf(node);
  }

  /** A number for one name (not its inode) of a layer, unique in the stack, below 2^40. */
  nameIdOf(k: number, node: number): number {
    return this.base[k] + node;
  }

  /** The (layer, node) a lower inode number stands for, or undefined. */
  locate(ino: number): [number, number] | undefined {
    for (let k = 0; k < this.layers.length; k++) {
      const key = ino - this.base[k];
      if (key < 0 || key >= this.layers[k].nodeCount) continue;
      const L = this.layers[k];
      const node = L.nodeOfInode ? L.nodeOfInode(key) : key;
      return node === ABSENT ? undefined : [k, node];
    }
    return undefined;
  }

  /**
   * Merged lookup of `name` below a directory's parts: the parts of the result ([] when absent).
   * A directory with a redirect (a renamed directory in a layer written as an overlay upper) goes on
   * merging in the layers below its own at the place the redirect names, as kernel overlayfs's lookup
   * does (fs/overlayfs/namei.c): a relative redirect is a name in the same parent, an absolute one a
   * path from the root of those layers. An opaque directory stops before its redirect is read.
   */
  lookupParts(parts: Parts, name: string): Parts {
    const found: Parts = [];
    let want = name;
    for (let i = 0; i < parts.length; i += 2) {
      const k = parts[i];
      const L = this.layers[k];
      const c = L.lookup(parts[i + 1], want);
      if (c === ABSENT) continue;
      if (L.isWhiteout(c)) break;
      if (!L.isDir(c)) {
        if (found.length === 0) found.push(k, c);
        break; // a file ends the search; below a directory it is hidden
      }
      found.push(k, c);
      if (L.isOpaque(c)) break;
      const redirect = k + 1 < this.layers.length ? L.redirectOf?.(c) : undefined;
      if (redirect === undefined || !validRedirect(redirect)) continue;
      if (!redirect.startsWith('/')) {
        want = redirect; // the parent's parts below this layer, under the old name
        continue;
      }
      const below = this.partsOfPath(redirect.split('/').filter(Boolean), k + 1);
      if (this.isDir(below)) found.push(...below);
      break;
    }
    return found;
  }

  /**
   * The lower parts an upper directory with `redirect` merges (its parent's lower parts, or null
   * when the parent merges none): the same rules as lookupParts, from above every lower layer.
   */
  redirected(parentParts: Parts | null, redirect: string): Parts {
    if (!validRedirect(redirect)) return [];
    if (redirect.startsWith('/')) return this.partsOfPath(redirect.split('/').filter(Boolean));
    return parentParts ? this.lookupParts(parentParts, redirect) : [];
  }

  /** Parts of a path (components from the root of the layers from `from` down); [] when it does not resolve. */
  partsOfPath(components: string[], from = 0): Parts {
    let cur = from === 0 ? this.rootParts : this.rootPartsFrom(from);
    for (const c of components) {
      if (cur.length === 0 || !this.isDir(cur)) return [];
      cur = this.lookupParts(cur, c);
    }
    return cur;
  }

  private rootPartsFrom(from: number): Parts {
    const parts: Parts = [];
    for (let k = from; k < this.layers.length; k++) {
      parts.push(k, 0);
      if (this.layers[k].isOpaque(0)) break;
    }
    return parts;
  }

  /** Path components of a node within its own layer. */
  pathOf(k: number, node: number): string[] {
    const L = this.layers[k];
    const path: string[] = [];
    for (let n = node; L.parentOf(n) !== ABSENT; n = L.parentOf(n)) path.push(L.nameOf(n));
    return path.reverse();
  }

  /** Every lower path naming one of the given inodes (hard-link sets), by a single scan of the layers. */
  pathsOfInodes(inos: Set<number>): Map<number, string[][]> {
    const out = new Map<number, string[][]>();
    if (inos.size === 0) return out;
    // A walk from each root (not a loop over node ids: a directory layer numbers what it has seen).
    this.layers.forEach((L, k) => {
      const walk = (dir: number): void => {
        for (let i = 0, n = L.childCount(dir); i < n; i++) {
          const c = L.childAt(dir, i);
          if (L.isWhiteout(c)) continue;
          const ino = this.inoOf(k, c);
          if (inos.has(ino)) {
            const list = out.get(ino) ?? [];
            list.push(this.pathOf(k, c));
            out.set(ino, list);
          }
          if (L.isDir(c)) walk(c);
        }
      };
      walk(0);
    });
    return out;
  }

  // ---- one lower entry, addressed by its parts (the topmost [layer, node] pair is the entry) ----

  readlink(parts: Parts): string {
    return this.layers[parts[0]].readlink(parts[1]);
  }

  read(parts: Parts, pos: number, len: number): ReadReply | Promise<ReadReply> {
    return this.layers[parts[0]].read(parts[1], pos, len);
  }

  fileRange(parts: Parts): FdRange | undefined {
    return this.layers[parts[0]].fileRange?.(parts[1]);
  }

  fileStream(parts: Parts, pos: number): FileStream | undefined {
    return this.layers[parts[0]].fileStream?.(parts[1], pos);
  }

  readInto(parts: Parts, pos: number, buf: Buffer, off: number, len: number): number {
    return this.layers[parts[0]].readInto(parts[1], pos, buf, off, len);
  }

  xattrNames(parts: Parts): string[] {
    return this.layers[parts[0]].xattrNames(parts[1]);
  }

  getxattr(parts: Parts, name: string): Buffer | undefined {
    return this.layers[parts[0]].getxattr(parts[1], name);
  }

  /** Does the entry's layer read through a descriptor per open file (so a handle must hold it open)? */
  readsByHandle(parts: Parts): boolean {
    return this.layers[parts[0]].openFile !== undefined;
  }

  /** An open handle starts reading the entry (layers that read by handle; others ignore it). */
  openFile(parts: Parts): void {
    this.layers[parts[0]].openFile?.(parts[1]);
  }

  closeFile(parts: Parts): void {
    this.layers[parts[0]].closeFile?.(parts[1]);
  }

  /**
   * Is the entry found again by its inode number at the next mount? Not in a layer that numbers
   * nodes as it meets them (nodeOfInode: a directory layer).
   */
  locatableByIno(parts: Parts): boolean {
    return this.layers[parts[0]].nodeOfInode === undefined;
  }

  isDir(parts: Parts): boolean {
    return parts.length > 0 && this.layers[parts[0]].isDir(parts[1]);
  }

  modeOf(parts: Parts): number {
    return this.layers[parts[0]].modeOf(parts[1]);
  }

  /** Attributes of the topmost part, with the merged directory rule of kernel overlayfs. */
  fillAttr(parts: Parts, attr: Attr): void {
    this.layers[parts[0]].fillAttr(parts[1], attr);
    attr.ino = this.inoOf(parts[0], parts[1]);
    if (parts.length > 2 && (attr.mode & S_IFMT) === S_IFDIR) attr.nlink = 1; // merged: no meaningful count
  }

  storageBytes(): number {
    return this.layers.reduce((sum, L) => sum + L.storageBytes, 0);
  }

  nodeCount(): number {
    return this.layers.reduce((sum, L) => sum + L.nodeCount, 0);
  }

  close(): void {
    for (const L of this.layers) L.close();
  }
}
