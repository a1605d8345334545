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
export type ReadReply = Buffer | FdRange[];
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
}

type Maybe<T> = T | Promise<T>;

export interface FileSystem {
  /** True when no request can change the tree: backends may then cache entries and attributes for
   *  long, and may open a handle per read or listing instead of per open(2) (no per-open state). */
  readonly immutable: boolean;
  /** Every read must come through an open handle (a layer holds a descriptor per open file): no zero-message opens. */
  readonly needsOpen?: boolean;

  /** Find `name` in directory `parent`. ENOENT when absent, ENOTDIR when parent is no directory. Counts one kernel reference to the result. */
  lookup(parent: number, name: string): Maybe<Entry>;
  /** The kernel drops `nlookup` references to `ino` that lookup() (and entry-creating calls) handed
   *  out. The backend takes readdirplus entries through lookup() too, so the counts here always
   *  match this FileSystem's own answers. */
  forget(ino: number, nlookup: number): void;
  getattr(ino: number): Maybe<Attr>;
  /** Target of a symlink as a byte string; EINVAL for anything else. */
  readlink(ino: number): Maybe<string>;

  /** Open a directory; the handle pins a snapshot so cookies stay valid. ENOTDIR for a non-directory. */
  opendir(ino: number): Maybe<number>;
  /** Entries after cookie `offset` (0 = start), `.` and `..` included; the backend stops pulling when its buffer is full. */
  readdir(ino: number, fh: number, offset: number): Iterable<DirEntry>;
  releasedir(ino: number, fh: number): void;

  /** Open a file. EISDIR for a directory, EROFS for a write open on a read-only mount. */
  open(ino: number, flags: number): Maybe<OpenReply>;
  /** Up to `len` bytes at `pos`; fewer only at end of file. EIO when the backing store cannot supply them. */
  read(ino: number, fh: number, pos: number, len: number): Maybe<ReadReply>;
  release(ino: number, fh: number): Maybe<void>;

  statfs(ino: number): Maybe<Statfs>;
  /** Value of xattr `name` (a byte string); ENODATA when unset. */
  getxattr(ino: number, name: string): Maybe<Buffer>;
  /** Names of the xattrs set on `ino`, as byte strings. */
  listxattr(ino: number): Maybe<string[]>;

  /** Called once when the mount goes away; must release every resource. */
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
 * The write side, served by writable mounts only. Each request changes the upper layer alone; names
 * are byte strings; failures throw FsError with the errno the kernel's own filesystems would give.
 */
export interface WritableFileSystem extends FileSystem {
  /** Change attributes (chmod, chown, truncate, utimens); `fh` when the change came through an open file. */
  setattr(ino: number, set: SetAttr, fh: number | undefined, caller: Caller): Maybe<Attr>;
  mknod(parent: number, name: string, mode: number, rdev: number, caller: Caller): Maybe<Entry>;
  mkdir(parent: number, name: string, mode: number, caller: Caller): Maybe<Entry>;
  symlink(parent: number, name: string, target: string, caller: Caller): Maybe<Entry>;
  link(ino: number, newParent: number, newName: string): Maybe<Entry>;
  unlink(parent: number, name: string): Maybe<void>;
  rmdir(parent: number, name: string): Maybe<void>;
  /** flags: RENAME_NOREPLACE (1), RENAME_EXCHANGE (2); anything else is EINVAL. */
  rename(parent: number, name: string, newParent: number, newName: string, flags: number): Maybe<void>;
  create(parent: number, name: string, mode: number, flags: number, caller: Caller): Maybe<CreateReply>;
  write(ino: number, fh: number, data: Buffer, pos: number): Maybe<number>;
  fsync(ino: number, fh: number, datasync: boolean): Maybe<void>;
  fsyncdir(ino: number, fh: number, datasync: boolean): Maybe<void>;
  setxattr(ino: number, name: string, value: Buffer, flags: number): Maybe<void>;
  removexattr(ino: number, name: string): Maybe<void>;
  /** EOPNOTSUPP for modes the upper filesystem cannot do. */
  fallocate(ino: number, fh: number, mode: number, pos: number, len: number): Maybe<void>;
}

export function isWritable(fs: FileSystem): fs is WritableFileSystem {
  return typeof (fs as Partial<WritableFileSystem>).write === 'function';
}
