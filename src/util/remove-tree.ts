// Removing a directory tree of any depth: fs.rmSync recurses in JavaScript and overflows the stack
// on a tar's 10,000-deep chain (or fails with ENAMETOOLONG past PATH_MAX), so those fall back to
// rm(1), which walks by descriptors.
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';

export function removeTree(path: string | Buffer): void {
  try {
    rmSync(path, { recursive: true, force: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!(err instanceof RangeError) && code !== 'ENAMETOOLONG') throw err;
    const r = spawnSync('rm', ['-rf', '--', typeof path === 'string' ? path : path.toString('latin1')], { encoding: 'latin1' });
    if (r.status !== 0) throw new Error(`rm -rf ${String(path)}: ${r.stderr.trim() || `exit ${r.status}`}`);
  }
}
