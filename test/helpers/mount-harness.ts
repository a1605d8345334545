// Starts a child process that serves a mount, talks to it over IPC, and guarantees teardown: a
// mount left behind by a failed test is aborted through fusectl and lazily unmounted, and only
// the child we started is ever killed.
import { fork, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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

  /** The next message of `type` (or one already received), failing after `ms`. */
  next(type: string, ms = 30_000): Promise<Message> {
    const had = this.seen.get(type);
    if (had) {
      this.seen.delete(type);
      return Promise.resolve(had);
    }
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no '${type}' from the child in ${ms} ms; stderr: ${this.stderr.join('')}`)), ms);
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
export async function startChild(script: string, mountpoint: string, args: string[], env: NodeJS.ProcessEnv = {}, readyMs = 30_000): Promise<{ mount: ChildMount; ready: Message }> {
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
    const ready = await mount.next('ready', readyMs);
    return { mount, ready };
  } catch (err) {
    await mount.cleanup();
    throw err;
  }
}

/** The fusectl connection number of a FUSE mount at `mountpoint`, or undefined if none. */
export function fuseConnection(mountpoint: string): number | undefined {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f[4] !== mountpoint) continue;
    const sep = f.indexOf('-');
    if (!f[sep + 1]?.startsWith('fuse')) continue;
    return Number(f[2]!.split(':')[1]);
  }
  return undefined;
}

export function isMounted(mountpoint: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === mountpoint);
}

/** Aborts the FUSE connection (so nothing can hang on it) and detaches the mount. */
export function forceUnmount(mountpoint: string): void {
  const conn = fuseConnection(mountpoint);
  if (conn !== undefined) {
    const dir = '/sys/fs/fuse/connections';
    try {
      if (readdirSync(dir).length === 0) spawnSync('mount', ['-t', 'fusectl', 'none', dir]);
      writeFileSync(join(dir, String(conn), 'abort'), '1');
    } catch {
      /* not root, or already gone: the lazy unmount below still detaches it */
    }
  }
  if (isMounted(mountpoint)) {
    spawnSync('umount', ['-l', mountpoint]);
    if (isMounted(mountpoint)) spawnSync('fusermount3', ['-u', '-z', mountpoint]);
  }
}

/** Removes a temp dir unless something is still mounted inside it (rm would walk into it). */
export function removeDir(dir: string): void {
  const inside = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4]?.startsWith(dir + '/'));
  if (!inside) rmSync(dir, { recursive: true, force: true });
}
