// What a writable instance knows about an inode the kernel holds: where it lives (upper path,
// lower parts, or the hard-link index), its primary name, and the kernel's reference count.
// Parent links give every node its current upper path, so a directory rename moves its whole
// subtree at once.
import type { Parts } from './lower-stack.js';
import type { LazyMap } from './lazy.js';
import type { KeptStat } from './kept.js';

export class WNode {
  nlookup = 0;
  /** Open file handles on it. */
  opens = 0;
  /** The upper copy is work/index/<ino>, shared by every name of a lower hard-link set. */
  indexed = false;
  lazy: LazyMap | null = null;
  /** Unlinked while open: reachable only through its open handles. */
  unlinked = false;
  /** st_ino when it is not the node id (a per-name node of a lower hard-link set, standard upper only). */
  stIno: number | undefined = undefined;
  /** An open upper descriptor, for fstat once the node has no name. */
  anyFd = -1;
  /** Owner and mode kept by tarstack (kept.ts): null when the real ones hold, undefined until read. */
  kept: KeptStat | null | undefined = undefined;

  constructor(
    readonly ino: number,
    public type: number,
    public parent: WNode | null,
    public name: string,
    /** Directories: merged lower parts (none when opaque); others: [layer, node] of the lower origin. */
    public lower: Parts | null,
    /** An upper object exists for it (at relPath, or in the index). */
    public upper: boolean,
  ) {}

  /** Upper-relative path of its primary name. */
  relPath(): string {
    if (!this.parent) return '';
    const names: string[] = [];
    for (let n: WNode | null = this; n && n.parent; n = n.parent) names.push(n.name);
    return names.reverse().join('/');
  }
}
