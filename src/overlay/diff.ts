// What changed in an instance against its image: both are walked through the FileSystem API (the
// image as a read-only overlay, the instance offline), descending only where the instance has an
// upper copy, since nothing below an untouched directory can differ. Added and deleted directories
// list their whole subtree; a renamed directory shows as deleted at the old path, added at the new;
// a directory whose entries changed is modified (its mtime moved).
import type { Attr, FileSystem } from '../vfs/api.js';
import { ROOT_INO } from '../vfs/api.js';
import { resolvePath, sameContent } from '../image/fs-read.js';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK } from '../vfs/mode.js';

export type ChangeKind = 'added' | 'modified' | 'deleted';

export interface Change {
  path: string; // byte string, relative to the root
  change: ChangeKind;
  type: 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';
}

export interface DiffSource extends FileSystem {
  /** True when the inode has an upper copy (so something about it may differ). */
  isUpper(ino: number): boolean;
  /** Lower names of copied-up hard-link sets: they change with the copy, wherever they are. */
  indexedLowerPaths(): string[][];
}

const TYPES: Record<number, Change['type']> = { [S_IFREG]: 'file', [S_IFDIR]: 'dir', [S_IFLNK]: 'symlink', [S_IFCHR]: 'char', [S_IFBLK]: 'block', [S_IFIFO]: 'fifo', [S_IFSOCK]: 'socket' };
const typeName = (mode: number): Change['type'] => TYPES[mode & S_IFMT] ?? 'file';

export async function diffTrees(image: FileSystem, inst: DiffSource): Promise<Change[]> {
  const out: Change[] = [];
  await walk(image, inst, ROOT_INO, ROOT_INO, '', out);
  const seen = new Set(out.map((c) => c.path));
  for (const path of inst.indexedLowerPaths()) {
    const p = path.join('/');
    if (seen.has(p)) continue;
    const ie = await resolvePath(inst, path);
    const ge = await resolvePath(image, path);
    if (ie && ge && ie.ino === ge.ino && (await differs(image, inst, ge.ino, ge.attr, ie.ino, ie.attr))) {
      out.push({ path: p, change: 'modified', type: typeName(ie.attr.mode) });
      seen.add(p);
    }
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

async function names(fs: FileSystem, ino: number): Promise<Map<string, number>> {
  const fh = await fs.opendir(ino);
  const m = new Map<string, number>();
  try {
    for (const e of fs.readdir(ino, fh, 0)) if (e.name !== '.' && e.name !== '..') m.set(e.name, e.mode);
  } finally {
    fs.releasedir(ino, fh);
  }
  return m;
}

async function walk(image: FileSystem, inst: DiffSource, imgDir: number, instDir: number, prefix: string, out: Change[]): Promise<void> {
  const before = await names(image, imgDir);
  const after = await names(inst, instDir);
  for (const [name, mode] of before) {
    if (!after.has(name)) await subtree(image, imgDir, name, mode, prefix + name, 'deleted', out);
  }
  for (const [name, mode] of after) {
    const path = prefix + name;
    if (!before.has(name)) {
      await subtree(inst, instDir, name, mode, path, 'added', out);
      continue;
    }
    const ie = await inst.lookup(instDir, name);
    const ge = await image.lookup(imgDir, name);
    try {
      if (!inst.isUpper(ie.ino)) continue;
      if ((ie.attr.mode & S_IFMT) !== (ge.attr.mode & S_IFMT)) {
        // Replaced by another type: the path is modified; what only the old or new directory held is deleted or added.
        out.push({ path, change: 'modified', type: typeName(ie.attr.mode) });
        if ((ge.attr.mode & S_IFMT) === S_IFDIR) for (const [c, m] of await names(image, ge.ino)) await subtree(image, ge.ino, c, m, `${path}/${c}`, 'deleted', out);
        if ((ie.attr.mode & S_IFMT) === S_IFDIR) for (const [c, m] of await names(inst, ie.ino)) await subtree(inst, ie.ino, c, m, `${path}/${c}`, 'added', out);
        continue;
      }
      if (await differs(image, inst, ge.ino, ge.attr, ie.ino, ie.attr)) out.push({ path, change: 'modified', type: typeName(ie.attr.mode) });
      if ((ie.attr.mode & S_IFMT) === S_IFDIR) await walk(image, inst, ge.ino, ie.ino, path + '/', out);
    } finally {
      inst.forget(ie.ino, 1);
      image.forget(ge.ino, 1);
    }
  }
}

async function subtree(fs: FileSystem, dir: number, name: string, mode: number, path: string, change: ChangeKind, out: Change[]): Promise<void> {
  out.push({ path, change, type: typeName(mode) });
  if ((mode & S_IFMT) !== S_IFDIR) return;
  const e = await fs.lookup(dir, name);
  try {
    for (const [child, cmode] of await names(fs, e.ino)) await subtree(fs, e.ino, child, cmode, `${path}/${child}`, change, out);
  } finally {
    fs.forget(e.ino, 1);
  }
}

/** Metadata (mode, owner, size, mtime, link target, xattrs), then content when all of that matches. */
async function differs(image: FileSystem, inst: FileSystem, gi: number, ga: Attr, ii: number, ia: Attr): Promise<boolean> {
  const type = ia.mode & S_IFMT;
  if (ia.mode !== ga.mode || ia.uid !== ga.uid || ia.gid !== ga.gid) return true;
  if (ia.mtimeSec !== ga.mtimeSec || ia.mtimeNsec !== ga.mtimeNsec) return true; // for a directory: its entries changed
  if (type !== S_IFDIR && ia.size !== ga.size) return true;
  if (type === S_IFLNK && (await inst.readlink(ii)) !== (await image.readlink(gi))) return true;
  const ix = (await inst.listxattr(ii)).sort();
  const gx = (await image.listxattr(gi)).sort();
  if (ix.join('\0') !== gx.join('\0')) return true;
  for (const name of ix) if (!(await inst.getxattr(ii, name)).equals(await image.getxattr(gi, name))) return true;
  if (type === S_IFREG) return !(await sameContent(image, gi, inst, ii, ia.size));
  return false;
}
