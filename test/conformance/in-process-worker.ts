// The in-process configuration's filesystem side (see in-process.ts): an InstanceFs over a tar layer
// in a worker thread, and what the kernel's VFS does before it calls a FUSE filesystem, for paths
// under a root that stands for the mount: path walks (symlinks, '..', ELOOP, ENOTDIR, trailing
// slashes, ENAMETOOLONG), the checks of open/rename/link/unlink/xattr calls, the umask, O_APPEND, file
// positions. Each request comes as one message; its answer goes back on the same port, then the
// waiting main thread is woken through the shared word.
import fs from 'node:fs';
import { workerData, type MessagePort } from 'node:worker_threads';
import { InstanceFs } from '../../src/overlay/instance-fs.js';
import { indexTarFile } from '../../src/tar/indexer.js';
import { tarLayer } from '../../src/layer/tar-layer.js';
import type { Attr, Caller, FdRange, SetAttr } from '../../src/vfs/api.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../../src/vfs/mode.js';
import { RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT, UTIME_NOW, UTIME_OMIT, XATTR_CREATE, XATTR_REPLACE } from '../../src/native/sys.js';

export interface WorkerInit {
  root: string;
  tar: string;
  upper: string;
  work: string;
  umask: number;
  port: MessagePort;
  flag: SharedArrayBuffer;
}

export type Request = [op: string, ...args: unknown[]];
export type Reply = { ok: unknown } | { errno: string } | { bug: string };

const { O_ACCMODE = 3, O_RDONLY, O_CREAT, O_EXCL, O_TRUNC, O_APPEND, O_DIRECTORY, O_NOFOLLOW, O_NOCTTY } = fs.constants as Record<string, number>;
const O_CLOEXEC = 0o2000000;
const PATH_MAX = 4096;
const NAME_MAX = 255;
const MAXSYMLINKS = 40;

const init = workerData as WorkerInit;
// The daemon sets its umask to 0 (modes come masked from the kernel); a worker may not change the
// process's umask, and the main thread has set it to 0 already.
process.umask = ((): number => 0) as typeof process.umask;
const { data } = indexTarFile(init.tar, {});
const ifs = new InstanceFs([tarLayer(init.tar, data, fs.openSync(init.tar, 'r'))], init.upper, init.work);
const root = init.root;
const me: Caller = { uid: 0, gid: 0, pid: process.pid };

class Errno extends Error {
  constructor(readonly code: string) {
    super(code);
  }
}
const E = (code: string): Errno => new Errno(code);
/** Not something a case may do here (the kernel alone serves it): the case ends, and is left out. */
class Unsupported extends Error {}

interface Open {
  ino: number;
  fh: number;
  dir: boolean;
  flags: number;
  pos: number;
}
const fds = new Map<number, Open>();
let nextFd = 1000;

/**
 * The references (lookups and entry-making calls) handed to us per inode, as the kernel counts them
 * for FORGET. The kernel lets an inode go once its last name is removed and nothing holds it; so
 * does this (forgetRemoved), which the filesystem's inode numbers rely on (the upper reuses them).
 */
const refs = new Map<number, number>();
const ref = <T extends { ino: number }>(e: T): T => (refs.set(e.ino, (refs.get(e.ino) ?? 0) + 1), e);
async function forgetRemoved(ino: number | undefined): Promise<void> {
  if (ino === undefined || [...fds.values()].some((f) => f.ino === ino)) return;
  let nlink = 0;
  try {
    nlink = (await getattr(ino)).nlink;
  } catch {
    nlink = 0;
  }
  if (nlink > 0 && type(await getattr(ino)) !== S_IFDIR) return; // a file with names left (a removed directory shows 2 or 0)
  const n = refs.get(ino);
  if (!n) return;
  refs.delete(ino);
  ifs.forget(ino, n);
}

const type = (a: Attr): number => a.mode & S_IFMT;
const getattr = async (ino: number): Promise<Attr> => ifs.getattr(ino);

interface Walked {
  dir: number;
  name: string;
  ino: number | undefined;
  slash: boolean;
  /** the directories walked through to `dir`, the root first (for rename's ancestor checks) */
  ancestors: number[];
}

/** A path: absolute, or [the current directory, a path relative to it] (only the latter counts against PATH_MAX). */
export type PathArg = string | [cwd: string, rel: string];

