// Child process that serves the toy tree through the native backend (a process must never touch
// the mount it serves). argv: mountpoint, backing file. Talks to its parent over IPC: 'ready' with
// inode numbers, 'stats' on request, 'ended' with the reference balance once unmounted.
import { openSync } from 'node:fs';
import { mountNative } from '../../src/fuse/native-backend.js';
import type { SessionConfig } from '../../src/fuse/lowlevel.js';
import { ToyFs } from './toy-fs.js';
import { buildTree } from './toy-tree.js';
import { ROOT_INO } from '../../src/vfs/api.js';

async function main(): Promise<void> {
  const [mountpoint, backing] = process.argv.slice(2);
  if (!mountpoint || !backing) throw new Error('usage: toy-child MOUNTPOINT BACKING_FILE');
  const fd = openSync(backing, 'r');
  const fs = new ToyFs();
  const inos = buildTree(fs, fd);
  const session = JSON.parse(process.env.TOY_SESSION ?? '{}') as SessionConfig;
  const m = await mountNative(fs, { mountpoint, fsname: 'toy,fs', subtype: 'toy', readOnly: true, session });
  const balance = () => {
    let refs = 0;
    for (const v of fs.refs.values()) refs += v;
    return { refs, held: [...fs.refs.keys()], ...m.stats() };
  };
  process.on('message', (msg: { type: string }) => {
    if (msg.type === 'stats') process.send!({ type: 'stats', ...balance() });
    if (msg.type === 'mutate') {
      fs.replaceData(inos.hello!, Buffer.from('HELLO WORLD\n'));
      fs.removeName(ROOT_INO, 'empty');
      process.send!({ type: 'mutated' });
    }
    if (msg.type === 'invalidate') {
      void Promise.all([m.invalidateInode(inos.hello!), m.invalidateEntry(ROOT_INO, 'empty')]).then((results) =>
        process.send!({ type: 'invalidated', results }),
      );
    }
  });
  process.send!({ type: 'ready', inos });
  await m.unmounted;
  process.send!({ type: 'ended', destroyed: fs.destroyed, ...balance() }, () => process.exit(0));
}

main().catch((err: unknown) => {
  console.error('toy-child:', err);
  process.exit(1);
});
