// The harness for mounts made by the tarstack CLI in child processes: run the CLI against a
// per-test store, mount, and always clean up (CLI umount, then fusectl abort + lazy umount, then
// the store's own leftover daemons). Reads /proc for mounts; never touches mounts outside its root.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import { exec } from './exec.js';
import { removeTree } from '../../src/util/remove-tree.js';

export const CLI_MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
export const cliAvailable = (): boolean => fs.existsSync(CLI_MAIN);

export interface CliResult {
  code: number; // the exit code, or 128 + signal number
  stdout: string;
  stderr: string;
  pipesHeld: boolean; // stdout/stderr still open 300 ms after the CLI exited: a daemon inherited them
}

/**
 * Runs `node dist/src/cli/main.js ARGS`. env must set TARSTACK_HOME, so a test never uses the real
 * store. Resolves on the CLI's exit, not on its pipes closing: a daemon that kept our pipes open
 * would otherwise hang the test (and `$(tarstack mount ...)` in a shell the same way).
 */
export function tarstackCli(args: string[], opts: { env: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<CliResult> {
  if (!opts.env['TARSTACK_HOME']) throw new Error('tarstackCli: set TARSTACK_HOME to a temp store');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI_MAIN, ...args], { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let openPipes = 2;
    let onPipesClosed: () => void = () => {};
    const pipeClosed = () => --openPipes === 0 && onPipesClosed();
    child.stdout.on('data', (b: Buffer) => out.push(b)).once('close', pipeClosed);
    child.stderr.on('data', (b: Buffer) => err.push(b)).once('close', pipeClosed);
    const limit = opts.timeoutMs ?? 60_000;
    const timer = setTimeout(() => child.kill('SIGKILL'), limit);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        const pipesHeld = openPipes > 0;
        child.stdout.destroy();
        child.stderr.destroy();
        resolve({
          code: code ?? 128 + (signal ? os.constants.signals[signal] : 0),
          stdout: Buffer.concat(out).toString(),
          stderr: Buffer.concat(err).toString() + (signal === 'SIGKILL' ? `\n[harness: killed after ${limit} ms]` : ''),
          pipesHeld,
        });
      };
      // let buffered output arrive, but never wait long on pipes a detached daemon may hold
      if (openPipes === 0) return finish();
      onPipesClosed = finish;
      setTimeout(finish, 300);
    });
  });
}

export interface MountEntry {
  id: number;
  dev: string; // "major:minor" of the mounted filesystem
  mountPoint: string;
  fsType: string;
}

/** /proc/self/mountinfo parsed (mount points unescaped from \ooo). */
export function mounts(): MountEntry[] {
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).map((line) => {
    const f = line.split(' ');
    const sep = f.indexOf('-');
    const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    return { id: Number(f[0]), dev: f[2]!, mountPoint: unescape(f[4]!), fsType: f[sep + 1]! };
  });
}

const under = (p: string, prefix: string) => p === prefix || p.startsWith(prefix.endsWith('/') ? prefix : prefix + '/');

/** Mounts at or below prefix (a test's own temp root). */
export function strayMounts(prefix: string): MountEntry[] {
  return mounts().filter((m) => under(m.mountPoint, prefix));
}

export function assertNoStrayMounts(prefix: string): void {
  const left = strayMounts(prefix);
  if (left.length) throw new Error(`left mounted: ${left.map((m) => `${m.mountPoint} (${m.fsType})`).join(', ')}`);
}

const FUSECTL = '/sys/fs/fuse/connections';

/** Aborts the FUSE connection behind a mount (a dead or hung daemon cannot block us) and lazily
 *  unmounts it. The connection number is the minor of the mount's st_dev, read from mountinfo so
 *  nothing stats the possibly hung mount. */
export function forceUnmount(mountPoint: string): void {
  for (const m of mounts().filter((x) => x.mountPoint === mountPoint).reverse()) {
    if (m.fsType.startsWith('fuse')) {
      if (fs.readdirSync(FUSECTL).length === 0) exec(['mount', '-t', 'fusectl', 'none', FUSECTL]);
      const abort = path.join(FUSECTL, m.dev.split(':')[1]!, 'abort');
      if (fs.existsSync(abort)) fs.writeFileSync(abort, '1');
    }
    if (exec(['umount', mountPoint]).code !== 0) exec(['umount', '-l', mountPoint]);
  }
}

/** Pids whose environment carries TARSTACK_HOME=home: the daemons this test's CLI calls started. */
export function storeProcesses(home: string): number[] {
  const needle = Buffer.from(`\0TARSTACK_HOME=${home}\0`);
  const pids: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const env = Buffer.concat([Buffer.from([0]), fs.readFileSync(`/proc/${name}/environ`)]);
      if (env.includes(needle)) pids.push(Number(name));
    } catch {
      // gone, or a kernel thread
    }
  }
  return pids;
}

