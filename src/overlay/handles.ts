// Open files and directories of a writable instance. A file handle holds its inode (memfs's File),
// not a name: a file unlinked or renamed while open keeps being read and written through it.
// Directory handles hold a listing snapshot (merged-listing.ts). Numbers are shared by both kinds.
import * as fs from 'node:fs';
import { fsError } from '../util/errors.js';
import type { Inode } from './inode.js';
import type { Parts } from './lower-stack.js';
import type { MergedListing } from './merged-listing.js';

export class FileHandle {
  constructor(
    readonly inode: Inode,
    /** Upper file descriptor; -1 while the file is read from the lower. */
    public fd: number,
    readonly flags: number,
    /** The lower file this handle holds open in its layer (layers that read through descriptors). */
    readonly held: Parts | null,
  ) {}
}

export class Handles {
  private readonly files = new Map<number, FileHandle>();
  private readonly dirs = new Map<number, MergedListing>();
  private next = 1;

  /** A new handle on `inode`, counted on it; its number. */
  openFile(inode: Inode, fd: number, flags: number, held: Parts | null): number {
    const fh = this.next++;
    this.files.set(fh, new FileHandle(inode, fd, flags, held));
    inode.opens++;
    if (fd >= 0) inode.anyFd = fd;
    return fh;
  }

  /** The open file `fh`: EBADF when there is none. */
  file(fh: number): FileHandle {
    const h = this.files.get(fh);
    if (!h) throw fsError('EBADF');
    return h;
  }

  /** The open file `fh`, if any. */
  fileOrNone(fh: number | undefined): FileHandle | undefined {
    return fh === undefined ? undefined : this.files.get(fh);
  }

  /** Close a file handle (its upper descriptor, its count on the inode); the handle, or undefined if unknown. */
  closeFile(fh: number): FileHandle | undefined {
    const h = this.files.get(fh);
    if (!h) return undefined;
    this.files.delete(fh);
    if (h.fd >= 0) fs.closeSync(h.fd);
    h.inode.opens--;
    if (h.inode.anyFd === h.fd) h.inode.anyFd = this.otherFd(h.inode);
    return h;
  }

  /** A descriptor another open handle holds on the inode (-1: none), so it stays reachable once nameless. */
  private otherFd(inode: Inode): number {
    if (inode.opens === 0) return -1;
    for (const h of this.files.values()) if (h.inode === inode && h.fd >= 0) return h.fd;
    return -1;
  }

  openDir(listing: MergedListing): number {
    const fh = this.next++;
    this.dirs.set(fh, listing);
    return fh;
  }

  /** The listing of directory handle `fh`: EBADF when there is none. */
  dir(fh: number): MergedListing {
    const l = this.dirs.get(fh);
    if (!l) throw fsError('EBADF');
    return l;
  }

  /** A fresh listing for a rewound directory handle. */
  relist(fh: number, listing: MergedListing): void {
    this.dirs.set(fh, listing);
  }

  closeDir(fh: number): void {
    this.dirs.delete(fh);
  }

  /** Close every upper descriptor (the instance goes away). */
  closeAll(): void {
    for (const h of this.files.values()) if (h.fd >= 0) fs.closeSync(h.fd);
    this.files.clear();
    this.dirs.clear();
  }
}
