// Copy-up: giving a lower entry an upper copy before its first change, never on a read. Parents
// first; each copy is built under a temp name in the work dir (data, owner, mode, xattrs, times and
// the inode number it keeps) and renamed into place, so a crash never shows a half copy. A big file
// is copied lazily: a sparse file of full size with a chunk map, filled chunk by chunk on demand.
// A lower hard-link set is copied once into the index and its names linked to it (link-sets.ts).
// Ordering against crashes: copied bytes are fdatasync'ed before the rename that makes them
// visible, and before a lazy chunk is marked present (as kernel overlayfs syncs its copy-ups).
import * as fs from 'node:fs';
import { releaseReply, type Attr } from '../vfs/api.js';
import { emptyAttr, majorOf, minorOf } from '../util/attr.js';
import { CHUNK, LazyMap } from './lazy.js';
import type { LowerStack, Parts } from './lower-stack.js';
import type { Inode } from './inode.js';
import type { LinkSets } from './link-sets.js';
import type { UpperStore } from './upper.js';
import { X_LAZY, isInternalXattr } from './upper-format.js';
import { S_IFLNK, S_IFMT, S_IFREG } from '../vfs/mode.js';
import { fsError } from '../util/errors.js';

/** Files up to this size are copied whole at once; bigger ones lazily. */
export const EAGER_MAX = CHUNK;

/**
 * Test hook (read once, at daemon start): TARSTACK_TEST_PAUSE_COPYUP_AT=<byte> stops the daemon for
 * good once a copy-up has copied a file's bytes up to that offset, so a test can kill it mid-copy.
 */
const PAUSE_AT = Number(process.env.TARSTACK_TEST_PAUSE_COPYUP_AT ?? -1);

function pauseForever(at: number): void {
  fs.writeSync(2, `tarstack daemon ${process.pid}: test hook: copy-up paused at byte ${at}\n`);
  for (;;) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
}

export type DataMode = 'lazy' | 'meta' | 'full' | 'none';


export class CopyUp {
  constructor(
    private readonly store: UpperStore,
    private readonly stack: LowerStack,
    private readonly links: LinkSets,
    /** Never copy lazily: the upper is read directly by other tools (kernel overlayfs, podman). */
    private readonly wholeFiles = false,
  ) {}

  lowerAttr(node: Inode): Attr {
    const a = emptyAttr();
    this.stack.fillAttr(node.lower!, a);
    return a;
  }

  /** Make sure a directory (and its ancestors) exists in the upper layer. */
  dir(node: Inode): void {
    // Top down, without recursion: a tar may nest directories 10,000 deep.
    const missing: Inode[] = [];
    for (let n: Inode | null = node; n && !n.upper; n = n.link.dir) {
      if (!n.link.dir) throw new Error('the root always has an upper directory');
      missing.push(n);
    }
    for (let i = missing.length - 1; i >= 0; i--) this.oneDir(missing[i]!);
  }

  private oneDir(node: Inode): void {
    const a = this.lowerAttr(node);
    const tmp = this.store.tmp();
    this.store.make.dir(tmp, a.mode);
    this.finish(tmp, node, a, -1);
    this.intoParent(node, tmp);
    node.upper = true;
    node.kept = undefined;
  }

  /** Rename a built copy to its name, keeping the parent's times (a copy-up does not change the directory). */
  private intoParent(node: Inode, tmp: string): void {
    this.store.keepingTimes(this.store.abs(node.link.dir!.relPath()), () => this.store.rename(tmp, this.store.abs(node.relPath())));
  }

  /**
   * An upper entry for this very name of an inode. A copied-up hard-link set is linked into the
   * upper under one of its names only; the others stay lower names until an operation needs them.
   */
  name(dir: Inode, name: string, node: Inode): void {
    if (!node.indexed) return;
    if (this.store.lstat(this.store.abs(dir.childPath(name)))) return;
    this.dir(dir);
    this.links.linkName(node, dir, name);
  }

