// Raises the kernel's readahead window of a FUSE mount. The kernel starts every FUSE mount at
// 128 KiB, so sequential reads arrive as 128 KiB requests with little in flight; a larger window
// lets it send max_pages-sized (1 MiB) requests and keep several outstanding. Needs root (sysfs);
// finds the mount through /proc/self/mountinfo, never by touching the mount (we may serve it).
import { readFileSync, writeFileSync } from 'node:fs';

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** The "major:minor" of the newest mount at `mountpoint`, which names its bdi in sysfs. */
export function mountDevice(mountpoint: string): string | undefined {
  let dev: string | undefined;
  for (const line of readFileSync('/proc/self/mountinfo', 'latin1').split('\n')) {
    const f = line.split(' ');
    if (f.length > 4 && unescape(f[4]!) === mountpoint) dev = f[2];
  }
  return dev;
}

/** Sets read_ahead_kb of the mount's bdi; false when that is not possible (not root). */
export function setReadAhead(mountpoint: string, kb: number): boolean {
  const dev = mountDevice(mountpoint);
  if (!dev) return false;
  try {
    writeFileSync(`/sys/class/bdi/${dev}/read_ahead_kb`, String(kb));
    return true;
  } catch {
    return false;
  }
}
