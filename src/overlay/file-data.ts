// The bytes of a writable instance's files: read from the lower until copy-up, then from the upper
// file, whose chunks a lazy copy-up has not filled yet still come from the lower (lazy.ts). Writes,
// truncates and fallocate fill the chunks they touch in part first, and count against the size
// limit (space.ts) before they change anything. A write's fill (1 MiB copied and synced per chunk)
// runs off Node's thread, so the other mounts one process serves are answered meanwhile; until it
// settles, every later change of that file's data waits its turn (pending/track), and at most
// FILLS_AT_ONCE fills of an instance run at once (a hung lower holds that many of libuv's threads).
import * as fs from 'node:fs';
import { releaseReply, type FdRange, type FdRanges, type ReadReply } from '../vfs/api.js';
import { fsError } from '../util/errors.js';
import { CHUNK } from './lazy.js';
import type { CopyUp } from './copyup.js';
import type { FileHandle } from './handles.js';
import type { Inode } from './inode.js';
import type { LinkSets } from './link-sets.js';
import type { LowerStack } from './lower-stack.js';
import type { DataSpace } from './space.js';
import type { UpperStore } from './upper.js';
import { S_IFDIR } from '../vfs/mode.js';

const { O_RDONLY, O_RDWR, O_TRUNC, O_CREAT, O_EXCL, O_NOCTTY, O_DIRECT, O_APPEND } = fs.constants;
const FILLS_AT_ONCE = 2;

export class FileData {
  /** The last data change of each inode still in flight off Node's thread; later ones chain behind it. */
  private readonly inFlight = new Map<Inode, Promise<unknown>>();
  private fills = 0;
  private readonly fillQueue: Array<() => void> = [];
  /**
   * Fills run off the loop when asked (InstanceOptions.fillsOffLoop), unless the instance has a size
   * limit: it checks free space before a change and counts it after, which changes of other files
   * in flight meanwhile would overshoot.
   */
  private readonly offLoop: boolean;

  constructor(
    private readonly store: UpperStore,
    private readonly stack: LowerStack,
    private readonly links: LinkSets,
    private readonly copy: CopyUp,
    private readonly space: DataSpace,
    fillsOffLoop: boolean,
  ) {
    this.offLoop = fillsOffLoop && space.copyOnChange === 'lazy';
  }

  /** Settles once the data change of `node` in flight (if any) has; undefined when none is. */
  pending(node: Inode): Promise<void> | undefined {
    const p = this.inFlight.get(node);
    return p?.then(
      () => undefined,
      () => undefined,
    );
  }

  /** `p` changes `node`'s data: the next change of it waits for `p`. */
  track<T>(node: Inode, p: Promise<T>): Promise<T> {
    this.inFlight.set(node, p);
    const done = (): void => void (this.inFlight.get(node) === p && this.inFlight.delete(node));
    p.then(done, done);
    return p;
  }

  /** Run `change` of `node`'s data now, or once the change in flight has settled. */
  inTurn<T>(node: Inode, change: () => T): T | Promise<T> {
    const waiting = this.pending(node);
    return waiting ? this.track(node, waiting.then(change)) : change();
  }

  /** Settles once every change in flight has (the instance goes away); undefined when none is. */
  settled(): Promise<void> | undefined {
    if (this.inFlight.size === 0) return undefined;
    return Promise.allSettled([...this.inFlight.values()]).then(() => this.settled());
  }

