// The store lock: one directory created atomically by mkdir(2), holding its owner's pid and boot id
// so a lock left by a dead process (or a previous boot) is taken over instead of blocking forever.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import { writingTo } from '../util/error-funnel.js';
import { bootId, pidAlive } from '../util/proc.js';

const WAIT_MS = 30_000;

export async function withLock<T>(lockDir: string, fn: () => T | Promise<T>): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    try {
      mkdirSync(lockDir);
      writeOwner(lockDir);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = readOwner(lockDir);
      if (owner && (owner.boot !== bootId() || !pidAlive(owner.pid))) {
        // Move it aside first: of two processes seeing the same stale lock, only one rename succeeds.
        try {
          const aside = `${lockDir}.stale-${process.pid}`;
          renameSync(lockDir, aside);
          rmSync(aside, { recursive: true, force: true });
        } catch {
          /* someone else took it over first */
        }
        continue;
      }
      if (Date.now() > deadline) throw new UserError(`the store is locked by process ${owner?.pid ?? '?'} (${lockDir})`);
      await new Promise((r) => setTimeout(r, owner ? 20 : 5));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lockDir, { recursive: true, force: true });
  }
}

/** Sign a lock just taken; one that cannot be signed (a full disk) is given up, never left ownerless for others to wait on. */
function writeOwner(lockDir: string): void {
  const owner = join(lockDir, 'owner');
  try {
    writingTo(owner, () => writeFileSync(owner, `${process.pid} ${bootId()}\n`));
  } catch (err) {
    rmSync(lockDir, { recursive: true, force: true });
    throw err;
  }
}

function readOwner(lockDir: string): { pid: number; boot: string } | undefined {
  try {
    const [pid, boot] = readFileSync(join(lockDir, 'owner'), 'utf8').trim().split(' ');
    return { pid: Number(pid), boot };
  } catch {
    return undefined; // just created, owner not yet written
  }
}
