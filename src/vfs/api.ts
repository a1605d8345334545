// The one interface every FUSE backend serves: inode-based, modelled on the libfuse low-level API
// (one method per request, named after it). Methods return a value or a Promise of one, and fail by
// throwing FsError; the backend turns that into an errno reply in one place. Names are "byte
// strings": latin1-decoded, so any byte but '/' and NUL round-trips exactly.

export const ROOT_INO = 1;

/** File attributes. Times are split into seconds and nanoseconds so nothing is rounded. */
export interface Attr {
  ino: number;
  mode: number; // S_IFMT type bits | permission bits
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  size: number;
  blocks: number; // 512-byte units
  atimeSec: number;
  atimeNsec: number;
  mtimeSec: number;
  mtimeNsec: number;
  ctimeSec: number;
  ctimeNsec: number;
}

export interface Entry {
  ino: number;
  generation: number;
  attr: Attr;
}

export interface DirEntry {
  name: string; // byte string
  ino: number;
  mode: number; // at least the S_IFMT bits (d_type)
  /** Cookie that continues the listing after this entry; stable for the open directory handle. */
  next: number;
}

export interface Statfs {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail: number;
  namemax: number;
}

/** What a read returns: bytes, or a range of an open file descriptor the backend copies itself. */
export type ReadReply = Buffer | FdRanges;
/**
 * Ranges of open descriptors. With `release`, their bytes stay valid only until it is called (a
 * remote blob's chunks, pinned in its cache): whoever reads them calls it once, right after, or
 * on failure.
 */
export interface FdRanges extends Array<FdRange> {
  release?: () => void;
}

/** A read reply is done with: its ranges may go (see FdRanges). */
export function releaseReply(r: ReadReply): void {
  if (!Buffer.isBuffer(r)) r.release?.();
}
/** A file's bytes as bytes [pos, pos+len) of a decoding stream's output (FileSystem.fileStream). */
export interface FileStream {
  /** The native stream (codec streamStart), opaque here. */
  stream: object;
  pos: number;
  len: number;
}
export interface FdRange {
  fd: number; // -1 means a run of zeros (a sparse hole)
  pos: number;
  len: number;
}

export interface OpenReply {
  fh: number;
  /** The content never changes while mounted: the kernel may keep its page cache across opens. */
  keepCache: boolean;
  directIo: boolean;
  /**
   * A descriptor of a host file that holds every byte of this file and whose writes need nothing
   * more from the FileSystem (no size limit counted, no lazy chunks): the backend may let the
   * kernel read, write and map it directly (FUSE passthrough), so that only open and release
   * reach the FileSystem. The FileSystem keeps owning the descriptor (closed at release).
   */
  backingFd?: number;
}

type Maybe<T> = T | Promise<T>;

/*
 * The errno contract, as go-fuse's fs/api.go states it per method. A method fails by throwing (or
 * rejecting with) FsError; a Node system error (one with an errno `code`, e.g. from fs calls on the
 * upper) keeps its errno; anything else is a bug: the backend logs it with the op and inode and
 * answers EIO. That conversion happens in one place, src/fuse (`fail` in native-translate.ts).
 * Errnos every method may give besides the ones listed:
 *   ESTALE  the inode number is not one this FileSystem handed out (or it was forgotten);
 *   EIO     the backing store cannot supply what it promised (a tar truncated or changed, a
 *           directory layer whose file vanished); never wrong bytes instead.
 * Never throw ENOSYS: the kernel remembers it for the whole mount (getxattr, listxattr, setxattr,
 * removexattr and fallocate then fail EOPNOTSUPP without asking; fsync and fsyncdir succeed).
 * Requests this interface has no method for are answered by the backend: FLUSH and ACCESS are
 * never registered (the kernel then skips them: close(2) costs no round trip, and permissions are
 * the kernel's own with default_permissions, else none); FORGET is the only request with no reply.
 *
 * "Default" below is what a FileSystem with nothing special to say does, as in go-fuse.
 */
export interface FileSystem {
  /** True when no request can change the tree: the backend then lets the kernel cache entries,
   *  negative entries and attributes for a day and keep pages and listings across opens, and
   *  (see needsOpen) may skip OPEN and OPENDIR altogether. Default false. */
  readonly immutable: boolean;
  /** Every read must come through an open handle (a layer holds a descriptor per open file): no
   *  zero-message opens even for an immutable tree. Default false. */
  readonly needsOpen?: boolean;

