// The one way tests mount a configuration and get rid of it: a tarstack instance or read-only image
// through the CLI (as root, or as an ordinary user through fusermount3), tarstack-overlay (the mount
// program) and kernel overlayfs (the reference) over the same lowers. The mount is always made and
// served by another process; this one only reads /proc/self/mountinfo about it. A teardown leaves
// nothing mounted and no daemon running, also after a failed test; a test's root is removed only
// when nothing is mounted below it.
//
//   const m = await mount(t, path.join(root, 'a'), { kind: 'overlay-program', lowers: [top, tar, bottom] });
//   fs.writeFileSync(path.join(m.root, 'x'), '');   // m.upper holds the change
//   await m.remount(); ... await m.unmount();       // or leave it to the teardown
import type { ExecutionContext } from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fuseServers } from '../../src/util/fuse-servers.js';
import { pidAlive } from '../../src/util/proc.js';
import { isMounted, mountAt, mountsBelow, type MountInfo } from '../../src/util/mounts.js';
import { removeTree } from '../../src/util/remove-tree.js';
import { forceUnmount, unmount as unmountOrForce } from '../../src/util/unmount.js';
import { endProcesses, runChild, waitGone, type RunResult } from './children.js';
import { exec, execOk } from './exec.js';
import { convertOciWhiteouts } from './oci-whiteouts.js';
import { extractReference } from './reference.js';

export { forceUnmount, isMounted, mountAt, type MountInfo };
export const CLI_MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
export const MOUNTPROG_MAIN = fileURLToPath(new URL('../../src/mountprog/main.js', import.meta.url));

/**
 * What to mount. `lowers` are top first, each a directory or a tar (.tar, .tar.gz/.tgz, .tar.zst,
 * .tar.xz): tarstack takes them as they are; kernel overlayfs gets tars extracted by GNU tar with
 * their OCI whiteouts converted (and, with convertOci, copies of directory lowers converted too).
 */
export type MountConfig =
  /** `image add` of each lower (bottom first, each on the one below), `instance create` (+ create
   *  args such as --size 1M, --tmp), `mount` (+ options such as --allow-other, --owners stored). */
  | { kind: 'instance'; lowers: string[]; user?: Ids; create?: string[]; options?: string[] }
  /** The same images, `image mount` of the top one (read-only). */
  | { kind: 'image'; lowers: string[]; user?: Ids; options?: string[] }
  /** `tarstack-overlay -o lowerdir=…,upperdir=…,workdir=…[,options] MNT`, or another program taking
   *  the same arguments (program: '/usr/bin/fuse-overlayfs'). upper: null mounts read-only (no
   *  upper); undefined makes fresh upper/work dirs. */
  | { kind: 'overlay-program'; lowers: string[]; upper?: string | null; work?: string; options?: string[]; program?: string }
  /** `mount -t overlay` with options (default redirect_dir=on,index=off,metacopy=off, or
   *  ro,redirect_dir=on without an upper). */
  | { kind: 'kernel'; lowers: string[]; upper?: string | null; work?: string; options?: string[]; convertOci?: boolean };

/** Who mounts, when not root: an ordinary user (see ordinary-user.ts's ordinaryUser()). */
export interface Ids {
  uid: number;
  gid: number;
}

export interface Mounted {
  readonly kind: MountConfig['kind'];
  /** The mount point: the merged tree. */
  readonly root: string;
  /** Where changes land (undefined for read-only mounts). */
  readonly upper: string | undefined;
  /** The store of an instance or image mount (TARSTACK_HOME, or the user's XDG store). */
  readonly store: string | undefined;
  /** The user who mounted it, if not root: only they may enter without allow_other. */
  readonly user: Ids | undefined;
  /** The result of the command that made the mount (the CLI's or the mount program's, with pipesHeld;
   *  kernel: mount(8)'s, without). */
  readonly result: RunResult | undefined;
  /** Runs argv as the user who mounted (root: as ourselves). */
  run(argv: string[], opts?: { cwd?: string }): Promise<RunResult>;
  /** The tarstack CLI on this mount's store, as its user (instance and image mounts). */
  cli(args: string[]): Promise<RunResult>;
  /** Pids of the processes serving the mount (none for the kernel). */
  daemons(): number[];
  /** Unmounts the configuration's own way (tarstack umount, umount(8)) and waits for its daemons to
   *  end; if that fails, forces the mount off and throws. Nothing is left either way. Does nothing
   *  when nothing is mounted (the test unmounted it itself, or an earlier call did). */
  unmount(): Promise<void>;
  /** unmount(), then the same mount again: same instance, image or upper, same root. */
  remount(): Promise<void>;
}

