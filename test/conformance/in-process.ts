// The in-process configuration (no mount): an InstanceFs in a worker thread (in-process-worker.ts,
// which also does the kernel VFS's part), and synchronous stand-ins for the parts of node:fs and the
// addon's sys the cases use. Each call is one message to the worker; the calling thread blocks on a
// shared word (Atomics.wait) until the worker has answered, then takes the answer off the port
// synchronously (receiveMessageOnPort). Paths are under `root`, which stands for the mount's root.
import nodeFs from 'node:fs';
import path from 'node:path';
import { MessageChannel, receiveMessageOnPort, Worker } from 'node:worker_threads';
import type { Sys } from '../../src/native/sys.js';
import type { Attr } from '../../src/vfs/api.js';
import { fromByteString, toByteString } from '../../src/util/latin1.js';
import type { PathArg, Reply, Request, WorkerInit } from './in-process-worker.js';

const C = nodeFs.constants;
const FLAGS: Record<string, number> = {
  r: C.O_RDONLY, 'r+': C.O_RDWR, rs: C.O_RDONLY | C.O_SYNC, 'rs+': C.O_RDWR | C.O_SYNC,
  w: C.O_TRUNC | C.O_CREAT | C.O_WRONLY, wx: C.O_TRUNC | C.O_CREAT | C.O_WRONLY | C.O_EXCL,
  'w+': C.O_TRUNC | C.O_CREAT | C.O_RDWR, 'wx+': C.O_TRUNC | C.O_CREAT | C.O_RDWR | C.O_EXCL,
  a: C.O_APPEND | C.O_CREAT | C.O_WRONLY, ax: C.O_APPEND | C.O_CREAT | C.O_WRONLY | C.O_EXCL,
  'a+': C.O_APPEND | C.O_CREAT | C.O_RDWR, 'ax+': C.O_APPEND | C.O_CREAT | C.O_RDWR | C.O_EXCL,
};
const flagsOf = (f: string | number | undefined, def: string): number => (typeof f === 'number' ? f : FLAGS[f ?? def] ?? FLAGS[def]!);

/** Paths and names cross as byte strings (latin1), as the filesystem takes them. */
const bytes = toByteString;
const text = fromByteString;

function errnoError(code: string, op: string, p?: unknown): Error {
  const e = new Error(`${code}: in-process ${op}${typeof p === 'string' ? ` '${p}'` : ''}`) as NodeJS.ErrnoException;
  e.code = code;
  e.syscall = op;
  return e;
}

class Stats {
  [k: string]: unknown;
  constructor(a: Attr, big: boolean) {
    const n = (x: number): number | bigint => (big ? BigInt(x) : x);
    Object.assign(this, {
      dev: n(0), ino: n(a.ino), mode: n(a.mode), nlink: n(a.nlink), uid: n(a.uid), gid: n(a.gid), rdev: n(a.rdev),
      size: n(a.size), blksize: n(4096), blocks: n(a.blocks),
    });
    for (const [k, s, ns] of [['atime', a.atimeSec, a.atimeNsec], ['mtime', a.mtimeSec, a.mtimeNsec], ['ctime', a.ctimeSec, a.ctimeNsec], ['birthtime', 0, 0]] as const) {
      this[`${k}Ms`] = big ? BigInt(s) * 1000n + BigInt(Math.floor(ns / 1e6)) : s * 1000 + ns / 1e6;
      if (big) this[`${k}Ns`] = BigInt(s) * 1_000_000_000n + BigInt(ns);
      this[k] = new Date(s * 1000 + ns / 1e6);
    }
  }
  private t(): number {
    return Number(this.mode) & 0o170000;
  }
  isFile(): boolean { return this.t() === 0o100000; }
  isDirectory(): boolean { return this.t() === 0o040000; }
  isSymbolicLink(): boolean { return this.t() === 0o120000; }
  isFIFO(): boolean { return this.t() === 0o010000; }
  isCharacterDevice(): boolean { return this.t() === 0o020000; }
  isBlockDevice(): boolean { return this.t() === 0o060000; }
  isSocket(): boolean { return this.t() === 0o140000; }
}

class Dirent extends Stats {
  constructor(readonly name: string, mode: number, readonly parentPath: string) {
    super({ ino: 0, mode, nlink: 0, uid: 0, gid: 0, rdev: 0, size: 0, blocks: 0, atimeSec: 0, atimeNsec: 0, mtimeSec: 0, mtimeNsec: 0, ctimeSec: 0, ctimeNsec: 0 }, false);
  }
}

