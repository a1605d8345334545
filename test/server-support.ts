// What the server suites share: a session whose store gets one server, that server's pid and
// status, tars made from a few files, and waiting for a condition (never for a time).
import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { InstanceSession } from './helpers/instances.js';
import { execOk } from './helpers/exec.js';
import { waitNoneLeft } from './helpers/children.js';

export interface StatusRow {
  mountpoint: string;
  kind: string;
  name: string;
  pid: number;
  state: string;
  detached: boolean;
  /** Its server's log. */
  log?: string;
}

export interface ServerStatus {
  pid: number;
  mounts: Array<{ id: string; mountpoint: string; detached: boolean }>;
  layers: number;
  leases: number;
  rssBytes: number;
}

export async function status(s: InstanceSession): Promise<StatusRow[]> {
  return JSON.parse((await s.ok(['status', '--json'])).stdout) as StatusRow[];
}

/** `serve --json`: the server's own view (starts it if none runs). */
export async function serverStatus(s: InstanceSession): Promise<ServerStatus> {
  return JSON.parse((await s.ok(['serve', '--json'])).stdout) as ServerStatus;
}

/** The pid server.json names, if any. */
export function serverPid(s: InstanceSession): number | undefined {
  try {
    return (JSON.parse(fs.readFileSync(path.join(s.home, 'run', 'server.json'), 'utf8')) as { pid: number }).pid;
  } catch {
    return undefined;
  }
}

export function rssOf(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
}

export const alive = (pid: number): boolean => fs.existsSync(`/proc/${pid}`) && !/\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'latin1'));

/** Waits still pending, by name: printed if the test process ends while one is (ava's timeout ended a hang). */
const pendingWaits = new Set<string>();
process.on('exit', () => {
  if (pendingWaits.size) console.error(`still waiting for: ${[...pendingWaits].join('; ')}`);
});

/**
 * Wait until `ok()` holds, however long a busy machine takes: no deadline of its own (a slow machine
 * is no failure; ava's timeout ends a hang, and the wait's name is printed then).
 */
export async function waitFor(what: string, ok: () => boolean | Promise<boolean>): Promise<void> {
  pendingWaits.add(what);
  try {
    while (!(await ok())) await new Promise((r) => setTimeout(r, 20));
  } finally {
    pendingWaits.delete(what);
  }
}

/** Waits, as waitFor, until find() (a /proc scan) names no running process: between scans it waits
 *  on the pids found (children.ts's waitNoneLeft), not a scan every 20 ms. */
export async function waitForNone(what: string, find: () => number[]): Promise<void> {
  await waitFor(what, () => waitNoneLeft(find));
}

/** A tar of `files` (relative name -> content) at `tar`, made with GNU tar. */
export function makeTar(tar: string, files: Record<string, string | Buffer>): string {
  const src = `${tar}.src`;
  for (const [name, body] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(src, name)), { recursive: true });
    fs.writeFileSync(path.join(src, name), body);
  }
  execOk(['tar', '-cf', tar, '-C', src, '.']);
  fs.rmSync(src, { recursive: true, force: true });
  return tar;
}

/** A session (own store, own server) under `root`, with one image `img` of `files`. */
export async function sessionWithImage(t: ExecutionContext, dir: string, files: Record<string, string | Buffer>, image = 'img'): Promise<InstanceSession> {
  const s = new InstanceSession(dir, t);
  await s.addImage(makeTar(path.join(dir, `${image}.tar`), files), image);
  return s;
}

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Node code in a child process (file operations on a mount that may hang must not block the test):
 * resolves when it exits; `kill` ends it.
 */
export function child(code: string): { done: Promise<ChildResult>; kill(): void; pid: number } {
  const c = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  c.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  c.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const done = new Promise<ChildResult>((resolve) => c.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { done, kill: () => void c.kill('SIGKILL'), pid: c.pid! };
}
