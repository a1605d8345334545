// Child processes in tests, with no guess about how fast the machine is: a program runs until it
// exits (no time limit of its own: ava's timeout is the one limit), its output goes to files read
// once it has exited, and whether a process it left behind still holds that output is read from
// /proc rather than inferred from a delay. Waiting is for a condition; processes are ended by pid.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pidAlive } from '../../src/util/proc.js';

export interface RunResult {
  code: number; // the exit code, or 128 + signal number
  stdout: string;
  stderr: string;
  /** With checkPipes: another process (a daemon it started) still had its stdout or stderr open
   *  when it exited: `$(cmd)` in a shell, podman and mount(8) would wait on it. Undefined without. */
  pipesHeld?: boolean;
}

export interface RunOptions {
  /** Added to the environment; with cleanEnv, the whole environment. */
  env?: NodeJS.ProcessEnv;
  cleanEnv?: boolean;
  uid?: number;
  gid?: number;
  cwd?: string;
  /** Sets pipesHeld: a scan of every process's open files (~10-20 ms of CPU on a busy machine), so
   *  asked only of the commands that may leave a daemon behind (mounts). */
  checkPipes?: boolean;
}

/** Runs argv; resolves once it exited, whatever it left running. */
export function runChild(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tarstack-run-'));
  const files = [path.join(dir, 'stdout'), path.join(dir, 'stderr')] as const;
  const fds = files.map((f) => fs.openSync(f, 'w+'));
  const done = (code: number): RunResult => {
    const held = opts.checkPipes ? { pipesHeld: openedByOthers(files).length > 0 } : {};
    const [stdout, stderr] = files.map((f) => fs.readFileSync(f).toString()) as [string, string]; // by name: the fds' offset is shared with the child
    const result: RunResult = { code, stdout, stderr, ...held };
    for (const fd of fds) fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
    return result;
  };
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      env: opts.cleanEnv ? opts.env : { ...process.env, ...opts.env },
      stdio: ['ignore', fds[0]!, fds[1]!],
      ...(opts.uid !== undefined ? { uid: opts.uid } : {}),
      ...(opts.gid !== undefined ? { gid: opts.gid } : {}),
      ...(opts.cwd ? { cwd: opts.cwd } : {}),
    });
    child.once('error', (e) => {
      for (const fd of fds) fs.closeSync(fd);
      fs.rmSync(dir, { recursive: true, force: true });
      reject(e);
    });
    child.once('exit', (code, signal) => resolve(done(code ?? 128 + (signal ? os.constants.signals[signal] : 0))));
  });
}

/** Pids other than ours with any of `files` open (their fd links name it): one pass over /proc.
 *  Needs root for other users'. */
export function openedByOthers(files: readonly string[]): number[] {
  const wanted = new Set(files);
  const pids: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or not ours to look at
    }
    for (const fd of fds) {
      try {
        if (wanted.has(fs.readlinkSync(`/proc/${pid}/fd/${fd}`))) {
          pids.push(pid);
          break;
        }
      } catch {
        // closed meanwhile
      }
    }
  }
  return pids;
}

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves once cond() holds, however long that takes on a busy machine (ava's timeout is the
 *  limit); cond is checked every pollMs. Returns cond's truthy value. */
export async function waitFor<T>(cond: () => T | Promise<T>, pollMs = 20): Promise<NonNullable<T>> {
  for (;;) {
    const v = await cond();
    if (v) return v as NonNullable<T>;
    await tick(pollMs);
  }
}

/** Resolves once none of pids is running (a zombie counts as gone). */
export async function waitGone(pids: number[]): Promise<true> {
  await waitFor(() => !pids.some(pidAlive));
  return true;
}

/** Resolves once find() names no running process. Between its (costly: a /proc scan) calls it waits
 *  on the pids it named, a cheap check each poll. */
export async function waitNoneLeft(find: () => number[]): Promise<true> {
  for (let pids = find().filter(pidAlive); pids.length; pids = find().filter(pidAlive)) await waitGone(pids);
  return true;
}

/**
 * Ends the processes find() names (pids we started, found again each round): SIGTERM, then SIGKILL
 * to whatever is still there after graceMs of the machine's time, then waits until all are gone.
 * For teardown, where a stuck daemon must not keep a test's mounts alive; never an assertion.
 */
export async function endProcesses(find: () => number[], graceMs = 5000): Promise<number[]> {
  const first = find();
  if (!first.length) return first;
  const signal = (sig: NodeJS.Signals) => {
    for (const pid of find()) {
      try {
        process.kill(pid, sig);
      } catch {
        // already gone
      }
    }
  };
  signal('SIGTERM');
  const termed = await Promise.race([waitNoneLeft(find), tick(graceMs).then(() => false)]);
  if (!termed) signal('SIGKILL');
  await waitNoneLeft(find);
  return first;
}