/** namei: `follow` follows a symlink in the last component (one in any other is always followed). */
async function walk(arg: PathArg, follow: boolean): Promise<Walked> {
  const given = typeof arg === 'string' ? arg : arg[1];
  if (given.length + 1 > PATH_MAX) throw E('ENAMETOOLONG');
  if (given === '') throw E('ENOENT');
  const p = typeof arg === 'string' ? arg : `${arg[0]}/${arg[1]}`;
  let rel: string;
  if (p === root) rel = '';
  else if (p.startsWith(root + '/')) rel = p.slice(root.length);
  else throw new Unsupported(`a path outside the mount: ${p}`);
  const slash = /[^/]\/+$/.test(rel);
  let comps = rel.split('/').filter((c) => c !== '');
  const stack = [1];
  let links = 0;
  let out: Walked = { dir: 1, name: '.', ino: 1, slash, ancestors: [1] };
  while (comps.length) {
    const c = comps.shift()!;
    const last = comps.length === 0;
    const cur = stack[stack.length - 1]!;
    if (type(await getattr(cur)) !== S_IFDIR) throw E('ENOTDIR');
    if (c.length > NAME_MAX) throw E('ENAMETOOLONG');
    if (c === '.' || c === '..') {
      if (c === '..' && stack.length > 1) stack.pop();
      out = { dir: cur, name: c, ino: stack[stack.length - 1], slash, ancestors: [...stack] };
      continue;
    }
    let e;
    try {
      e = ref(await ifs.lookup(cur, c));
    } catch (err) {
      if ((err as Errno).code === 'ENOENT' && last) return { dir: cur, name: c, ino: undefined, slash, ancestors: [...stack] };
      throw err;
    }
    if (type(e.attr) === S_IFLNK && (!last || follow || slash)) {
      if (++links > MAXSYMLINKS) throw E('ELOOP');
      let t = await ifs.readlink(e.ino);
      if (t === '') throw E('ENOENT');
      if (t.startsWith('/')) {
        if (t !== root && !t.startsWith(root + '/')) throw new Unsupported(`a symlink out of the mount: ${t}`);
        t = t.slice(root.length);
        stack.length = 1;
      }
      comps = [...t.split('/').filter((x) => x !== ''), ...comps];
      if (t.endsWith('/') && comps.length === 0) out = { dir: 1, name: '.', ino: stack[stack.length - 1], slash, ancestors: [...stack] };
      continue;
    }
    out = { dir: cur, name: c, ino: e.ino, slash, ancestors: [...stack] };
    stack.push(e.ino);
  }
  return out;
}

/** An existing object: ENOENT if absent, ENOTDIR if a trailing slash names no directory. */
async function existing(p: PathArg, follow: boolean): Promise<{ w: Walked; ino: number; attr: Attr }> {
  const w = await walk(p, follow);
  if (w.ino === undefined) throw E('ENOENT');
  const attr = await getattr(w.ino);
  if (w.slash && type(attr) !== S_IFDIR) throw E('ENOTDIR');
  return { w, ino: w.ino, attr };
}

/** The object a call names by path (symlinks followed or not) or by an open descriptor. */
async function target(t: PathArg | number, follow: boolean): Promise<{ ino: number; attr: Attr; fh?: number }> {
  if (typeof t === 'number') {
    const f = fd(t);
    return { ino: f.ino, attr: await getattr(f.ino), fh: f.dir ? undefined : f.fh };
  }
  return existing(t, follow);
}

function fd(n: number): Open {
  const f = fds.get(n);
  if (!f) throw E('EBADF');
  return f;
}

function add(o: Open): number {
  const n = nextFd++;
  fds.set(n, o);
  return n;
}

/** A name a call would make: EEXIST if taken, and none of '.', '..'. */
async function fresh(p: PathArg): Promise<Walked> {
  const w = await walk(p, false);
  if (w.ino !== undefined) throw E('EEXIST');
  return w;
}

async function readAt(f: Open, pos: number, len: number): Promise<Buffer> {
  const r = await ifs.read(f.ino, f.fh, pos, len);
  if (Buffer.isBuffer(r)) return r;
  const parts = (r as FdRange[]).map((x) => {
    const b = Buffer.alloc(x.len);
    if (x.fd >= 0) fs.readSync(x.fd, b, 0, x.len, x.pos);
    return b;
  });
  return Buffer.concat(parts);
}

