// Child processes and /proc for the bench: run a command with a time limit and time it on the
// monotonic clock; every process group started is remembered so cleanup can end it by id; /proc
// readers for peak RSS and process start times (the FUSE servers of a mountpoint: src/util).
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { pidStartTicks, statFields } from '../src/util/proc.js';
import type { UserIds } from '../test/helpers/ordinary-user.js';
export { fuseServers } from '../src/util/fuse-servers.js';

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  seconds: number;
  timedOut: boolean;
}

export interface RunOptions {
  timeoutS?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  onLine?: (line: string) => void; // called for each stdout line as it arrives
  as?: UserIds; // run as this user (a rootless mount admits its owner only, not root)
}

/** Process groups we started and have not yet seen exit; cleanup kills what is left. */
const liveGroups = new Set<number>();
/** Sync actions to run on exit, Ctrl-C or a crash (unmounts, kills); newest first. */
const cleanups = new Map<number, () => void>();
let nextCleanupId = 0;

export const nowNs = (): bigint => process.hrtime.bigint();
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Starts cmd in its own process group; past timeoutS the whole group gets SIGKILL. `done` never rejects on exit status. */
export function start(cmd: string, args: string[], opts: RunOptions = {}): { pid: number; done: Promise<RunResult> } {
  const startNs = nowNs();
  const child = spawn(cmd, args, { detached: true, env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'], ...(opts.as ? { uid: opts.as.uid, gid: opts.as.gid } : {}) });
  const pid = child.pid ?? -1;
  if (pid > 0) liveGroups.add(pid);
  const done = new Promise<RunResult>((resolve, reject) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let partial = '';
    child.stdout.on('data', (b: Buffer) => {
      out.push(b);
      if (!opts.onLine) return;
      const lines = (partial + b.toString()).split('\n');
      partial = lines.pop()!;
      for (const line of lines) opts.onLine(line);
    });
    child.stderr.on('data', (b: Buffer) => err.push(b));
    let timedOut = false;
    const timer = opts.timeoutS === undefined ? undefined : setTimeout(() => {
      timedOut = true;
      killGroup(pid, 'SIGKILL');
    }, opts.timeoutS * 1000);
    child.once('error', (e) => {
      liveGroups.delete(pid);
      reject(e);
    });
    child.once('close', (code) => {
      const endNs = nowNs();
      if (timer) clearTimeout(timer);
      liveGroups.delete(pid); // not killed: a mount command's daemon may live on in this group
      resolve({
        code, timedOut,
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
        seconds: Number(endNs - startNs) / 1e9,
      });
    });
  });
  return { pid, done };
}

export const run = (cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> => start(cmd, args, opts).done;

/** Kills a process group we started (a timed-out or no longer needed job). */
export function killGroup(pgid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (!(pgid > 1)) return; // never signal init or "every process"
  try {
    process.kill(-pgid, signal);
  } catch {
    // already gone
  }
}

/** `sh -c script sh ARGS…`, for pipelines; paths go in as "$1"… so they need no quoting. */
export const sh = (script: string, opts: RunOptions & { args?: string[] } = {}): Promise<RunResult> =>
  run('sh', ['-c', script, 'sh', ...(opts.args ?? [])], opts);

/** Like run, but a non-zero exit or a timeout throws with the command's stderr. */
export async function runOk(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0 || r.timedOut) {
    const why = r.timedOut ? `timed out after ${opts.timeoutS} s` : `exit ${r.code}`;
    throw new Error(`${cmd} ${args.join(' ')}: ${why}: ${(r.stderr || r.stdout).trim().slice(-800)}`);
  }
  return r;
}

/** Registers a sync cleanup action; returns a function that unregisters it (after doing it yourself). */
export function onCleanup(action: () => void): () => void {
  const id = nextCleanupId++;
  cleanups.set(id, action);
  return () => cleanups.delete(id);
}

/** Kills the process groups still alive, then runs every pending cleanup action (newest first). */
export function cleanupNow(): void {
  // the jobs first (a find or tar inside a mount would keep it busy), then unmounts and daemons
  for (const pgid of liveGroups) killGroup(pgid, 'SIGKILL');
  liveGroups.clear();
  for (const id of [...cleanups.keys()].reverse()) {
    const action = cleanups.get(id);
    cleanups.delete(id);
    try {
      action?.();
    } catch (e) {
      process.stderr.write(`bench: cleanup: ${(e as Error).message}\n`);
    }
  }
}

/** Ctrl-C, SIGTERM and crashes still unmount everything and end every process we started. */
export function installCleanupHandlers(): void {
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\nbench: ${sig}: cleaning up\n`);
      cleanupNow();
      process.exit(130);
    });
  }
  process.once('uncaughtException', (e) => {
    process.stderr.write(`bench: ${e.stack ?? e}\n`);
    cleanupNow();
    process.exit(1);
  });
  process.once('exit', () => cleanupNow());
}

/** Share of all CPU time spent busy (not idle or iowait) over the next ms, from /proc/stat. */
export async function cpuBusy(ms: number): Promise<number> {
  const sample = (): number[] => readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const a = sample();
  await sleep(ms);
  const d = sample().map((v, i) => v - a[i]!);
  const total = d.reduce((x, y) => x + y, 0);
  const idle = d[3]! + d[4]!;
  return total > 0 ? (total - idle) / total : 0;
}

export function dropCaches(): void {
  spawnSync('sync');
  writeFileSync('/proc/sys/vm/drop_caches', '3');
}

// ---- /proc ----

/** CPU seconds (user + sys) a process has used so far, its threads included; 0 if it is gone. */
export function cpuSecondsOf(pid: number): number {
  return cpuSeconds(statFields(pid));
}

/** CPU seconds of a process's main thread alone (Node's event loop in a Node process); 0 if it is gone. */
export function mainThreadCpuSecondsOf(pid: number): number {
  return cpuSeconds(statFields(pid, pid));
}

const cpuSeconds = (f: string[] | undefined): number => (f ? (Number(f[11]) + Number(f[12])) / clockTicks : 0); // utime, stime in clock ticks

/** A field of /proc/PID/status in KiB (VmHWM, VmRSS), or undefined if the process is gone. */
export function statusKiB(pid: number, field: string): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export function alive(pid: number): boolean {
  try {
    // a zombie is as good as gone: it serves nothing and its parent reaps it
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

const clockTicks = Number(spawnSync('getconf', ['CLK_TCK']).stdout.toString().trim()) || 100;
let bootMinusMono: bigint | undefined;

/**
 * CLOCK_BOOTTIME − CLOCK_MONOTONIC (they differ after a suspend or a VM snapshot). /proc/uptime
 * shows boot time truncated to 10 ms, so the instant its value changes pins the offset to ~µs.
 */
function bootMinusMonoNs(): bigint {
  if (bootMinusMono !== undefined) return bootMinusMono;
  const read = (): string => readFileSync('/proc/uptime', 'utf8').split(' ')[0]!;
  const first = read();
  let cur = first;
  let mono = nowNs();
  while (cur === first) {
    cur = read();
    mono = nowNs();
  }
  const [s, cs] = cur.split('.');
  bootMinusMono = BigInt(s!) * 1_000_000_000n + BigInt(cs!.padEnd(2, '0')) * 10_000_000n - mono;
  return bootMinusMono;
}

/**
 * When pid started, on the monotonic clock. /proc/PID/stat gives whole clock ticks (10 ms), so
 * this returns the middle of that tick: ±5 ms.
 */
export function startMonoNs(pid: number): bigint | undefined {
  const ticks = pidStartTicks(pid);
  if (ticks === undefined) return undefined;
  const tickNs = 1_000_000_000n / BigInt(clockTicks);
  return BigInt(ticks) * tickNs + tickNs / 2n - bootMinusMonoNs();
}

/** Ends a process we started (found by pid): SIGTERM, then SIGKILL after graceMs. */
export function endPid(pid: number, graceMs = 3000): void {
  for (let waited = 0; alive(pid) && waited < graceMs; waited += 50) {
    if (waited === 0) safeKill(pid, 'SIGTERM');
    sleepSync(50);
  }
  if (alive(pid)) safeKill(pid, 'SIGKILL');
}

function safeKill(pid: number, sig: NodeJS.Signals): void {
  if (!(pid > 1)) return;
  try {
    process.kill(pid, sig);
  } catch {
    // gone
  }
}

/** Waits until none of pids is alive, up to ms; returns whether they all ended. */
export async function waitGone(pids: number[], ms: number): Promise<boolean> {
  for (let waited = 0; waited < ms; waited += 50) {
    if (!pids.some(alive)) return true;
    await sleep(50);
  }
  return !pids.some(alive);
}
