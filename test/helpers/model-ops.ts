// Random filesystem operations over a small namespace where names collide on purpose (fast-check
// arbitraries), and applyOp: one operation through ordinary syscalls on one root, reduced to a
// string (its errno, or `ok` plus what it returned) so two roots can be compared step by step.
import crypto from 'node:crypto';
import fs from 'node:fs';
import fc from 'fast-check';
import { BIG_SIZE, pattern } from './model-image.js';
import { exec } from './exec.js';

/** Directories ops work in ('' is the root), names they use; paths are every pairing plus a few
 *  that go through a symlinked directory (s → d1) or through a file (ENOTDIR). */
export const DIRS = ['', 'd1', 'd1/sub', 'd2', 'd2/deep', 'n'];
export const NAMES = ['a', 'b', 'big', 'hl', 'sub', 'deep', 'x', 'n', 'e', 'd1', 'd2', 'f1', 'fifo', 's'];
export const LOWER_PATHS = ['f1', 'd1', 'd1/a', 'd1/big', 'd1/hl', 'd1/sub', 'd1/sub/a', 'd1/sub/s', 'd1/dangling', 'd2', 'd2/b',
  'd2/hl', 'd2/deep', 'd2/deep/x', 'd2/deep/x/y', 'd2/fifo', 's', 'e'];
export const ALL_PATHS = [...new Set([...DIRS.flatMap((d) => NAMES.map((n) => (d ? `${d}/${n}` : n))), ...LOWER_PATHS,
  's/a', 's/sub', 's/x', 'f1/x', 'd2/deep/x/w'])];

/** Targets never absolute and never with '..': whatever renames follow, a symlink stays inside. */
const SYMLINK_TARGETS = ['a', 'big', 'sub', 'x', 'd1', 'hl', 'nowhere/x', 'x/a'];
const MODES = [0o644, 0o600, 0o755, 0o700, 0o4755, 0o2750, 0o1777, 0o000, 0o444];
const IDS = [0, 1000, 65534];
/** None near "now" (see the mtime window in model-run.ts); nanoseconds, one before 1970, one after 2038. */
const TIMES = ['1000000000.000000001', '1234567890.123456789', '1500000000.5', '946684800.999999999', '-86400.25', '4102444800.000000007'];
const XATTR_NAMES = ['user.a', 'user.b', 'user.top', 'user.big', 'user.hl'];
const XATTR_VALUES = ['', 'v1', 'a-longer-value-'.repeat(8)];
const OFFSETS = [0, 1, 4095, 4096, 65_536, 1_048_576, BIG_SIZE - 3, BIG_SIZE + 100, 3_000_000];
const LENGTHS = [1, 10, 4096, 70_000];
const TRUNCATES = [0, 1, 100, 4096, 1_048_577, 2_000_000];

export interface Data { len: number; seed: number }
export type Op =
  | { op: 'create'; path: string; flags: 'plain' | 'excl' | 'trunc' | 'append'; mode: number; data: Data }
  | { op: 'write'; path: string; offset: number; data: Data }
  | { op: 'truncate'; path: string; length: number }
  | { op: 'read'; path: string }
  | { op: 'unlink'; path: string }
  | { op: 'mkdir'; path: string; mode: number }
  | { op: 'rmdir'; path: string }
  | { op: 'rename'; from: string; to: string }
  | { op: 'link'; from: string; to: string }
  | { op: 'symlink'; target: string; path: string }
  | { op: 'readlink'; path: string }
  | { op: 'mkfifo'; path: string }
  | { op: 'chmod'; path: string; mode: number }
  | { op: 'chown'; path: string; uid: number; gid: number; follow: boolean }
  | { op: 'utimes'; path: string; which: 'm' | 'a' | 'both'; time: string; follow: boolean }
  | { op: 'setxattr'; path: string; name: string; value: string }
  | { op: 'removexattr'; path: string; name: string }
  | { op: 'getxattr'; path: string; name: string }
  | { op: 'stat'; path: string; follow: boolean }
  | { op: 'readdir'; path: string }
  | { op: 'open'; slot: number; path: string; flags: 'r' | 'rw' | 'append' }
  | { op: 'pread'; slot: number; offset: number; length: number }
  | { op: 'pwrite'; slot: number; offset: number; data: Data }
  | { op: 'fstat'; slot: number }
  | { op: 'close'; slot: number };

/** Paths weighted toward what the image holds, so most ops meet an entry rather than ENOENT. */
const anyPath = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...LOWER_PATHS) }, { weight: 2, arbitrary: fc.constantFrom(...ALL_PATHS) });
const dirPath = fc.constantFrom(...DIRS, 'e', 'd2/deep/x', 's', 'f1');
const data = fc.record({ len: fc.constantFrom(0, ...LENGTHS), seed: fc.nat(250) });
const slot = fc.constantFrom(0, 1);
const w = (weight: number, arbitrary: fc.Arbitrary<Op>) => ({ weight, arbitrary });

