// What stat shows of a writable instance's inode: the lower entry's attributes until copy-up, then
// the upper object's (by descriptor once it has no name), with what tarstack keeps for it (kept.ts),
// its kept inode number (inodes.ts), a hard-link set's count (link-sets.ts), and owners mapped to
// the mounting user when the instance says so.
import type * as fs from 'node:fs';
import type { Attr } from '../vfs/api.js';
import { emptyAttr, splitNs } from '../util/attr.js';
import type { Inode } from './inode.js';
import type { InodeTable } from './inodes.js';
import type { LinkSets } from './link-sets.js';
import type { LowerStack } from './lower-stack.js';
import type { UpperStore } from './upper.js';

/** Who mounted: what mapped owners show (read once, not per attr). */
const UID = process.getuid?.() ?? 0;
const GID = process.getgid?.() ?? 0;

export class InodeAttr {
  constructor(
    private readonly stack: LowerStack,
    private readonly store: UpperStore,
    private readonly links: LinkSets,
    private readonly inodes: InodeTable,
    /** Show every owner as the mounting user. */
    private readonly mapOwners: boolean,
  ) {}

  /** `fresh`: the inode's upper lstat, when the caller has just taken it. */
  of(node: Inode, fresh?: fs.BigIntStats): Attr {
    if (node.removedAttr) return { ...node.removedAttr };
    const a = emptyAttr();
    if (!node.upper) {
      this.stack.fillAttr(node.lower!, a);
      a.ino = this.inodes.stInoOf(node, undefined);
      return this.mapOwner(a);
    }
    const byFd = node.unlinked && node.anyFd >= 0;
    const st = fresh && !byFd ? fresh : this.store.stat(byFd ? node.anyFd : this.links.upperPath(node));
    fillFromStats(a, st);
    if (node.kept === undefined) node.kept = this.store.kept.stat(byFd ? node.anyFd : this.links.upperPath(node), st) ?? null;
    if (node.kept) ({ uid: a.uid, gid: a.gid, mode: a.mode, rdev: a.rdev } = node.kept);
    a.ino = this.inodes.stInoOf(node, st);
    if (node.indexed) a.nlink = node.unlinked ? 0 : this.links.count(node, st);
    return this.mapOwner(a);
  }

  private mapOwner(a: Attr): Attr {
    if (this.mapOwners) {
      a.uid = UID;
      a.gid = GID;
    }
    return a;
  }
}

function fillFromStats(a: Attr, st: fs.BigIntStats): void {
  a.mode = Number(st.mode);
  a.nlink = Number(st.nlink);
  a.uid = Number(st.uid);
  a.gid = Number(st.gid);
  a.rdev = Number(st.rdev);
  a.size = Number(st.size);
  a.blocks = Number(st.blocks);
  [a.atimeSec, a.atimeNsec] = splitNs(st.atimeNs);
  [a.mtimeSec, a.mtimeNsec] = splitNs(st.mtimeNs);
  [a.ctimeSec, a.ctimeNsec] = splitNs(st.ctimeNs);
}