/**
 * Mounts config at dir/mnt; dir (created, fresh) also holds whatever the configuration needs (store,
 * upper, work, extracted lowers). With t, a teardown unmounts and ends the daemons if the test did
 * not; without t (benches), call unmount().
 */
export async function mount(t: ExecutionContext | undefined, dir: string, config: MountConfig): Promise<Mounted> {
  fs.mkdirSync(dir, { recursive: true });
  const m = config.kind === 'instance' || config.kind === 'image' ? await viaCli(dir, config)
    : config.kind === 'overlay-program' ? await viaMountProgram(dir, config)
    : await viaKernel(dir, config);
  t?.teardown(() => m.release());
  return m;
}

interface Made extends Mounted {
  /** Teardown: nothing mounted, no daemon, whatever state the test left. */
  release(): Promise<void>;
}

/** The parts every configuration shares: mount, check, unmount, force, wait for the daemons. */
function made(kind: MountConfig['kind'], root: string, parts: {
  upper?: string; store?: string; user?: Ids; env?: NodeJS.ProcessEnv;
  mountCmd: () => Promise<RunResult | undefined>; umountCmd: () => Promise<RunResult | undefined>; daemons: () => number[];
}): Promise<Made> {
  const run = (argv: string[], opts: { cwd?: string } = {}) => {
    if (!parts.user) return runChild(argv, { env: parts.env ?? {}, cwd: opts.cwd ?? path.dirname(root) });
    // spawn changes directory before it changes user, and root may not enter the user's mount
    const inDir = opts.cwd ? ['sh', '-c', 'cd "$0" && exec "$@"', opts.cwd, ...argv] : argv;
    return runChild(inDir, { uid: parts.user.uid, gid: parts.user.gid, cleanEnv: true, env: parts.env ?? {}, cwd: path.dirname(root) });
  };
  let result: RunResult | undefined;
  const up = async () => {
    result = await parts.mountCmd();
    if (result && (result.code !== 0 || !isMounted(root))) {
      await release();
      throw new Error(`${kind} mount at ${root} ${result.code ? `exited ${result.code}` : 'mounted nothing'}: ${result.stderr.trim()}`);
    }
  };
  const release = async () => {
    if (isMounted(root)) {
      const r = await parts.umountCmd().catch(() => undefined);
      if (isMounted(root) || (r && r.code !== 0)) unmountOrForce(root);
    }
    await endProcesses(parts.daemons);
    const left = mountsBelow(root);
    if (left.length) throw new Error(`left mounted: ${left.map((l) => l.mountpoint).join(', ')}`);
  };
  const down = async () => {
    const daemons = parts.daemons();
    if (!isMounted(root)) return void (await waitGone(daemons));
    const r = await parts.umountCmd();
    const stuck = isMounted(root);
    if (stuck || (r && r.code !== 0)) {
      await release();
      throw new Error(`unmounting ${kind} at ${root}: ${r ? `exit ${r.code}: ${r.stderr.trim()}` : ''}${stuck ? ' (left mounted, forced)' : ''}`);
    }
    await waitGone(daemons);
  };
  const m: Made = {
    kind, root, upper: parts.upper, store: parts.store, user: parts.user,
    get result() { return result; },
    run,
    cli: (args) => {
      if (!parts.store) throw new Error(`${kind} mounts have no tarstack store`);
      return run([process.execPath, CLI_MAIN, ...args]);
    },
    daemons: parts.daemons,
    unmount: down,
    remount: async () => {
      await down();
      await up();
    },
    release,
  };
  return up().then(() => m);
}

// ---- tarstack CLI: instance and image ----