export const opArb: fc.Arbitrary<Op> = fc.oneof(
  w(3, fc.record({ op: fc.constant('create' as const), path: anyPath, flags: fc.constantFrom('plain' as const, 'excl' as const, 'trunc' as const, 'append' as const), mode: fc.constantFrom(...MODES), data })),
  w(3, fc.record({ op: fc.constant('write' as const), path: anyPath, offset: fc.constantFrom(...OFFSETS), data })),
  w(1, fc.record({ op: fc.constant('truncate' as const), path: anyPath, length: fc.constantFrom(...TRUNCATES) })),
  w(2, fc.record({ op: fc.constant('read' as const), path: anyPath })),
  w(2, fc.record({ op: fc.constant('unlink' as const), path: anyPath })),
  w(2, fc.record({ op: fc.constant('mkdir' as const), path: anyPath, mode: fc.constantFrom(0o755, 0o700, 0o1777) })),
  w(2, fc.record({ op: fc.constant('rmdir' as const), path: anyPath })),
  w(4, fc.record({ op: fc.constant('rename' as const), from: anyPath, to: anyPath })),
  w(1, fc.record({ op: fc.constant('link' as const), from: anyPath, to: anyPath })),
  w(1, fc.record({ op: fc.constant('symlink' as const), target: fc.constantFrom(...SYMLINK_TARGETS), path: anyPath })),
  w(1, fc.record({ op: fc.constant('readlink' as const), path: fc.oneof(fc.constantFrom('s', 'd1/sub/s', 'd1/dangling', 'x', 'd1/x'), anyPath) })),
  w(1, fc.record({ op: fc.constant('mkfifo' as const), path: anyPath })),
  w(1, fc.record({ op: fc.constant('chmod' as const), path: anyPath, mode: fc.constantFrom(...MODES) })),
  w(1, fc.record({ op: fc.constant('chown' as const), path: anyPath, uid: fc.constantFrom(...IDS), gid: fc.constantFrom(...IDS), follow: fc.boolean() })),
  w(2, fc.record({ op: fc.constant('utimes' as const), path: anyPath, which: fc.constantFrom('m' as const, 'a' as const, 'both' as const), time: fc.constantFrom(...TIMES, 'now'), follow: fc.boolean() })),
  w(1, fc.record({ op: fc.constant('setxattr' as const), path: anyPath, name: fc.constantFrom(...XATTR_NAMES), value: fc.constantFrom(...XATTR_VALUES) })),
  w(1, fc.record({ op: fc.constant('removexattr' as const), path: anyPath, name: fc.constantFrom(...XATTR_NAMES) })),
  w(1, fc.record({ op: fc.constant('getxattr' as const), path: anyPath, name: fc.constantFrom(...XATTR_NAMES) })),
  w(2, fc.record({ op: fc.constant('stat' as const), path: anyPath, follow: fc.boolean() })),
  w(2, fc.record({ op: fc.constant('readdir' as const), path: dirPath })),
  w(1, fc.record({ op: fc.constant('open' as const), slot, path: anyPath, flags: fc.constantFrom('r' as const, 'rw' as const, 'append' as const) })),
  w(1, fc.record({ op: fc.constant('pread' as const), slot, offset: fc.constantFrom(...OFFSETS), length: fc.constantFrom(...LENGTHS) })),
  w(1, fc.record({ op: fc.constant('pwrite' as const), slot, offset: fc.constantFrom(...OFFSETS), data })),
  w(1, fc.record({ op: fc.constant('fstat' as const), slot })),
  w(1, fc.record({ op: fc.constant('close' as const), slot })),
);

/** size 'max': lengths spread up to maxSteps (fast-check's default size keeps arrays near 10). */
export const opsArb = (maxSteps: number) => fc.array(opArb, { minLength: 1, maxLength: maxSteps, size: 'max' });

const oct = (m: number) => m.toString(8).padStart(4, '0');
const dataText = (d: Data) => `${d.len}B#${d.seed}`;

