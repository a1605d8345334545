// Serves a ManyFs through fuse-native 2.2.6 (libfuse 2, path-based) for comparison, configured as
// kindly as it allows: day-long entry/attr timeouts and kernel_cache. Counts the requests it sees.
import { read as fdRead } from 'node:fs';
import { createRequire } from 'node:module';
import { FsError } from '../src/util/errors.js';
import type { ManyFs } from './many-fs.js';

type Cb = (...args: unknown[]) => void;
interface FuseInstance {
  mount(cb: (err: Error | null) => void): void;
  unmount(cb: (err: Error | null) => void): void;
}
type FuseCtor = new (mnt: string, ops: Record<string, (...args: never[]) => void>, opts: Record<string, unknown>) => FuseInstance;

const ENOENT = -2;

export function mountFuseNative(fs: ManyFs, mountpoint: string): Promise<{ requests: () => number; unmount: () => Promise<void> }> {
  const Fuse = createRequire(import.meta.url)('fuse-native') as FuseCtor;
  let requests = 0;
  const resolve = (path: string): number => {
    let ino = 1;
    for (const name of path.split('/')) {
      if (name === '') continue;
      ino = fs.child(ino, name);
      if (ino === 0) return 0;
    }
    return ino;
  };
  const stat = (ino: number) => {
    const a = fs.getattr(ino);
    const t = new Date(a.mtimeSec * 1000);
    return { mode: a.mode, uid: a.uid, gid: a.gid, size: a.size, nlink: a.nlink, ino: a.ino, blocks: a.blocks, mtime: t, atime: t, ctime: t };
  };
  const ops = {
    getattr(path: string, cb: Cb) {
      requests++;
      const ino = resolve(path);
      if (ino === 0) return cb(ENOENT);
      cb(0, stat(ino));
    },
    readdir(path: string, cb: Cb) {
      requests++;
      const ino = resolve(path);
      if (ino === 0) return cb(ENOENT);
      const names: string[] = [];
      for (const [name] of fs.children(ino)) names.push(name);
      cb(0, names);
    },
    open(path: string, _flags: number, cb: Cb) {
      requests++;
      cb(resolve(path) === 0 ? ENOENT : 0, 42);
    },
    read(path: string, _fd: number, buf: Buffer, len: number, pos: number, cb: Cb) {
      requests++;
      const r = fs.read(resolve(path), 0, pos, len);
      if (Buffer.isBuffer(r)) return cb(r.copy(buf));
      const range = r[0]!;
      fdRead(range.fd, buf, 0, range.len, range.pos, (err, n) => cb(err ? (err instanceof FsError ? -err.errno : -5) : n));
    },
    release(_path: string, _fd: number, cb: Cb) {
      requests++;
      cb(0);
    },
    statfs(_path: string, cb: Cb) {
      requests++;
      cb(0, { bsize: 4096, frsize: 4096, blocks: 1 << 20, bfree: 0, bavail: 0, files: 0, ffree: 0, favail: 0, namemax: 255 });
    },
  };
  const fuse = new Fuse(mountpoint, ops, { entryTimeout: 86400, attrTimeout: 86400, kernelCache: true, fsname: 'bench-fuse-native' });
  return new Promise((res, rej) =>
    fuse.mount((err) => {
      if (err) return rej(err);
      res({ requests: () => requests, unmount: () => new Promise((r) => fuse.unmount(() => r())) });
    }),
  );
}