  /**
   * Open an inode's upper file (O_TRUNC of a lazy copy: nothing more comes from the lower); one with
   * no name left (opened again through /proc/PID/fd) through a descriptor still open on it.
   */
  openUpper(node: Inode, flags: number): number {
    const path = node.unlinked && node.anyFd >= 0 ? `/proc/self/fd/${node.anyFd}` : this.links.upperPath(node);
    const fd = this.store.open(path, flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_DIRECT));
    if (flags & O_TRUNC && node.lazy) {
      node.lazy.limit = 0;
      this.copy.saveLazy(node, fd);
    }
    return fd;
  }

  read(h: FileHandle, pos: number, len: number): ReadReply | Promise<ReadReply> {
    const node = h.inode;
    if (!node.upper) return this.stack.read(node.lower!, pos, len);
    if (h.fd < 0) h.fd = this.openUpper(node, O_RDONLY); // copied up since it was opened
    const size = Number(fs.fstatSync(h.fd).size);
    const end = Math.min(size, pos + len);
    if (end <= pos) return Buffer.alloc(0);
    const runs = node.lazy ? node.lazy.runs(pos, end) : [{ lower: false, pos, len: end - pos }];
    if (this.offLoop) return this.readRanges(h.fd, node, runs);
    const out = Buffer.allocUnsafe(end - pos);
    for (const r of runs) {
      const at = r.pos - pos;
      if (r.lower) {
        const n = this.stack.readInto(node.lower!, r.pos, out, at, r.len);
        if (n < r.len) out.fill(0, at + n, at + r.len);
      } else {
        let done = 0;
        while (done < r.len) {
          const n = fs.readSync(h.fd, out, at + done, r.len - done, r.pos + done);
          if (n === 0) break;
          done += n;
        }
        if (done < r.len) out.fill(0, at + done, at + r.len);
      }
    }
    return out;
  }

  /**
   * read() of an upper file without touching its bytes on Node's thread: ranges of the upper file
   * and of the lower one (which the backend reads on its own threads), or, when a lower layer
   * answers in decoded bytes, the runs read on libuv's threads and joined.
   */
  private readRanges(fd: number, node: Inode, runs: Array<{ lower: boolean; pos: number; len: number }>): ReadReply | Promise<ReadReply> {
    const parts = runs.map((r) => (r.lower ? this.stack.read(node.lower!, r.pos, r.len) : [{ fd, pos: r.pos, len: r.len }]));
    if (parts.every((p) => Array.isArray(p))) {
      const out: FdRanges = [];
      const held = (parts as FdRanges[]).filter((p) => p.release);
      if (held.length) out.release = () => held.forEach((p) => p.release!());
      parts.forEach((p, i) => {
        const got = (p as FdRange[]).reduce((n, x) => n + x.len, 0);
        out.push(...(p as FdRange[]));
        if (got < runs[i]!.len) out.push({ fd: -1, pos: 0, len: runs[i]!.len - got }); // the lower ends early: zeros, as read() gives
      });
      return out;
    }
    return Promise.all(parts.map(async (p, i) => {
      const got = await p;
      let buf: Buffer;
      try {
        buf = Buffer.isBuffer(got) ? got : Buffer.concat(await Promise.all(got.map((x) => (x.fd < 0 ? Buffer.alloc(x.len) : readRange(x)))));
      } finally {
        releaseReply(got);
      }
      return buf.length < runs[i]!.len ? Buffer.concat([buf, Buffer.alloc(runs[i]!.len - buf.length)]) : buf;
    })).then((bufs) => Buffer.concat(bufs));
  }

  write(h: FileHandle, data: Buffer, pos: number): number | Promise<number> {
    const waiting = this.pending(h.inode);
    if (waiting) return this.track(h.inode, waiting.then(() => this.writeNow(h, data, pos)));
    const r = this.writeNow(h, data, pos);
    return typeof r === 'number' ? r : this.track(h.inode, r);
  }

  private writeNow(h: FileHandle, data: Buffer, pos: number): number | Promise<number> {
    if (h.fd < 0) throw fsError('EBADF');
    const node = h.inode;
    const append = (h.flags & O_APPEND) !== 0;
    const before = this.space.reserveWrite(h.fd, node.lazy, append, pos, data.length);
    if (this.offLoop && node.lazy && !append && node.lazy.missing(pos, pos + data.length).length) return this.writeFilling(h, data, pos, before);
    // Chunks the write covers only in part get their lower bytes first; the ones it covers whole
    // are marked present only once its bytes are in (a crash in between shows the old chunk).
    const covered = node.lazy && !append ? this.prepareLazyWrite(node, h.fd, pos, pos + data.length) : [];
    let done = 0;
    try {
      while (done < data.length) done += fs.writeSync(h.fd, data, done, data.length - done, pos + done);
    } catch (err) {
      if (done === 0 || covered.length) throw err; // ENOSPC half-way: report what was written, unless a chunk is half new
    } finally {
      this.space.settle(h.fd, before);
    }
    if (covered.length && node.lazy) this.copy.markPresent(node, h.fd, covered);
    return done;
  }

  /** write() whose chunks need their lower bytes first: the same steps, the copying and syncing off the loop. */
  private async writeFilling(h: FileHandle, data: Buffer, pos: number, before: number): Promise<number> {
    const node = h.inode;
    const lazy = node.lazy!;
    const end = pos + data.length;
    const touched = lazy.missing(pos, end);
    const whole = (c: number): boolean => pos <= c * CHUNK && end >= Math.min((c + 1) * CHUNK, lazy.limit);
    await this.oneOfFills(() => this.copy.fillOffLoop(node, h.fd, touched.filter((c) => !whole(c))));
    const covered = touched.filter(whole);
    let done = 0;
    try {
      while (done < data.length) done += fs.writeSync(h.fd, data, done, data.length - done, pos + done);
    } catch (err) {
      if (done === 0 || covered.length) throw err; // as in write()
    } finally {
      this.space.settle(h.fd, before);
    }
    if (covered.length && node.lazy) await this.copy.markPresentOffLoop(node, h.fd, covered);
    return done;
  }

  /** Run `fill` once fewer than FILLS_AT_ONCE of this instance's fills are running. */
  private async oneOfFills(fill: () => Promise<void>): Promise<void> {
    if (this.fills >= FILLS_AT_ONCE) await new Promise<void>((res) => this.fillQueue.push(res));
    this.fills++;
    try {
      await fill();
    } finally {
      this.fills--;
      this.fillQueue.shift()?.();
    }
  }

  /** Fill the chunks [pos, end) touches in part; returns the ones it covers whole, still to be marked. */
  private prepareLazyWrite(node: Inode, fd: number, pos: number, end: number): number[] {
    const lazy = node.lazy!;
    const touched = lazy.missing(pos, end);
    if (touched.length === 0) return [];
    const whole = (c: number): boolean => pos <= c * CHUNK && end >= Math.min((c + 1) * CHUNK, lazy.limit);
    this.copy.fill(node, fd, touched.filter((c) => !whole(c)));
    return touched.filter(whole);
  }

  /** Sync an open file's upper bytes (nothing when it was only read from the lower). */
  fsync(h: FileHandle, datasync: boolean): Promise<void> | void {
    if (h.fd < 0 && !h.inode.upper) return; // read from the lower only: nothing of it was written
    if (h.fd < 0) h.fd = this.openUpper(h.inode, O_RDONLY); // copied up through another handle: sync that file
    return new Promise((res, rej) => (datasync ? fs.fdatasync : fs.fsync)(h.fd, (err) => (err ? rej(err) : res())));
  }

  /** Cut or extend an upper file to `size`, through `fd` when the caller has one open (else -1). */
  truncate(node: Inode, fd: number, size: number): void {
    if (node.type === S_IFDIR) throw fsError('EISDIR');
    const own = fd < 0 ? this.store.open(this.links.upperPath(node), O_RDWR) : fd;
    const before = this.space.allocated(own);
    try {
      // Bytes past the new size never come from the lower again; the chunk it cuts keeps its head.
      // The file shrinks before the map's limit does: a crash in between leaves a file shorter than
      // its limit, which loading clamps (LazyMap.clamp).
      const shrinkLazy = node.lazy !== null && size < node.lazy.limit;
      if (shrinkLazy && size % CHUNK !== 0) {
        this.space.reserve(CHUNK); // the cut chunk keeps its head
        this.copy.fill(node, own, node.lazy!.missing(size, size + 1));
      }
      fs.ftruncateSync(own, size);
      if (shrinkLazy && node.lazy) {
        node.lazy.limit = size;
        this.copy.saveLazy(node, own);
      }
      this.space.settle(own, before);
    } finally {
      if (own !== fd) fs.closeSync(own);
    }
  }

  fallocate(h: FileHandle, mode: number, pos: number, len: number): void {
    if (h.fd < 0) throw fsError('EBADF');
    const before = this.space.allocated(h.fd);
    this.space.reserve(len + (h.inode.lazy ? h.inode.lazy.missing(pos, pos + len).length * CHUNK : 0));
    if (h.inode.lazy) this.copy.fill(h.inode, h.fd, h.inode.lazy.missing(pos, pos + len));
    this.store.sys.fallocate(h.fd, mode, pos, len);
    this.space.settle(h.fd, before);
  }
}

/** The bytes of one range, read on libuv's threads (short at the file's end). */
function readRange(r: FdRange): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(r.len);
  return new Promise((res, rej) => fs.read(r.fd, buf, 0, r.len, r.pos, (err, n) => (err ? rej(err) : res(buf.subarray(0, n)))));
}
