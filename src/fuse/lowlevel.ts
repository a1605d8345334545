// Typed face of native-bindings' tarstack_native.node (libfuse3 low-level API served on Node's own
// loop); the only module that loads it. Handlers get a request id first and answer it exactly once
// through a reply function, synchronously or later; a second answer returns false and does nothing.
import { loadAddon } from '../native/addon.js';

/** Request id handed to every handler; answer it with one reply function. */
export type Req = number;

/** Handlers a session may have; a missing request handler makes the kernel see ENOSYS. */
export interface Handlers {
  /** INIT was negotiated: the mount now serves. */
  init?(): void;
  /** The session ended (unmounted by anyone, aborted, or unmount() called); errno 0 is normal. */
  end?(errno: number, requests: number): void;

  lookup?(req: Req, parent: number, name: string): void;
  /** No reply: the kernel dropped `nlookup` references to `ino`. */
  forget?(ino: number, nlookup: number): void;
  /** fh is -1 unless the kernel named an open file. */
  getattr?(req: Req, ino: number, fh: number): void;
  /** New values are in scratch's SET_* slots; `toSet` holds SETATTR_* bits. */
  setattr?(req: Req, ino: number, toSet: number, fh: number): void;
  readlink?(req: Req, ino: number): void;
  mknod?(req: Req, parent: number, name: string, mode: number, rdev: number): void;
  mkdir?(req: Req, parent: number, name: string, mode: number): void;
  unlink?(req: Req, parent: number, name: string): void;
  rmdir?(req: Req, parent: number, name: string): void;
  symlink?(req: Req, target: string, parent: number, name: string): void;
  /** flags: RENAME_NOREPLACE (1), RENAME_EXCHANGE (2), RENAME_WHITEOUT (4). */
  rename?(req: Req, parent: number, name: string, newParent: number, newName: string, flags: number): void;
  link?(req: Req, ino: number, newParent: number, newName: string): void;
  /** flags are open(2) flags; O_TRUNC may be among them (atomic_o_trunc is negotiated). */
  open?(req: Req, ino: number, flags: number): void;
  read?(req: Req, ino: number, fh: number, pos: number, size: number): void;
  /** `data` is a copy the handler may keep. */
  write?(req: Req, ino: number, fh: number, data: Buffer, pos: number, flags: number): void;
  flush?(req: Req, ino: number, fh: number): void;
  release?(req: Req, ino: number, fh: number, flags: number): void;
  fsync?(req: Req, ino: number, fh: number, datasync: number): void;
  opendir?(req: Req, ino: number, flags: number): void;
  /** plus = 1 for READDIRPLUS: pack with dirAddPlus, otherwise dirAdd; then replyDir. */
  readdir?(req: Req, ino: number, fh: number, offset: number, size: number, plus: number): void;
  releasedir?(req: Req, ino: number, fh: number): void;
  fsyncdir?(req: Req, ino: number, fh: number, datasync: number): void;
  statfs?(req: Req, ino: number): void;
  setxattr?(req: Req, ino: number, name: string, value: Buffer, flags: number): void;
  /** size 0 is a probe: answer replyXattrSize; a value longer than size is ERANGE. */
  getxattr?(req: Req, ino: number, name: string, size: number): void;
  listxattr?(req: Req, ino: number, size: number): void;
  removexattr?(req: Req, ino: number, name: string): void;
  access?(req: Req, ino: number, mask: number): void;
  create?(req: Req, parent: number, name: string, mode: number, flags: number): void;
  fallocate?(req: Req, ino: number, fh: number, mode: number, pos: number, len: number): void;
}

