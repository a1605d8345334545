// Running tarstack as an ordinary user from a root test run, as CI does: one system user made once
// (idempotent), /dev/fuse mode 0666 as distributions ship it, Debian's setuid fusermount3, and a
// per-test HOME owned by that user (so its store lands under its XDG path). Cleanup unmounts what
// the test mounted and ends only processes of that user whose environment names this HOME.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { exec } from './exec.js';
import { CLI_MAIN, forceUnmount, strayMounts } from './mount.js';

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

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
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

  /** Runs argv as the user (no supplementary groups: libuv drops them), with a minimal environment. */
  run(argv: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<RunResult> {
    return new Promise((resolve, reject) => {
      const env = { HOME: this.home, PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', LC_ALL: 'C.UTF-8', USER, ...opts.env };
      const child = spawn(argv[0]!, argv.slice(1), { uid: this.ids.uid, gid: this.ids.gid, env, cwd: opts.cwd ?? this.home, stdio: ['ignore', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (b: Buffer) => out.push(b));
      child.stderr.on('data', (b: Buffer) => err.push(b));
      const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
      child.on('error', reject);
      // Resolve on exit, not on the pipes closing: a detached daemon must not hold them, and if it
      // did, the test would hang here instead of failing.
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        setTimeout(() => {
          child.stdout.destroy();
          child.stderr.destroy();
          resolve({ code: code ?? 128 + (signal ? os.constants.signals[signal] : 0), stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
        }, 100);
      });
    });
  }

  /** A shell command as the user. */
  sh(script: string, opts: { timeoutMs?: number } = {}): Promise<RunResult> {
    return this.run(['/bin/sh', '-c', script], opts);
  }

  /** The tarstack CLI as the user. */
  cli(args: string[], timeoutMs?: number): Promise<RunResult> {
    return this.run([process.execPath, CLI_MAIN, ...args], { timeoutMs });
  }

  async ok(args: string[], timeoutMs?: number): Promise<RunResult> {
    const r = await this.cli(args, timeoutMs);
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
      await this.cli(['umount', m.mountPoint]).catch(() => undefined);
      if (strayMounts(m.mountPoint).length) forceUnmount(m.mountPoint);
    }
    for (const sig of ['SIGTERM', 'SIGKILL'] as const) {
      for (const pid of this.processes()) {
        try {
          process.kill(pid, sig);
        } catch {
          /* gone */
        }
      }
      for (let i = 0; i < 20 && this.processes().length; i++) await new Promise((r) => setTimeout(r, 100));
    }
    const left = strayMounts(this.root);
    if (left.length) throw new Error(`left mounted: ${left.map((m) => m.mountPoint).join(', ')}`); // never rm -rf through a mount
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}
