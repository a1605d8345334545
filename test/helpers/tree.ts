// snapshotTree: every entry under a root as a plain record (lstat with bigint, raw-byte names,
// xattrs via getfattr, sha256 of content, hard-link classes); compareTrees: the readable list of
// differences between a reference snapshot and a mount's. Nothing here knows about tarstack.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { exec } from './exec.js';

export type EntryType = 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';

export interface TreeRecord {
  path: string; // relative to the root as a latin1 "byte string" (any byte but '/' and NUL survives); '' is the root
  type: EntryType;
  mode: number; // st_mode & 07777: permission bits with setuid/setgid/sticky
  uid: number;
  gid: number;
  size: string; // decimal (bigint-safe)
  mtimeNs: string; // ns since the epoch, negative before 1970
  nlink: number;
  ino: string;
  target?: string; // symlink target, latin1 byte string
  rdev?: [number, number]; // devices: [major, minor]
  sha256?: string; // files: hex, or "sampled:<hex>" above fullHashLimit
  xattrs: Record<string, string>; // name (latin1) → base64 value
  links: string[]; // all names sharing this inode when there are several (its hard-link class), sorted
}

export interface Snapshot {
  records: TreeRecord[];
  errors: string[]; // failures met while walking (EIO from a mount...), reported by compareTrees
}

export interface SnapshotOptions {
  hash?: boolean; // default true
  fullHashLimit?: number; // files above this many bytes get a sampled hash (default 256 MiB)
  xattrs?: boolean; // default true
  ignoreXattrs?: string[]; // names the host adds; default security.selinux and friends
}

const DEFAULT_IGNORED_XATTRS = ['security.selinux', 'security.sehash', 'security.apparmor', 'security.ima', 'security.evm'];
const SAMPLE = 64 * 1024;
const SAMPLE_STRIDE = 64 * 1024 * 1024; // fixtures put sparse data at multiples of this (see buildSparseTree)

const typeOf = (st: fs.BigIntStats): EntryType =>
  st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isCharacterDevice() ? 'char'
    : st.isBlockDevice() ? 'block' : st.isFIFO() ? 'fifo' : 'socket';

/** Linux dev_t split as glibc's gnu_dev_major/minor do. */
function splitDev(dev: bigint): [number, number] {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return [Number(major), Number(minor)];
}

const join = (root: Buffer, rel: string): Buffer => (rel === '' ? root : Buffer.concat([root, Buffer.from('/' + rel, 'latin1')]));

/** sha256 of the whole file, or of 64 KiB samples every 64 MiB plus the tail when it is big (a 9 GiB
 *  sparse file through FUSE would otherwise take minutes); each sample is prefixed by its offset. */
function hashFile(p: Buffer, size: bigint, fullHashLimit: number): string {
  const fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  try {
    const h = crypto.createHash('sha256');
    const buf = Buffer.alloc(1024 * 1024);
    const readAt = (pos: number, len: number) => {
      let done = 0;
      while (done < len) {
        const n = fs.readSync(fd, buf, 0, Math.min(buf.length, len - done), pos + done);
        if (n === 0) throw new Error(`short read at ${pos + done} of ${size}`);
        h.update(buf.subarray(0, n));
        done += n;
      }
    };
    const total = Number(size);
    if (total <= fullHashLimit) {
      readAt(0, total);
      // a file longer than its size says would be a bug worth seeing
      if (fs.readSync(fd, buf, 0, 1, total) !== 0) throw new Error(`data past st_size ${total}`);
      return h.digest('hex');
    }
    const offsets = new Set<number>();
    for (let off = 0; off < total; off += SAMPLE_STRIDE) offsets.add(off);
    offsets.add(Math.max(0, total - SAMPLE));
    for (const off of [...offsets].sort((a, b) => a - b)) {
      h.update(`@${off}:`);
      readAt(off, Math.min(SAMPLE, total - off));
    }
    return `sampled:${h.digest('hex')}`;
  } finally {
    fs.closeSync(fd);
  }
}

/** Undoes getfattr's escapes (\ooo octal, \\) on a latin1 line. */
const unescapeGetfattr = (s: string): string =>
  s.replace(/\\(\\|[0-7]{3})/g, (_, e: string) => (e === '\\' ? '\\' : String.fromCharCode(parseInt(e, 8))));