async function viaCli(dir: string, c: Extract<MountConfig, { kind: 'instance' | 'image' }>): Promise<Made> {
  const root = path.join(dir, 'mnt');
  let env: NodeJS.ProcessEnv;
  let store: string;
  let daemons: () => number[];
  let lowers = c.lowers;
  if (c.user) {
    const user = c.user;
    const home = path.join(dir, 'home');
    store = path.join(home, '.local', 'share', 'tarstack');
    env = { HOME: home, PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', LC_ALL: 'C.UTF-8', USER: exec(['id', '-nu', String(user.uid)]).stdout.toString().trim() };
    traversable(dir);
    fs.mkdirSync(home, { recursive: true });
    // the user's own copies (a tar becomes theirs; a directory keeps its owners, as after cp -a)
    lowers = c.lowers.map((l, i) => {
      const copy = path.join(dir, 'layers', `${i}-${path.basename(l)}`);
      fs.mkdirSync(path.dirname(copy), { recursive: true });
      execOk(['cp', '-a', l, copy]);
      if (!fs.statSync(copy).isDirectory()) fs.chownSync(copy, user.uid, user.gid);
      return copy;
    });
    fs.mkdirSync(root);
    for (const d of [dir, home, root, ...(lowers.length ? [path.join(dir, 'layers')] : [])]) fs.chownSync(d, user.uid, user.gid);
    daemons = () => userProcesses(user.uid, home);
  } else {
    store = path.join(dir, 'store');
    env = { TARSTACK_HOME: store };
    fs.mkdirSync(root);
    daemons = () => storeProcesses(store);
  }
  const cli = (args: string[], checkPipes = false) => runChild([process.execPath, CLI_MAIN, ...args], { env, checkPipes, ...(c.user ? { uid: c.user.uid, gid: c.user.gid, cleanEnv: true } : {}) });
  const ok = async (args: string[]) => {
    const r = await cli(args);
    if (r.code !== 0) throw new Error(`tarstack ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
    return r;
  };
  const images = [...lowers].reverse().map((_, i) => `l${i}`); // bottom first
  for (const [i, name] of images.entries()) await ok(['image', 'add', lowers[lowers.length - 1 - i]!, '--name', name, ...(i ? ['--parent', images[i - 1]!] : [])]);
  const top = images[images.length - 1]!;
  let upper: string | undefined;
  if (c.kind === 'instance') {
    await ok(['instance', 'create', 'i', top, ...(c.create ?? [])]);
    upper = (JSON.parse((await ok(['info', 'i', '--json'])).stdout) as { upper: string }).upper;
  }
  return made(c.kind, root, {
    upper, store, env, ...(c.user ? { user: c.user } : {}), daemons,
    mountCmd: () => cli(c.kind === 'instance' ? ['mount', 'i', root, ...(c.options ?? [])] : ['image', 'mount', top, root, ...(c.options ?? [])], true),
    umountCmd: () => cli(['umount', root]),
  });
}

/** Lets other users reach dir: o+x on it and on its ancestors inside the temp dir (never above). */
function traversable(dir: string): void {
  const tmp = os.tmpdir();
  for (let d = dir; d.startsWith(tmp + '/'); d = path.dirname(d)) fs.chmodSync(d, fs.statSync(d).mode | 0o001);
}

/** Pids whose environment carries TARSTACK_HOME=home: the daemons a test's CLI calls started. */
export function storeProcesses(home: string): number[] {
  return processesWithEnv(`TARSTACK_HOME=${home}`);
}

/** Pids of uid whose environment has HOME=home. */
function userProcesses(uid: number, home: string): number[] {
  return processesWithEnv(`HOME=${home}`).filter((pid) => {
    try {
      return fs.statSync(`/proc/${pid}`).uid === uid;
    } catch {
      return false;
    }
  });
}

function processesWithEnv(entry: string): number[] {
  const needle = Buffer.from(`\0${entry}\0`);
  const pids: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (Buffer.concat([Buffer.from([0]), fs.readFileSync(`/proc/${name}/environ`)]).includes(needle) && pidAlive(Number(name))) pids.push(Number(name));
    } catch {
      // gone, or a kernel thread
    }
  }
  return pids;
}

// ---- tarstack-overlay ----

/** lowerdir= takes `:` as its separator: a colon in a path is written `\:`. */
const lowerdirOption = (lowers: string[]) => lowers.map((l) => l.replace(/\\/g, '\\\\').replace(/:/g, '\\:')).join(':');

async function viaMountProgram(dir: string, c: Extract<MountConfig, { kind: 'overlay-program' }>): Promise<Made> {
  const root = path.join(dir, 'mnt');
  fs.mkdirSync(root);
  const { upper, work } = upperAndWork(dir, c.upper, c.work);
  const opts = [`lowerdir=${lowerdirOption(c.lowers)}`, ...(upper ? [`upperdir=${upper}`, `workdir=${work}`] : []), ...(c.options ?? [])];
  const args = ['-o', opts.join(','), root];
  return made('overlay-program', root, {
    upper,
    daemons: () => (c.program ? fuseServers(root) : overlayDaemons(root)),
    mountCmd: () => (c.program ? runChild([c.program, ...args], { checkPipes: true }) : runMountProg(args)),
    umountCmd: () => runChild(['umount', root]),
  });
}

/** `node dist/src/mountprog/main.js ARGS`: tarstack-overlay, resolved on its exit (with pipesHeld). */
export function runMountProg(args: string[]): Promise<RunResult> {
  return runChild([process.execPath, MOUNTPROG_MAIN, ...args], { checkPipes: true });
}

/** Pids of tarstack-overlay daemons serving a mount point at or below `root`. */
export function overlayDaemons(root: string): number[] {
  const pids: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      const at = argv.indexOf('--serve-detached');
      if (at < 0 || !argv[at - 1]?.endsWith('mountprog/main.js')) continue;
      const req = JSON.parse(argv[at + 1] ?? '{}') as { mountpoint?: string };
      if ((req.mountpoint === root || req.mountpoint?.startsWith(root + '/')) && pidAlive(Number(name))) pids.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

function upperAndWork(dir: string, upper: string | null | undefined, work: string | undefined): { upper?: string; work?: string } {
  if (upper === null) return {};
  const u = upper ?? path.join(dir, 'upper');
  const w = work ?? path.join(dir, 'work');
  fs.mkdirSync(u, { recursive: true });
  fs.mkdirSync(w, { recursive: true });
  return { upper: u, work: w };
}

// ---- kernel overlayfs ----

const KERNEL_OPTIONS = ['redirect_dir=on', 'index=off', 'metacopy=off'];
const KERNEL_RO_OPTIONS = ['ro', 'redirect_dir=on'];

function viaKernel(dir: string, c: Extract<MountConfig, { kind: 'kernel' }>): Promise<Made> {
  const root = path.join(dir, 'mnt');
  fs.mkdirSync(root);
  const lowers = c.lowers.map((l, i) => {
    if (!fs.statSync(l).isDirectory()) {
      const into = path.join(dir, 'lowers', String(i));
      const ref = extractReference(l, into);
      if (ref.fatal) throw new Error(`GNU tar failed on ${l}: ${ref.stderr.join(' | ')}`);
      convertOciWhiteouts(into);
      return into;
    }
    if (!c.convertOci) return l;
    const copy = path.join(dir, 'lowers', String(i));
    fs.mkdirSync(path.dirname(copy), { recursive: true });
    execOk(['cp', '-a', l, copy]); // keeps owners, modes, times, xattrs and hard links
    convertOciWhiteouts(copy);
    return copy;
  });
  const { upper, work } = upperAndWork(dir, c.upper, c.work);
  if (!upper && lowers.length < 2) {
    // without an upper, overlayfs wants two lowers: an empty bottom one changes nothing
    lowers.push(path.join(dir, 'lowers', 'empty'));
    fs.mkdirSync(lowers[lowers.length - 1]!, { recursive: true });
  }
  for (const l of [...lowers, upper ?? '', work ?? '']) if (/[:,\\]/.test(l)) throw new Error(`overlayfs cannot take the path ${l}`);
  const opts = [...(c.options ?? (upper ? KERNEL_OPTIONS : KERNEL_RO_OPTIONS)), `lowerdir=${lowers.join(':')}`, ...(upper ? [`upperdir=${upper}`, `workdir=${work}`] : [])];
  return made('kernel', root, {
    upper,
    daemons: () => [],
    mountCmd: () => runChild(['mount', '-t', 'overlay', 'overlay', '-o', opts.join(','), root]),
    umountCmd: () => runChild(['umount', root]),
  });
}

// ---- a test's root ----

/** A fresh temp root for one test file, under a prefix its after-hook can check for stray mounts. */
export function makeTestRoot(label: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `tarstack-test-${label}-`));
}

/** Mounts at or below prefix (a test's own temp root), in mount order. */
export const strayMounts = (prefix: string): MountInfo[] => mountsBelow(prefix);

/**
 * A test file's last word on its root: every mount still under it is forced off (deepest first),
 * the root removed (any depth), and the leftover mounts reported as a failure.
 */
export function removeTestRoot(root: string): void {
  if (!root) return;
  const left = mountsBelow(root);
  removeTree(root, { mounts: 'force' });
  if (left.length) throw new Error(`tests left mounts: ${left.map((m) => m.mountpoint).join(', ')}`);
}

/** Ends the daemons a CLI session started (found by its store) and waits until they are gone. */
export const endStoreProcesses = (home: string): Promise<number[]> => endProcesses(() => storeProcesses(home));
