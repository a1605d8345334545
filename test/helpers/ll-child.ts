// Child that serves a tiny writable in-memory tree straight on lowlevel.ts handlers (no
// FileSystem), to test the write-side ops the binding forwards and its safety at teardown.
// It logs setattr/rename/create/mknod arguments for the parent to check. Special names:
// `hang` never answers getattr, `twice` answers getattr twice, `throws` throws in getattr.
import { constants } from 'node:os';
import * as ll from '../../src/fuse/lowlevel.js';
import { Slot } from '../../src/fuse/lowlevel.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../../src/vfs/mode.js';

const E = constants.errno;

interface Ino {
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  data: Buffer;
  target?: string;
  children?: Map<string, number>;
  xattrs: Map<string, Buffer>;
  t: [number, number, number, number, number, number]; // atime s/ns, mtime s/ns, ctime s/ns
}

const n = ll.loadNative();
const x = n.scratch;
const inodes = new Map<number, Ino>();
let nextIno = 2 ** 33;
const log: unknown[] = [];
const pending: number[] = [];

function nowPair(): [number, number] {
  const ns = process.hrtime.bigint(); // monotonic is fine for a test's "now"
  return [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)];
}

function make(mode: number): Ino {
  const [s, ns] = nowPair();
  const i: Ino = { ino: nextIno++, mode, nlink: 1, uid: x[Slot.CALLER_UID]!, gid: x[Slot.CALLER_GID]!, rdev: 0, data: Buffer.alloc(0), xattrs: new Map(), t: [s, ns, s, ns, s, ns] };
  if ((mode & S_IFMT) === S_IFDIR) (i.children = new Map()), (i.nlink = 2);
  inodes.set(i.ino, i);
  return i;
}
const root = make(S_IFDIR | 0o777);
inodes.delete(root.ino);
root.ino = 1;
inodes.set(1, root);

function put(i: Ino): void {
  x[Slot.ATTR_INO] = i.ino, x[Slot.ATTR_MODE] = i.mode, x[Slot.ATTR_NLINK] = i.nlink;
  x[Slot.ATTR_UID] = i.uid, x[Slot.ATTR_GID] = i.gid, x[Slot.ATTR_RDEV] = i.rdev;
  x[Slot.ATTR_SIZE] = i.data.length, x[Slot.ATTR_BLOCKS] = Math.ceil(i.data.length / 512);
  [x[Slot.ATTR_ATIME], x[Slot.ATTR_ATIME_NSEC], x[Slot.ATTR_MTIME], x[Slot.ATTR_MTIME_NSEC], x[Slot.ATTR_CTIME], x[Slot.ATTR_CTIME_NSEC]] = i.t;
  x[Slot.GENERATION] = 0, x[Slot.ATTR_TIMEOUT] = 0, x[Slot.ENTRY_TIMEOUT] = 0, x[Slot.NODEID] = i.ino;
}
function entry(req: number, i: Ino): void {
  put(i);
  n.replyEntry(req);
}
function dir(ino: number): Ino | undefined {
  const d = inodes.get(ino);
  return d?.children ? d : undefined;
}
function child(parent: number, name: string): Ino | undefined {
  const ino = dir(parent)?.children?.get(name);
  return ino === undefined ? undefined : inodes.get(ino);
}
function addNew(req: number, parent: number, name: string, mode: number): Ino | undefined {
  const d = dir(parent);
  if (!d) return void n.replyErr(req, E.ENOTDIR);
  if (d.children!.has(name)) return void n.replyErr(req, E.EEXIST);
  const i = make(mode);
  d.children!.set(name, i.ino);
  return i;
}

