// Starts a child process that serves a test filesystem (toy-child, ll-child, a bench's server),
// talks to it over IPC, and guarantees teardown: a mount left behind by a failed test is aborted
// through fusectl and lazily unmounted (src/util/unmount.ts), and only the child we started is ever
// killed. Messages are awaited without a time limit of their own: the child's exit, or ava's
// timeout, ends a wait, never a guess of how fast a busy machine is.
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMounted, mountAt } from '../../src/util/mounts.js';
import { removeTree } from '../../src/util/remove-tree.js';
import { abortFuseConnection, forceUnmount } from '../../src/util/unmount.js';

export { forceUnmount, isMounted };

export interface Message {
  type: string;
  [k: string]: unknown;
}

export class ChildMount {
  readonly exited: Promise<number | null>;
  private readonly waiting = new Map<string, (m: Message) => void>();
  private readonly seen = new Map<string, Message>();

  constructor(readonly mountpoint: string, readonly child: ChildProcess, readonly stderr: string[]) {
    child.on('message', (m: Message) => {
      const w = this.waiting.get(m.type);
      if (w) {
        this.waiting.delete(m.type);
        w(m);
      } else {
        this.seen.set(m.type, m);
      }
    });
    this.exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  }

  /** The next message of `type` (or one already received); fails if the child exits first, or
   *  after `ms` when a caller asks for a deadline (none by default: a busy machine is slow, not
   *  wrong, and ava's timeout ends a wait that never ends). */
  next(type: string, ms?: number): Promise<Message> {
    const had = this.seen.get(type);
    if (had) {
      this.seen.delete(type);
      return Promise.resolve(had);
    }
    return new Promise((resolve, reject) => {
      const t = ms === undefined ? undefined : setTimeout(() => reject(new Error(`no '${type}' from the child in ${ms} ms; stderr: ${this.stderr.join('')}`)), ms);
      this.waiting.set(type, (m) => (clearTimeout(t), resolve(m)));
      this.exited.then((code) => reject(new Error(`child exited (${code}) before '${type}'; stderr: ${this.stderr.join('')}`)));
    });
  }

  /** Sends `type` and waits for the child's answer of type `answer`. */
  async ask(type: string, answer = type): Promise<Message> {
    const reply = this.next(answer);
    this.child.send({ type });
    return reply;
  }

  /** Always safe to call: leaves no mount and no child of ours behind. */
  async cleanup(): Promise<void> {
    forceUnmount(this.mountpoint);
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const done = this.exited;
      this.child.kill('SIGKILL');
      await done;
      forceUnmount(this.mountpoint);
    }
  }
}

export function makeTempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Forks `script` (a compiled test helper) with `args`; resolves once it reports 'ready'.
 *  TARSTACK_CHILD_EXEC (a JSON array, e.g. valgrind and its options ending with node) wraps it. */
export async function startChild(script: string, mountpoint: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ mount: ChildMount; ready: Message }> {
  const wrap = process.env.TARSTACK_CHILD_EXEC ? (JSON.parse(process.env.TARSTACK_CHILD_EXEC) as string[]) : undefined;
  const child = fork(script, [mountpoint, ...args], {
    stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    env: { ...process.env, ...env },
    ...(wrap ? { execPath: wrap[0]!, execArgv: wrap.slice(1) } : {}),
  });
  const stderr: string[] = [];
  child.stderr!.on('data', (d: Buffer) => {
    stderr.push(d.toString());
    process.stderr.write(d);
  });
  const mount = new ChildMount(mountpoint, child, stderr);
  try {
    const ready = await mount.next('ready');
    return { mount, ready };
  } catch (err) {
    await mount.cleanup();
    throw err;
  }
}

/** Aborts the FUSE connection of the mount at `mountpoint` through fusectl (mounted first on a machine
 *  where nothing has yet: a fresh boot has /sys/fs/fuse/connections empty); throws if it cannot. */
export function abortConnection(mountpoint: string): void {
  const m = mountAt(mountpoint);
  if (!m || !abortFuseConnection(m)) throw new Error(`cannot abort the FUSE connection of ${mountpoint}`);
}

/** Removes a temp dir, forcing off anything still mounted inside it first (rm would walk into it). */
export function removeDir(dir: string): void {
  removeTree(dir, { mounts: 'force' });
}
