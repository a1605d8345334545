// Freezing an instance's changes into one tar layer that, stacked on the instance's image, shows
// exactly the instance's tree. Both are read through the FileSystem interface (the image as a
// read-only overlay, the instance offline), descending only where the instance has an upper copy.
// A deleted name becomes `.wh.NAME`; a directory that no longer continues the image's directory at
// its path (recreated, or renamed there: a different inode) is written whole after `.wh..wh..opq`,
// with no whiteouts inside; every name of a hard-link set that changed is written, the first as the
// file and the rest as links, so the set stays one inode; changed entries carry their parents.
import type { Attr, FileSystem } from '../vfs/api.js';
import { ROOT_INO } from '../vfs/api.js';
import type { DiffSource } from '../overlay/diff.js';
import { childNames, fileChunks, isDir, resolvePath, sameContent, xattrsOf } from './fs-read.js';
import { LayerWriter, type LayerEntry } from './layer-writer.js';
import { S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK } from '../vfs/mode.js';

export interface FreezeSource extends DiffSource {
  /** Every lower path naming one of these inode numbers (the names of lower hard-link sets). */
  lowerPathsOf(inos: Set<number>): Map<number, string[][]>;
}

interface Planned {
  path: string[];
  ino: number;
  attr: Attr;
  /** Write `.wh..wh..opq` right after this directory. */
  opaque?: boolean;
}

export interface FreezeResult {
  entries: number;
  whiteouts: number;
  bytes: number;
  skipped: string[];
}

export async function freezeChanges(image: FileSystem, inst: FreezeSource, out: string): Promise<FreezeResult> {
  const plan = new Map<string, Planned>();
  const whiteouts: string[][] = [];
  const keep = (p: Planned): void => void plan.set(key(p.path), p);

  /** Everything below a directory of the instance, as it is (no comparison). */
  const whole = async (ino: number, path: string[]): Promise<void> => {
    for (const name of await childNames(inst, ino)) {
      const e = await inst.lookup(ino, name);
      keep({ path: [...path, name], ino: e.ino, attr: e.attr });
      if (isDir(e.attr)) await whole(e.ino, [...path, name]);
    }
  };

  const walk = async (gDir: number, iDir: number, path: string[]): Promise<void> => {
    const before = new Set(await childNames(image, gDir));
    const after = await childNames(inst, iDir);
    const now = new Set(after);
    for (const name of before) if (!now.has(name)) whiteouts.push([...path, name]);
    for (const name of after) {
      const p = [...path, name];
      const ie = await inst.lookup(iDir, name);
      if (!before.has(name)) {
        keep({ path: p, ino: ie.ino, attr: ie.attr });
        if (isDir(ie.attr)) await whole(ie.ino, p);
        continue;
      }
      if (!inst.isUpper(ie.ino)) {
        inst.forget(ie.ino, 1);
        continue; // untouched since the image: nothing at or below it differs
      }
      const ge = await image.lookup(gDir, name);
      try {
        if ((ie.attr.mode & S_IFMT) !== (ge.attr.mode & S_IFMT)) {
          // Another kind of entry: it replaces the image's in the merge (nothing shows below a file).
          keep({ path: p, ino: ie.ino, attr: ie.attr });
          if (isDir(ie.attr)) await whole(ie.ino, p);
        } else if (isDir(ie.attr)) {
          if (ie.ino !== ge.ino) {
            // A different directory now lives here (its inode says where it came from): opaque, whole.
            keep({ path: p, ino: ie.ino, attr: ie.attr, opaque: true });
            await whole(ie.ino, p);
          } else {
            if (await differs(image, ge.ino, ge.attr, inst, ie.ino, ie.attr)) keep({ path: p, ino: ie.ino, attr: ie.attr });
            await walk(ge.ino, ie.ino, p);
          }
        } else if (await differs(image, ge.ino, ge.attr, inst, ie.ino, ie.attr)) {
          keep({ path: p, ino: ie.ino, attr: ie.attr });
        }
      } finally {
        image.forget(ge.ino, 1);
      }
    }
  };

  await walk(ROOT_INO, ROOT_INO, []);
  await addLinkNames(image, inst, plan);
  const rootAttr = await inst.getattr(ROOT_INO);
  plan.set('', { path: [], ino: ROOT_INO, attr: rootAttr });
  // Parents of everything written, with their own metadata (an implied directory would show the
  // layer's defaults over the image's).
  for (const p of [...plan.values(), ...whiteouts.map((w) => ({ path: w }))]) {
    for (let n = p.path.length - 1; n > 0; n--) {
      const dir = p.path.slice(0, n);
      if (plan.has(key(dir))) break;
      const e = await resolvePath(inst, dir);
      if (!e) throw new Error(`cannot resolve ${dir.join('/')} in the instance`);
      keep({ path: dir, ino: e.ino, attr: e.attr });
    }
  }
  return write(inst, plan, whiteouts, out, Math.floor(Date.now() / 1000));
}

/**
 * A hard-link set is one inode: if any of its names is written, all must be (a layer can only link
 * to its own members). Names outside the walked directories are the lower names of the set, and
 * the lower names of sets whose copy changed while some name was deleted.
 */