  /**
   * Finds `name` (a byte string) in directory `parent`. A success counts one kernel reference to
   * the entry's inode, given back through forget(); so do the entry-creating calls of
   * WritableFileSystem, and the backend's readdirplus answers, which it takes from lookup() too.
   * ENOENT: absent (a whiteout hides it), or `parent` was removed; on an immutable tree the backend
   * turns ENOENT into a negative entry the kernel keeps. ENOTDIR: `parent` is no directory.
   * ENAMETOOLONG: a writable tree refuses names over 255 bytes (a read-only one may say ENOENT).
   * No default: every FileSystem finds names.
   */
  lookup(parent: number, name: string): Maybe<Entry>;
  /**
   * The kernel drops `nlookup` of the references lookup() and entry-creating calls handed out;
   * at 0 (and with no open handle) the inode's state may go. No reply, so nothing to fail: a throw
   * is logged and dropped. The kernel sends no FORGET at unmount (destroy() follows instead).
   * Default: nothing (a FileSystem that derives every inode from its number pins nothing).
   */
  forget(ino: number, nlookup: number): void;
  /**
   * Attributes of `ino`, also for an unlinked inode still open or referenced (served from its
   * open file). The kernel keeps them for the attr timeout (a day when immutable, else 1 s).
   * No default.
   */
  getattr(ino: number): Maybe<Attr>;
  /** Target of a symlink as a byte string. EINVAL: not a symlink (the kernel knows the type, so
   *  this is rare). No default for a tree with symlinks; without any, EINVAL. */
  readlink(ino: number): Maybe<string>;

  /**
   * Opens directory `ino` for listing and returns its handle, which pins a snapshot so cookies
   * stay valid. ENOTDIR: not a directory; ENOENT: a directory that was removed. On an immutable
   * read-only tree without needsOpen the backend calls it once per READDIR instead of per
   * opendir(3) (zero-message opens). Default: a handle over the directory as it is.
   */
  opendir(ino: number): Maybe<number>;
  /**
   * Entries after cookie `offset` (0 = start, `.` and `..` included) of the handle `fh`, pulled
   * lazily and synchronously: the backend stops when the kernel's buffer is full and asks again
   * with the last packed entry's `next`. offset 0 again (rewinddir) shows the directory as it is
   * now. A throw while iterating fails the whole READDIR with that errno. EBADF: `fh` is no open
   * handle. For readdirplus the backend looks each name up (a failed lookup lists the name without
   * attributes). No default.
   */
  readdir(ino: number, fh: number, offset: number): Iterable<DirEntry>;
  /** Closes a listing handle. The kernel ignores the answer; an unknown `fh` is no error.
   *  Default: drop the handle. */
  releasedir(ino: number, fh: number): void;

  /**
   * Opens file `ino` with open(2) `flags` (never O_CREAT or O_EXCL: create() does that; O_TRUNC
   * arrives here, atomic_o_trunc being negotiated). The kernel has checked permissions when the
   * mount has default_permissions. EISDIR: a directory. EROFS: a write or O_TRUNC open of a
   * read-only tree. A writable tree copies the file up first, so copy-up's errnos reach here too
   * (ENOSPC, EDQUOT, ENAMETOOLONG past PATH_MAX in the upper, EACCES/EPERM from the upper).
   * Default (immutable, read-only, without needsOpen): never called per open(2); the backend opens
   * and releases a handle around each READ instead.
   */
  open(ino: number, flags: number): Maybe<OpenReply>;
  /**
   * Up to `len` bytes at `pos` of open handle `fh`: fewer only at end of file, none past it. A
   * reply longer than `len` is refused (EIO). An FdRange that ends early (the backing file is
   * shorter than promised) is EIO, never short data. EBADF: `fh` is no open handle. No default.
   */
  read(ino: number, fh: number, pos: number, len: number): Maybe<ReadReply>;
  /**
   * Optional: where all of regular file `ino`'s bytes are, as one range of a descriptor that stays
   * open while the tree is mounted (a plain tar's member): its `len` is the file's size. The backend
   * may then answer reads of `ino` itself, without calling read(), until it forgets `ino` or, on a
   * tree that is not immutable, until watchData tells it the bytes moved. undefined: read() must be
   * asked (a compressed, remote or sparse member, a directory's file, an upper file).
   */
  fileRange?(ino: number): FdRange | undefined;
  /**
   * Optional: regular file `ino`, about to be read at `pos`, is being (or now starts being) decoded
   * by a native stream (a compressed tar's member read sequentially): the backend may answer its
   * reads from the stream's checked bytes without calling read() (as long as fileRange's answer
   * would hold), and calls read() for those the stream does not hold. undefined: read() must be asked.
   */
  fileStream?(ino: number, pos: number): FileStream | undefined;
  /**
   * A tree that is not immutable offers fileRange/fileStream only with this: `moved(ino)` is called
   * once a file whose range or stream was handed out changes where its bytes are (a copy-up), before
   * any of them changes. Returns the function that stops the calls.
   */
  watchData?(moved: (ino: number) => void): () => void;
  /** Closes a file handle after the last close(2) of it. The kernel ignores the answer; an
   *  unknown `fh` is no error. Default: drop the handle. */
  release(ino: number, fh: number): Maybe<void>;

