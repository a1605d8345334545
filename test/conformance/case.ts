// What a conformance case is (go-fuse's posixtest: a name → a function of a mounted root) and what it
// records. A case runs in a directory of its own inside the mount and records each step's outcome,
// errno by errno (`o.do`), or an observation (`o.see`); the suite compares that trace with the one
// kernel overlayfs gives over the same layers, so a case states what to look at, not what to expect.
import { spawnSync } from 'node:child_process';
import nodeFs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadSys, type Sys } from '../../src/native/sys.js';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFREG, S_IFSOCK } from '../../src/vfs/mode.js';

export type Step = [label: string, outcome: unknown];

export interface Case {
  /** Files the case needs in the lower layer, made (as root) in its own directory `dir` of the lower. */
  lower?: (dir: string) => void;
  /** root: the case needs a privileged caller (devices, chown, another user's view, root's bypass of
   *  permission checks); it is left out where the cases run as an ordinary user. */
  needs?: 'root';
  /** Run through each mount of the rotated configuration before its upper becomes a lower, round 1
   *  (over the lower alone) to 9 (over eight rotated uppers and the lower); returns true when it did
   *  the round's work (default: round 1 copies every name of the case up by a no-op chown, a later
   *  round a share of them, each name in one round). */
  rotate?: (dir: string, round: number) => boolean;
  run: (dir: string, o: Trace) => void;
}

/** The errno a failed call gave, as Node names it (EPERM, ENOENT, …). */
function errnoOf(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
}

export class Trace {
  readonly steps: Step[] = [];

  /** Runs fn and records what it returned ('ok' for nothing), or the errno it failed with. Any other
   *  exception is a bug in the case and ends it. */
  do<T>(label: string, fn: () => T): T | undefined {
    try {
      const v = fn();
      this.steps.push([label, v === undefined ? 'ok' : v]);
      return v;
    } catch (err) {
      const code = errnoOf(err);
      if (!code) throw err;
      this.steps.push([label, code]);
      return undefined;
    }
  }

  /** Records an observation. */
  see(label: string, value: unknown): void {
    this.steps.push([label, value]);
  }
}

/**
 * What the cases call: node:fs and the addon's sys, or (while a case of the in-process configuration
 * runs, in-process.ts) synchronous stand-ins that send each call to an InstanceFs. Cases and the
 * helpers here take `fs` and `sys` from this module; `lower` fixtures and the suite use the real ones.
 */
export const io: { fs: typeof nodeFs; sys: Sys } = { fs: nodeFs, sys: loadSys() };
const switched = <T extends object>(pick: () => T): T =>
  new Proxy({} as T, { get: (_t, k) => (pick() as Record<string | symbol, unknown>)[k], has: (_t, k) => k in pick() });
export const fs: typeof nodeFs = switched(() => io.fs);
export const sys: Sys = switched(() => io.sys);
export { RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT, XATTR_CREATE, XATTR_REPLACE } from '../../src/native/sys.js';
export { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFREG, S_IFSOCK };

/** The file type of path (not followed) as one letter, or its errno. */
export function kind(p: string): string {
  try {
    const st = fs.lstatSync(p);
    return st.isFile() ? 'f' : st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : st.isFIFO() ? 'p' : st.isCharacterDevice() ? 'c' : st.isBlockDevice() ? 'b' : st.isSocket() ? 's' : '?';
  } catch (err) {
    const code = errnoOf(err);
    if (!code) throw err;
    return code;
  }
}

export const nlink = (p: string): number => fs.lstatSync(p).nlink;
export const sameInode = (a: string, b: string): boolean => {
  const x = fs.lstatSync(a);
  const y = fs.lstatSync(b);
  return x.ino === y.ino && x.dev === y.dev;
};
export const ls = (dir: string): string[] => fs.readdirSync(dir).sort();
export const read = (p: string): string => fs.readFileSync(p, 'latin1');

/** Makes a node of each special type the case can make anywhere (fifo, socket, char and block device). */
export function makeSpecial(p: string, type: 'p' | 's' | 'c' | 'b' | 'l' | 'f' | 'd'): void {
  if (type === 'p') sys.mknod(p, S_IFIFO | 0o644, 0, 0);
  else if (type === 's') sys.mknod(p, S_IFSOCK | 0o644, 0, 0);
  else if (type === 'c') sys.mknod(p, S_IFCHR | 0o644, 1, 3);
  else if (type === 'b') sys.mknod(p, S_IFBLK | 0o644, 7, 0);
  else if (type === 'l') fs.symlinkSync('target', p);
  else if (type === 'd') fs.mkdirSync(p);
  else fs.writeFileSync(p, type);
}

/** Every type a file can have; devices need root (the kernel refuses mknod without CAP_MKNOD). */
export const TYPES = ['f', 'd', 'l', 'p', 's', 'c', 'b'] as const;
export const isRoot = (): boolean => process.getuid?.() === 0;

const AS_OTHER = fileURLToPath(new URL('./as-other.js', import.meta.url));

/** Operations ([op, path, path2?], see as-other.ts) as another user (CONFORMANCE_OTHER=uid:gid), in
 *  one child: "ok" or the errno of each. */
export function asOther(...ops: string[][]): string[] {
  const [uid, gid] = (process.env.CONFORMANCE_OTHER ?? '').split(':').map(Number);
  if (uid === undefined || gid === undefined || Number.isNaN(uid)) throw new Error('CONFORMANCE_OTHER is not set');
  const r = spawnSync(process.execPath, [AS_OTHER, JSON.stringify(ops)], { uid, gid, encoding: 'utf8', cwd: '/' });
  if (r.status !== 0) throw new Error(`as-other as ${uid}: ${r.stderr}`);
  return JSON.parse(r.stdout) as string[];
}

/** The system's python3 (not a shim on PATH, whose start costs more than the case). */
const PYTHON = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

/** python3 -c code args…: its stdout, or throws with its stderr. */
export function python(code: string, ...args: string[]): string {
  const r = spawnSync(PYTHON, ['-c', code, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python3: ${r.stderr}`);
  return r.stdout.trim();
}

/** Waits (a condition, not a delay) until the clocks behind file times have moved past `ns`
 *  (nanoseconds since the epoch): a file touched now in the temp dir and the wall clock both show a later time. */
export function clockPast(ns: bigint): void {
  const probe = path.join(os.tmpdir(), `conformance-clock-${process.pid}`);
  for (;;) {
    nodeFs.writeFileSync(probe, '');
    const st = nodeFs.statSync(probe, { bigint: true });
    if (st.ctimeNs > ns && BigInt(Date.now()) * 1_000_000n > ns) break;
  }
  nodeFs.rmSync(probe, { force: true });
}

export const times = (p: string): { a: bigint; m: bigint; c: bigint } => {
  const st = fs.lstatSync(p, { bigint: true });
  return { a: st.atimeNs, m: st.mtimeNs, c: st.ctimeNs };
};