const handlers: ll.Handlers = {
  lookup(req, parent, name) {
    const i = child(parent, name);
    if (i) entry(req, i);
    else n.replyErr(req, E.ENOENT);
  },
  forget() {},
  getattr(req, ino) {
    const i = inodes.get(ino);
    if (!i) return void n.replyErr(req, E.ENOENT);
    const name = [...root.children!].find(([, v]) => v === ino)?.[0];
    if (name === 'hang') return void pending.push(req);
    if (name === 'throws') throw new Error('a handler bug');
    put(i);
    const first = n.replyAttr(req);
    if (name === 'twice') log.push({ op: 'twice', first, second: n.replyAttr(req), err: n.replyErr(req, E.EIO) });
  },
  setattr(req, ino, toSet, fh) {
    const i = inodes.get(ino)!;
    const v = Array.from(x.subarray(Slot.SET_MODE, Slot.SET_CTIME_NSEC + 1));
    log.push({ op: 'setattr', ino, toSet, fh, v });
    if (toSet & ll.SETATTR_MODE) i.mode = (i.mode & S_IFMT) | (v[0]! & 0o7777);
    if (toSet & ll.SETATTR_SIZE) {
      const b = Buffer.alloc(v[3]!);
      i.data.copy(b, 0, 0, Math.min(b.length, i.data.length));
      i.data = b;
    }
    const now = nowPair();
    if (toSet & ll.SETATTR_ATIME_NOW) (i.t[0] = now[0]), (i.t[1] = now[1]);
    else if (toSet & ll.SETATTR_ATIME) (i.t[0] = v[4]!), (i.t[1] = v[5]!);
    if (toSet & ll.SETATTR_MTIME_NOW) (i.t[2] = now[0]), (i.t[3] = now[1]);
    else if (toSet & ll.SETATTR_MTIME) (i.t[2] = v[6]!), (i.t[3] = v[7]!);
    put(i);
    n.replyAttr(req);
  },
  readlink(req, ino) {
    n.replyReadlink(req, inodes.get(ino)!.target!);
  },
  mknod(req, parent, name, mode, rdev) {
    log.push({ op: 'mknod', name, mode, rdev, umask: x[Slot.CALLER_UMASK] });
    const i = addNew(req, parent, name, mode);
    if (i) (i.rdev = rdev), entry(req, i);
  },
  mkdir(req, parent, name, mode) {
    const i = addNew(req, parent, name, S_IFDIR | mode);
    if (i) dir(parent)!.nlink++, entry(req, i);
  },
  unlink(req, parent, name) {
    const i = child(parent, name);
    if (!i) return void n.replyErr(req, E.ENOENT);
    dir(parent)!.children!.delete(name);
    i.nlink--;
    n.replyErr(req, 0);
  },
  rmdir(req, parent, name) {
    const i = child(parent, name);
    if (!i?.children) return void n.replyErr(req, i ? E.ENOTDIR : E.ENOENT);
    if (i.children.size) return void n.replyErr(req, E.ENOTEMPTY);
    dir(parent)!.children!.delete(name);
    n.replyErr(req, 0);
  },
  symlink(req, target, parent, name) {
    const i = addNew(req, parent, name, S_IFLNK | 0o777);
    if (i) (i.target = target), (i.data = Buffer.from(target, 'latin1')), entry(req, i);
  },
  rename(req, parent, name, newParent, newName, flags) {
    log.push({ op: 'rename', name, newName, flags });
    const from = dir(parent)!.children!;
    const to = dir(newParent)!.children!;
    const a = from.get(name);
    const b = to.get(newName);
    if (a === undefined) return void n.replyErr(req, E.ENOENT);
    if (flags & 1 && b !== undefined) return void n.replyErr(req, E.EEXIST); // RENAME_NOREPLACE
    if (flags & 2) { // RENAME_EXCHANGE
      if (b === undefined) return void n.replyErr(req, E.ENOENT);
      from.set(name, b), to.set(newName, a);
    } else {
      from.delete(name), to.set(newName, a);
    }
    n.replyErr(req, 0);
  },
  link(req, ino, newParent, newName) {
    const i = inodes.get(ino)!;
    dir(newParent)!.children!.set(newName, ino);
    i.nlink++;
    entry(req, i);
  },
  open(req, ino, flags) {
    if (flags & 0o1000) inodes.get(ino)!.data = Buffer.alloc(0); // atomic_o_trunc: O_TRUNC arrives here
    n.replyOpen(req, ino, ll.OPEN_DIRECT_IO);
  },
  create(req, parent, name, mode, flags) {
    log.push({ op: 'create', name, mode, flags, umask: x[Slot.CALLER_UMASK] });
    const i = addNew(req, parent, name, mode);
    if (!i) return;
    put(i);
    n.replyCreate(req, i.ino, ll.OPEN_DIRECT_IO);
  },
  read(req, ino, _fh, pos, size) {
    n.replyBuf(req, inodes.get(ino)!.data.subarray(pos, pos + size));
  },
  write(req, ino, _fh, data, pos) {
    const i = inodes.get(ino)!;
    if (pos + data.length > i.data.length) {
      const b = Buffer.alloc(pos + data.length);
      i.data.copy(b);
      i.data = b;
    }
    data.copy(i.data, pos);
    n.replyWrite(req, data.length);
  },
  flush: (req) => void n.replyErr(req, 0),
  release: (req) => void n.replyErr(req, 0),
  fsync(req, ino, _fh, datasync) {
    log.push({ op: 'fsync', ino, datasync });
    n.replyErr(req, 0);
  },
  fallocate(req, ino, _fh, mode, pos, len) {
    log.push({ op: 'fallocate', mode, pos, len });
    if (mode !== 0) return void n.replyErr(req, E.EOPNOTSUPP);
    const i = inodes.get(ino)!;
    if (pos + len > i.data.length) {
      const b = Buffer.alloc(pos + len);
      i.data.copy(b);
      i.data = b;
    }
    n.replyErr(req, 0);
  },
  opendir: (req, ino) => void n.replyOpen(req, ino, 0),
  readdir(req, ino, _fh, offset, _size, plus) {
    const d = dir(ino)!;
    const names: [string, number][] = [['.', ino], ['..', 1], ...d.children!];
    for (let k = offset; k < names.length; k++) {
      const [name, c] = names[k]!;
      const i = inodes.get(c)!;
      const ok = plus ? (put(i), n.dirAddPlus(req, name, k + 1, 0)) : n.dirAdd(req, name, c, i.mode, k + 1);
      if (!ok) break;
    }
    n.replyDir(req);
  },
  releasedir: (req) => void n.replyErr(req, 0),
  statfs(req) {
    x.fill(0, 0, 9);
    x[Slot.STATFS_BSIZE] = 512, x[Slot.STATFS_FRSIZE] = 512, x[Slot.STATFS_NAMEMAX] = 255;
    n.replyStatfs(req);
  },
  setxattr(req, ino, name, value, flags) {
    inodes.get(ino)!.xattrs.set(name, value);
    log.push({ op: 'setxattr', name, value: value.toString('latin1'), flags });
    n.replyErr(req, 0);
  },
  getxattr(req, ino, name) {
    const v = inodes.get(ino)!.xattrs.get(name);
    if (v) n.replyXattr(req, v);
    else n.replyErr(req, E.ENODATA);
  },
  listxattr(req, ino) {
    const names = [...inodes.get(ino)!.xattrs.keys()];
    n.replyXattr(req, Buffer.from(names.map((k) => k + '\0').join(''), 'latin1'));
  },
  removexattr(req, ino, name) {
    n.replyErr(req, inodes.get(ino)!.xattrs.delete(name) ? 0 : E.ENODATA);
  },
};

const mountpoint = process.argv[2]!;
for (const name of ['hang', 'twice', 'throws']) root.children!.set(name, make(S_IFREG | 0o644).ino);
let session: ll.Session;
handlers.init = () => process.send!({ type: 'ready' });
handlers.end = (errno, requests) => {
  // Replies after the end must be refused, not crash: the binding answered `hang` with EIO already.
  const late = pending.map((req) => n.replyErr(req, 0));
  process.send!({ type: 'ended', errno, requests, late, log }, () => process.exit(0));
};
process.on('message', (m: { type: string }) => {
  if (m.type === 'log') process.send!({ type: 'log', log, pending: pending.length });
  if (m.type === 'unmount') n.unmount(session);
});
session = n.mount(mountpoint, ['ll-child', '-o', 'fsname=ll-child,subtype=ll'], handlers, {});
