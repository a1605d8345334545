// Reads of a writable instance's lower files answered without JS. Until a regular file gets an
// upper copy, its bytes are its lower layer's, for good: a plain tar's member is one fixed range
// of the tar (fileRange), a compressed one's a stretch of a native stream's output (fileStream),
// exactly as on an image mount. The backend may then answer its reads itself (direct-reads.ts),
// but only while someone is told of the copy-up that ends it: the inode calls back once it gets
// an upper object (Inode.onUpper), before any byte of it can change, and the backend asks again.
import type { FdRange, FileStream } from '../vfs/api.js';
import { S_IFREG } from '../vfs/mode.js';
import type { InodeTable } from './inodes.js';
import type { LowerStack, Parts } from './lower-stack.js';

export class LowerReads {
  private readonly watchers = new Set<(ino: number) => void>();
  private readonly moved = (ino: number): void => {
    for (const w of this.watchers) w(ino);
  };

  constructor(
    private readonly inodes: InodeTable,
    private readonly stack: LowerStack,
  ) {}

  /** `moved(ino)` once file `ino`, whose range or stream was handed out, has an upper copy. */
  watch(moved: (ino: number) => void): () => void {
    this.watchers.add(moved);
    return () => void this.watchers.delete(moved);
  }

  range(ino: number): FdRange | undefined {
    const parts = this.lowerOnly(ino);
    return parts && this.stack.fileRange(parts);
  }

  stream(ino: number, pos: number): FileStream | undefined {
    const parts = this.lowerOnly(ino);
    return parts && this.stack.fileStream(parts, pos);
  }

  /** The lower origin of a regular file with no upper copy, watched from now on; else undefined. */
  private lowerOnly(ino: number): Parts | undefined {
    if (this.watchers.size === 0) return undefined; // nobody would hear of its copy-up
    const node = this.inodes.known(ino);
    if (!node || node.upper || node.type !== S_IFREG || !node.lower || this.stack.readsByHandle(node.lower)) return undefined;
    node.onUpper = this.moved;
    return node.lower;
  }
}
