// The mount daemon's life: open what it serves (an image stack, checking the tars; or an instance,
// holding its lock, over a throwaway copy of its upper for --tmp), mount it, record the mount, say
// "ready", serve until the mount goes away or SIGTERM/SIGINT arrives, then clean up. The daemon
// never touches its own mount point: it learns about the mount from the kernel's session end or
// the mount table only.
import { Images } from '../store/images.js';
import { Instances } from '../store/instances.js';
import { Mounts } from '../store/mounts.js';
import { StorePaths } from '../store/paths.js';
import { openStack } from '../store/open-image.js';
import { tryLockInstance, unlockInstance } from '../store/instance-lock.js';
import type { FileSystem } from '../vfs/api.js';
import type { Backend, Mounted } from '../fuse/backend.js';
import { UserError } from '../util/errors.js';
import type { BackendName, DaemonArgs } from './protocol.js';
import type { TmpUpper } from './tmp-upper.js';

async function backendFor(name: BackendName): Promise<Backend> {
  switch (name) {
    case 'fuse-native':
      return (await import('../fuse/fuse-native-backend.js')).mountFuseNative;
    case 'native':
      return (await import('../fuse/native-backend.js')).mountNative;
  }
}

interface Served {
  fs: FileSystem;
  name: string;
  readOnly: boolean;
  /** The kernel must check permissions against what the FileSystem reports (mapped owners). */
  checkPermissions?: boolean;
  release(): void;
}

/** Open what the mount serves; only the code that kind needs is loaded (daemon start-up time). */
async function open(args: DaemonArgs, paths: StorePaths): Promise<Served> {
  const images = new Images(paths);
  if (args.kind === 'image') {
    const image = images.byId(args.target);
    const { Overlay } = await import('../overlay/overlay.js');
    return { fs: new Overlay(openStack(images, images.stack(image))), name: image.name, readOnly: true, release: () => undefined };
  }
  const instances = new Instances(paths);
  const inst = instances.byId(args.target);
  const lock = tryLockInstance(instances.work(inst));
  if (lock === undefined) throw new UserError(`instance "${inst.name}" is already mounted (its lock is held)`);
  let tmp: TmpUpper | undefined;
  try {
    const image = images.byId(inst.image);
    const { InstanceFs } = await import('../overlay/instance-fs.js');
    if (args.tmp || inst.tmp) tmp = (await import('./tmp-upper.js')).prepareTmpUpper(instances, inst, args.mountId);
    // An ordinary user sees the instance as after `tar -x` run as them (mapped owners, which the kernel
    // checks); --owners=stored shows the tar's owners and, like fakeroot, lets chown record any.
    const owners = args.owners ?? (process.getuid?.() === 0 ? 'stored' : 'mapped');
    const fs = new InstanceFs(openStack(images, images.stack(image)), tmp?.upper ?? instances.upper(inst), tmp?.work ?? instances.work(inst), { sizeLimit: inst.sizeLimit, owners });
    return { fs, name: inst.name, readOnly: false, checkPermissions: owners === 'mapped', release: () => (tmp?.dispose(), unlockInstance(lock)) };
  } catch (err) {
    tmp?.dispose();
    unlockInstance(lock);
    throw err;
  }
}

/** Serve a mount; `onReady` is called once it answers requests. Resolves when it is over. */
export async function serve(args: DaemonArgs, onReady: () => void): Promise<void> {
  const paths = new StorePaths(args.store);
  const mounts = new Mounts(paths);
  const served = await open(args, paths);
  let mounted: Mounted;
  try {
    const backend = await backendFor(args.backend);
    mounted = await backend(served.fs, { mountpoint: args.mountpoint, fsname: `tarstack:${served.name}`, subtype: 'tarstack', readOnly: served.readOnly, allowOther: args.allowOther, defaultPermissions: served.checkPermissions });
  } catch (err) {
    served.fs.destroy();
    served.release();
    throw err;
  }
  try {
    mounts.save({ id: args.mountId, kind: args.kind, target: args.target, name: served.name, mountpoint: args.mountpoint, pid: process.pid, backend: args.backend, started: new Date().toISOString(), log: args.log });
  } catch (err) {
    await mounted.close();
    served.release();
    throw err;
  }
  // SIGTERM is `umount`: a busy mount is detached instead, and served until its last user leaves.
  const stop = (): void =>
    void mounted
      .close()
      .catch(() => mounted.close({ lazy: true }))
      .catch((err: unknown) => console.error(`tarstack daemon: cannot unmount ${args.mountpoint}: ${String(err)}`));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  onReady();
  try {
    await mounted.unmounted;
  } finally {
    // `umount` sends SIGTERM as soon as the mount is gone: the handlers stay (doing nothing now) so
    // that signal cannot kill the daemon half way through its clean-up (a --tmp upper to remove).
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
    process.on('SIGTERM', () => undefined);
    process.on('SIGINT', () => undefined);
    mounts.drop(args.mountId);
    served.release();
  }
}
