// Unmounting that always ends with nothing mounted, whatever state the serving daemon is in: the
// FUSE connection is aborted through fusectl (a stopped or hung daemon can then block nobody) and
// the mount detached lazily. Reads only mountinfo and sysfs, never the mount itself. Needs root for
// the abort (any user's mount) and for umount(8); an ordinary user's own FUSE mounts fall back to
// fusermount3 -u -z. Synchronous, so exit handlers and test teardowns can use it.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mountAt, type MountInfo } from './mounts.js';

const FUSECTL = '/sys/fs/fuse/connections';

/** Aborts the FUSE connection behind m (mounting fusectl first if nobody has); false when m is not
 *  FUSE or the abort was refused (another user's mount without root). */
export function abortFuseConnection(m: MountInfo): boolean {
  if (!m.fstype.startsWith('fuse')) return false;
  try {
    if (readdirSync(FUSECTL).length === 0) spawnSync('mount', ['-t', 'fusectl', 'none', FUSECTL]);
    const abort = join(FUSECTL, m.majorMinor.split(':')[1]!, 'abort');
    if (!existsSync(abort)) return false;
    writeFileSync(abort, '1');
    return true;
  } catch {
    return false; // not root, or the connection went away meanwhile
  }
}

/**
 * Aborts and lazily detaches every mount stacked at mountpoint, topmost first. Throws if something
 * is still mounted there afterwards (never the case as root).
 */
export function forceUnmount(mountpoint: string): void {
  for (let m = mountAt(mountpoint); m; ) {
    abortFuseConnection(m);
    spawnSync('umount', ['-l', mountpoint], { stdio: 'ignore' });
    let next = mountAt(mountpoint);
    if (next?.id === m.id && m.fstype.startsWith('fuse')) {
      spawnSync('fusermount3', ['-u', '-z', mountpoint], { stdio: 'ignore' }); // an ordinary user's own mount
      next = mountAt(mountpoint);
    }
    if (next?.id === m.id) throw new Error(`cannot unmount ${mountpoint} (${m.fstype})`);
    m = next;
  }
}

/**
 * umount(8) for every mount stacked at mountpoint; a mount it cannot end (busy, a daemon that does
 * not answer) is forced. Says which it took.
 */
export function unmount(mountpoint: string): 'clean' | 'forced' | 'not mounted' {
  let m = mountAt(mountpoint);
  if (!m) return 'not mounted';
  let forced = false;
  while (m) {
    // umount(8) looks the path up, which a FUSE daemon that stopped answering blocks forever: the
    // limit turns that case into a forced unmount (a healthy mount answers at once).
    const r = spawnSync('umount', [mountpoint], { stdio: 'ignore', timeout: 30_000 });
    const next = mountAt(mountpoint);
    if (r.status !== 0 && next?.id === m.id) {
      forced = true;
      forceUnmount(mountpoint);
      break;
    }
    m = next;
  }
  return forced ? 'forced' : 'clean';
}
