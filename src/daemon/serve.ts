// One mount's life, in whichever process serves it (the store's server, or `mount --foreground`):
// open what it serves (an image stack, checking the tars; or an instance, holding its lock, over a
// throwaway copy of its upper for --tmp), mount it, record the mount; when the session ends
// (whoever unmounted it), release everything and drop the record. The serving process never
// touches its own mount point: it learns about the mount from the kernel's session end only.
import { execFile } from 'node:child_process';
import { Images, type ImageRecord } from '../store/images.js';
import { Instances } from '../store/instances.js';
import { Mounts, type MountRecord } from '../store/mounts.js';
import { StorePaths } from '../store/paths.js';
import { openStack } from '../store/open-image.js';
import { tryLockInstance, unlockInstance } from '../store/instance-lock.js';
import type { Layer } from '../layer/layer.js';
import type { FileSystem } from '../vfs/api.js';
import type { Backend, Mounted } from '../fuse/backend.js';
import { UserError } from '../util/errors.js';
import { pidStartTicks } from '../util/proc.js';
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

/** Where a mount gets its image's layers: opened for it alone, or shared with other mounts (the server). */
export type LayerSource = (images: Images, stack: ImageRecord[]) => Layer[];

export interface MountHost {
  layers: LayerSource;
  /** True in the store's server: the record says so (its pid serves many mounts). */
  server: boolean;
}

const OWN_PROCESS: MountHost = { layers: openStack, server: false };

interface Served {
  fs: FileSystem;
  name: string;
  readOnly: boolean;
  /** The kernel must check permissions against what the FileSystem reports (mapped owners). */
  checkPermissions?: boolean;
  release(): Promise<void>;
}

/** Open what the mount serves; only the code that kind needs is loaded (start-up time). */
async function open(args: DaemonArgs, paths: StorePaths, host: MountHost): Promise<Served> {
  const images = new Images(paths);
  if (args.kind === 'image') {
    const image = images.byId(args.target);
    const { Overlay } = await import('../overlay/overlay.js');
    return { fs: new Overlay(host.layers(images, images.stack(image))), name: image.name, readOnly: true, release: async () => undefined };
  }
  const instances = new Instances(paths);
  const inst = instances.byId(args.target);
  const lock = tryLockInstance(instances.work(inst));
  if (lock === undefined) throw new UserError(`instance "${inst.name}" is already mounted (its lock is held)`);
  let tmp: TmpUpper | undefined;
  try {
    const image = images.byId(inst.image);
    const { InstanceFs } = await import('../overlay/instance-fs.js');
    if (args.tmp || inst.tmp) tmp = await (await import('./tmp-upper.js')).prepareTmpUpper(instances, inst, args.mountId);
    // An ordinary user sees the instance as after `tar -x` run as them (mapped owners, which the kernel
    // checks); --owners=stored shows the tar's owners and, like fakeroot, lets chown record any.
    const owners = args.owners ?? (process.getuid?.() === 0 ? 'stored' : 'mapped');
    const inner = new InstanceFs(host.layers(images, images.stack(image)), tmp?.upper ?? instances.upper(inst), tmp?.work ?? instances.work(inst), { sizeLimit: inst.sizeLimit, owners, fillsOffLoop: true });
    const { servedInstance } = await import('./served-instance.js');
    const held = tmp;
    return {
      fs: servedInstance(inner),
      name: inst.name,
      readOnly: false,
      checkPermissions: owners === 'mapped',
      // The throwaway upper goes before the lock: the next mount of the instance may make its own.
      release: async () => {
        try {
          await held?.dispose();
        } finally {
          unlockInstance(lock);
        }
      },
    };
  } catch (err) {
    await tmp?.dispose();
    unlockInstance(lock);
    throw err;
  }
}

export interface LiveMount {
  readonly record: MountRecord;
  /** Settles once the session has ended and everything is released (record dropped, lock, --tmp upper). */
  readonly ended: Promise<void>;
  /** Unmount (fusermount3 -u); a busy mount rejects, unless `lazy` detaches it. Settles once the session ended. */
  close(opts?: { lazy?: boolean }): Promise<void>;
  /** Unmount lazily and mark the record detached; resolves at once, while the session serves its users on. */
  detach(): Promise<void>;
  /** Lazily unmounted (by the CLI): the record says so, and the mount point may be mounted again. */
  markDetached(): void;
}

