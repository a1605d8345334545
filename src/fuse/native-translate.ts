// Turns kernel requests from the libfuse3 binding (lowlevel.ts) into FileSystem calls and their
// results into replies. Every request is answered exactly once whether the FileSystem answers
// synchronously, asynchronously or by throwing; errors become errnos in one place (fail).
import { constants } from 'node:os';
import { errnoOf, FsError } from '../util/errors.js';
import * as ll from './lowlevel.js';
import { Slot } from './lowlevel.js';
import type { Attr, CreateReply, DirEntry, Entry, FileSystem, OpenReply, ReadReply, Statfs, WritableFileSystem } from '../vfs/api.js';
import { isWritable } from '../vfs/api.js';
import { KillPriv } from './killpriv.js';
import { callerIn, setAttrIn } from './request-in.js';
import { BackingOpens, type Passthrough } from './passthrough.js';
import { DirectReads, type Register, type Streamed } from './direct-reads.js';

type Maybe<T> = T | Promise<T>;
/** The FileSystem methods a request calls, and what each gives back once settled. */
type Method = Exclude<keyof WritableFileSystem, 'immutable' | 'needsOpen' | 'readdir' | 'forget' | 'destroy' | 'fileRange' | 'fileStream' | 'watchData'>;
type Result<K extends Method> = Awaited<ReturnType<WritableFileSystem[K]>>;

const { ENOENT, ENOSYS } = constants.errno;
const O_RDONLY = 0;

/** A promise or any thenable; decided without allocating for plain values. */
function isThenable<T>(v: Maybe<T>): v is Promise<T> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

export interface CachePolicy {
  entry: number; // seconds the kernel may keep a name -> inode answer
  attr: number; // seconds it may keep attributes
  negative: number; // seconds it may remember that a name is absent (0: never)
  keepCache: boolean; // keep file pages across opens
  cacheReaddir: boolean; // keep directory listings across opendirs
}

/** An immutable tree may be cached for a day; anything else for a second, like libfuse's default. */
export function cachePolicy(immutable: boolean): CachePolicy {
  return immutable
    ? { entry: 86400, attr: 86400, negative: 86400, keepCache: true, cacheReaddir: true }
    : { entry: 1, attr: 1, negative: 0, keepCache: false, cacheReaddir: false };
}

export class Translator {
  readonly handlers: ll.Handlers;
  /** The scratch array shared with C; slots named in ll.Slot. */
  private readonly x: Float64Array;
  private ranges = new Float64Array(3 * 16);
  /** Which opens pass through to a backing file (passthrough.ts); none until enabled. */
  private readonly backing = new BackingOpens();
  private readonly direct = new DirectReads();
  constructor(
    private readonly fs: FileSystem,
    private readonly n: ll.Native,
    private readonly cache: CachePolicy,
  ) {
    this.x = n.scratch;
    const h: ll.Handlers = {
      lookup: this.lookup,
      forget: this.forget,
      getattr: this.getattr,
      readlink: this.readlink,
      opendir: this.opendir,
      readdir: this.readdir,
      releasedir: this.releasedir,
      open: this.open,
      read: this.read,
      release: this.release,
      statfs: this.statfs,
      getxattr: this.getxattr,
      listxattr: this.listxattr,
    };
    if (isWritable(fs)) this.addWriteHandlers(h);
    this.handlers = h;
  }

