// Mount bookkeeping: what /proc/self/mountinfo says is mounted (read without touching the mounted
// filesystem, so a hung FUSE daemon cannot block it), and an unmount that always succeeds: plain
// umount, else abort the FUSE connection and detach lazily. Synchronous, so cleanup can use it.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { onCleanup } from './sys.js';

interface MountInfo {
  dir: string;
  dev: string; // "major:minor"
  fstype: string;
}

// mountinfo escapes space, tab, newline and backslash as octal
const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

function mounts(): MountInfo[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).map((line) => {
    const f = line.split(' ');
    const sep = f.indexOf('-');
    return { dir: unescape(f[4]!), dev: f[2]!, fstype: f[sep + 1]! };
  });
}

function mountAt(dir: string): MountInfo | undefined {
  return mounts().filter((m) => m.dir === dir).pop();
}

export const isMounted = (dir: string): boolean => mountAt(dir) !== undefined;

/** Mountpoints strictly below dir, deepest first. */
export function mountsUnder(dir: string): string[] {
  return mounts().map((m) => m.dir).filter((d) => d.startsWith(dir + '/')).sort((a, b) => b.length - a.length);
}

/** The /sys/fs/fuse/connections id of a FUSE mount: its anonymous device's minor number. */
function fuseConnection(m: MountInfo): string | undefined {
  return m.fstype.startsWith('fuse') ? m.dev.split(':')[1] : undefined;
}

function abortFuse(m: MountInfo): void {
  const conn = fuseConnection(m);
  if (conn !== undefined && existsSync(`/sys/fs/fuse/connections/${conn}/abort`)) {
    writeFileSync(`/sys/fs/fuse/connections/${conn}/abort`, '1');
  }
}

/** Unmounts dir (every mount stacked on it): umount, else abort the FUSE connection + `umount -l`. */
export function unmount(dir: string): 'clean' | 'forced' | 'not mounted' {
  if (!isMounted(dir)) return 'not mounted';
  let forced = false;
  for (let m = mountAt(dir), tries = 0; m && tries < 5; m = mountAt(dir), tries++) {
    if (spawnSync('umount', [dir], { timeout: 15_000 }).status === 0) continue;
    forced = true;
    abortFuse(m);
    spawnSync('umount', ['-l', dir], { timeout: 15_000 });
  }
  if (isMounted(dir)) throw new Error(`cannot unmount ${dir}`);
  return forced ? 'forced' : 'clean';
}

/** Keeps dir on the cleanup list until the returned function is called (after a successful unmount). */
export function trackMount(dir: string): () => void {
  return onCleanup(() => unmount(dir));
}

/** rm -rf that refuses to descend into a mount: whatever is mounted below is unmounted first. */
export function removeTree(dir: string): void {
  for (const m of mountsUnder(dir)) unmount(m);
  if (mountsUnder(dir).length > 0) throw new Error(`still mounted under ${dir}`);
  rmSync(dir, { recursive: true, force: true });
}