/** One line per op, shell-like, for failure reports. */
export function describeOp(o: Op): string {
  switch (o.op) {
    case 'create': return `create ${o.path} ${o.flags} ${oct(o.mode)} ${dataText(o.data)}`;
    case 'write': return `write ${o.path} @${o.offset} ${dataText(o.data)}`;
    case 'truncate': return `truncate ${o.path} ${o.length}`;
    case 'mkdir': return `mkdir ${o.path} ${oct(o.mode)}`;
    case 'rename': case 'link': return `${o.op} ${o.from} -> ${o.to}`;
    case 'symlink': return `symlink ${o.path} -> ${o.target}`;
    case 'chmod': return `chmod ${o.path} ${oct(o.mode)}`;
    case 'chown': return `${o.follow ? 'chown' : 'lchown'} ${o.path} ${o.uid}:${o.gid}`;
    case 'utimes': return `utimes ${o.path} ${o.which}=${o.time}${o.follow ? '' : ' nofollow'}`;
    case 'setxattr': return `setxattr ${o.path} ${o.name}=${JSON.stringify(o.value.slice(0, 12))}`;
    case 'removexattr': case 'getxattr': return `${o.op} ${o.path} ${o.name}`;
    case 'stat': return `${o.follow ? 'stat' : 'lstat'} ${o.path}`;
    case 'open': return `open #${o.slot} ${o.path} ${o.flags}`;
    case 'pread': return `pread #${o.slot} @${o.offset} ${o.length}`;
    case 'pwrite': return `pwrite #${o.slot} @${o.offset} ${dataText(o.data)}`;
    case 'fstat': case 'close': return `${o.op} #${o.slot}`;
    default: return `${o.op} ${o.path}`;
  }
}

/** One root's state across a sequence: the fds behind handle slots, and the start of the run. */
export interface RootState {
  root: string;
  fds: Map<number, number>;
  sinceNs: bigint; // mtimes at or after this are "now": set by the system, not by an op
}

export function closeAll(s: RootState): void {
  for (const fd of s.fds.values()) fs.closeSync(fd);
  s.fds.clear();
}

/** strerror texts the tools print, back to errno names (glibc wording). */
const STRERROR: Record<string, string> = {
  'No such file or directory': 'ENOENT', 'Not a directory': 'ENOTDIR', 'File exists': 'EEXIST', 'Operation not permitted': 'EPERM',
  'Permission denied': 'EACCES', 'No data available': 'ENODATA', 'No such attribute': 'ENODATA', 'Operation not supported': 'EOPNOTSUPP',
  'Is a directory': 'EISDIR', 'Too many levels of symbolic links': 'ELOOP', 'Invalid argument': 'EINVAL', 'Input/output error': 'EIO',
  'No space left on device': 'ENOSPC', 'Read-only file system': 'EROFS', 'Numerical result out of range': 'ERANGE',
  'Argument list too long': 'E2BIG', 'Function not implemented': 'ENOSYS', 'Transport endpoint is not connected': 'ENOTCONN',
  'Stale file handle': 'ESTALE', 'Invalid cross-device link': 'EXDEV', 'Directory not empty': 'ENOTEMPTY', 'Device or resource busy': 'EBUSY',
};

/** Runs a tool; '' when it succeeded, else the errno name from its last ": reason" (or the raw text). */
function tool(argv: string[]): { err: string; stdout: Buffer } {
  const r = exec(argv);
  if (r.code === 0) return { err: '', stdout: r.stdout };
  const line = r.stderr.trim().split('\n').pop() ?? '';
  const reason = line.slice(line.lastIndexOf(': ') + 2);
  return { err: STRERROR[reason] ?? `E?(${line})`, stdout: r.stdout };
}

const hash = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex').slice(0, 12);
const typeName = (st: fs.BigIntStats) => (st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFIFO() ? 'fifo' : 'other');

/** What stat shows that both roots must agree on: no ino (compared as classes at the end), no
 *  ctime/atime, no size or nlink for directories (overlayfs reports 1 for merged dirs), and an
 *  mtime the system set (not an op) as `now`. */
export function statText(st: fs.BigIntStats, sinceNs: bigint): string {
  const t = typeName(st);
  const mtime = st.mtimeNs >= sinceNs ? 'now' : String(st.mtimeNs);
  const sizes = t === 'dir' ? '' : ` size=${st.size} nlink=${st.nlink}`;
  return `${t} ${oct(Number(st.mode & 0o7777n))} ${st.uid}:${st.gid}${sizes} mtime=${mtime}`;
}

/** O_NONBLOCK on every open: opening the image's fifo for writing must fail (ENXIO), not hang. */
const NB = fs.constants.O_NONBLOCK;

function readAllFd(fd: number): Buffer {
  const parts: Buffer[] = [];
  const buf = Buffer.alloc(1 << 20);
  for (let pos = 0; ; ) {
    const n = fs.readSync(fd, buf, 0, buf.length, pos);
    if (n === 0) return Buffer.concat(parts);
    parts.push(Buffer.from(buf.subarray(0, n)));
    pos += n;
  }
}