  /** Sizes for statfs(2) (df); `ino` is the inode asked about, usually irrelevant. No errnos of
   *  its own. Default: all counts 0 with namemax 255 (what a tree with no storage says). */
  statfs(ino: number): Maybe<Statfs>;
  /**
   * The whole value of xattr `name` (a byte string); the backend does the size-probe protocol and
   * answers ERANGE for a caller's buffer that is too small. ENODATA: unset, or one of tarstack's
   * own attributes (user.tarstack.*, user.overlay.*, trusted.overlay.*), which are never shown.
   * Default: ENODATA for every name.
   */
  getxattr(ino: number, name: string): Maybe<Buffer>;
  /** Names of the xattrs set on `ino`, as byte strings, without tarstack's own. Default: []. */
  listxattr(ino: number): Maybe<string[]>;

  /** Called once when the mount has gone (whoever unmounted it); must release every resource.
   *  Nothing can be answered any more: a throw or rejection is logged. Default: nothing. */
  destroy(): Maybe<void>;
}

/** Who made a request (fuse_req_ctx): new files belong to this caller. */
export interface Caller {
  uid: number;
  gid: number;
  pid: number;
}

/** A time to set: exact, or "now" (UTIME_NOW). An absent field is left alone (UTIME_OMIT). */
export type TimeSet = { sec: number; nsec: number } | 'now';

export interface SetAttr {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atime?: TimeSet;
  mtime?: TimeSet;
}

export interface CreateReply {
  entry: Entry;
  open: OpenReply;
}

/**
 * The write side, served by writable mounts only. A FileSystem without it is mounted `ro`, so the
 * kernel answers EROFS to every change itself and none of these requests arrives: that is each
 * method's default (on a mount that is not `ro`, the backend registers no handler: ENOSYS).
 * Each request changes the upper layer alone, copying up first what it touches; names are byte
 * strings; failures are the errnos the kernel's own filesystems give. Besides those listed, every
 * method may fail as the upper filesystem does: ENOSPC (also past a size-limited instance's
 * limit), EDQUOT, EIO, EACCES/EPERM (what the host refuses an ordinary user and tarstack cannot
 * keep in its own metadata), and ENAMETOOLONG for a path the upper cannot hold (PATH_MAX). Modes
 * arrive with the caller's umask already applied: never mask again. Entry-creating calls (mknod,
 * mkdir, symlink, link, create) count a kernel reference as lookup() does.
 */