/** Tuning fixed at mount; defaults are what bench/native-binding.ts measured best here. */
export interface SessionConfig {
  /** 0 plain readdir, 1 always readdirplus, 2 let the kernel choose (readdirplus_auto). */
  readdirplus?: 0 | 1 | 2;
  /** 1 (default): ranges already in the page cache (cachestat) are answered from Node's thread. */
  nowait?: 0 | 1;
  /** Reads of this session in flight in the process's read pool at most (default 4): what one
   *  mount's slow or stuck reads can hold; the pool starts threads for other mounts meanwhile. */
  readThreads?: number;
  maxReadahead?: number;
  maxBackground?: number;
  /** FUSE_CAP_AUTO_INVAL_DATA (libfuse's default 1): drop cached pages when mtime/size change. */
  autoInvalData?: 0 | 1;
  /** After the last queued request, keep reading /dev/fuse this many microseconds before sleeping (0-1000). */
  spinMicros?: number;
  /** 1 (default): /dev/fuse is read and written through the hooks of native-bindings/src/kext.c
   *  (requests counted by opcode; what follows needs them). 0: libfuse's own reads and writes. */
  kernelExt?: 0 | 1;
  /** 1: ask the kernel for FUSE_PASSTHROUGH (6.9+); open files may then be given a backing file
   *  (backingOpen, which needs CAP_SYS_ADMIN). */
  passthrough?: 0 | 1;
  /** Pages a request may carry (FUSE_MAX_PAGES); the kernel caps it at fs.fuse.max_pages_limit.
   *  0 (default): libfuse's 256. */
  maxPages?: number;
  /** 1: ask the kernel for FUSE_HANDLE_KILLPRIV_V2: it stops clearing suid/sgid itself and marks
   *  the requests after which the filesystem must (Slot.CALLER_KILL). */
  killpriv?: 0 | 1;
  /** 1: ask for FUSE over io_uring (kernel 6.14+, offered while /sys/module/fuse/parameters/
   *  enable_uring is Y): requests then come through per-CPU ring entries (native-bindings/src/uring.c). */
  uring?: 0 | 1;
  /** Ring entries per CPU queue (default 8). */
  uringDepth?: number;
}

export interface SessionInfo {
  live: number;
  requests?: number;
  maxRead?: number;
  maxWrite?: number;
  maxReadahead?: number;
  capable?: number;
  want?: number;
  maxBackground?: number;
  timeGran?: number;
  protoMinor?: number;
  /** kext.c's hooks are on. */
  hooked?: number;
  /** FUSE_PASSTHROUGH was negotiated. */
  passthrough?: number;
  /** max_pages asked for in INIT's reply (0: libfuse's). */
  maxPages?: number;
  /** FUSE_HANDLE_KILLPRIV_V2 was negotiated. */
  killpriv?: number;
  /** INIT's offer (flags | flags2 << 32). */
  kernelFlags?: number;
  /** FUSE over io_uring negotiated and every ring entry registered. */
  uring?: number;
  /** Requests taken from the ring (the rest came through /dev/fuse). */
  uringRequests?: number;
  /** Ring entries (CPU queues x depth), once prepared. */
  uringEntries?: number;
  /** Replies committed to ring entries. */
  uringCommits?: number;
  /** Cold file-range reads the ring read into their entry (IORING_OP_READ) instead of the read pool. */
  uringReads?: number;
  /** Of those, reads sent as one chain with their commit (the kernel commits when the data is in). */
  uringLinked?: number;
  /** Chains that broke (a read failed or came back short) and were finished on Node's thread. */
  uringBroken?: number;
  /** READs answered in C from a readDirect registration, without JS. */
  directReads?: number;
  /** READs answered (or parked until decoded) in C from a native stream's slabs (readStreamed). */
  streamedReads?: number;
  /** Requests read, by FUSE opcode (OP below); counted only while hooked. */
  ops?: number[];
}

/** FUSE opcodes of include/uapi/linux/fuse.h that tests and status count. */
export const OP = { LOOKUP: 1, GETATTR: 3, SETATTR: 4, OPEN: 14, READ: 15, WRITE: 16, RELEASE: 18, GETXATTR: 22, REMOVEXATTR: 24, FLUSH: 25, CREATE: 35 } as const;

export interface PoolStats {
  threads: number;
  idle: number;
  running: number;
  queued: number;
}

declare const sessionBrand: unique symbol;
export type Session = { readonly [sessionBrand]: true };

