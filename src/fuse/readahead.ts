// Raises the kernel's readahead window of a FUSE mount. The kernel starts every FUSE mount at
// 128 KiB, so sequential reads arrive as 128 KiB requests with little in flight; a larger window
// lets it send max_pages-sized (1 MiB) requests and keep several outstanding. Needs root (sysfs);
// finds the mount in the mount table (util/mounts.ts), never by touching it (we may serve it).
import { writeFileSync } from 'node:fs';
import { mountAt } from '../util/mounts.js';

/** Sets read_ahead_kb of the mount's bdi (named by its major:minor); false when that is not possible (not root). */
export function setReadAhead(mountpoint: string, kb: number): boolean {
  const dev = mountAt(mountpoint)?.majorMinor;
  if (!dev) return false;
  try {
    writeFileSync(`/sys/class/bdi/${dev}/read_ahead_kb`, String(kb));
    return true;
  } catch {
    return false;
  }
}
