// The store lock: an exclusive flock(2) on one file, which the kernel releases when its holder dies
// (kill -9 included), so nothing is ever stale and a live holder's lock is never taken over. The
// holder writes its pid in the file, for the message of whoever waits too long. The file stays: a
// process may be waiting on its inode, so removing it would let a newcomer lock a second one.
import { closeSync, ftruncateSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { loadSys, LOCK_EX, LOCK_NB } from '../native/sys.js';
import { UserError } from '../util/errors.js';
import { bootId, pidAlive } from '../util/proc.js';

const WAIT_MS = 30_000;

export async function withLock<T>(lockFile: string, fn: () => T | Promise<T>, opts: { waitMs?: number } = {}): Promise<T> {
  const deadline = Date.now() + (opts.waitMs ?? WAIT_MS);
  const fd = await lock(lockFile, deadline);
  try {
    return await fn();
  } finally {
    closeSync(fd); // releases the lock
  }
}

async function lock(lockFile: string, deadline: number): Promise<number> {
  const sys = loadSys();
  for (;;) {
    const fd = open(lockFile);
    if (fd !== undefined) {
      try {
        sys.flock(fd, LOCK_EX | LOCK_NB);
        sign(fd);
        return fd;
      } catch (err) {
        closeSync(fd);
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'EWOULDBLOCK' && code !== 'EAGAIN') throw err;
      }
    }
    if (Date.now() >= deadline) throw new UserError(`the store is locked by process ${holder(lockFile) ?? '?'} (${lockFile})`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The lock file's descriptor; undefined while an older tarstack's lock directory is there and its owner lives. */
function open(lockFile: string): number | undefined {
  try {
    return openSync(lockFile, 'a+', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EISDIR') throw err;
  }
  // Older tarstacks locked by making a directory holding `owner` ("PID BOOT-ID"); a dead one's is removed.
  const owner = legacyOwner(lockFile);
  if (owner && (owner.boot !== bootId() || !pidAlive(owner.pid))) rmSync(lockFile, { recursive: true, force: true });
  return undefined;
}

function legacyOwner(lockDir: string): { pid: number; boot: string } | undefined {
  try {
    const [pid, boot] = readFileSync(join(lockDir, 'owner'), 'utf8').trim().split(' ');
    return Number.isInteger(Number(pid)) && Number(pid) > 0 && boot ? { pid: Number(pid), boot } : undefined;
  } catch {
    return undefined;
  }
}

/** Our pid in the lock file (only a message reads it); a full disk leaves it as it was, the lock held all the same. */
function sign(fd: number): void {
  try {
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`, 0);
  } catch {
    /* the lock is what counts */
  }
}

function holder(lockFile: string): number | undefined {
  try {
    if (statSync(lockFile).isDirectory()) return legacyOwner(lockFile)?.pid;
    const pid = Number(readFileSync(lockFile, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}