export interface Native {
  /** Shared with C; its slots are named in Slot. */
  readonly scratch: Float64Array;
  readonly fuseVersion: number;
  mount(mountpoint: string, args: string[], handlers: Handlers, config: SessionConfig): Session;
  /** Ends the session now (unmounting if still mounted); `end` is called. Never waits for its
   *  reads running in the pool, nor touches another session. False if it had ended already. */
  unmount(s: Session): boolean;
  sessionInfo(s: Session): SessionInfo;
  /** The process's worker pools, shared by every session: reads (cold file ranges) and notes. */
  poolStats(): { reads: PoolStats; notes: PoolStats };
  /** errno 0 is the success reply of unlink, rmdir, rename, link, release, flush, fsync, setxattr... */
  replyErr(req: Req, errno: number): boolean;
  replyNone(req: Req): boolean;
  /** The entry in scratch (ATTR_*, GENERATION, timeouts, NODEID); NODEID 0 with an entry timeout
   *  caches a negative lookup. */
  replyEntry(req: Req): boolean;
  /** backingId (from backingOpen): the kernel reads, writes and maps this open file through it. */
  replyCreate(req: Req, fh: number, openFlags: number, backingId?: number): boolean;
  replyAttr(req: Req): boolean;
  replyReadlink(req: Req, target: string): boolean;
  replyOpen(req: Req, fh: number, openFlags: number, backingId?: number): boolean;
  /** Registers `fd`'s file as a passthrough backing file: its id (> 0), or -errno (EPERM: not
   *  negotiated or no CAP_SYS_ADMIN). The kernel opens its own file of the same path per open. */
  backingOpen(s: Session, fd: number): number;
  /** Drops an id; files opened with it keep their backing file. 0 or -errno. */
  backingClose(s: Session, id: number): number;
  replyWrite(req: Req, count: number): boolean;
  replyBuf(req: Req, data: Buffer): boolean;
  replyStatfs(req: Req): boolean;
  replyXattrSize(req: Req, size: number): boolean;
  /** getxattr/listxattr in one: the length for a size-0 probe, ERANGE if too long, else the bytes. */
  replyXattr(req: Req, value: Buffer): boolean;
  /** Triples fd,pos,len (fd -1 = zeros), answered off Node's loop when the data is cold; with
   *  `now`, read on this thread before it returns (ranges valid only until then). */
  replyRanges(req: Req, ranges: Float64Array, count: number, now: boolean): boolean;
  /** From now on C answers READs of `ino` as bytes [pos, pos+size) of `fd` (which must stay open
   *  while the session lives) without calling the read handler; fd -1 forgets `ino`. False when the
   *  session has ended or memory ran out (reads keep coming to JS). */
  readDirect(s: Session, ino: number, fd: number, pos: number, size: number): boolean;
  /** READs of `ino` are bytes [pos, pos+size) of a native stream's output (codec streamStart),
   *  answered in C while it holds them; so is READ `req` (at file offset `off`) if it can be:
   *  true, and JS must not answer it. readDirect(ino, -1) forgets `ino`. */
  readStreamed(req: Req, ino: number, stream: object, pos: number, size: number, off: number): boolean;
  dirAdd(req: Req, name: string, ino: number, mode: number, next: number): boolean;
  /** Attributes in scratch's ATTR_* slots; nodeid 0 (for . and ..) gives the kernel no reference. */
  dirAddPlus(req: Req, name: string, next: number, nodeid: number): boolean;
  replyDir(req: Req): boolean;
  /** Resolve to 0 or -errno. Never await one before answering a request on the same inode or
   *  parent: the kernel may hold that request's locks while it processes the notification. */
  notifyInvalInode(s: Session, ino: number, off: number, len: number): Promise<number>;
  notifyInvalEntry(s: Session, parent: number, name: string): Promise<number>;
  notifyDelete(s: Session, parent: number, name: string, child: number): Promise<number>;
}

/**
 * Slots of the scratch Float64Array shared with C. The names and numbers are tsn.h's TSN_SLOTS;
 * loadNative() refuses an addon whose own list differs (checkLayout). Attributes (ATTR_*) and
 * what an entry adds (GENERATION to NODEID) go out with replyEntry/replyCreate/replyAttr and
 * dirAddPlus; statfs replies reuse slots 0..8; setattr's new values (SET_*) and the caller of the
 * request being handled (CALLER_*) come in, valid until the handler returns.
 */