async function addLinkNames(image: FileSystem, inst: FreezeSource, plan: Map<string, Planned>): Promise<void> {
  const classes = new Map<number, number>();
  for (const p of plan.values()) if (!isDir(p.attr) && p.attr.nlink > 1) classes.set(p.ino, (classes.get(p.ino) ?? 0) + 1);
  const short = new Set([...classes].filter(([ino, n]) => n < (findAttr(plan, ino)?.nlink ?? 0)).map(([ino]) => ino));
  const candidates: string[][] = [...inst.indexedLowerPaths()];
  for (const paths of inst.lowerPathsOf(short).values()) candidates.push(...paths);
  for (const path of candidates) {
    if (plan.has(key(path))) continue;
    const ie = await resolvePath(inst, path);
    if (!ie || isDir(ie.attr)) continue;
    if (short.has(ie.ino)) {
      plan.set(key(path), { path, ino: ie.ino, attr: ie.attr });
      continue;
    }
    const ge = await resolvePath(image, path);
    if (ge && ge.ino === ie.ino && (await differs(image, ge.ino, ge.attr, inst, ie.ino, ie.attr))) plan.set(key(path), { path, ino: ie.ino, attr: ie.attr });
  }
}

function findAttr(plan: Map<string, Planned>, ino: number): Attr | undefined {
  for (const p of plan.values()) if (p.ino === ino) return p.attr;
  return undefined;
}

/** Metadata (type, mode, owner, mtime, size, link count, device, link target, xattrs), then content. */
export async function differs(a: FileSystem, ai: number, aa: Attr, b: FileSystem, bi: number, ba: Attr): Promise<boolean> {
  const type = ba.mode & S_IFMT;
  if (ba.mode !== aa.mode || ba.uid !== aa.uid || ba.gid !== aa.gid) return true;
  if (ba.mtimeSec !== aa.mtimeSec || ba.mtimeNsec !== aa.mtimeNsec) return true;
  if (!isDir(ba) && (ba.size !== aa.size || ba.nlink !== aa.nlink || ba.rdev !== aa.rdev)) return true;
  if (type === S_IFLNK && (await b.readlink(bi)) !== (await a.readlink(ai))) return true;
  const bx = await xattrsOf(b, bi);
  const ax = await xattrsOf(a, ai);
  if (bx.length !== ax.length || bx.some(([n, v], i) => n !== ax[i][0] || !v.equals(ax[i][1]))) return true;
  return type === S_IFREG && !(await sameContent(a, ai, b, bi, ba.size));
}

/** Tar order: a directory, then its markers, then its entries by name bytes (NUL sorts first). */
const key = (path: string[]): string => path.join('/');
function order(x: string[], y: string[]): number {
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] < y[i] ? -1 : 1;
  return x.length - y.length;
}

async function write(inst: FileSystem, plan: Map<string, Planned>, whiteouts: string[][], out: string, now: number): Promise<FreezeResult> {
  type Item = { marker: 'whiteout'; path: string[] } | { marker: 'opaque'; path: string[] } | { marker?: undefined; path: string[]; p: Planned };
  const items: Item[] = [];
  for (const p of plan.values()) {
    items.push({ path: p.path, p });
    if (p.opaque) items.push({ marker: 'opaque', path: [...p.path, '\0\0'] });
  }
  for (const w of whiteouts) items.push({ marker: 'whiteout', path: [...w.slice(0, -1), `\0${w[w.length - 1]}`] });
  items.sort((x, y) => order(x.path, y.path));
  const writer = new LayerWriter(out);
  const firstName = new Map<number, string>();
  const result: FreezeResult = { entries: 0, whiteouts: whiteouts.length, bytes: 0, skipped: [] };
  return writer.writeAll(result, async () => {
    for (const it of items) {
      const dir = it.path.slice(0, -1).join('/');
      if (it.marker === 'opaque') await writer.opaque(dir, now);
      else if (it.marker === 'whiteout') await writer.whiteout(dir, it.path[it.path.length - 1].slice(1), now);
      else await writeEntry(inst, writer, it.p, firstName, result);
    }
  });
}

/** One entry of the instance; the later names of a hard-link set link to the first. */
export async function writeEntry(fs: FileSystem, writer: LayerWriter, p: { path: string[]; ino: number; attr: Attr }, firstName: Map<number, string>, result: { skipped: string[] }): Promise<void> {
  const path = p.path.join('/');
  const type = p.attr.mode & S_IFMT;
  if (type === S_IFSOCK) {
    result.skipped.push(path); // tar has no sockets; a socket's life is its process anyway
    return;
  }
  const entry: LayerEntry = { path, attr: p.attr, xattrs: await xattrsOf(fs, p.ino) };
  if (!isDir(p.attr) && p.attr.nlink > 1) {
    const first = firstName.get(p.ino);
    if (first !== undefined) entry.linkTo = first;
    else firstName.set(p.ino, path);
  }
  if (entry.linkTo === undefined) {
    if (type === S_IFLNK) entry.symlink = await fs.readlink(p.ino);
    if (type === S_IFREG) entry.body = () => fileChunks(fs, p.ino, p.attr.size);
  }
  await writer.add(entry);
}
