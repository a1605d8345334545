// Facts about processes from /proc: liveness, boot identity, and who holds files under a mount.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

let cachedBootId: string | undefined;
export function bootId(): string {
  cachedBootId ??= readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  return cachedBootId;
}

/** True for a running process; a zombie (exited, not yet reaped by its new parent) counts as gone. */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const f = statFields(pid);
  return f !== undefined && f[0] !== 'Z';
}

/**
 * The fields of /proc/PID/stat after the command name (which may hold spaces and parentheses): [0]
 * is field 3 (state), [11] and [12] utime and stime, [19] field 22 (start time); undefined when the
 * process is gone. With `tid`: one thread's (/proc/PID/task/TID/stat, the same fields).
 */
export function statFields(pid: number, tid?: number): string[] | undefined {
  try {
    const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/**
 * When a process started (clock ticks after boot, field 22 of /proc/PID/stat), or undefined when it is
 * gone: with the pid it names one process for good, so a pid reused after a crash is told apart.
 */
export function pidStartTicks(pid: number): number | undefined {
  const f = statFields(pid);
  return f && Number(f[19]);
}

export interface Holder {
  pid: number;
  command: string;
}

/**
 * Processes with a working directory, root, executable, open file or mapping under `mountpoint`.
 * Reads only /proc link texts, never the mount itself, so it is safe on a hung mount.
 */
export function holdersOf(mountpoint: string, exclude: number[] = []): Holder[] {
  const inside = (p: string): boolean => p === mountpoint || p.startsWith(mountpoint.endsWith('/') ? mountpoint : mountpoint + '/');
  const out: Holder[] = [];
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || exclude.includes(pid)) continue;
    const base = `/proc/${pid}`;
    let holds = false;
    try {
      for (const link of ['cwd', 'root', 'exe']) {
        if (holds) break;
        holds = safeReadlink(`${base}/${link}`, inside);
      }
      if (!holds) {
        for (const fd of safeReaddir(`${base}/fd`)) {
          if (safeReadlink(`${base}/fd/${fd}`, inside)) {
            holds = true;
            break;
          }
        }
      }
      if (!holds) {
        const maps = readFileSync(`${base}/maps`, 'utf8');
        holds = maps.split('\n').some((l) => {
          const i = l.indexOf('/');
          return i >= 0 && inside(l.slice(i).replace(/ \(deleted\)$/, ''));
        });
      }
    } catch {
      continue; // the process went away, or is not ours to inspect
    }
    if (holds) out.push({ pid, command: commandOf(pid) });
  }
  return out;
}

function safeReadlink(path: string, test: (p: string) => boolean): boolean {
  try {
    return test(readlinkSync(path));
  } catch {
    return false;
  }
}

function safeReaddir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

export function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}
