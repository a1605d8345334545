// Child process serving the benchmark tree: argv mountpoint, backend (native | fuse-native),
// kind (many | big), [big file]. Tells its parent 'ready', answers 'stats' with the request
// count, and on 'unmount' unmounts and exits.
import { openSync, statSync } from 'node:fs';
import { mountNative } from '../src/fuse/native-backend.js';
import type { SessionConfig } from '../src/fuse/lowlevel.js';
import { ManyFs } from './many-fs.js';
import { mountFuseNative } from './fuse-native-mount.js';

async function main(): Promise<void> {
  const [mountpoint, backend, , bigPath] = process.argv.slice(2);
  const big = bigPath ? { fd: openSync(bigPath, 'r'), size: statSync(bigPath).size } : undefined;
  const fs = new ManyFs(big);
  let requests: () => number;
  let unmount: () => Promise<void>;
  if (backend === 'fuse-native') {
    ({ requests, unmount } = await mountFuseNative(fs, mountpoint!));
  } else {
    // BENCH_SESSION: SessionConfig fields, plus the mount options `openless` and `readAheadKb`.
    const { openless, readAheadKb, ...session } = JSON.parse(process.env.BENCH_SESSION ?? '{}') as SessionConfig & { openless?: boolean; readAheadKb?: number };
    const m = await mountNative(fs, {
      mountpoint: mountpoint!, fsname: 'bench-native', readOnly: true, session,
      ...(openless === undefined ? {} : { openless }), ...(readAheadKb === undefined ? {} : { readAheadKb }),
    });
    requests = () => m.stats().requests;
    unmount = () => m.close();
  }
  process.on('message', (msg: { type: string }) => {
    if (msg.type === 'stats') process.send!({ type: 'stats', requests: requests() });
    if (msg.type === 'unmount') void unmount().then(() => process.send!({ type: 'unmounted' }, () => process.exit(0)));
  });
  process.send!({ type: 'ready' });
}

main().catch((err: unknown) => {
  console.error('bench serve:', err);
  process.exit(1);
});