  /** The write side: only a writable FileSystem gets it (a read-only mount is `ro` in the kernel). */
  private addWriteHandlers(h: ll.Handlers): void {
    const entry = this.answerEntry;
    const ok = this.answerOk;
    h.mknod = (req, parent, name, mode, rdev) => this.call(req, 'mknod', parent, entry, parent, name, mode, rdev, callerIn(this.x));
    h.mkdir = (req, parent, name, mode) => this.call(req, 'mkdir', parent, entry, parent, name, mode, callerIn(this.x));
    h.symlink = (req, target, parent, name) => this.call(req, 'symlink', parent, entry, parent, name, target, callerIn(this.x));
    h.link = (req, ino, np, nn) => this.call(req, 'link', ino, entry, ino, np, nn);
    h.unlink = (req, parent, name) => this.call(req, 'unlink', parent, ok, parent, name);
    h.rmdir = (req, parent, name) => this.call(req, 'rmdir', parent, ok, parent, name);
    h.rename = (req, p, n, np, nn, flags) => this.call(req, 'rename', p, ok, p, n, np, nn, flags);
    // No flush handler: writes reach the upper before they are answered, so close() has nothing to
    // report, and the kernel's ENOSYS memory then spares every close(2) a round trip (two for bash).
    h.fsync = (req, ino, fh, datasync) => this.call(req, 'fsync', ino, ok, ino, fh, datasync !== 0);
    h.fsyncdir = (req, ino, fh, datasync) => this.call(req, 'fsyncdir', ino, ok, ino, fh, datasync !== 0);
    h.setxattr = (req, ino, name, value, flags) => this.call(req, 'setxattr', ino, ok, ino, name, value, flags);
    h.removexattr = (req, ino, name) => this.call(req, 'removexattr', ino, ok, ino, name);
    h.fallocate = (req, ino, fh, mode, pos, len) => this.call(req, 'fallocate', ino, ok, ino, fh, mode, pos, len);
    h.setattr = (req, ino, toSet, fh) => {
      this.kill.changed(ino); // a chmod may add set-id bits
      const set = setAttrIn(this.x, toSet);
      const f = fh === -1 ? undefined : fh;
      const caller = callerIn(this.x);
      if (!this.x[Slot.CALLER_KILL]) return this.call(req, 'setattr', ino, this.answerAttr, ino, set, f, caller);
      // Truncate without CAP_FSETID, or chown: the set-id bits go in the same change.
      this.kill.before(ino, undefined, caller, set, () => this.call(req, 'setattr', ino, this.answerAttr, ino, set, f, caller), (e) => this.fail(req, 'setattr', ino, e));
    };
    h.write = (req, ino, fh, data, pos) => {
      if (!this.x[Slot.CALLER_KILL]) return this.call(req, 'write', ino, this.answerWrite, ino, fh, data, pos);
      this.kill.before(ino, fh, callerIn(this.x), null, () => this.call(req, 'write', ino, this.answerWrite, ino, fh, data, pos), (e) => this.fail(req, 'write', ino, e));
    };
    h.create = (req, parent, name, mode, flags) => this.call(req, 'create', parent, this.answerCreate, parent, name, mode, flags, callerIn(this.x));
  }

  /** FUSE_HANDLE_KILLPRIV_V2 (killpriv.ts): set-id bits the translator clears; off until enabled. */
  readonly kill = new KillPriv();

  /** Zero-message opens: the kernel was answered ENOSYS to its first OPEN and OPENDIR and, as
   *  FUSE_CAP_NO_OPEN(DIR)_SUPPORT promises, sends no OPEN, OPENDIR, RELEASE or RELEASEDIR again
   *  (keep_cache and cache_readdir become its defaults). Each READ and READDIR then opens and
   *  releases a handle of its own. Only for immutable, read-only mounts: nothing can notice. */
  private openless = false;

  enableOpenless(): void { this.openless = true; }

  /** READs C answers without JS (direct-reads.ts): openless mounts, and writable trees that tell of copy-ups. */
  enableDirectReads(register: Register, streamed?: Streamed): void { if (this.openless || !this.fs.immutable) this.direct.enable(this.fs, register, streamed); }

  /** The session ended: the tree need not tell it of copy-ups any more. */
  ended(): void { this.direct.end(); }

  /** Passthrough was negotiated: OpenReply.backingFd is used from now on. */
  enablePassthrough(pt: Passthrough): void { this.backing.enable(pt); }

  /** Opens that went through a backing file so far (for status and tests). */
  passthroughOpens(): number { return this.backing.opens(); }

  // ---- the errno funnel --------------------------------------------------------------------