function withFd<T>(p: string, flags: number, fn: (fd: number) => T, mode?: number): T {
  const fd = fs.openSync(p, flags | NB, mode);
  try {
    return fn(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function run(s: RootState, o: Op): string {
  const at = (rel: string) => `${s.root}/${rel}`;
  const C = fs.constants;
  switch (o.op) {
    case 'create': {
      const extra = { plain: 0, excl: C.O_EXCL, trunc: C.O_TRUNC, append: C.O_APPEND }[o.flags];
      return withFd(at(o.path), C.O_WRONLY | C.O_CREAT | extra, (fd) => `ok ${fs.writeSync(fd, pattern(o.data.len, o.data.seed))}`, o.mode);
    }
    case 'write':
      return withFd(at(o.path), C.O_WRONLY, (fd) => `ok ${fs.writeSync(fd, pattern(o.data.len, o.data.seed), 0, o.data.len, o.offset)}`);
    case 'truncate':
      return withFd(at(o.path), C.O_WRONLY, (fd) => (fs.ftruncateSync(fd, o.length), 'ok'));
    case 'read':
      return withFd(at(o.path), C.O_RDONLY, (fd) => {
        const b = readAllFd(fd);
        return `ok ${b.length}B ${hash(b)}`;
      });
    case 'unlink': return (fs.unlinkSync(at(o.path)), 'ok');
    case 'mkdir': return (fs.mkdirSync(at(o.path), o.mode), 'ok');
    case 'rmdir': return (fs.rmdirSync(at(o.path)), 'ok');
    case 'rename': return (fs.renameSync(at(o.from), at(o.to)), 'ok');
    case 'link': return (fs.linkSync(at(o.from), at(o.to)), 'ok');
    case 'symlink': return (fs.symlinkSync(o.target, at(o.path)), 'ok');
    case 'readlink': return `ok ${fs.readlinkSync(at(o.path))}`;
    case 'mkfifo': return tool(['mkfifo', '-m', '0640', at(o.path)]).err || 'ok';
    case 'chmod': return (fs.chmodSync(at(o.path), o.mode), 'ok');
    case 'chown': return ((o.follow ? fs.chownSync : fs.lchownSync)(at(o.path), o.uid, o.gid), 'ok');
    case 'utimes': {
      // GNU touch: utimensat with nanoseconds and UTIME_OMIT for the time not named (-m/-a); -c
      // keeps it from creating, but then a missing file is silent, so ask lstat/stat afterwards
      const argv = ['touch', '-c', ...(o.follow ? [] : ['-h']), ...(o.which === 'both' ? [] : [`-${o.which}`]), ...(o.time === 'now' ? [] : ['-d', `@${o.time}`]), at(o.path)];
      const err = tool(argv).err;
      if (err) return err;
      (o.follow ? fs.statSync : fs.lstatSync)(at(o.path));
      return 'ok';
    }
    case 'setxattr': return tool(['setfattr', '-h', '-n', o.name, '-v', o.value, at(o.path)]).err || 'ok';
    case 'removexattr': return tool(['setfattr', '-h', '-x', o.name, at(o.path)]).err || 'ok';
    case 'getxattr': {
      const r = tool(['getfattr', '-h', '--only-values', '-n', o.name, at(o.path)]);
      return r.err || `ok ${JSON.stringify(r.stdout.toString('latin1'))}`;
    }
    case 'stat': return `ok ${statText((o.follow ? fs.statSync : fs.lstatSync)(at(o.path), { bigint: true }), s.sinceNs)}`;
    case 'readdir': return `ok [${fs.readdirSync(at(o.path)).sort().join(' ')}]`;
    case 'open': {
      const old = s.fds.get(o.slot);
      if (old !== undefined) fs.closeSync(old);
      s.fds.delete(o.slot);
      const flags = { r: C.O_RDONLY, rw: C.O_RDWR, append: C.O_WRONLY | C.O_APPEND }[o.flags];
      s.fds.set(o.slot, fs.openSync(at(o.path), flags | NB));
      return 'ok';
    }
    case 'pread': case 'pwrite': case 'fstat': case 'close': {
      const fd = s.fds.get(o.slot);
      if (fd === undefined) return 'ok (no handle)';
      if (o.op === 'close') return (s.fds.delete(o.slot), fs.closeSync(fd), 'ok');
      if (o.op === 'fstat') return `ok ${statText(fs.fstatSync(fd, { bigint: true }), s.sinceNs)}`;
      if (o.op === 'pwrite') return `ok ${fs.writeSync(fd, pattern(o.data.len, o.data.seed), 0, o.data.len, o.offset)}`;
      const b = Buffer.alloc(o.length);
      const n = fs.readSync(fd, b, 0, o.length, o.offset);
      return `ok ${n}B ${hash(b.subarray(0, n))}`;
    }
  }
}

/** Applies o to the root; never throws for an errno, which is the result. */
export function applyOp(s: RootState, o: Op): string {
  try {
    return run(s, o);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code && /^E[A-Z0-9]+$/.test(code)) return code;
    throw e;
  }
}
