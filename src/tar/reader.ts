// Positional reads of an archive through one reusable window. Consecutive headers (a tar of small
// files) are served from a window that grows to 1 MiB; a jump over a large body reads only a small
// window at the next header, so indexing reads about as many bytes as the archive has headers.
import { fstatSync, readSync, writeSync } from 'node:fs';

const MIN_WINDOW = 16 * 1024;
const MAX_WINDOW = 1024 * 1024;

export interface ArchiveReader {
  /** The archive's length; for a compressed archive still being decoded, what is known so far. */
  readonly size: number;
  /** Bytes `[pos, pos+len)`, fewer only at end of file. Valid until the next call. */
  read(pos: number, len: number): Buffer;
  /** Whether the archive is at least `end` bytes long (a compressed one decodes that far to know). */
  has(end: number): boolean;
  /** Progress of a scan that reached `pos`, in the units the user sees (compressed bytes, if so). */
  progress(pos: number): [done: number, total: number];
  /** Total bytes fetched from the file so far. */
  readonly bytesRead: number;
}

export class FdReader implements ArchiveReader {
  readonly size: number;
  bytesRead = 0;
  private win = Buffer.allocUnsafe(MIN_WINDOW);
  private winStart = 0;
  private winLen = 0;
  private nextWindow = MIN_WINDOW;

  constructor(private readonly fd: number, size?: number) {
    this.size = size ?? fstatSync(fd).size;
  }

  has(end: number): boolean {
    return end <= this.size;
  }

  progress(pos: number): [number, number] {
    return [pos, this.size];
  }

  read(pos: number, len: number): Buffer {
    if (pos >= this.winStart && pos + len <= this.winStart + this.winLen) {
      return this.win.subarray(pos - this.winStart, pos - this.winStart + len);
    }
    const sequential = pos >= this.winStart && pos <= this.winStart + this.winLen + MIN_WINDOW;
    this.nextWindow = sequential ? Math.min(MAX_WINDOW, this.nextWindow * 2) : MIN_WINDOW;
    const want = Math.max(len, this.nextWindow);
    if (this.win.length < want) this.win = Buffer.allocUnsafe(want);
    const n = readFully(this.fd, this.win, want, pos);
    this.bytesRead += n;
    this.winStart = pos;
    this.winLen = n;
    return this.win.subarray(0, Math.min(n, len));
  }
}

/** A read that is not an error when it stops early only at end of file. */
export function readFully(fd: number, buf: Buffer, len: number, pos: number, off = 0): number {
  let done = 0;
  while (done < len) {
    const n = readSync(fd, buf, off + done, len - done, pos + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/** A positioned write of all of `buf` (writeSync may write less than asked). */
export function writeFully(fd: number, buf: Buffer, pos: number): void {
  let done = 0;
  while (done < buf.length) done += writeSync(fd, buf, done, buf.length - done, pos + done);
}

/** An in-memory archive (tests, and archives already in a buffer). */
export class BufferReader implements ArchiveReader {
  bytesRead = 0;
  constructor(private readonly buf: Buffer) {}
  get size(): number {
    return this.buf.length;
  }
  has(end: number): boolean {
    return end <= this.buf.length;
  }
  progress(pos: number): [number, number] {
    return [pos, this.buf.length];
  }
  read(pos: number, len: number): Buffer {
    const out = this.buf.subarray(pos, Math.min(this.buf.length, pos + len));
    this.bytesRead += out.length;
    return out;
  }
}