export interface WritableFileSystem extends FileSystem {
  /**
   * chmod, chown, truncate and utimensat in one: only the fields present change; `fh` when the
   * change came through an open file (ftruncate, fchmod). Returns the attributes after the change.
   * With default_permissions the kernel has checked ownership. Set-id bits to clear after a write,
   * truncate or chown arrive as a mode too: sent by the kernel, or under FUSE_HANDLE_KILLPRIV_V2
   * by the native translator (native-bindings/README.md), so a FileSystem never clears them itself. A mode change of a symlink is ignored. EISDIR:
   * a size for a directory.
   */
  setattr(ino: number, set: SetAttr, fh: number | undefined, caller: Caller): Maybe<Attr>;
  /**
   * Makes a device, fifo, socket or regular file `name` in `parent`, owned by `caller` (the group
   * of a set-gid parent). EEXIST: the name exists. ENOENT: `parent` was removed. ENOTDIR: `parent`
   * is no directory. EPERM: a device an ordinary user may not make, unless kept (then an empty
   * file stands in for it on disk and the device shows).
   */
  mknod(parent: number, name: string, mode: number, rdev: number, caller: Caller): Maybe<Entry>;
  /** Makes directory `name`; errnos as mknod (EMLINK: the upper's link limit). A directory made
   *  where a lower one was removed is opaque: nothing below shows through. */
  mkdir(parent: number, name: string, mode: number, caller: Caller): Maybe<Entry>;
  /** Makes symlink `name` to `target` (a byte string); errnos as mknod. */
  symlink(parent: number, name: string, target: string, caller: Caller): Maybe<Entry>;
  /** Another name `newName` in `newParent` for `ino`; the entry returned is `ino`'s, with its new
   *  link count. EPERM: `ino` is a directory. EEXIST: the name exists. EMLINK: too many links. */
  link(ino: number, newParent: number, newName: string): Maybe<Entry>;
  /**
   * Removes name `name` of a non-directory. The inode lives on while a handle is open or the kernel
   * holds references (getattr, read and write through its handles keep working). ENOENT: absent.
   * EISDIR: a directory (as Linux's unlink(2)). ENOTDIR: `parent` is no directory.
   */
  unlink(parent: number, name: string): Maybe<void>;
  /** Removes directory `name`. ENOENT: absent. ENOTDIR: not a directory. ENOTEMPTY: its merged
   *  view has entries (whiteouts do not count). */
  rmdir(parent: number, name: string): Maybe<void>;
  /**
   * Renames, in O(1) for a directory of any size; never EXDEV. flags: RENAME_NOREPLACE (1),
   * RENAME_EXCHANGE (2); anything else (RENAME_WHITEOUT too) is EINVAL. ENOENT: the source is
   * absent, or the target with RENAME_EXCHANGE. EEXIST: the target exists with RENAME_NOREPLACE.
   * ENOTDIR: a directory onto a non-directory. EISDIR: a non-directory onto a directory.
   * ENOTEMPTY: onto a directory with entries. Two names of one inode: success, nothing changes.
   * The kernel refuses moving a directory below itself (EINVAL) before asking.
   */
  rename(parent: number, name: string, newParent: number, newName: string, flags: number): Maybe<void>;
  /** Makes and opens regular file `name` (open(2) with O_CREAT); errnos as mknod and open. The
   *  handle is open with `flags` as open() would give it. */
  create(parent: number, name: string, mode: number, flags: number, caller: Caller): Maybe<CreateReply>;
  /**
   * Writes `data` (a copy the FileSystem may keep) at `pos`, or at the end for a handle opened
   * O_APPEND, and returns the count: short only when the space ran out part-way. EBADF: `fh` is no
   * handle open for writing. ENOSPC: nothing fits (checked before writing on a size-limited
   * instance). EFBIG: past the upper's maximum file size.
   */
  write(ino: number, fh: number, data: Buffer, pos: number): Maybe<number>;
  /** Makes what was written through `fh` durable (fdatasync when `datasync`). A handle that only
   *  read the lower has nothing to sync: success. EIO: the upper failed to write back. Default
   *  (were it absent): success, which is also what the kernel assumes after ENOSYS. */
  fsync(ino: number, fh: number, datasync: boolean): Maybe<void>;
  /** fsync of directory `ino` (its upper copy; none: success). Default: success. */
  fsyncdir(ino: number, fh: number, datasync: boolean): Maybe<void>;
  /**
   * Sets xattr `name`; flags XATTR_CREATE (1): EEXIST when set already; XATTR_REPLACE (2): ENODATA
   * when unset. EPERM: one of tarstack's own names. EOPNOTSUPP/ENOTSUP: a namespace the upper
   * refuses and tarstack does not keep. E2BIG/ENOSPC: too big for the upper.
   */
  setxattr(ino: number, name: string, value: Buffer, flags: number): Maybe<void>;
  /** Removes xattr `name`. ENODATA: unset, or one of tarstack's own names. */
  removexattr(ino: number, name: string): Maybe<void>;
  /** fallocate(2) on open handle `fh`. EOPNOTSUPP: a mode the upper filesystem cannot do. EBADF:
   *  `fh` is no handle open for writing. ENOSPC: the allocation does not fit. */
  fallocate(ino: number, fh: number, mode: number, pos: number, len: number): Maybe<void>;
}

export function isWritable(fs: FileSystem): fs is WritableFileSystem {
  return typeof (fs as Partial<WritableFileSystem>).write === 'function';
}
