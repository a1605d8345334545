// Exclusive locks on a directory's `lock` file (flock), released by the kernel when the holder dies,
// even by kill -9. An instance's is on its work dir: whoever uses its upper (a mount daemon, reset,
// rm, freeze) holds it, so an instance is used by one at a time. A stackpoint's is on its home.
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { loadSys, LOCK_EX, LOCK_NB } from '../native/sys.js';

/** The descriptor holding DIR/lock, or undefined when someone else holds it. */
export function tryLockDir(dir: string): number | undefined {
  mkdirSync(dir, { recursive: true });
  const fd = openSync(join(dir, 'lock'), 'a', 0o600);
  try {
    loadSys().flock(fd, LOCK_EX | LOCK_NB);
    return fd;
  } catch (err) {
    closeSync(fd);
    if ((err as NodeJS.ErrnoException).code === 'EWOULDBLOCK' || (err as NodeJS.ErrnoException).code === 'EAGAIN') return undefined;
    throw err;
  }
}

/** An instance's lock, on its work dir. */
export const tryLockInstance = (workDir: string): number | undefined => tryLockDir(workDir);

export function unlockDir(fd: number): void {
  closeSync(fd);
}

export const unlockInstance = unlockDir;