/** All xattrs under root in one getfattr run: path → {name → base64}. */
function readXattrs(root: string, errors: string[]): Map<string, Record<string, string>> {
  const out = new Map<string, Record<string, string>>();
  // -h/-P: the links' own xattrs, never their targets'; run from the root so paths come out relative
  const r = exec(['getfattr', '-h', '-R', '-P', '-d', '-m', '-', '-e', 'base64', '--absolute-names', '.'], { cwd: root });
  if (r.code !== 0) errors.push(...r.stderr.trim().split('\n').map((l) => `getfattr: ${l}`));
  let current: Record<string, string> | undefined;
  for (const line of r.stdout.toString('latin1').split('\n')) {
    if (line.startsWith('# file: ')) {
      const p = unescapeGetfattr(line.slice(8));
      const rel = p === '.' ? '' : p.replace(/^\.\//, '');
      current = {};
      out.set(rel, current);
    } else if (line && current) {
      const eq = line.indexOf('=');
      const name = unescapeGetfattr(eq < 0 ? line : line.slice(0, eq));
      const value = eq < 0 ? '' : line.slice(eq + 1);
      current[name] = value.startsWith('0s') ? value.slice(2) : Buffer.from(value.replace(/^"|"$/g, ''), 'latin1').toString('base64');
    }
  }
  return out;
}

export function snapshotTree(rootPath: string, opts: SnapshotOptions = {}): Snapshot {
  const root = Buffer.from(rootPath);
  const errors: string[] = [];
  const records: TreeRecord[] = [];
  const ignoredXattrs = new Set(opts.ignoreXattrs ?? DEFAULT_IGNORED_XATTRS);
  const xattrs = opts.xattrs === false ? new Map<string, Record<string, string>>() : readXattrs(rootPath, errors);
  const visit = (rel: string) => {
    const p = join(root, rel);
    let st: fs.BigIntStats;
    try {
      st = fs.lstatSync(p, { bigint: true });
    } catch (e) {
      errors.push(`${showPath(rel)}: lstat: ${(e as Error).message}`);
      return;
    }
    const type = typeOf(st);
    const rec: TreeRecord = {
      path: rel, type, mode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid), size: String(st.size),
      mtimeNs: String(st.mtimeNs), nlink: Number(st.nlink), ino: String(st.ino), xattrs: {}, links: [],
    };
    for (const [name, value] of Object.entries(xattrs.get(rel) ?? {})) if (!ignoredXattrs.has(name)) rec.xattrs[name] = value;
    try {
      if (type === 'symlink') rec.target = fs.readlinkSync(p, { encoding: 'buffer' }).toString('latin1');
      if (type === 'char' || type === 'block') rec.rdev = splitDev(st.rdev);
      if (type === 'file' && opts.hash !== false) rec.sha256 = hashFile(p, st.size, opts.fullHashLimit ?? 256 * 1024 * 1024);
    } catch (e) {
      errors.push(`${showPath(rel)}: ${(e as Error).message}`);
    }
    records.push(rec);
    if (type !== 'dir') return;
    let names: Buffer[];
    try {
      names = fs.readdirSync(p, { encoding: 'buffer' });
    } catch (e) {
      errors.push(`${showPath(rel)}: readdir: ${(e as Error).message}`);
      return;
    }
    for (const name of names) visit(rel === '' ? name.toString('latin1') : `${rel}/${name.toString('latin1')}`);
  };
  visit('');
  records.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const byIno = new Map<string, TreeRecord[]>();
  for (const r of records) if (r.type !== 'dir') byIno.set(r.ino, [...(byIno.get(r.ino) ?? []), r]);
  for (const cls of byIno.values()) if (cls.length > 1) for (const r of cls) r.links = cls.map((c) => c.path);
  return { records, errors };
}

/** A path for messages: "/" + the name, as UTF-8 when it is valid, else with \xNN for high bytes. */
export function showPath(rel: string): string {
  const bytes = Buffer.from(rel, 'latin1');
  const utf8 = bytes.toString('utf8');
  const text = Buffer.from(utf8).equals(bytes) ? utf8 : rel.replace(/[\x80-\xff]/g, (c) => `\\x${c.charCodeAt(0).toString(16)}`);
  return JSON.stringify('/' + text).slice(1, -1);
}

export interface CompareOptions {
  ignoreMtimeFor?: Iterable<string>; // paths (byte strings) whose mtime is not compared: implicit dirs
  ignoreXattrs?: string[];
  compareNlink?: boolean; // default true (non-directories only)
  limit?: number; // default 50
}

const octal = (m: number) => m.toString(8).padStart(4, '0');

/** Differences between two snapshots, as readable lines; [] when they match. */
export function compareTrees(reference: Snapshot, actual: Snapshot, opts: CompareOptions = {}): string[] {
  const diffs: string[] = [...reference.errors.map((e) => `reference: ${e}`), ...actual.errors.map((e) => `actual: ${e}`)];
  const ignoreMtime = new Set(opts.ignoreMtimeFor ?? []);
  const ignoreXattrs = new Set(opts.ignoreXattrs ?? []);
  const act = new Map(actual.records.map((r) => [r.path, r]));
  const ref = new Map(reference.records.map((r) => [r.path, r]));
  for (const r of reference.records) {
    const a = act.get(r.path);
    const at = showPath(r.path);
    if (!a) {
      diffs.push(`${at}: missing (reference has a ${r.type})`);
      continue;
    }
    if (a.type !== r.type) {
      diffs.push(`${at}: type ${a.type}, reference ${r.type}`);
      continue;
    }
    const field = (name: string, got: unknown, want: unknown) => {
      if (JSON.stringify(got) !== JSON.stringify(want)) diffs.push(`${at}: ${name} ${JSON.stringify(got)}, reference ${JSON.stringify(want)}`);
    };
    if (a.mode !== r.mode) diffs.push(`${at}: mode ${octal(a.mode)}, reference ${octal(r.mode)}`);
    field('uid', a.uid, r.uid);
    field('gid', a.gid, r.gid);
    if (r.type !== 'dir') field('size', a.size, r.size);
    if (!ignoreMtime.has(r.path)) field('mtimeNs', a.mtimeNs, r.mtimeNs);
    if (r.type !== 'dir' && opts.compareNlink !== false) field('nlink', a.nlink, r.nlink);
    field('symlink target', a.target, r.target);
    field('rdev', a.rdev, r.rdev);
    field('sha256', a.sha256, r.sha256);
    const keep = (x: Record<string, string>) => Object.fromEntries(Object.entries(x).filter(([k]) => !ignoreXattrs.has(k)).sort());
    field('xattrs', keep(a.xattrs), keep(r.xattrs));
    if (a.links.join('\0') !== r.links.join('\0')) {
      diffs.push(`${at}: hard-link class [${a.links.map(showPath).join(' ')}], reference [${r.links.map(showPath).join(' ')}]`);
    }
  }
  for (const a of actual.records) if (!ref.has(a.path)) diffs.push(`${showPath(a.path)}: unexpected ${a.type}`);
  const limit = opts.limit ?? 50;
  return diffs.length > limit ? [...diffs.slice(0, limit), `... and ${diffs.length - limit} more`] : diffs;
}