  private fail(req: ll.Req, op: string, ino: number, err: unknown): void {
    if (!(err instanceof FsError)) {
      console.error(`tarstack: ${op} (ino ${ino}) failed unexpectedly:`, err);
    }
    const errno = errnoOf(err);
    if (op === 'lookup' && errno === ENOENT && this.cache.negative > 0) {
      this.x[Slot.NODEID] = 0; // a negative entry: the kernel remembers the name is absent
      this.x[Slot.ATTR_TIMEOUT] = 0;
      this.x[Slot.ENTRY_TIMEOUT] = this.cache.negative;
      if (this.n.replyEntry(req)) return;
    }
    this.n.replyErr(req, errno);
  }

  /**
   * The one way a request reaches the FileSystem: calls method `op` with `args` and answers
   * through `done`, whether it returns, resolves, throws or rejects. (Arguments are positional,
   * not a closure or an array, so a request allocates nothing here.)
   */
  private call<K extends Method>(req: ll.Req, op: K, ino: number, done: (req: ll.Req, v: Result<K>, ino: number) => void, ...args: Parameters<WritableFileSystem[K]>): void;
  private call(req: ll.Req, op: Method, ino: number, done: (req: ll.Req, v: unknown, ino: number) => void, a?: unknown, b?: unknown, c?: unknown, d?: unknown, e?: unknown): void {
    let r: unknown;
    try {
      r = (this.fs as unknown as Record<Method, (...args: unknown[]) => unknown>)[op](a, b, c, d, e);
    } catch (err) {
      return this.fail(req, op, ino, err);
    }
    this.settle(req, op, ino, r, done);
  }

  private settle<T>(req: ll.Req, op: string, ino: number, r: Maybe<T>, done: (req: ll.Req, v: T, ino: number) => void): void {
    if (isThenable(r)) {
      r.then(
        (v) => this.finish(req, op, ino, v, done),
        (e: unknown) => this.fail(req, op, ino, e),
      );
    } else {
      this.finish(req, op, ino, r, done);
    }
  }

  private finish<T>(req: ll.Req, op: string, ino: number, v: T, done: (req: ll.Req, v: T, ino: number) => void): void {
    try {
      done(req, v, ino);
    } catch (e) {
      this.fail(req, op, ino, e); // e.g. a malformed result the binding refused; no-op if answered
    }
  }

  // ---- answers -----------------------------------------------------------------------------

  private putAttr(a: Attr): void {
    const x = this.x;
    x[Slot.ATTR_INO] = a.ino, x[Slot.ATTR_MODE] = a.mode, x[Slot.ATTR_NLINK] = a.nlink;
    x[Slot.ATTR_UID] = a.uid, x[Slot.ATTR_GID] = a.gid, x[Slot.ATTR_RDEV] = a.rdev;
    x[Slot.ATTR_SIZE] = a.size, x[Slot.ATTR_BLOCKS] = a.blocks;
    x[Slot.ATTR_ATIME] = a.atimeSec, x[Slot.ATTR_ATIME_NSEC] = a.atimeNsec;
    x[Slot.ATTR_MTIME] = a.mtimeSec, x[Slot.ATTR_MTIME_NSEC] = a.mtimeNsec;
    x[Slot.ATTR_CTIME] = a.ctimeSec, x[Slot.ATTR_CTIME_NSEC] = a.ctimeNsec;
    x[Slot.ATTR_TIMEOUT] = this.cache.attr;
    x[Slot.ENTRY_TIMEOUT] = this.cache.entry;
  }

  private readonly answerEntry = (req: ll.Req, e: Entry): void => {
    this.putAttr(e.attr);
    this.x[Slot.NODEID] = e.ino;
    this.x[Slot.GENERATION] = e.generation;
    this.n.replyEntry(req);
  };
  private readonly answerAttr = (req: ll.Req, a: Attr): void => {
    this.putAttr(a);
    this.n.replyAttr(req);
  };
  private readonly answerReadlink = (req: ll.Req, target: string): void => {
    this.n.replyReadlink(req, target);
  };
  private readonly answerOpendir = (req: ll.Req, fh: number): void => {
    const c = this.cache.cacheReaddir ? ll.OPEN_CACHE_READDIR | ll.OPEN_KEEP_CACHE : 0;
    this.n.replyOpen(req, fh, c);
  };
  private readonly answerOpen = (req: ll.Req, o: OpenReply, ino: number): void => {
    const id = this.backing.enabled ? this.backing.backingFor(ino, o) : 0;
    if (!this.n.replyOpen(req, o.fh, this.openFlags(ino, o), id)) this.backing.dropOpen(o.fh);
  };

