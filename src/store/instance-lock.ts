// The one-mount-per-instance rule: whoever uses an instance's upper (a mount daemon, reset, rm)
// holds an exclusive flock on work/lock. The kernel drops it when the holder dies, even by kill -9.
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { loadSys, LOCK_EX, LOCK_NB } from '../native/sys.js';

/** The descriptor holding the lock, or undefined when someone else holds it. */
export function tryLockInstance(workDir: string): number | undefined {
  mkdirSync(workDir, { recursive: true });
  const fd = openSync(join(workDir, 'lock'), 'a', 0o600);
  try {
    loadSys().flock(fd, LOCK_EX | LOCK_NB);
    return fd;
  } catch (err) {
    closeSync(fd);
    if ((err as NodeJS.ErrnoException).code === 'EWOULDBLOCK' || (err as NodeJS.ErrnoException).code === 'EAGAIN') return undefined;
    throw err;
  }
}

export function unlockInstance(fd: number): void {
  closeSync(fd);
}
