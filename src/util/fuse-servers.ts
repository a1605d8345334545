// The processes serving a FUSE mount, found from /proc without touching the mount (which a hung
// server would block): they hold /dev/fuse open for the mount's connection. Where the kernel names
// the connection in the descriptor's fdinfo (`fuse_connection:`, the minor of the mount's device),
// that alone decides, which also finds tarstack's server, one process for many mounts whose command
// line names none of them; on older kernels, a process holding /dev/fuse whose command line names
// the mount point (tarstack-overlay, fuse-overlayfs, archivemount do). For tests and the bench,
// which must end what they started; the daemon itself never needs it.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mountAt } from './mounts.js';
import { pidAlive } from './proc.js';

/** The FUSE connections `pid` holds /dev/fuse open for: numbers where fdinfo says, 'unknown' where it does not. */
function fuseConnections(pid: number): Array<number | 'unknown'> {
  const out: Array<number | 'unknown'> = [];
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return out; // gone, or not ours to look at
  }
  for (const fd of fds) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) !== '/dev/fuse') continue;
      const m = /^fuse_connection:\s*(\d+)$/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
      out.push(m ? Number(m[1]) : 'unknown');
    } catch {
      /* closed meanwhile */
    }
  }
  return out;
}

function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

/** Live pids (ours excepted) serving the FUSE mount at mountpoint. */
export function fuseServers(mountpoint: string): number[] {
  const minor = mountAt(mountpoint)?.majorMinor.split(':')[1];
  const connection = minor === undefined ? undefined : Number(minor);
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    const held = fuseConnections(pid);
    if (held.length === 0) continue;
    const serves = held.some((c) => c === connection) || (held.includes('unknown') && cmdline(pid).some((a) => a.includes(mountpoint)));
    if (serves && pidAlive(pid)) pids.push(pid);
  }
  return pids;
}
