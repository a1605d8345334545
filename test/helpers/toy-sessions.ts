// Child that serves many mounts from one process through the native backend, as the mount server
// does (a process must never touch the mounts it serves). Each mount is a tiny FileSystem: `small`
// (bytes from memory), `ranged` (a file range of its backing file, read by the read pool: the
// sessions run with nowait 0) and `hang` (a read JS never answers). Over IPC: 'mount'
// {mountpoints, backing} -> 'mounted'; 'stats' -> threads, pools, live mounts, hung reads;
// 'close' {index} -> the mount's own unmount; 'exit' -> process.exit(0) while mounted. Each mount
// that ends, by whatever cause, reports 'ended-<index>'.
import { fstatSync, openSync, readFileSync } from 'node:fs';
import { mountNative, type NativeMounted } from '../../src/fuse/native-backend.js';
import { loadNative } from '../../src/fuse/lowlevel.js';
import { fsError } from '../../src/util/errors.js';
import type { Attr, DirEntry, Entry, FileSystem, OpenReply, ReadReply, Statfs } from '../../src/vfs/api.js';
import { ROOT_INO } from '../../src/vfs/api.js';
import { S_IFDIR, S_IFREG } from '../../src/vfs/mode.js';

export const SMALL = 'served from memory\n';
export const HANG_SIZE = 64 << 20;
const NAMES = ['small', 'ranged', 'hang'];
let hungReads = 0;

class SessionToyFs implements FileSystem {
  readonly immutable = true;
  private readonly fd: number;
  private readonly sizes: number[];
  constructor(backing: string) {
    this.fd = openSync(backing, 'r');
    this.sizes = [SMALL.length, fstatSync(this.fd).size, HANG_SIZE];
  }
  private attr(ino: number): Attr {
    const size = ino === ROOT_INO ? 0 : this.sizes[ino - 2]!;
    const mode = ino === ROOT_INO ? S_IFDIR | 0o755 : S_IFREG | 0o444;
    return { ino, mode, nlink: 1, uid: 0, gid: 0, rdev: 0, size, blocks: Math.ceil(size / 512), atimeSec: 1, atimeNsec: 0, mtimeSec: 1, mtimeNsec: 0, ctimeSec: 1, ctimeNsec: 0 };
  }
  lookup(parent: number, name: string): Entry {
    const i = NAMES.indexOf(name);
    if (parent !== ROOT_INO || i < 0) throw fsError('ENOENT');
    return { ino: i + 2, generation: 0, attr: this.attr(i + 2) };
  }
  forget(): void {}
  getattr(ino: number): Attr {
    if (ino < 1 || ino > 4) throw fsError('ESTALE');
    return this.attr(ino);
  }
  readlink(): string {
    throw fsError('EINVAL');
  }
  opendir(ino: number): number {
    if (ino !== ROOT_INO) throw fsError('ENOTDIR');
    return 1;
  }
  *readdir(_ino: number, _fh: number, offset: number): Iterable<DirEntry> {
    const all: DirEntry[] = [{ name: '.', ino: 1, mode: S_IFDIR, next: 1 }, { name: '..', ino: 1, mode: S_IFDIR, next: 2 }];
    NAMES.forEach((name, i) => all.push({ name, ino: i + 2, mode: S_IFREG, next: i + 3 }));
    yield* all.slice(offset);
  }
  releasedir(): void {}
  open(ino: number): OpenReply {
    if (ino === ROOT_INO) throw fsError('EISDIR');
    return { fh: 0, keepCache: true, directIo: false };
  }
  read(ino: number, _fh: number, pos: number, len: number): ReadReply | Promise<ReadReply> {
    if (ino === 4) {
      hungReads++;
      return new Promise<ReadReply>(() => {}); // never answered: the session's end answers it EIO
    }
    const end = Math.min(this.sizes[ino - 2]!, pos + len);
    if (end <= pos) return Buffer.alloc(0);
    if (ino === 2) return Buffer.from(SMALL).subarray(pos, end);
    return [{ fd: this.fd, pos, len: end - pos }];
  }
  release(): void {}
  statfs(): Statfs {
    return { bsize: 4096, frsize: 4096, blocks: 0, bfree: 0, bavail: 0, files: 4, ffree: 0, favail: 0, namemax: 255 };
  }
  getxattr(): Buffer {
    throw fsError('ENODATA');
  }
  listxattr(): string[] {
    return [];
  }
  destroy(): void {}
}

const mounts: (NativeMounted | undefined)[] = [];
const live = new Set<number>();

function threads(): number {
  return Number(/^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]);
}

process.on('message', (m: { type: string; mountpoints?: string[]; backing?: string; index?: number }) => {
  if (m.type === 'mount') {
    const first = mounts.length;
    const all = m.mountpoints!.map((mountpoint, k) => {
      const index = first + k;
      mounts.push(undefined);
      return mountNative(new SessionToyFs(m.backing!), { mountpoint, fsname: `toy-sessions-${index}`, subtype: 'toy', readOnly: true, session: { nowait: 0 } }).then((mounted) => {
        mounts[index] = mounted;
        live.add(index);
        void mounted.unmounted.then(() => {
          live.delete(index);
          process.send!({ type: `ended-${index}` });
        });
      });
    });
    Promise.all(all).then(
      () => process.send!({ type: 'mounted', first }),
      (err: unknown) => process.send!({ type: 'mounted', error: String(err) }),
    );
  }
  if (m.type === 'stats') process.send!({ type: 'stats', threads: threads(), pools: loadNative().poolStats(), live: [...live].sort((a, b) => a - b), hungReads });
  if (m.type === 'close') void mounts[m.index!]!.close();
  if (m.type === 'exit') process.exit(0); // while mounted: the binding's atexit handler unmounts
});
process.send!({ type: 'ready' });
