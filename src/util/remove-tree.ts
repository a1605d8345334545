// Removing a directory tree of any depth: first in C (sys.removeTree: by directory descriptors,
// unlinking before looking, no stat per entry: an instance's rmdir and reset pay this per
// directory), which stops rather than cross into another filesystem or go past its depth bound;
// then fs.rmSync, which recurses in JavaScript and overflows the stack on a tar's 10,000-deep chain
// (or fails with ENAMETOOLONG past PATH_MAX), so those fall back to rm(1). Test and bench scratch trees may hold mounts: rm -rf through a
// mount deletes what the mount serves, so those callers say what to do about them.
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { loadSys } from '../native/sys.js';
import { mountsBelow } from './mounts.js';
import { forceUnmount } from './unmount.js';

export interface RemoveOptions {
  /** Mounts at or below the tree: 'refuse' throws (naming them), 'force' unmounts them (forceUnmount,
   *  deepest first). Unset: not looked for (the store's own trees never hold mounts). */
  mounts?: 'refuse' | 'force';
}

export function removeTree(path: string | Buffer, opts: RemoveOptions = {}): void {
  if (opts.mounts && typeof path === 'string') {
    if (opts.mounts === 'force') for (const m of mountsBelow(path).reverse()) forceUnmount(m.mountpoint);
    const left = mountsBelow(path);
    if (left.length) throw new Error(`not removing ${path}: mounted below it: ${left.map((m) => `${m.mountpoint} (${m.fstype})`).join(', ')}`);
  }
  try {
    return loadSys().removeTree(typeof path === 'string' ? Buffer.from(path) : path);
  } catch {
    // a mount below, too deep, or refused: the general path does it, or says why not
  }
  try {
    rmSync(path, { recursive: true, force: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!(err instanceof RangeError) && code !== 'ENAMETOOLONG') throw err;
    const r = spawnSync('rm', ['-rf', '--', typeof path === 'string' ? path : path.toString('latin1')], { encoding: 'latin1' });
    if (r.status !== 0) throw new Error(`rm -rf ${String(path)}: ${r.stderr.trim() || `exit ${r.status}`}`);
  }
}
