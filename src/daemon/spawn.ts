// Starting a daemon from the CLI (the store's mount server, tarstack-overlay's mount process):
// detached, its output in a log file, and this call returns only when the daemon says it serves (or
// fails with the daemon's one-line reason).
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';
import { UserError } from '../util/errors.js';
import type { Readiness } from './protocol.js';

const READY_TIMEOUT_MS = 120_000;

/** How a daemon is started: `cwd` where it runs (a daemon started from a directory would keep it busy), `nodeArgs` Node's own flags. */
export interface DetachedOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  nodeArgs?: string[];
}

/**
 * Start `node ...nodeArgs main ...argv` detached, its output appended to `logPath`; resolve with its
 * pid once it reports ready on fd 3.
 */
export async function startDetached(main: string, argv: string[], logPath: string, { cwd, env, nodeArgs = [] }: DetachedOptions = {}): Promise<number> {
  const args = { log: logPath };
  mkdirSync(dirname(args.log), { recursive: true });
  const log = openSync(args.log, 'a');
  const child = spawn(process.execPath, [...nodeArgs, main, ...argv], { detached: true, stdio: ['ignore', log, log, 'pipe'], ...(cwd ? { cwd } : {}), ...(env ? { env } : {}) });
  closeSync(log);
  const pipe = child.stdio[3] as Readable;
  let text = '';
  pipe.setEncoding('utf8');
  pipe.on('data', (d: string) => (text += d));
  const outcome = await new Promise<Readiness | { ok: false; exited: number | null }>((resolve) => {
    const timer = setTimeout(() => resolve({ ok: false, error: `the mount daemon did not become ready within ${READY_TIMEOUT_MS / 1000} s (log: ${args.log})` }), READY_TIMEOUT_MS);
    pipe.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(text.trim()) as Readiness);
      } catch {
        resolve({ ok: false, exited: child.exitCode });
      }
    });
  });
  pipe.destroy();
  child.unref();
  if (outcome.ok) return child.pid!;
  if (child.exitCode === null) child.kill('SIGKILL');
  if ('error' in outcome) throw new UserError(outcome.error);
  throw new UserError(`the mount daemon exited before serving: ${lastLine(args.log)} (log: ${args.log})`);
}

function lastLine(path: string): string {
  try {
    const lines = readFileSync(path, 'utf8').trim().split('\n');
    return lines[lines.length - 1] ?? '';
  } catch {
    return 'no log';
  }
}

/** A log that one daemon after another appends to stays bounded: past `maxBytes` it becomes LOG.1 (the one before goes). */
export function rotateLog(path: string, maxBytes = 1 << 20): void {
  try {
    if (statSync(path).size > maxBytes) renameSync(path, `${path}.1`);
  } catch {
    /* none yet, or not ours to move: appended to as it is */
  }
}