async function killStoreProcesses(home: string): Promise<number[]> {
  const pids = storeProcesses(home);
  for (const sig of ['SIGTERM', 'SIGKILL'] as const) {
    for (const pid of storeProcesses(home)) {
      try {
        process.kill(pid, sig);
      } catch {
        // already gone
      }
    }
    for (let i = 0; i < 20 && storeProcesses(home).length; i++) await new Promise((r) => setTimeout(r, 100));
  }
  return pids;
}

/** One test's tarstack world: a temp root holding the store and mount points, cleaned on teardown. */
export class TarstackSession {
  readonly home: string;
  private readonly mounted = new Set<string>();

  constructor(readonly root: string, t?: ExecutionContext) {
    this.home = path.join(root, 'store');
    fs.mkdirSync(this.home, { recursive: true });
    t?.teardown(() => this.cleanup());
  }

  cli(args: string[], timeoutMs?: number): Promise<CliResult> {
    return tarstackCli(args, { env: { TARSTACK_HOME: this.home }, ...(timeoutMs ? { timeoutMs } : {}) });
  }

  /** `image add`, which must succeed. */
  async addImage(tar: string, name: string, parent?: string): Promise<CliResult> {
    const r = await this.cli(['image', 'add', tar, '--name', name, ...(parent ? ['--parent', parent] : [])]);
    if (r.code !== 0) throw new Error(`image add ${tar} exited ${r.code}: ${r.stderr.trim()}`);
    return r;
  }

  /** `image mount IMAGE DIR` (DIR created under the root), which must succeed and print DIR last. */
  async mount(image: string, name = 'mnt'): Promise<string> {
    const dir = path.join(this.root, name);
    fs.mkdirSync(dir, { recursive: true });
    this.mounted.add(dir);
    const r = await this.cli(['image', 'mount', image, dir]);
    if (r.code !== 0) throw new Error(`image mount ${image} exited ${r.code}: ${r.stderr.trim()}`);
    if (r.pipesHeld) throw new Error('the mount daemon kept the CLI\'s stdout/stderr open: `$(tarstack image mount ...)` would hang');
    const last = r.stdout.trimEnd().split('\n').pop();
    if (last !== dir) throw new Error(`image mount printed ${JSON.stringify(last)} last, not the mount path ${dir}`);
    if (!strayMounts(dir).length) throw new Error(`image mount returned but nothing is mounted at ${dir}`);
    return dir;
  }

  /** `tarstack umount DIR`; returns its result without judging it. */
  async umount(dir: string): Promise<CliResult> {
    return this.cli(['umount', dir]);
  }

  /** Clean, whatever state the test left: CLI umount, then force, then leftover daemons; the temp
   *  root is removed only when nothing is mounted under it (rm -rf through a mount is never safe). */
  async cleanup(): Promise<void> {
    for (const dir of [...this.mounted, ...strayMounts(this.root).map((m) => m.mountPoint)]) {
      if (!strayMounts(dir).length) continue;
      await this.umount(dir).catch(() => undefined);
      if (strayMounts(dir).length) forceUnmount(dir);
    }
    await killStoreProcesses(this.home);
    assertNoStrayMounts(this.root);
    removeTree(this.root); // any depth (hostile tars nest 10,000 directories)
  }
}

/** Mounts `image`, runs fn on the mount path, and unmounts whatever happens. */
export async function withMount<T>(session: TarstackSession, image: string, fn: (dir: string) => Promise<T> | T, name?: string): Promise<T> {
  const dir = await session.mount(image, name);
  let result: T;
  try {
    result = await fn(dir);
  } catch (e) {
    await session.umount(dir).catch(() => undefined);
    if (strayMounts(dir).length) forceUnmount(dir);
    throw e; // the test's own failure matters more than an unmount one
  }
  const r = await session.umount(dir);
  const left = strayMounts(dir).length > 0; // `tarstack umount` returns only once the mount is gone
  if (left) forceUnmount(dir);
  if (r.code !== 0 || left) throw new Error(`umount ${dir} exited ${r.code}${left ? ' and left it mounted' : ''}: ${r.stderr.trim()}`);
  return result;
}

/** A fresh temp root for one test file, under a prefix its after-hook can check for stray mounts. */
export function makeTestRoot(label: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `tarstack-test-${label}-`));
}

/**
 * A test file's last word on its root: every mount still under it is forced off (deepest first),
 * the root removed, and the leftover mounts reported as a failure.
 */
export function removeTestRoot(root: string): void {
  if (!root) return;
  const left = strayMounts(root);
  for (const m of [...left].reverse()) forceUnmount(m.mountPoint);
  removeTree(root); // any depth (a hostile tar's 10,000-deep chain)
  if (left.length) throw new Error(`tests left mounts: ${left.map((m) => m.mountPoint).join(', ')}`);
}
