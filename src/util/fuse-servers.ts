// The processes serving a FUSE mount, found from /proc without touching the mount (which a hung
// server would block): they hold /dev/fuse open and name the mount point in their command line, as
// tarstack's daemons, tarstack-overlay, fuse-overlayfs and archivemount all do. For tests and the
// bench, which must end what they started; the daemon itself never needs it.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { pidAlive } from './proc.js';

function holdsDevFuse(pid: number): boolean {
  try {
    return readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`) === '/dev/fuse';
      } catch {
        return false; // closed meanwhile
      }
    });
  } catch {
    return false; // gone, or not ours to look at
  }
}

function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

/** Live pids (ours excepted) with /dev/fuse open and an argument containing mountpoint. */
export function fuseServers(mountpoint: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    if (cmdline(pid).some((a) => a.includes(mountpoint)) && holdsDevFuse(pid) && pidAlive(pid)) pids.push(pid);
  }
  return pids;
}
