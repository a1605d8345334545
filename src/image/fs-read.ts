// Reading a tree through the FileSystem interface, as freeze and export need it: a directory's
// names in byte order, a path resolved from the root, xattrs, and file bytes in chunks (so a lazily
// copied-up file comes out whole, read the way a mount would read it).
import { constants, readSync } from 'node:fs';
import type { Attr, FileSystem } from '../vfs/api.js';
import { ROOT_INO } from '../vfs/api.js';
import { S_IFDIR, S_IFMT } from '../vfs/mode.js';


const CHUNK = 1 << 20;

export const isDir = (a: Attr): boolean => (a.mode & S_IFMT) === S_IFDIR;
export const byteOrder = (x: string, y: string): number => (x < y ? -1 : x > y ? 1 : 0);

/** Names in a directory (`.` and `..` left out), sorted by their bytes. */
export async function childNames(fs: FileSystem, ino: number): Promise<string[]> {
  const fh = await fs.opendir(ino);
  const out: string[] = [];
  try {
    for (const e of fs.readdir(ino, fh, 0)) if (e.name !== '.' && e.name !== '..') out.push(e.name);
  } finally {
    fs.releasedir(ino, fh);
  }
  return out.sort(byteOrder);
}

/** Look a path (components) up from the root; undefined when a component is missing. */
export async function resolvePath(fs: FileSystem, path: string[]): Promise<{ ino: number; attr: Attr } | undefined> {
  let cur = { ino: ROOT_INO, attr: await fs.getattr(ROOT_INO) };
  for (const name of path) {
    try {
      cur = await fs.lookup(cur.ino, name);
    } catch {
      return undefined;
    }
  }
  return cur;
}

/** Every xattr of an entry, names sorted. */
export async function xattrsOf(fs: FileSystem, ino: number): Promise<Array<[string, Buffer]>> {
  const names = (await fs.listxattr(ino)).sort(byteOrder);
  const out: Array<[string, Buffer]> = [];
  for (const n of names) out.push([n, await fs.getxattr(ino, n)]);
  return out;
}

/** The bytes of a regular file, chunk by chunk; a file that ends early is an error, never a short body. */
export async function* fileChunks(fs: FileSystem, ino: number, size: number): AsyncGenerator<Buffer> {
  const { fh } = await fs.open(ino, constants.O_RDONLY);
  try {
    for (let pos = 0; pos < size; ) {
      const want = Math.min(CHUNK, size - pos);
      const buf = await readAt(fs, ino, fh, pos, want);
      if (buf.length === 0) throw new Error(`file ended at byte ${pos} of ${size}`);
      pos += buf.length;
      yield buf;
    }
  } finally {
    await fs.release(ino, fh);
  }
}

async function readAt(fs: FileSystem, ino: number, fh: number, pos: number, len: number): Promise<Buffer> {
  const r = await fs.read(ino, fh, pos, len);
  if (Buffer.isBuffer(r)) return r;
  try {
    const out = Buffer.alloc(r.reduce((s, x) => s + x.len, 0));
    let off = 0;
    for (const x of r) {
      if (x.fd >= 0) {
        let done = 0;
        while (done < x.len) {
          const n = readSync(x.fd, out, off + done, x.len - done, x.pos + done);
          if (n === 0) throw new Error('the image tar ends early');
          done += n;
        }
      }
      off += x.len;
    }
    return out;
  } finally {
    r.release?.();
  }
}

/** Same bytes in two files of equal size? */
export async function sameContent(a: FileSystem, ai: number, b: FileSystem, bi: number, size: number): Promise<boolean> {
  const x = fileChunks(a, ai, size);
  const y = fileChunks(b, bi, size);
  try {
    let bx: Buffer = Buffer.alloc(0);
    let by: Buffer = Buffer.alloc(0);
    for (;;) {
      if (bx.length === 0) {
        const n = await x.next();
        if (n.done) break;
        bx = n.value;
      }
      if (by.length === 0) {
        const n = await y.next();
        if (n.done) return false;
        by = n.value;
      }
      const k = Math.min(bx.length, by.length);
      if (!bx.subarray(0, k).equals(by.subarray(0, k))) return false;
      bx = bx.subarray(k);
      by = by.subarray(k);
    }
    return by.length === 0 && (await y.next()).done === true;
  } finally {
    await x.return(undefined);
    await y.return(undefined);
  }
}