export const Slot = {
  ATTR_INO: 0, ATTR_MODE: 1, ATTR_NLINK: 2, ATTR_UID: 3, ATTR_GID: 4, ATTR_RDEV: 5, ATTR_SIZE: 6,
  ATTR_BLOCKS: 7, ATTR_ATIME: 8, ATTR_ATIME_NSEC: 9, ATTR_MTIME: 10, ATTR_MTIME_NSEC: 11,
  ATTR_CTIME: 12, ATTR_CTIME_NSEC: 13,
  GENERATION: 14, ATTR_TIMEOUT: 15, ENTRY_TIMEOUT: 16,
  /** The node id an entry reply gives the kernel; the attr's st_ino (ATTR_INO) may differ. */
  NODEID: 17,
  STATFS_BSIZE: 0, STATFS_FRSIZE: 1, STATFS_BLOCKS: 2, STATFS_BFREE: 3, STATFS_BAVAIL: 4,
  STATFS_FILES: 5, STATFS_FFREE: 6, STATFS_FAVAIL: 7, STATFS_NAMEMAX: 8,
  SET_MODE: 20, SET_UID: 21, SET_GID: 22, SET_SIZE: 23, SET_ATIME: 24, SET_ATIME_NSEC: 25,
  SET_MTIME: 26, SET_MTIME_NSEC: 27, SET_CTIME: 28, SET_CTIME_NSEC: 29,
  CALLER_UID: 32, CALLER_GID: 33, CALLER_PID: 34, CALLER_UMASK: 35,
  /** 1: the request carried FUSE_HANDLE_KILLPRIV_V2's kill bit (write/truncate without
   *  CAP_FSETID, chown of a non-directory, O_TRUNC open without CAP_FSETID). */
  CALLER_KILL: 36,
  SCRATCH_LEN: 40,
} as const;

/** replyOpen/replyCreate flag bits (tsn.h's TSN_OPEN_FLAGS). */
export const OPEN_KEEP_CACHE = 1;
export const OPEN_DIRECT_IO = 2;
export const OPEN_CACHE_READDIR = 4;
export const OPEN_NONSEEKABLE = 8;

// FUSE_SET_ATTR_* of fuse_lowlevel.h (tsn.h's TSN_SETATTR_BITS).
export const SETATTR_MODE = 1 << 0;
export const SETATTR_UID = 1 << 1;
export const SETATTR_GID = 1 << 2;
export const SETATTR_SIZE = 1 << 3;
export const SETATTR_ATIME = 1 << 4;
export const SETATTR_MTIME = 1 << 5;
export const SETATTR_ATIME_NOW = 1 << 7;
export const SETATTR_MTIME_NOW = 1 << 8;
export const SETATTR_CTIME = 1 << 10;

/** What the addon says about the numbers both sides use (tsn.h's lists). */
export interface Layout {
  slots: Record<string, number>;
  openFlags: Record<string, number>;
  setattrBits: Record<string, number>;
}

/** Throws unless the addon's lists name exactly the numbers this module uses. */
export function checkLayout(native: Layout | undefined): void {
  const ours: Layout = {
    slots: Slot,
    openFlags: { KEEP_CACHE: OPEN_KEEP_CACHE, DIRECT_IO: OPEN_DIRECT_IO, CACHE_READDIR: OPEN_CACHE_READDIR, NONSEEKABLE: OPEN_NONSEEKABLE },
    setattrBits: {
      MODE: SETATTR_MODE, UID: SETATTR_UID, GID: SETATTR_GID, SIZE: SETATTR_SIZE, ATIME: SETATTR_ATIME, MTIME: SETATTR_MTIME,
      ATIME_NOW: SETATTR_ATIME_NOW, MTIME_NOW: SETATTR_MTIME_NOW, CTIME: SETATTR_CTIME,
    },
  };
  const wrong: string[] = [];
  for (const list of ['slots', 'openFlags', 'setattrBits'] as const) {
    const theirs = native?.[list] ?? {};
    for (const name of new Set([...Object.keys(ours[list]), ...Object.keys(theirs)])) {
      if (ours[list][name] !== theirs[name]) wrong.push(`${list}.${name}: ours ${ours[list][name]}, the addon's ${theirs[name]}`);
    }
  }
  if (wrong.length) throw new Error(`tarstack_native does not match src/fuse/lowlevel.ts (rebuild it with \`npm run build:native\`): ${wrong.join('; ')}`);
}

let checked: Native | undefined;

/** The addon's FUSE half (src/native/addon.ts finds and loads it), once its layout is checked. */
export function loadNative(): Native {
  if (checked) return checked;
  const native = loadAddon() as Native & { layout?: Layout };
  checkLayout(native.layout);
  return (checked = native);
}
