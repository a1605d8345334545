// Direct reads (openless mounts): a file whose bytes are one fixed range of a descriptor
// (FileSystem.fileRange: a plain tar's member) is registered with C (readpool.c, readDirect) at
// its first READ, which JS still answers; C then answers its later READs without calling JS,
// until the kernel forgets the inode. Only for immutable trees: the range never changes.
import type { FdRange, FileSystem } from '../vfs/api.js';

export type Register = (ino: number, fd: number, pos: number, size: number) => boolean;

export class DirectReads {
  private register: Register | null = null;
  private fs: FileSystem | null = null;
  /** Every inode asked, eligible or not: each is asked once until forgotten. */
  private readonly asked = new Set<number>();

  enable(fs: FileSystem, register: Register): void {
    if (fs.fileRange) (this.fs = fs), (this.register = register);
  }

  /** Before JS answers a READ of `ino`. */
  reading(ino: number): void {
    if (this.register === null || this.asked.has(ino)) return;
    this.asked.add(ino);
    let r: FdRange | undefined;
    try { r = this.fs!.fileRange!(ino); } catch { r = undefined; } // this READ reports any error
    if (r && r.fd >= 0) this.register(ino, r.fd, r.pos, r.len);
  }

  forgot(ino: number): void {
    if (this.register !== null && this.asked.delete(ino)) this.register(ino, -1, 0, 0);
  }
}
