// The fuse-native (libfuse 2, high-level, path-based) backend: resolves each path to an inode by
// lookups (cached, the tree being immutable) and calls the FileSystem. Kept for read-only mounts;
// its limits are fuse-native's: names pass through UTF-8 (invalid bytes are lost), times in
// milliseconds, 32-bit st_ino, no readdirplus, ~77 µs a request. The only importer of fuse-native.
import { execFile } from 'node:child_process';
import { read as fsRead } from 'node:fs';
import { promisify } from 'node:util';
import { createRequire } from 'node:module';
import type FuseNative from 'fuse-native';
import { LRUCache } from 'lru-cache';
import { releaseReply, type Attr, type FdRange, type FileSystem, type ReadReply } from '../vfs/api.js';
import { ROOT_INO } from '../vfs/api.js';
import type { Backend, Mounted, MountOptions } from './backend.js';
import { errnoOf, fsError } from '../util/errors.js';
import { fromByteString, toByteString } from '../util/latin1.js';
import { mountAt } from '../util/mounts.js';

const pread = promisify(fsRead);

type Cb = (code: number, ...rest: unknown[]) => void;

export const mountFuseNative: Backend = async (fs: FileSystem, opts: MountOptions): Promise<Mounted> => {
  if (!opts.readOnly) throw new Error('the fuse-native backend serves read-only mounts only (its utimens passes atime as mtime)');
  let requests = 0;
  const paths = new LRUCache<string, number>({ max: 32_768 });

  const resolve = async (path: string): Promise<number> => {
    if (path === '/') return ROOT_INO;
    const hit = paths.get(path);
    if (hit !== undefined) return hit;
    const cut = path.lastIndexOf('/');
    const parent = await resolve(cut === 0 ? '/' : path.slice(0, cut));
    const entry = await fs.lookup(parent, toByteString(path.slice(cut + 1)));
    paths.set(path, entry.ino);
    return entry.ino;
  };

  /**
   * The one errno funnel: every op replies exactly once, never throws. fuse-native's read takes the
   * byte count where other ops take 0 (`countReply`).
   */
  const op = (name: string, body: (...args: any[]) => Promise<unknown[]>, countReply = false) => {
    return (...args: unknown[]): void => {
      requests++;
      const cb = args[args.length - 1] as Cb;
      body(...args.slice(0, -1)).then(
        (reply) => (countReply ? cb(reply[0] as number) : cb(0, ...reply)),
        (err: unknown) => {
          const errno = errnoOf(err);
          if (!(err && typeof err === 'object' && 'errno' in err)) console.error(`tarstack: ${name} ${String(args[0])}: ${(err as Error)?.stack ?? String(err)}`);
          cb(-errno);
        },
      );
    };
  };

  const ops = {
    init: (cb: Cb) => cb(0),
    getattr: op('getattr', async (path: string) => [toStat(await fs.getattr(await resolve(path)))]),
    fgetattr: op('fgetattr', async (path: string) => [toStat(await fs.getattr(await resolve(path)))]),
    readlink: op('readlink', async (path: string) => [fromByteString(await fs.readlink(await resolve(path)))]),
    readdir: op('readdir', async (path: string) => {
      const ino = await resolve(path);
      const fh = await fs.opendir(ino);
      try {
        const names: string[] = [];
        const stats: object[] = [];
        for (const e of fs.readdir(ino, fh, 0)) {
          names.push(fromByteString(e.name));
          stats.push({ mode: e.mode, ino: e.ino });
        }
        return [names, stats];
      } finally {
        fs.releasedir(ino, fh);
      }
    }),
    open: op('open', async (path: string, flags: number) => [(await fs.open(await resolve(path), flags)).fh]),
    release: op('release', async (path: string, fh: number) => {
      await fs.release(await resolve(path), fh);
      return [];
    }),
    read: op('read', async (path: string, fh: number, buf: Buffer, len: number, pos: number) => {
      const reply = await fs.read(await resolve(path), fh, pos, len);
      return [await copyReply(reply, buf)];
    }, true),
    statfs: op('statfs', async () => [await fs.statfs(ROOT_INO)]),
    getxattr: op('getxattr', async (path: string, name: string) => [await fs.getxattr(await resolve(path), toByteString(name))]),
    listxattr: op('listxattr', async (path: string) => [(await fs.listxattr(await resolve(path))).map(fromByteString)]),
  };

  // fuse-native joins its options into one -o list, so extra options ride inside fsname: use_ino
  // makes the kernel see our inode numbers (hard links, stable st_ino); ro marks the mount read-only.
  const fsname = [opts.fsname.replace(/[,\\]/g, '_'), 'use_ino', opts.readOnly ? 'ro' : '', opts.subtype ? `subtype=${opts.subtype}` : '', ...(opts.flags ?? [])].filter(Boolean).join(',');
  const immutable = fs.immutable;
  // required here, not imported: the CLI's and the server's bundles (scripts/bundle.mjs) would load
  // fuse-native and its libfuse 2 addon at every start otherwise
  const Fuse = createRequire(import.meta.url)('fuse-native') as typeof FuseNative;
  const fuse = new Fuse(opts.mountpoint, ops, {
    fsname,
    kernelCache: immutable,
    entryTimeout: immutable ? 86400 : 1,
    attrTimeout: immutable ? 86400 : 1,
    timeout: false, // a slow disk read must not turn into ETIMEDOUT while the work goes on
    allowOther: !!opts.allowOther,
    defaultPermissions: !!opts.allowOther,
    debug: !!opts.debug,
  });
  await new Promise<void>((res, rej) => fuse.mount((err) => (err ? rej(err) : res())));

  // fuse-native never says when the kernel dropped the mount: watch the mount table (not the mount).
  let ended!: () => void;
  const unmounted = new Promise<void>((res) => (ended = res)).then(() => fs.destroy());
  const timer = setInterval(() => {
    if (!mountAt(opts.mountpoint)) {
      clearInterval(timer);
      ended();
    }
  }, 500);
  timer.unref();

  return {
    unmounted,
    async close(o?: { lazy?: boolean }) {
      if (mountAt(opts.mountpoint)) {
        // fuse-native cannot tell when a detached session ends, so it serves no longer than this.
        await promisify(execFile)('fusermount', ['-u', ...(o?.lazy ? ['-z'] : []), opts.mountpoint]);
      }
      clearInterval(timer);
      ended();
      await unmounted;
    },
    stats: () => ({ requests }),
  };
};