/**
 * Start loading the code a mount needs (overlay, instance, the native FUSE binding) without waiting
 * for it: a server just started does this while its first client sends the mount request, which
 * then finds most of it loaded. Failures surface where the mount imports the same modules.
 */
export function preloadMountCode(): void {
  const settle = (p: Promise<unknown>): void => void p.catch(() => undefined);
  settle(backendFor('native'));
  settle(import('../overlay/overlay.js'));
  settle(import('../overlay/instance-fs.js'));
  settle(import('./served-instance.js'));
}

/** Mount `args` and record it; resolves once the mount serves. */
export async function openMount(args: DaemonArgs, host: MountHost = OWN_PROCESS): Promise<LiveMount> {
  const paths = new StorePaths(args.store);
  const mounts = new Mounts(paths);
  const served = await open(args, paths, host);
  let mounted: Mounted;
  try {
    const backend = await backendFor(args.backend);
    mounted = await backend(served.fs, { mountpoint: args.mountpoint, fsname: `tarstack:${served.name}`, subtype: 'tarstack', readOnly: served.readOnly, allowOther: args.allowOther, defaultPermissions: served.checkPermissions, ...(args.flags ? { flags: args.flags } : {}) });
  } catch (err) {
    try {
      await served.fs.destroy();
    } finally {
      await served.release();
    }
    throw err;
  }
  let record: MountRecord;
  try {
    record = mounts.save({
      id: args.mountId,
      kind: args.kind,
      target: args.target,
      name: served.name,
      mountpoint: args.mountpoint,
      pid: process.pid,
      pidStart: pidStartTicks(process.pid),
      backend: args.backend,
      started: new Date().toISOString(),
      log: args.log,
      ...(host.server ? { server: true } : {}),
      ...(mounted.features?.().length ? { features: mounted.features() } : {}),
      options: { backend: args.backend, allowOther: args.allowOther, ...(args.flags ? { flags: args.flags } : {}), ...(args.owners ? { owners: args.owners } : {}), ...(args.tmp ? { tmp: true } : {}) },
    });
  } catch (err) {
    await mounted.close({ lazy: true }).catch(() => undefined);
    await served.release();
    throw err;
  }
  let detached = false;
  let over = false;
  const markDetached = (): void => {
    if (detached || over) return;
    detached = true;
    record = mounts.save({ ...record, detached: true });
  };
  const ended = mounted.unmounted.then(async () => {
    over = true;
    mounts.drop(args.mountId);
    await served.release();
  });
  return {
    get record() {
      return record;
    },
    ended,
    close: (o) => mounted.close(o),
    async detach() {
      // The backend's own lazy close settles only when the session ends (its last user left).
      if (over) return;
      const failed = await new Promise<string | undefined>((resolve) =>
        execFile('fusermount3', ['-u', '-z', '--', args.mountpoint], (err, _out, stderr) => resolve(err ? stderr.trim() || err.message : undefined)),
      );
      if (failed !== undefined && !over) throw new Error(`fusermount3 -u -z ${args.mountpoint}: ${failed}`);
      markDetached();
    },
    markDetached,
  };
}

/**
 * `mount --foreground`: serve one mount in this process; `onReady` is called once it answers
 * requests. Resolves when it is over. SIGTERM is `umount`: a busy mount is detached instead, and
 * served until its last user leaves.
 */
export async function serve(args: DaemonArgs, onReady: () => void): Promise<void> {
  const live = await openMount(args);
  const stop = (): void =>
    void live
      .close()
      .catch(() => live.close({ lazy: true }))
      .catch((err: unknown) => console.error(`tarstack: cannot unmount ${args.mountpoint}: ${String(err)}`));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  onReady();
  try {
    await live.ended;
  } finally {
    // `umount` sends SIGTERM as soon as the mount is gone: the handlers stay (doing nothing now) so
    // that signal cannot kill the process half way through its clean-up (a --tmp upper to remove).
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
    process.on('SIGTERM', () => undefined);
    process.on('SIGINT', () => undefined);
  }
}
