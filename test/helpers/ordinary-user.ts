// Running tarstack as an ordinary user from a root test run, as CI does: one system user made once
// (idempotent), /dev/fuse mode 0666 as distributions ship it, Debian's setuid fusermount3, and a
// per-test HOME owned by that user (so its store lands under its XDG path). Cleanup unmounts what
// the test mounted and ends only processes of that user whose environment names this HOME.
import fs from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { removeTree } from '../../src/util/remove-tree.js';
import { forceUnmount } from '../../src/util/unmount.js';
import { endProcesses, runChild, type RunResult } from './children.js';
import { exec } from './exec.js';
import { CLI_MAIN, strayMounts } from './mounted.js';

export const USER = 'tarstack-ci';

export interface UserIds {
  uid: number;
  gid: number;
}

/** The CI user, made on first use; undefined (with the reason) where that is impossible. */
export function ordinaryUser(): UserIds | string {
  if (process.getuid?.() !== 0) return 'needs root to make the ordinary user';
  if (!fs.existsSync('/dev/fuse')) return 'needs /dev/fuse';
  if (!fs.existsSync('/usr/bin/fusermount3') || !(fs.statSync('/usr/bin/fusermount3').mode & 0o4000)) return 'needs a setuid fusermount3 (Debian package fuse3)';
  let id = exec(['id', '-u', USER]);
  if (id.code !== 0) {
    const made = exec(['useradd', '--system', '--no-create-home', '--shell', '/usr/sbin/nologin', USER]);
    if (made.code !== 0 && made.code !== 9) return `useradd ${USER}: ${made.stderr.trim()}`; // 9: made meanwhile by a parallel test file
    id = exec(['id', '-u', USER]);
  }
  const gid = exec(['id', '-g', USER]);
  // What distributions ship (udev's 0666 rule): any user may open /dev/fuse.
  if ((fs.statSync('/dev/fuse').mode & 0o666) !== 0o666) fs.chmodSync('/dev/fuse', 0o666);
  return { uid: Number(id.stdout.toString().trim()), gid: Number(gid.stdout.toString().trim()) };
}

export type { RunResult };

/** The minimal environment the user's commands run with: their HOME, a plain PATH, C.UTF-8. */
export function userEnv(home: string): NodeJS.ProcessEnv {
  return { HOME: home, PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', LC_ALL: 'C.UTF-8', USER };
}

/** One test's world as the ordinary user: HOME (its store goes to HOME/.local/share/tarstack). */
export class UserSession {
  readonly home: string;
  constructor(
    readonly ids: UserIds,
    readonly root: string,
    t?: ExecutionContext,
  ) {
    this.home = path.join(root, 'home');
    fs.mkdirSync(this.home, { recursive: true, mode: 0o755 });
    fs.chownSync(root, ids.uid, ids.gid);
    fs.chownSync(this.home, ids.uid, ids.gid);
    t?.teardown(() => this.cleanup());
  }

  get store(): string {
    return path.join(this.home, '.local', 'share', 'tarstack');
  }

  /** Runs argv as the user (no supplementary groups: libuv drops them), with a minimal environment;
   *  resolves on its exit (a detached daemon holding its output does not hold up the test). */
  run(argv: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<RunResult> {
    const env = { ...userEnv(this.home), ...opts.env };
    return runChild(argv, { uid: this.ids.uid, gid: this.ids.gid, cleanEnv: true, env, cwd: opts.cwd ?? this.home });
  }

  /** A shell command as the user. */
  sh(script: string): Promise<RunResult> {
    return this.run(['/bin/sh', '-c', script]);
  }

  /** The tarstack CLI as the user. */
  cli(args: string[]): Promise<RunResult> {
    return this.run([process.execPath, CLI_MAIN, ...args]);
  }

  async ok(args: string[]): Promise<RunResult> {
    const r = await this.cli(args);
    if (r.code !== 0) throw new Error(`tarstack ${args.join(' ')} (as ${USER}) exited ${r.code}: ${r.stderr.trim()}`);
    return r;
  }

  /** Pids of the user's processes started for this session (their HOME is ours). */
  processes(): number[] {
    const needle = Buffer.from(`\0HOME=${this.home}\0`);
    const pids: number[] = [];
    for (const name of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      try {
        if (fs.statSync(`/proc/${name}`).uid !== this.ids.uid) continue;
        if (Buffer.concat([Buffer.from([0]), fs.readFileSync(`/proc/${name}/environ`)]).includes(needle)) pids.push(Number(name));
      } catch {
        /* gone */
      }
    }
    return pids;
  }

  async cleanup(): Promise<void> {
    for (const m of strayMounts(this.root).reverse()) {
      await this.cli(['umount', m.mountpoint]).catch(() => undefined);
      if (strayMounts(m.mountpoint).length) forceUnmount(m.mountpoint);
    }
    await endProcesses(() => this.processes());
    removeTree(this.root, { mounts: 'refuse' }); // never rm -rf through a mount
  }
}