  private openFlags(ino: number, o: OpenReply): number {
    // Pages cached before the inode's passthrough opens may be stale: a cached open drops them.
    const keep = (o.keepCache || this.cache.keepCache) && !this.backing.wasPassed(ino);
    return (keep ? ll.OPEN_KEEP_CACHE : 0) | (o.directIo ? ll.OPEN_DIRECT_IO : 0);
  }
  private readonly answerRead = (req: ll.Req, r: ReadReply): void => {
    if (Buffer.isBuffer(r)) {
      this.n.replyBuf(req, r);
      return;
    }
    if (this.ranges.length < 3 * r.length) this.ranges = new Float64Array(6 * r.length);
    const t = this.ranges;
    for (let i = 0; i < r.length; i++) {
      const g = r[i]!;
      t[3 * i] = g.fd, t[3 * i + 1] = g.pos, t[3 * i + 2] = g.len;
    }
    // Ranges held until released (a remote blob's chunks) are read before replyRanges returns.
    try { this.n.replyRanges(req, t, r.length, r.release !== undefined); } finally { r.release?.(); }
  };
  private readonly answerWrite = (req: ll.Req, count: number): void => {
    this.n.replyWrite(req, count);
  };
  private readonly answerCreate = (req: ll.Req, c: CreateReply): void => {
    this.kill.created(c.entry.ino, c.entry.attr.mode);
    this.putAttr(c.entry.attr);
    this.x[Slot.NODEID] = c.entry.ino;
    this.x[Slot.GENERATION] = c.entry.generation;
    const id = this.backing.enabled ? this.backing.backingFor(c.entry.ino, c.open) : 0;
    if (!this.n.replyCreate(req, c.open.fh, this.openFlags(c.entry.ino, c.open), id)) this.backing.dropOpen(c.open.fh);
  };
  private readonly answerOk = (req: ll.Req): void => {
    this.n.replyErr(req, 0);
  };
  private readonly answerStatfs = (req: ll.Req, s: Statfs): void => {
    const x = this.x;
    x[Slot.STATFS_BSIZE] = s.bsize, x[Slot.STATFS_FRSIZE] = s.frsize, x[Slot.STATFS_BLOCKS] = s.blocks;
    x[Slot.STATFS_BFREE] = s.bfree, x[Slot.STATFS_BAVAIL] = s.bavail, x[Slot.STATFS_FILES] = s.files;
    x[Slot.STATFS_FFREE] = s.ffree, x[Slot.STATFS_FAVAIL] = s.favail, x[Slot.STATFS_NAMEMAX] = s.namemax;
    this.n.replyStatfs(req);
  };
  private readonly answerXattr = (req: ll.Req, v: Buffer): void => {
    this.n.replyXattr(req, v);
  };
  private readonly answerXattrList = (req: ll.Req, names: string[]): void => {
    this.n.replyXattr(req, Buffer.from(names.length ? names.join('\0') + '\0' : '', 'latin1'));
  };

  // ---- requests: one line of translation each ---------------------------------------------

  readonly lookup = (req: ll.Req, parent: number, name: string): void => this.call(req, 'lookup', parent, this.answerEntry, parent, name);

  readonly forget = (ino: number, nlookup: number): void => {
    this.kill.forgot(ino);
    this.backing.forgot(ino); // a node id the kernel forgot has no pages left
    this.direct.forgot(ino);
    try { this.fs.forget(ino, nlookup); } catch (e) { console.error(`tarstack: forget (ino ${ino}) failed:`, e); }
  };

  readonly getattr = (req: ll.Req, ino: number): void => this.call(req, 'getattr', ino, this.answerAttr, ino);