  /**
   * Give a non-directory an upper copy. `data`: 'lazy' copies small files whole and big ones on
   * demand, 'meta' copies no bytes yet whatever the size (a size-limited instance: a metadata
   * change needs no data space), 'full' copies all bytes now, 'none' copies no bytes (the caller
   * truncates to zero).
   */
  file(node: Inode, data: DataMode): void {
    if (node.upper) return;
    this.dir(node.link.dir!);
    const a = this.lowerAttr(node);
    const tmp = this.store.tmp();
    try {
      this.build(node, a, tmp, data);
    } catch (err) {
      this.store.removeIfThere(tmp); // e.g. ENOSPC half-way: the temp copy must not eat the space it needs
      throw err;
    }
    node.upper = true;
    node.kept = undefined;
  }

  private build(node: Inode, a: Attr, tmp: string, data: DataMode): void {
    const lower = node.lower!;
    let lazy: LazyMap | null = null;
    const type = a.mode & S_IFMT;
    if (type === S_IFREG) {
      const fd = this.store.make.file(tmp, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_RDWR, 0o600);
      try {
        // A lazy copy finds its lower again at the next mount by inode number.
        const mustBeWhole = this.wholeFiles || !this.stack.locatableByIno(lower);
        const whole = data === 'full' || (data === 'lazy' && a.size <= EAGER_MAX) || (data !== 'none' && mustBeWhole);
        if (whole) {
          this.copyBytes(lower, fd, 0, a.size);
          if (a.size > 0) fs.fdatasyncSync(fd); // the bytes are on disk before the rename shows them
        } else {
          fs.ftruncateSync(fd, data === 'none' ? 0 : a.size);
          if ((data === 'lazy' || data === 'meta') && a.size > 0) {
            lazy = LazyMap.fresh(a.size);
            this.store.setX(fd, X_LAZY, lazy.encode());
          }
        }
        this.finish(tmp, node, a, fd);
      } finally {
        fs.closeSync(fd);
      }
    } else if (type === S_IFLNK) {
      this.store.make.symlink(tmp, this.stack.readlink(lower));
      this.finish(tmp, node, a, -1);
    } else {
      this.store.make.node(tmp, a.mode, majorOf(a.rdev), minorOf(a.rdev));
      this.finish(tmp, node, a, -1);
    }
    if (a.nlink > 1 && this.links.indexing) {
      // A hard-link set of any type: its one upper inode lives in the index; this name links to it.
      // (With no private metadata every name is copied apart, as kernel overlayfs does with index=off.)
      this.links.adopt(node, tmp, a.nlink);
    } else {
      this.intoParent(node, tmp);
    }
    node.lazy = lazy;
  }

  /** Owner, mode, xattrs, the kept inode number, then times (last: every other step changes them). */
  private finish(tmp: string, node: Inode, a: Attr, fd: number): void {
    const target = fd >= 0 ? fd : tmp;
    const type = a.mode & S_IFMT;
    this.store.make.own(tmp, { uid: a.uid, gid: a.gid, mode: a.mode, rdev: a.rdev });
    for (const name of this.stack.xattrNames(node.lower!)) {
      if (isInternalXattr(name)) continue;
      this.store.setXattr(target, name, this.stack.getxattr(node.lower!, name)!, 0); // what the host refuses is kept (kept.ts)
    }
    this.store.setIno(target, node.ino, this.store.kept.refusedDevice(a.mode, a.rdev) ? S_IFREG : type); // a stand-in is a file
    this.store.sys.utimens(target, a.atimeSec, a.atimeNsec, a.mtimeSec, a.mtimeNsec);
  }

  /** Copy lower bytes [pos, pos+len) of a file into `fd` at the same offsets. */
  copyBytes(lower: Parts, fd: number, pos: number, len: number): void {
    const buf = Buffer.allocUnsafe(Math.min(len, CHUNK) || 1);
    for (let at = pos; at < pos + len; ) {
      if (at === PAUSE_AT) pauseForever(at);
      const n = Math.min(buf.length, pos + len - at, at < PAUSE_AT ? PAUSE_AT - at : Infinity);
      const off = this.stack.readInto(lower, at, buf, 0, n);
      let w = 0;
      while (w < off) w += fs.writeSync(fd, buf, w, off - w, at + w);
      at += off;
      if (off === 0) break;
    }
  }

  /** Fill the given chunks of a lazily copied file from the lower, then record them as present. */
  fill(node: Inode, fd: number, chunks: number[]): void {
    const lazy = node.lazy!;
    if (chunks.length === 0) return;
    for (const c of chunks) {
      const pos = c * CHUNK;
      this.copyBytes(node.lower!, fd, pos, Math.min(CHUNK, lazy.limit - pos));
    }
    this.markPresent(node, fd, chunks);
  }