export interface InProcess {
  fs: typeof nodeFs;
  sys: Sys;
  /** process.chdir and process.cwd while the fs's calls are served here (a current directory inside it) */
  chdir(d: string): void;
  cwd(): string;
  close(): Promise<void>;
}

/** Starts the worker: an InstanceFs over `tar` with `upper` and `work`, its root standing at `root`. */
export function startInProcess(o: { root: string; tar: string; upper: string; work: string; umask: number }): InProcess {
  const { port1, port2 } = new MessageChannel();
  const flag = new SharedArrayBuffer(4);
  const word = new Int32Array(flag);
  const init: WorkerInit = { ...o, root: bytes(o.root), port: port2, flag };
  const worker = new Worker(new URL('./in-process-worker.js', import.meta.url), { workerData: init, transferList: [port2] });
  let dead: Error | undefined;
  worker.on('error', (e) => (dead = e));
  const call = (req: Request): unknown => {
    if (dead) throw dead;
    Atomics.store(word, 0, 0);
    port1.postMessage(req);
    for (;;) {
      Atomics.wait(word, 0, 0, 1000);
      const m = receiveMessageOnPort(port1);
      if (m) {
        const r = m.message as Reply;
        if ('ok' in r) return r.ok;
        if ('errno' in r) throw errnoError(r.errno, req[0], req[1]);
        throw new Error(`in-process ${req[0]}: ${r.bug}`);
      }
      if (dead) throw dead;
    }
  };
  /** The current directory when it is inside the fs (process.chdir there is served here: chdir). */
  let cwd: string | undefined;
  const real = { chdir: process.chdir.bind(process), cwd: process.cwd.bind(process) }; // process's own may be replaced by these
  // absolute, with a trailing slash kept (it means something to the walk); relative to a current
  // directory inside the fs: [that directory, the path], as the kernel walks it
  const p = (x: nodeFs.PathLike | number): PathArg | number => {
    if (typeof x === 'number') return x;
    const s = String(x);
    if (cwd !== undefined && !path.isAbsolute(s)) return [bytes(cwd), bytes(s)];
    return bytes(path.resolve(real.cwd(), s) + (/.\/$/.test(s) ? '/' : ''));
  };
  const buf = (x: unknown): Buffer => Buffer.from(x as Uint8Array);

  const stat = (x: nodeFs.PathLike | number, follow: boolean, opts?: { bigint?: boolean }): Stats =>
    new Stats((typeof x === 'number' ? call(['fstat', x]) : call(['stat', p(x), follow])) as Attr, !!opts?.bigint);
  const openSync = (x: nodeFs.PathLike, flags?: string | number, mode?: number): number => call(['open', p(x), flagsOf(flags, 'r'), mode ?? 0o666]) as number;
  const closeSync = (fd: number): void => void call(['close', fd]);
  const readSync = (fd: number, b: NodeJS.ArrayBufferView, offset = 0, length?: number, position?: number | bigint | null): number => {
    const len = length ?? b.byteLength - offset;
    const got = buf(call(['read', fd, len, position === undefined || position === null ? null : Number(position)]));
    Buffer.from(b.buffer, b.byteOffset, b.byteLength).set(got, offset);
    return got.length;
  };
  const writeSync = (fd: number, data: string | NodeJS.ArrayBufferView, a?: unknown, b?: unknown, c?: unknown): number => {
    if (typeof data === 'string') return call(['write', fd, Buffer.from(data, (b as BufferEncoding | undefined) ?? 'utf8'), typeof a === 'number' ? a : null]) as number;
    const off = (a as number | undefined) ?? 0;
    const len = (b as number | undefined) ?? data.byteLength - off;
    return call(['write', fd, Buffer.from(data.buffer, data.byteOffset + off, len), typeof c === 'number' ? c : null]) as number;
  };
  type Opts = { encoding?: BufferEncoding | null; flag?: string; mode?: number } | BufferEncoding | null | undefined;
  const optsOf = (x: Opts): { encoding?: BufferEncoding | null; flag?: string; mode?: number } => (typeof x === 'string' ? { encoding: x } : x ?? {});
  const readFileSync = (x: nodeFs.PathLike | number, opts?: Opts): string | Buffer => {
    const { encoding, flag } = optsOf(opts);
    const fd = typeof x === 'number' ? x : openSync(x, flag ?? 'r');
    try {
      const parts: Buffer[] = [];
      for (;;) {
        const b = buf(call(['read', fd, 1 << 20, null]));
        if (b.length === 0) break;
        parts.push(b);
      }
      const all = Buffer.concat(parts);
      return encoding ? all.toString(encoding) : all;
    } finally {
      if (typeof x !== 'number') closeSync(fd);
    }
  };
  const writeAll = (x: nodeFs.PathLike | number, data: string | NodeJS.ArrayBufferView, opts: Opts, def: string): void => {
    const { encoding, flag, mode } = optsOf(opts);
    const fd = typeof x === 'number' ? x : openSync(x, flag ?? def, mode ?? 0o666);
    try {
      const b = typeof data === 'string' ? Buffer.from(data, encoding ?? 'utf8') : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      for (let at = 0; at < b.length; ) at += call(['write', fd, b.subarray(at), null]) as number;
    } finally {
      if (typeof x !== 'number') closeSync(fd);
    }
  };
  const readdirSync = (x: nodeFs.PathLike, opts?: { withFileTypes?: boolean } | BufferEncoding): unknown[] => {
    const es = call(['readdir', p(x)]) as { name: string; mode: number }[];
    if (typeof opts === 'object' && opts?.withFileTypes) return es.map((e) => new Dirent(text(e.name), e.mode, String(x)));
    return es.map((e) => text(e.name));
  };
  const mkdirSync = (x: nodeFs.PathLike, opts?: { recursive?: boolean; mode?: number } | number): string | undefined => {
    const o2 = typeof opts === 'number' ? { mode: opts } : opts ?? {};
    const mode = o2.mode ?? 0o777;
    if (!o2.recursive) return void call(['mkdir', p(x), mode]);
    const given = String(x);
    const relative = cwd !== undefined && !path.isAbsolute(given);
    const full = relative ? path.normalize(given) : path.resolve(real.cwd(), given);
    let first: string | undefined;
    const parts = full.split('/');
    for (let i = relative ? 1 : 2; i <= parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (!relative && d !== o.root && !d.startsWith(o.root + '/')) continue;
      try {
        call(['mkdir', p(d), mode]);
        first ??= d;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        if (!stat(d, true).isDirectory()) throw errnoError('ENOTDIR', 'mkdir', d);
      }
    }
    return first;
  };
  const rmSync = (x: nodeFs.PathLike, opts?: { recursive?: boolean; force?: boolean }): void => {
    let st: Stats;
    try {
      st = stat(x, false);
    } catch (err) {
      if (opts?.force && (err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    if (!st.isDirectory()) return void call(['unlink', p(x)]);
    if (!opts?.recursive) {
      const e = new Error(`Path is a directory: rm returned EISDIR`) as NodeJS.ErrnoException;
      e.code = 'ERR_FS_EISDIR';
      throw e;
    }
    for (const n of readdirSync(x) as string[]) rmSync(path.join(String(x), n), opts);
    call(['rmdir', p(x)]);
  };
  const opendirSync = (x: nodeFs.PathLike): { readSync(): Dirent | null; closeSync(): void } => {
    const fd = call(['open', p(x), C.O_RDONLY | C.O_DIRECTORY, 0]) as number;
    return {
      readSync: () => {
        const e = call(['readdirNext', fd]) as { name: string; mode: number } | null;
        return e && new Dirent(text(e.name), e.mode, String(x));
      },
      closeSync: () => closeSync(fd),
    };
  };

  const fsImpl = {
    constants: C,
    statSync: (x: nodeFs.PathLike, opts?: { bigint?: boolean }) => stat(x, true, opts),
    lstatSync: (x: nodeFs.PathLike, opts?: { bigint?: boolean }) => stat(x, false, opts),
    fstatSync: (fd: number, opts?: { bigint?: boolean }) => stat(fd, true, opts),
    existsSync: (x: nodeFs.PathLike) => {
      try {
        stat(x, true);
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code?.startsWith('E')) return false;
        throw err;
      }
    },
    openSync, closeSync, readSync, writeSync, readFileSync,
    writeFileSync: (x: nodeFs.PathLike | number, d: string | NodeJS.ArrayBufferView, opts?: Opts) => writeAll(x, d, opts, 'w'),
    appendFileSync: (x: nodeFs.PathLike | number, d: string | NodeJS.ArrayBufferView, opts?: Opts) => writeAll(x, d, opts, 'a'),
    readdirSync, mkdirSync, rmSync, opendirSync,
    rmdirSync: (x: nodeFs.PathLike) => void call(['rmdir', p(x)]),
    unlinkSync: (x: nodeFs.PathLike) => void call(['unlink', p(x)]),
    renameSync: (a: nodeFs.PathLike, b: nodeFs.PathLike) => void call(['rename', p(a), p(b), 0]),
    linkSync: (a: nodeFs.PathLike, b: nodeFs.PathLike) => void call(['link', p(a), p(b)]),
    symlinkSync: (t: nodeFs.PathLike, x: nodeFs.PathLike) => void call(['symlink', bytes(String(t)), p(x)]),
    readlinkSync: (x: nodeFs.PathLike) => text(call(['readlink', p(x)]) as string),
    chmodSync: (x: nodeFs.PathLike, mode: number) => void call(['setattr', p(x), true, { mode }]),
    fchmodSync: (fd: number, mode: number) => void call(['setattr', fd, true, { mode }]),
    chownSync: (x: nodeFs.PathLike, uid: number, gid: number) => void call(['setattr', p(x), true, { uid, gid }]),
    lchownSync: (x: nodeFs.PathLike, uid: number, gid: number) => void call(['setattr', p(x), false, { uid, gid }]),
    fchownSync: (fd: number, uid: number, gid: number) => void call(['setattr', fd, true, { uid, gid }]),
    // node makes a negative length 0
    truncateSync: (x: nodeFs.PathLike, len = 0) => void call(['truncate', p(x), Math.max(0, len)]),
    ftruncateSync: (fd: number, len = 0) => void call(['truncate', fd, Math.max(0, len)]),
    fsyncSync: (fd: number) => void call(['fsync', fd]),
    utimesSync: (x: nodeFs.PathLike, a: number, m: number) => {
      const s = (t: number): [number, number] => [Math.floor(t), Math.round((t - Math.floor(t)) * 1e9)];
      call(['utimens', p(x), ...s(a), ...s(m)]);
    },
  };
  const fs = new Proxy(fsImpl, {
    get(t, k) {
      if (k in t) return (t as Record<string | symbol, unknown>)[k];
      return () => {
        throw new Error(`in-process: fs.${String(k)} is not served (the case is left out here)`);
      };
    },
  }) as unknown as typeof nodeFs;

  const sysImpl: Partial<Sys> = {
    getxattr: (t, name) => {
      const v = call(['getxattr', p(t), bytes(name)]);
      return v === null ? null : buf(v);
    },
    setxattr: (t, name, value, flags) => void call(['setxattr', p(t), bytes(name), value, flags]),
    removexattr: (t, name) => void call(['removexattr', p(t), bytes(name)]),
    listxattr: (t) => (call(['listxattr', p(t)]) as string[]).map(text),
    // the kernel's dev_t encoding, as FUSE passes it (arithmetic: it passes 32 bits)
    mknod: (x, mode, major, minor) => void call(['mknod', p(x), mode, (minor & 0xff) + (major & 0xfff) * 0x100 + Math.floor(minor / 0x100) * 0x100000]),
    utimens: (t, as, an, ms, mn) => void call(['utimens', p(t), as, an, ms, mn]),
    rename2: (a, b, flags) => void call(['rename', p(a), p(b), flags]),
    fallocate: (fd, mode, offset, length) => void call(['fallocate', fd, mode, offset, length]),
  };
  const sys = new Proxy(sysImpl, {
    get(t, k) {
      if (k in t) return (t as Record<string | symbol, unknown>)[k];
      return () => {
        throw new Error(`in-process: sys.${String(k)} is not served (the case is left out here)`);
      };
    },
  }) as Sys;

  return {
    fs,
    sys,
    chdir: (d: string) => {
      const abs = path.resolve(cwd ?? real.cwd(), d);
      if (abs !== o.root && !abs.startsWith(o.root + '/')) {
        cwd = undefined;
        return real.chdir(abs);
      }
      if (!stat(abs, true).isDirectory()) throw errnoError('ENOTDIR', 'chdir', abs);
      cwd = abs;
    },
    cwd: () => cwd ?? real.cwd(),
    close: async () => {
      if (!dead) {
        try {
          call(['destroy']);
        } finally {
          port1.close();
          await worker.terminate();
        }
      }
    },
  };
}
