// Starts test/helpers/instance-child.ts for one test: a writable instance (tar, upper, work) or,
// with upper and work '-', the tar as a read-only image. Resolves once it serves; `stats()` asks
// it for its MountStats. Unmounted and ended in the test's teardown, whatever happened.
import type { ExecutionContext } from 'ava';
import { fork, spawnSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { MountStats } from '../../src/fuse/native-backend.js';
import { forceUnmount, mountAt } from './mounted.js';
import type { UserIds } from './ordinary-user.js';

const CHILD = fileURLToPath(new URL('./instance-child.js', import.meta.url));

export async function serveInstance(t: ExecutionContext, args: [mnt: string, tar: string, upper: string, work: string], env: Record<string, string> = {}, user?: UserIds): Promise<() => Promise<MountStats>> {
  const mnt = args[0];
  const child: ChildProcess = fork(CHILD, args, {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, ...env },
    ...(user ? { uid: user.uid, gid: user.gid } : {}),
  });
  const messages: Array<{ type: string } & MountStats> = [];
  let wake: (() => void) | null = null;
  child.on('message', (m: { type: string } & MountStats) => (messages.push(m), wake?.()));
  child.on('exit', () => wake?.());
  const next = async (type: string): Promise<MountStats> => {
    for (;;) {
      const i = messages.findIndex((m) => m.type === type);
      if (i >= 0) return messages.splice(i, 1)[0]!;
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`instance child exited before '${type}'`);
      await new Promise<void>((r) => (wake = r));
    }
  };
  t.teardown(async () => {
    if (mountAt(mnt)) spawnSync('fusermount3', ['-u', '-z', mnt], { stdio: 'ignore' });
    if (child.exitCode === null && child.signalCode === null) await next('ended').catch(() => undefined);
    if (mountAt(mnt)) forceUnmount(mnt);
    if (child.exitCode === null && child.signalCode === null) child.kill();
  });
  await next('ready');
  return () => (child.send({ type: 'stats' }), next('stats'));
}