  /**
   * fill(), with the bytes read, written and synced off Node's thread, so the other mounts of the
   * process are answered meanwhile. The caller keeps every other change of the node's data out until
   * it settles (file-data.ts). A layer that reads through descriptors holds this file's open for the
   * copy. The test hook's pause point is met by fill() instead.
   */
  async fillOffLoop(node: Inode, fd: number, chunks: number[]): Promise<void> {
    const lazy = node.lazy!;
    if (chunks.length === 0) return;
    const lower = node.lower!;
    const ranges = chunks.map((c) => [c * CHUNK, Math.min(CHUNK, lazy.limit - c * CHUNK)] as const);
    if (PAUSE_AT >= 0 && ranges.some(([pos, len]) => PAUSE_AT >= pos && PAUSE_AT < pos + len)) return this.fill(node, fd, chunks);
    const held = this.stack.readsByHandle(lower);
    if (held) this.stack.openFile(lower);
    try {
      for (const [pos, len] of ranges) await this.copyBytesOffLoop(lower, fd, pos, len);
    } finally {
      if (held) this.stack.closeFile(lower);
    }
    await fdatasync(fd);
    this.mark(node, fd, chunks);
  }

  /** markPresent() with the sync off Node's thread. */
  async markPresentOffLoop(node: Inode, fd: number, chunks: number[]): Promise<void> {
    await fdatasync(fd);
    this.mark(node, fd, chunks);
  }

  /** copyBytes() through the layer's read (ranges of its files, or decoded bytes) and libuv's threads. */
  private async copyBytesOffLoop(lower: Parts, fd: number, pos: number, len: number): Promise<void> {
    const reply = await this.stack.read(lower, pos, len);
    if (Buffer.isBuffer(reply)) return writeAll(fd, reply, pos);
    try {
      let at = pos;
      for (const r of reply) {
        await writeAll(fd, r.fd < 0 ? Buffer.alloc(r.len) : await readAll(r.fd, r.len, r.pos), at);
        at += r.len;
      }
    } finally {
      releaseReply(reply);
    }
  }

  /**
   * Record chunks whose bytes are now in the upper file: synced first, so a crash never leaves a
   * chunk marked present over bytes that never reached the disk; on failure (ENOSPC) nothing is marked.
   */
  markPresent(node: Inode, fd: number, chunks: number[]): void {
    fs.fdatasyncSync(fd);
    this.mark(node, fd, chunks);
  }

  /** The chunks' bytes are synced: record them as present. */
  private mark(node: Inode, fd: number, chunks: number[]): void {
    const lazy = node.lazy!;
    const before = lazy.encode();
    for (const c of chunks) lazy.mark(c);
    try {
      this.saveLazy(node, fd);
    } catch (err) {
      node.lazy = LazyMap.decode(before);
      throw err;
    }
  }

  /** Persist the chunk map (or drop it once nothing comes from the lower). */
  saveLazy(node: Inode, fd: number): void {
    const lazy = node.lazy!;
    if (lazy.complete()) {
      this.store.sys.removexattr(fd, X_LAZY);
      node.lazy = null;
    } else {
      this.store.setX(fd, X_LAZY, lazy.encode());
    }
  }
}

const fdatasync = (fd: number): Promise<void> => new Promise((res, rej) => fs.fdatasync(fd, (err) => (err ? rej(err) : res())));

/** `len` bytes of `fd` at `pos`, read on libuv's threads; a file shorter than that is EIO (it changed). */
async function readAll(fd: number, len: number, pos: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(len);
  for (let done = 0; done < len; ) {
    const n = await new Promise<number>((res, rej) => fs.read(fd, buf, done, len - done, pos + done, (err, got) => (err ? rej(err) : res(got))));
    if (n === 0) throw fsError('EIO', 'a lower file is shorter than its index says');
    done += n;
  }
  return buf;
}

async function writeAll(fd: number, buf: Buffer, pos: number): Promise<void> {
  for (let done = 0; done < buf.length; ) {
    done += await new Promise<number>((res, rej) => fs.write(fd, buf, done, buf.length - done, pos + done, (err, n) => (err ? rej(err) : res(n))));
  }
}