function toStat(a: Attr): object {
  return {
    mode: a.mode,
    uid: a.uid,
    gid: a.gid,
    size: a.size,
    dev: 0,
    nlink: a.nlink,
    ino: a.ino,
    rdev: a.rdev,
    blksize: 4096,
    blocks: a.blocks,
    atime: new Date(a.atimeSec * 1000 + Math.floor(a.atimeNsec / 1e6)),
    mtime: new Date(a.mtimeSec * 1000 + Math.floor(a.mtimeNsec / 1e6)),
    ctime: new Date(a.ctimeSec * 1000 + Math.floor(a.ctimeNsec / 1e6)),
  };
}

/** Copy a read reply into libfuse's buffer; a short read from the backing file is EIO, never short data. */
async function copyReply(reply: ReadReply, buf: Buffer): Promise<number> {
  try {
    return Buffer.isBuffer(reply) ? reply.copy(buf) : await copyRanges(reply, buf);
  } finally {
    releaseReply(reply);
  }
}

async function copyRanges(reply: FdRange[], buf: Buffer): Promise<number> {
  let off = 0;
  for (const r of reply) {
    if (r.fd < 0) buf.fill(0, off, off + r.len);
    else {
      let done = 0;
      while (done < r.len) {
        const { bytesRead } = await pread(r.fd, buf, off + done, r.len - done, r.pos + done);
        if (bytesRead === 0) throw fsError('EIO', 'backing file ends early');
        done += bytesRead;
      }
    }
    off += r.len;
  }
  return off;
}