const timeSet = (sec: number, nsec: number): SetAttr['atime'] => (nsec === UTIME_OMIT ? undefined : nsec === UTIME_NOW ? 'now' : { sec, nsec });

/** What the kernel's xattr_permission and size checks say before the filesystem is asked. */
function xattrCheck(attr: Attr, name: string, writing: boolean, value?: Buffer): void {
  if (name.length === 0 || name.length > 255) throw E('ERANGE');
  if (value && value.length > 65536) throw E('E2BIG');
  if (name.startsWith('user.') && type(attr) !== S_IFREG && type(attr) !== S_IFDIR) throw E(writing ? 'EPERM' : 'ENODATA');
}

const ops: Record<string, (...a: any[]) => unknown> = {
  async stat(p: PathArg, follow: boolean) {
    return (await existing(p, follow)).attr;
  },
  async fstat(n: number) {
    return getattr(fd(n).ino);
  },
  async open(p: PathArg, flags: number, mode: number) {
    const creat = (flags & O_CREAT) !== 0;
    const excl = creat && (flags & O_EXCL) !== 0;
    const w = await walk(p, !excl && !(flags & O_NOFOLLOW));
    const pass = flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_NOFOLLOW | O_CLOEXEC | O_DIRECTORY);
    if (w.ino === undefined) {
      if (!creat) throw E('ENOENT');
      if (w.slash) throw E('EISDIR');
      const c = await ifs.create(w.dir, w.name, mode & ~init.umask & 0o7777, pass & ~O_TRUNC, me);
      ref(c.entry);
      return add({ ino: c.entry.ino, fh: c.open.fh, dir: false, flags, pos: 0 });
    }
    if (excl) throw E('EEXIST');
    const attr = await getattr(w.ino);
    const t = type(attr);
    if (t === S_IFLNK) throw E('ELOOP');
    if (w.slash && t !== S_IFDIR) throw E('ENOTDIR');
    if (t === S_IFDIR) {
      if (creat || (flags & O_ACCMODE) !== O_RDONLY || flags & O_TRUNC) throw E('EISDIR');
      return add({ ino: w.ino, fh: await ifs.opendir(w.ino), dir: true, flags, pos: 0 });
    }
    if (flags & O_DIRECTORY) throw E('ENOTDIR');
    if (t !== S_IFREG) throw new Unsupported('open of a special file (the kernel serves it, not the filesystem)');
    const o = await ifs.open(w.ino, pass);
    return add({ ino: w.ino, fh: o.fh, dir: false, flags, pos: 0 });
  },
  async read(n: number, len: number, pos: number | null) {
    const f = fd(n);
    if (f.dir) throw E('EISDIR');
    if ((f.flags & O_ACCMODE) === fs.constants.O_WRONLY) throw E('EBADF');
    const b = await readAt(f, pos ?? f.pos, len);
    if (pos === null) f.pos += b.length;
    return b;
  },
  async write(n: number, data: Uint8Array, pos: number | null) {
    const f = fd(n);
    if (f.dir || (f.flags & O_ACCMODE) === O_RDONLY) throw E('EBADF');
    // Linux writes an O_APPEND descriptor's data at the end, even through pwrite
    const at = f.flags & O_APPEND ? (await getattr(f.ino)).size : (pos ?? f.pos);
    const k = await ifs.write(f.ino, f.fh, Buffer.from(data), at);
    if (pos === null || f.flags & O_APPEND) f.pos = at + k;
    return k;
  },
  async close(n: number) {
    const f = fd(n);
    fds.delete(n);
    if (f.dir) ifs.releasedir(f.ino, f.fh);
    else await ifs.release(f.ino, f.fh);
    await forgetRemoved(f.ino); // the last close of a file whose names are gone
  },
  async readdirNext(n: number) {
    const f = fd(n);
    if (!f.dir) throw E('ENOTDIR');
    for (const e of ifs.readdir(f.ino, f.fh, f.pos)) {
      f.pos = e.next;
      if (e.name === '.' || e.name === '..') continue;
      return { name: e.name, mode: e.mode };
    }
    return null;
  },
  async readdir(p: PathArg) {
    const { ino, attr } = await existing(p, true);
    if (type(attr) !== S_IFDIR) throw E('ENOTDIR');
    const fh = await ifs.opendir(ino);
    try {
      return [...ifs.readdir(ino, fh, 0)].filter((e) => e.name !== '.' && e.name !== '..').map((e) => ({ name: e.name, mode: e.mode }));
    } finally {
      ifs.releasedir(ino, fh);
    }
  },
  async truncate(t: PathArg | number, size: number) {
    if (size < 0) throw E('EINVAL');
    const x = await target(t, true);
    if (typeof t === 'number' && (fd(t).dir || (fd(t).flags & O_ACCMODE) === O_RDONLY)) throw E('EINVAL');
    if (type(x.attr) === S_IFDIR) throw E('EISDIR');
    if (type(x.attr) !== S_IFREG) throw E('EINVAL');
    await ifs.setattr(x.ino, { size }, x.fh, me);
  },
  async fsync(n: number) {
    const f = fd(n);
    if (f.dir) await ifs.fsyncdir(f.ino);
    else await ifs.fsync(f.ino, f.fh, false);
  },
  async fallocate(n: number, mode: number, offset: number, len: number) {
    const f = fd(n);
    if (offset < 0 || len <= 0) throw E('EINVAL');
    if (f.dir || (f.flags & O_ACCMODE) === O_RDONLY) throw E('EBADF');
    if (mode & ~(0x01 | 0x02 | 0x10)) throw E('EOPNOTSUPP'); // KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE: what FUSE passes on
    if (mode & 0x02 && !(mode & 0x01)) throw E('EOPNOTSUPP'); // vfs_fallocate's checks
    if (mode & 0x02 && mode & 0x10) throw E('EOPNOTSUPP');
    await ifs.fallocate(f.ino, f.fh, mode, offset, len);
  },
  async mkdir(p: PathArg, mode: number) {
    const w = await fresh(p);
    ref(await ifs.mkdir(w.dir, w.name, mode & ~init.umask & 0o1777, me));
  },
  async rmdir(p: PathArg) {
    const w = await walk(p, false);
    if (w.name === '.') throw E('EINVAL');
    if (w.name === '..') throw E('ENOTEMPTY');
    if (w.ino === 1) throw E('EBUSY');
    if (w.ino === undefined) throw E('ENOENT');
    await ifs.rmdir(w.dir, w.name);
    await forgetRemoved(w.ino);
  },
  async unlink(p: PathArg) {
    const w = await walk(p, false);
    if (w.ino === undefined) throw E('ENOENT');
    if (w.ino === 1 || w.name === '.' || w.name === '..') throw E('EISDIR');
    if (w.slash) throw E(type(await getattr(w.ino)) === S_IFDIR ? 'EISDIR' : 'ENOTDIR');
    await ifs.unlink(w.dir, w.name);
    await forgetRemoved(w.ino);
  },
  async rename(a: PathArg, b: PathArg, flags: number) {
    if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT)) throw E('EINVAL');
    if (flags & RENAME_EXCHANGE && flags & (RENAME_NOREPLACE | RENAME_WHITEOUT)) throw E('EINVAL');
    const from = await walk(a, false);
    const to = await walk(b, false);
    if (from.ino === 1 || from.name === '.' || from.name === '..') throw E('EBUSY');
    if (from.ino === undefined) throw E('ENOENT');
    if (to.ino === 1 || to.name === '.' || to.name === '..') throw E(flags & RENAME_NOREPLACE ? 'EEXIST' : 'EBUSY');
    const fromAttr = await getattr(from.ino);
    const fromDir = type(fromAttr) === S_IFDIR;
    if (flags & RENAME_EXCHANGE && to.ino === undefined) throw E('ENOENT');
    const toAttr = to.ino !== undefined ? await getattr(to.ino) : undefined;
    if ((from.slash || to.slash) && !fromDir) throw E('ENOTDIR');
    // the source may not be an ancestor of the target (nor, exchanged, the target of the source)
    if (to.ancestors.includes(from.ino)) throw E('EINVAL');
    if (to.ino !== undefined && from.ancestors.includes(to.ino)) throw E(flags & RENAME_EXCHANGE ? 'EINVAL' : 'ENOTEMPTY');
    if (to.ino !== undefined && !(flags & RENAME_EXCHANGE)) {
      if (flags & RENAME_NOREPLACE) throw E('EEXIST');
      if (to.ino === from.ino) return; // two names of one inode: nothing to do
      const toDir = type(toAttr!) === S_IFDIR;
      if (fromDir && !toDir) throw E('ENOTDIR');
      if (!fromDir && toDir) throw E('EISDIR');
    }
    await ifs.rename(from.dir, from.name, to.dir, to.name, flags);
    if (!(flags & RENAME_EXCHANGE)) await forgetRemoved(to.ino);
  },
  async link(a: PathArg, b: PathArg) {
    const { w, attr } = await existing(a, false);
    if (type(attr) === S_IFDIR) throw E('EPERM');
    const to = await walk(b, false);
    if (to.ino !== undefined) throw E('EEXIST');
    if (to.slash) throw E('ENOENT');
    ref(await ifs.link(w.ino!, to.dir, to.name));
  },
  async symlink(t: string, p: PathArg) {
    const w = await fresh(p);
    if (t === '') throw E('ENOENT');
    if (t.length + 1 > PATH_MAX) throw E('ENAMETOOLONG');
    if (w.slash) throw E('ENOENT');
    ref(await ifs.symlink(w.dir, w.name, t, me));
  },
  async readlink(p: PathArg) {
    const { ino, attr } = await existing(p, false);
    if (type(attr) !== S_IFLNK) throw E('EINVAL');
    return ifs.readlink(ino);
  },
  async mknod(p: PathArg, mode: number, rdev: number) {
    const t = mode & S_IFMT;
    if (t === S_IFDIR) throw E('EPERM');
    if (![0, S_IFREG, 0o010000, 0o020000, 0o060000, 0o140000].includes(t)) throw E('EINVAL');
    const w = await fresh(p);
    const perm = mode & 0o7777 & ~init.umask;
    if (t === 0 || t === S_IFREG) {
      const c = await ifs.create(w.dir, w.name, perm, fs.constants.O_WRONLY, me);
      ref(c.entry);
      await ifs.release(c.entry.ino, c.open.fh);
      return;
    }
    ref(await ifs.mknod(w.dir, w.name, t | perm, t === 0o020000 || t === 0o060000 ? rdev : 0, me));
  },
  async setattr(t: PathArg | number, follow: boolean, set: SetAttr) {
    const x = await target(t, follow);
    if (set.mode !== undefined) set.mode &= 0o7777;
    if (set.uid === -1) delete set.uid;
    if (set.gid === -1) delete set.gid;
    if (Object.keys(set).length === 0) return;
    await ifs.setattr(x.ino, set, x.fh, me);
  },
  async utimens(t: PathArg | number, as: number, an: number, ms: number, mn: number) {
    const x = await target(t, false);
    const set: SetAttr = {};
    const a = timeSet(as, an);
    const m = timeSet(ms, mn);
    if (a !== undefined) set.atime = a;
    if (m !== undefined) set.mtime = m;
    if (a === undefined && m === undefined) return;
    await ifs.setattr(x.ino, set, x.fh, me);
  },
  async getxattr(t: PathArg | number, name: string) {
    const x = await target(t, false);
    try {
      xattrCheck(x.attr, name, false);
      return await ifs.getxattr(x.ino, name);
    } catch (err) {
      if ((err as Errno).code === 'ENODATA') return null;
      throw err;
    }
  },
  async setxattr(t: PathArg | number, name: string, value: Uint8Array, flags: number) {
    if (flags & ~(XATTR_CREATE | XATTR_REPLACE)) throw E('EINVAL');
    const x = await target(t, false);
    xattrCheck(x.attr, name, true, Buffer.from(value));
    await ifs.setxattr(x.ino, name, Buffer.from(value), flags);
  },
  async removexattr(t: PathArg | number, name: string) {
    const x = await target(t, false);
    xattrCheck(x.attr, name, true);
    await ifs.removexattr(x.ino, name);
  },
  async listxattr(t: PathArg | number) {
    const x = await target(t, false);
    return ifs.listxattr(x.ino);
  },
  async destroy() {
    for (const n of [...fds.keys()]) await ops.close!(n);
    await ifs.destroy();
  },
};

const flag = new Int32Array(init.flag);
init.port.on('message', (req: Request) => {
  const [op, ...args] = req;
  const answer = (r: Reply): void => {
    init.port.postMessage(r);
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
  };
  (async () => {
    const f = ops[op];
    if (!f) throw new Unsupported(`no operation ${op}`);
    return f(...args);
  })().then(
    (ok) => answer({ ok }),
    (err: unknown) => {
      const code = (err as Errno).code;
      if (!(err instanceof Unsupported) && typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) answer({ errno: code });
      else answer({ bug: `${(err as Error).stack ?? String(err)}` });
    },
  );
});
