// Reading the mount table (/proc/self/mountinfo, proc(5)) without touching any mount: the serving
// daemon must never stat its own mount point, which would deadlock it, and a hung FUSE mount must
// never block whoever cleans it up. The one parser of mountinfo in src, test and bench.
import { readFileSync } from 'node:fs';
import { fromByteString } from './latin1.js';

export interface MountInfo {
  id: number;
  /** "major:minor" of the mounted filesystem; for FUSE the minor is the fusectl connection. */
  majorMinor: string;
  mountpoint: string;
  fstype: string;
  source: string;
  /** Per-mount options (ro, nosuid, nodev, relatime, ...). */
  options: string;
  /** Per-superblock options (for FUSE: user_id, group_id, allow_other, default_permissions). */
  superOptions: string;
}

/** Undo the octal escapes (\040 for a space, \011, \012, \134) the kernel writes in mountinfo. */
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Every mount this process sees, in mount order (a mount stacked on another comes later). */
export function listMounts(): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'latin1').split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const dash = f.indexOf('-', 6);
    if (dash < 0) continue;
    out.push({
      id: Number(f[0]),
      majorMinor: f[2]!,
      mountpoint: fromByteString(unescape(f[4]!)),
      options: f[5]!,
      fstype: f[dash + 1]!,
      source: unescape(f[dash + 2] ?? ''),
      superOptions: f[dash + 3] ?? '',
    });
  }
  return out;
}

/** The topmost mount at exactly `path` (an absolute, resolved path), if any. */
export function mountAt(path: string): MountInfo | undefined {
  let found: MountInfo | undefined;
  for (const m of listMounts()) if (m.mountpoint === path) found = m;
  return found;
}

export const isMounted = (path: string): boolean => mountAt(path) !== undefined;

/** Mounts at `prefix` or anywhere below it, in mount order (reverse it to unmount). */
export function mountsBelow(prefix: string): MountInfo[] {
  const dir = prefix.endsWith('/') ? prefix : prefix + '/';
  return listMounts().filter((m) => m.mountpoint === prefix || m.mountpoint.startsWith(dir));
}
