// Child process serving one writable instance (a tar layer, an upper) through the native backend,
// so a test can count what reaches the daemon. argv: mountpoint, tar, upper, work (upper and work
// '-': the tar alone as a read-only image, as `image mount` serves it); TARSTACK_SESSION
// (JSON SessionConfig) overrides the session's settings, TARSTACK_TEST_SEEK (JSON) the seek table's
// shape of a compressed tar (e.g. smaller pieces, so a READ spans more of them). IPC: 'ready' with stats, 'stats' on
// request, 'ended' once unmounted. As root it mounts allow_other (permission cases as other users).
import { mountNative } from '../../src/fuse/native-backend.js';
import type { SessionConfig } from '../../src/fuse/lowlevel.js';
import { InstanceFs } from '../../src/overlay/instance-fs.js';
import { Overlay } from '../../src/overlay/overlay.js';
import type { IndexOptions } from '../../src/tar/indexer.js';
import { layerFromFile } from './layers.js';

async function main(): Promise<void> {
  const [mountpoint, tar, upper, work] = process.argv.slice(2);
  if (!mountpoint || !tar || !upper || !work) throw new Error('usage: instance-child MOUNTPOINT TAR UPPER WORK');
  const image = upper === '-';
  const layers = [layerFromFile(tar, { seek: JSON.parse(process.env.TARSTACK_TEST_SEEK ?? '{}') as IndexOptions['seek'] }).layer];
  const fs = image ? new Overlay(layers) : new InstanceFs(layers, upper, work);
  const session = JSON.parse(process.env.TARSTACK_SESSION ?? '{}') as SessionConfig;
  const root = process.getuid?.() === 0;
  const m = await mountNative(fs, { mountpoint, fsname: 'tarstack:child', subtype: 'tarstack', readOnly: image, allowOther: root, defaultPermissions: true, session });
  process.on('message', (msg: { type: string }) => {
    if (msg.type === 'stats') process.send!({ type: 'stats', ...m.stats() });
  });
  process.send!({ type: 'ready', ...m.stats() });
  await m.unmounted;
  process.send!({ type: 'ended', ...m.stats() }, () => process.exit(0));
}

main().catch((err: unknown) => {
  console.error('instance-child:', err);
  process.exit(1);
});