  readonly readlink = (req: ll.Req, ino: number): void => this.call(req, 'readlink', ino, this.answerReadlink, ino);

  readonly opendir = (req: ll.Req, ino: number): void => {
    if (this.openless) return void this.n.replyErr(req, ENOSYS);
    this.call(req, 'opendir', ino, this.answerOpendir, ino);
  };

  readonly releasedir = (req: ll.Req, ino: number, fh: number): void => this.call(req, 'releasedir', ino, this.answerOk, ino, fh);

  readonly open = (req: ll.Req, ino: number, flags: number): void => {
    if (this.openless) return void this.n.replyErr(req, ENOSYS);
    if (!this.x[Slot.CALLER_KILL]) return this.call(req, 'open', ino, this.answerOpen, ino, flags);
    // O_TRUNC by a caller without CAP_FSETID (FUSE_OPEN_KILL_SUIDGID): as a truncate.
    this.kill.before(ino, undefined, callerIn(this.x), null, () => this.call(req, 'open', ino, this.answerOpen, ino, flags), (e) => this.fail(req, 'open', ino, e));
  };

  readonly read = (req: ll.Req, ino: number, fh: number, pos: number, size: number): void => {
    if (this.openless) return this.readOpenless(req, ino, pos, size);
    if (this.direct.reading(req, ino, pos)) return;
    this.call(req, 'read', ino, this.answerRead, ino, fh, pos, size);
  };

  private readOpenless(req: ll.Req, ino: number, pos: number, size: number): void {
    if (this.direct.reading(req, ino, pos)) return;
    let o: Maybe<OpenReply>;
    try { o = this.fs.open(ino, O_RDONLY); } catch (e) { return this.fail(req, 'read', ino, e); }
    if (!isThenable(o)) return this.readReleasing(req, ino, o.fh, pos, size);
    o.then((v) => this.readReleasing(req, ino, v.fh, pos, size), (e: unknown) => this.fail(req, 'read', ino, e));
  }

  private readReleasing(req: ll.Req, ino: number, fh: number, pos: number, size: number): void {
    let r: Maybe<ReadReply>;
    try {
      r = this.fs.read(ino, fh, pos, size);
    } catch (e) {
      this.fail(req, 'read', ino, e);
      return this.releaseQuietly(ino, fh);
    }
    if (!isThenable(r)) {
      this.finish(req, 'read', ino, r, this.answerRead);
      return this.releaseQuietly(ino, fh);
    }
    r.then(
      (v) => (this.finish(req, 'read', ino, v, this.answerRead), this.releaseQuietly(ino, fh)),
      (e: unknown) => (this.fail(req, 'read', ino, e), this.releaseQuietly(ino, fh)),
    );
  }

  private releaseQuietly(ino: number, fh: number): void {
    let r: Maybe<void>;
    try { r = this.fs.release(ino, fh); } catch (e) { return console.error(`tarstack: release (ino ${ino}) failed:`, e); }
    if (isThenable(r)) r.catch((e: unknown) => console.error(`tarstack: release (ino ${ino}) failed:`, e));
  }

  readonly release = (req: ll.Req, ino: number, fh: number): void => {
    if (this.backing.enabled) this.backing.dropOpen(fh);
    this.call(req, 'release', ino, this.answerOk, ino, fh);
  };

  readonly statfs = (req: ll.Req, ino: number): void => this.call(req, 'statfs', ino, this.answerStatfs, ino);

  readonly getxattr = (req: ll.Req, ino: number, name: string): void => this.call(req, 'getxattr', ino, this.answerXattr, ino, name);

  readonly listxattr = (req: ll.Req, ino: number): void => this.call(req, 'listxattr', ino, this.answerXattrList, ino);

  // ---- directory listings ------------------------------------------------------------------

