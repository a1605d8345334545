// Child process serving the bench's memory tree (bench/many-fs.ts): argv mountpoint, backend
// (native | fuse-native), kind (many | big), [big file]. Both backends are tarstack's own
// (src/fuse/): native-backend.ts (libfuse3, SessionConfig from BENCH_SESSION) and
// fuse-native-backend.ts (fuse-native 2.2.6, libfuse 2). Tells its parent 'ready', answers 'stats'
// with the request count, and on 'unmount' unmounts and exits.
import { openSync, statSync } from 'node:fs';
import type { Mounted } from '../src/fuse/backend.js';
import { mountFuseNative } from '../src/fuse/fuse-native-backend.js';
import type { SessionConfig } from '../src/fuse/lowlevel.js';
import { mountNative } from '../src/fuse/native-backend.js';
import { ManyFs } from './many-fs.js';

async function main(): Promise<void> {
  const [mountpoint, backend, , bigPath] = process.argv.slice(2);
  const big = bigPath ? { fd: openSync(bigPath, 'r'), size: statSync(bigPath).size } : undefined;
  const fs = new ManyFs(big);
  const common = { mountpoint: mountpoint!, readOnly: true };
  let m: Mounted;
  if (backend === 'fuse-native') {
    m = await mountFuseNative(fs, { ...common, fsname: 'bench-fuse-native' });
  } else {
    // BENCH_SESSION: SessionConfig fields, plus the mount options `openless` and `readAheadKb`.
    const { openless, readAheadKb, ...session } = JSON.parse(process.env.BENCH_SESSION ?? '{}') as SessionConfig & { openless?: boolean; readAheadKb?: number };
    m = await mountNative(fs, {
      ...common, fsname: 'bench-native', session,
      ...(openless === undefined ? {} : { openless }), ...(readAheadKb === undefined ? {} : { readAheadKb }),
    });
  }
  process.on('message', (msg: { type: string }) => {
    if (msg.type === 'stats') process.send!({ type: 'stats', requests: m.stats().requests });
    if (msg.type === 'unmount') void m.close().then(() => process.send!({ type: 'unmounted' }, () => process.exit(0)));
  });
  process.send!({ type: 'ready' });
}

main().catch((err: unknown) => {
  console.error('bench serve:', err);
  process.exit(1);
});
