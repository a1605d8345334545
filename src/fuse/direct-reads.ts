// Direct reads: a file whose bytes are one fixed range of a descriptor (FileSystem.fileRange: a
// plain tar's member) is registered with C (readpool.c, readDirect) at its first READ, which JS
// still answers; C then answers its later READs without calling JS, until the kernel forgets the
// inode. A file being decoded by a native stream (FileSystem.fileStream: a compressed tar's member
// read sequentially) is registered on that stream (readStreamed) at a READ JS would answer; C
// answers the READs the stream holds bytes for, JS the rest (and registers again once the stream
// is done). On an immutable tree (an image mount) the range never changes; a writable instance's
// lower file is registered only while it has no upper copy: the tree tells of a copy-up
// (FileSystem.watchData) and its registration goes before the next request is read.
import type { FdRange, FileStream, FileSystem } from '../vfs/api.js';

export type Register = (ino: number, fd: number, pos: number, size: number) => boolean;
export type Streamed = (req: number, ino: number, stream: object, pos: number, size: number, off: number) => boolean;

export class DirectReads {
  private register: Register | null = null;
  private streamed: Streamed | null = null;
  private fs: FileSystem | null = null;
  /** Every inode asked, eligible or not: each is asked once until forgotten. */
  private readonly asked = new Set<number>();

  /** A mutable tree's watch of copy-ups (enable), stopped at the session's end. */
  private unwatch: (() => void) | undefined;

  enable(fs: FileSystem, register: Register, streamed?: Streamed): void {
    if (!fs.immutable && !fs.watchData) return;
    if (fs.fileRange) (this.fs = fs), (this.register = register);
    if (fs.fileStream && streamed) (this.fs = fs), (this.register = register), (this.streamed = streamed);
    if (this.register !== null && !fs.immutable) this.unwatch = fs.watchData!((ino) => this.forgot(ino));
  }

  /** The session ended. */
  end(): void {
    this.unwatch?.();
    this.unwatch = undefined;
  }

  /** Before JS answers READ `req` of `ino` at `pos`: true if C took it (a streamed file). */
  reading(req: number, ino: number, pos: number): boolean {
    if (this.register === null) return false;
    if (!this.asked.has(ino)) {
      this.asked.add(ino);
      let r: FdRange | undefined;
      try { r = this.fs!.fileRange?.(ino); } catch { r = undefined; } // this READ reports any error
      if (r && r.fd >= 0) this.register(ino, r.fd, r.pos, r.len);
    }
    if (this.streamed === null) return false;
    let st: FileStream | undefined;
    try { st = this.fs!.fileStream!(ino, pos); } catch { st = undefined; } // read() reports any error
    return st !== undefined && this.streamed(req, ino, st.stream, st.pos, st.len, pos);
  }

  forgot(ino: number): void {
    if (this.register !== null && this.asked.delete(ino)) this.register(ino, -1, 0, 0);
  }
}