  readonly readdir = (req: ll.Req, ino: number, fh: number, offset: number, _size: number, plus: number): void => {
    const counted = plus === 1 ? [] : null;
    if (!this.openless) return this.list(req, ino, fh, offset, counted, false);
    // No OPENDIR reached us: this request gets a handle of its own, released once answered.
    let h: Maybe<number>;
    try { h = this.fs.opendir(ino); } catch (e) { return this.fail(req, 'readdir', ino, e); }
    if (!isThenable(h)) return this.list(req, ino, h, offset, counted, true);
    h.then((v) => this.list(req, ino, v, offset, counted, true), (e: unknown) => this.fail(req, 'readdir', ino, e));
  };

  private list(req: ll.Req, dir: number, fh: number, offset: number, counted: number[] | null, release: boolean): void {
    let it: Iterator<DirEntry>;
    try {
      it = this.fs.readdir(dir, fh, offset)[Symbol.iterator]();
    } catch (e) {
      if (release) this.releaseDirQuietly(dir, fh);
      return this.fail(req, 'readdir', dir, e);
    }
    this.pack({ req, dir, fh, it, counted, release });
  }

  /** Pulls entries until one does not fit. `counted` collects the inodes of packed plus-entries,
   *  which become kernel references only once the reply has gone out. */
  private pack(l: Listing): void {
    try {
      for (;;) {
        const step = l.it.next();
        if (step.done) break;
        const e = step.value;
        if (l.counted === null) {
          if (!this.n.dirAdd(l.req, e.name, e.ino, e.mode, e.next)) return this.endListing(l, true);
          continue;
        }
        let a: Maybe<Entry> | undefined;
        if (e.name !== '.' && e.name !== '..') {
          try { a = this.fs.lookup(l.dir, e.name); } catch { a = undefined; }
        }
        if (a !== undefined && isThenable(a)) {
          const resume = (v: Entry | undefined): void => {
            try {
              if (!this.addPlus(l, e, v)) return this.endListing(l, true);
            } catch (err) {
              return this.endListing(l, true, err);
            }
            this.pack(l);
          };
          a.then(resume, () => resume(undefined));
          return;
        }
        if (!this.addPlus(l, e, a)) return this.endListing(l, true);
      }
    } catch (err) {
      return this.endListing(l, true, err);
    }
    this.endListing(l, false);
  }

  /** Packs one readdirplus entry; without an entry (. and .., or the lookup failed) it gets
   *  nodeid 0, which lists it like plain readdir and gives the kernel no reference. An entry that
   *  does not fit gives its lookup reference back: the kernel never saw it. */
  private addPlus(l: Listing, e: DirEntry, entry: Entry | undefined): boolean {
    if (entry === undefined) {
      this.x[Slot.ATTR_INO] = e.ino;
      this.x[Slot.ATTR_MODE] = e.mode;
      return this.n.dirAddPlus(l.req, e.name, e.next, 0);
    }
    this.putAttr(entry.attr);
    this.x[Slot.GENERATION] = entry.generation;
    if (!this.n.dirAddPlus(l.req, e.name, e.next, entry.ino)) {
      this.forget(entry.ino, 1);
      return false;
    }
    l.counted!.push(entry.ino);
    return true;
  }

  /** Sends what was packed (or the error), closes the iterator and any per-request handle. */
  private endListing(l: Listing, early: boolean, err?: unknown): void {
    if (early) {
      try { l.it.return?.(); } catch { /* a generator's cleanup failing does not change the answer */ }
    }
    if (err !== undefined) {
      if (l.counted !== null) for (const ino of l.counted) this.forget(ino, 1);
      this.fail(l.req, 'readdir', l.dir, err);
    } else if (!this.n.replyDir(l.req) && l.counted !== null) {
      for (const ino of l.counted) this.forget(ino, 1); // the reply never reached the kernel
    }
    if (l.release) this.releaseDirQuietly(l.dir, l.fh);
  }

  private releaseDirQuietly(dir: number, fh: number): void {
    try { this.fs.releasedir(dir, fh); } catch (e) { console.error(`tarstack: releasedir (ino ${dir}) failed:`, e); }
  }
}

interface Listing {
  req: ll.Req;
  dir: number;
  fh: number;
  it: Iterator<DirEntry>;
  counted: number[] | null;
  release: boolean;
}
