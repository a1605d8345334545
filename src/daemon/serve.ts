// The mount daemon's life: open the image stack (checking the tars), mount it, record the mount,
// say "ready", serve until the mount goes away or SIGTERM/SIGINT arrives, then clean up. The daemon
// never touches its own mount point: it learns about the mount from the mount table only.
import { Images } from '../store/images.js';
import { Mounts } from '../store/mounts.js';
import { StorePaths } from '../store/paths.js';
import { openStack } from '../store/open-image.js';
import { Overlay } from '../overlay/overlay.js';
import type { Backend, Mounted } from '../fuse/backend.js';
import type { BackendName, DaemonArgs } from './protocol.js';

async function backendFor(name: BackendName): Promise<Backend> {
  switch (name) {
    case 'fuse-native':
      return (await import('../fuse/fuse-native-backend.js')).mountFuseNative;
  }
}

/** Serve a mount; `onReady` is called once it answers requests. Resolves when it is over. */
export async function serve(args: DaemonArgs, onReady: () => void): Promise<void> {
  const paths = new StorePaths(args.store);
  const images = new Images(paths);
  const mounts = new Mounts(paths);
  const image = images.byId(args.target);
  const layers = openStack(images, images.stack(image));
  const fs = new Overlay(layers);
  let mounted: Mounted;
  try {
    const backend = await backendFor(args.backend);
    mounted = await backend(fs, { mountpoint: args.mountpoint, fsname: `tarstack:${image.name}`, subtype: 'tarstack', readOnly: true, allowOther: args.allowOther });
  } catch (err) {
    fs.destroy();
    throw err;
  }
  try {
    mounts.save({ id: args.mountId, kind: args.kind, target: image.id, name: image.name, mountpoint: args.mountpoint, pid: process.pid, backend: args.backend, started: new Date().toISOString(), log: args.log });
  } catch (err) {
    await mounted.close();
    throw err;
  }
  const stop = (): void => void mounted.close();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  onReady();
  try {
    await mounted.unmounted;
  } finally {
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
    mounts.drop(args.mountId);
  }
}
