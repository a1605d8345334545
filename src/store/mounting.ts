// What a mount is asked to be, checked against the store before anything is mounted: the image or
// instance named, the mount point (exists, is a directory, is empty, is not already a mount point),
// the options; the outcome is what the serving process is handed (DaemonArgs). The CLI checks here
// when it must start a server (or mounts in the foreground); a running server checks here itself
// when the CLI asks it by name, so that `tarstack mount` is one request. The mount point is looked
// at with asynchronous calls: in the server, a path on a hung filesystem, or inside one of its own
// mounts, must never stop its loop.
import { readdir, realpath, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { BackendName, DaemonArgs } from '../daemon/protocol.js';
import { mountAt } from '../util/mounts.js';
import { UserError } from '../util/errors.js';
import type { Store } from './store.js';
import { resolveMountFlags, wantsNonempty, type MountFlagArgs } from './mount-flags.js';

export interface MountFlags extends MountFlagArgs {
  foreground?: boolean;
  /** The FUSE binding; unset: $TARSTACK_BACKEND, else tarstack's own libfuse3 binding. */
  backend?: BackendName;
  /** Instance mounts: changes vanish at unmount. */
  tmp?: boolean;
  owners?: 'mapped' | 'stored';
}

/** --backend, else $TARSTACK_BACKEND, else tarstack's own libfuse3 binding. */
export function backendOf(a: MountFlags): BackendName {
  const b = a.backend ?? process.env.TARSTACK_BACKEND ?? 'native';
  if (b !== 'native' && b !== 'fuse-native') throw new UserError(`unknown FUSE backend "${b}" (TARSTACK_BACKEND): use native or fuse-native`);
  return b;
}

/** `dir` as a mount point: its real path, once it is an existing directory, not mounted on, empty unless `nonempty`. */
export async function checkMountpoint(store: Store, dir: string, nonempty: boolean): Promise<string> {
  const abs = resolve(dir);
  const existing = mountAt(abs);
  if (existing) {
    const rec = store.mounts.at(abs);
    throw new UserError(rec ? `${abs} is already mounted (${rec.name}, pid ${rec.pid})` : `${abs} is already a mount point (${existing.fstype})`);
  }
  let st;
  try {
    st = await stat(abs);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UserError(code === 'ENOENT' ? `mount point ${abs} does not exist` : `mount point ${abs}: ${code}`);
  }
  if (!st.isDirectory()) throw new UserError(`mount point ${abs} is not a directory`);
  const real = await realpath(abs);
  if (real !== abs && mountAt(real)) throw new UserError(`${abs} (${real}) is already a mount point`);
  let names: string[];
  try {
    names = await readdir(real);
  } catch (err) {
    throw new UserError(`mount point ${abs}: ${(err as NodeJS.ErrnoException).code}`);
  }
  if (!nonempty && names.length > 0) throw new UserError(`mount point ${abs} is not empty (use --nonempty to mount over it)`);
  return real;
}

/** What the serving process is handed to mount `target` at `mountpoint` (already checked). */
export function daemonArgs(store: Store, kind: DaemonArgs['kind'], target: string, mountpoint: string, a: MountFlags): DaemonArgs {
  const chosen = resolveMountFlags(a, kind);
  return {
    store: store.paths.root,
    mountId: store.mounts.newId(),
    kind,
    target,
    mountpoint,
    backend: backendOf(a),
    allowOther: chosen.allowOther,
    flags: chosen.flags,
    ...(a.owners ? { owners: a.owners } : {}),
    // The store's server puts its own log here; a --foreground mount logs to its standard error.
    log: a.foreground ? `standard error of \`tarstack mount --foreground\` (pid ${process.pid})` : 'the server log',
    ...(a.tmp ? { tmp: true } : {}),
  };
}

/** `image mount IMAGE DIR`, checked. */
export async function imageMountArgs(store: Store, a: { image: string; dir: string } & MountFlags): Promise<DaemonArgs> {
  const r = store.images.get(a.image);
  store.images.stack(r); // refuse broken parent chains before starting anything
  return daemonArgs(store, 'image', r.id, await checkMountpoint(store, a.dir, wantsNonempty(a)), a);
}

/** `mount INSTANCE [DIR]`, checked: the instance is not mounted anywhere, and the backend can write. */
export async function instanceMountArgs(store: Store, a: { instance: string; dir?: string } & MountFlags): Promise<DaemonArgs> {
  const r = store.instances.get(a.instance);
  const live = store.mounts.list().find((m) => m.kind === 'instance' && m.target === r.id);
  if (live) throw new UserError(`instance "${r.name}" is already mounted at ${live.mountpoint}${live.state === 'dead' ? ' (its server died: run `tarstack umount` first, or `tarstack mount --all`)' : ''}`);
  if (backendOf(a) === 'fuse-native') throw new UserError('the fuse-native backend serves read-only images only: it passes atime where mtime belongs, so writes would corrupt times');
  return daemonArgs(store, 'instance', r.id, await checkMountpoint(store, a.dir ?? store.instances.defaultMountpoint(r), wantsNonempty(a)), a);
}
