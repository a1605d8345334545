// The tarstack CLI as the suites drive it, on a per-test store: its commands, and a session whose
// `image mount` checks the CLI's own contract (prints the path last, returns once serving, leaves
// the caller's output alone). Mounting a configuration to test what it serves is mounted.ts's job;
// cleanup here uses the same pieces (CLI umount, forced unmount, the store's daemons ended).
import fs from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { mountsBelow } from '../../src/util/mounts.js';
import { removeTree } from '../../src/util/remove-tree.js';
import { forceUnmount } from '../../src/util/unmount.js';
import { runChild, type RunResult } from './children.js';
import { CLI_MAIN, endStoreProcesses, makeTestRoot, removeTestRoot, storeProcesses, strayMounts } from './mounted.js';

export { CLI_MAIN, forceUnmount, makeTestRoot, removeTestRoot, storeProcesses };
export const cliAvailable = (): boolean => fs.existsSync(CLI_MAIN);

export type CliResult = RunResult;

/**
 * Runs `node dist/src/cli/main.js ARGS`. env must set TARSTACK_HOME, so a test never uses the real
 * store. Resolves on the CLI's exit, not on its pipes closing: a daemon that kept our pipes open
 * would otherwise hang the test (and `$(tarstack mount ...)` in a shell the same way).
 */
export function tarstackCli(args: string[], opts: { env: NodeJS.ProcessEnv; checkPipes?: boolean }): Promise<CliResult> {
  if (!opts.env['TARSTACK_HOME']) throw new Error('tarstackCli: set TARSTACK_HOME to a temp store');
  return runChild([process.execPath, CLI_MAIN, ...args], { env: opts.env, checkPipes: opts.checkPipes });
}

/** @deprecated use mounted.ts's strayMounts (fields mountpoint, fstype); this shape stays only
 *  until test/helpers/model-run.ts and test/instance-model.test.ts move over. */
export const legacyStrayMounts = (prefix: string) => mountsBelow(prefix).map((m) => ({ ...m, mountPoint: m.mountpoint, fsType: m.fstype }));
export { legacyStrayMounts as strayMounts };

/** One test's tarstack world: a temp root holding the store and mount points, cleaned on teardown. */
export class TarstackSession {
  readonly home: string;
  private readonly mounted = new Set<string>();

  constructor(readonly root: string, t?: ExecutionContext) {
    this.home = path.join(root, 'store');
    fs.mkdirSync(this.home, { recursive: true });
    t?.teardown(() => this.cleanup());
  }

  /** checkPipes: set the result's pipesHeld (children.ts), for commands that may start a daemon. */
  cli(args: string[], opts: { checkPipes?: boolean } = {}): Promise<CliResult> {
    return tarstackCli(args, { env: { TARSTACK_HOME: this.home }, ...opts });
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
    const r = await this.cli(['image', 'mount', image, dir], { checkPipes: true });
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
    for (const dir of [...this.mounted, ...strayMounts(this.root).map((m) => m.mountpoint)]) {
      if (!strayMounts(dir).length) continue;
      await this.umount(dir).catch(() => undefined);
      if (strayMounts(dir).length) forceUnmount(dir);
    }
    await endStoreProcesses(this.home);
    removeTree(this.root, { mounts: 'refuse' }); // any depth (hostile tars nest 10,000 directories)
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
