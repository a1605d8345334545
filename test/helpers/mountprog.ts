// Running tarstack-overlay from tests: the program as a child (resolved on its exit, never on pipes a
// daemon might hold), the daemons it left (found by their command line, only under a test's root),
// and a teardown that unmounts and ends whatever a test left under its root.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import { forceUnmount, makeTestRoot, strayMounts, type CliResult } from './mount.js';
import { exec } from './exec.js';

export const MOUNTPROG_MAIN = fileURLToPath(new URL('../../src/mountprog/main.js', import.meta.url));

export function runMountProg(args: string[], timeoutMs = 60_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MOUNTPROG_MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let open = 2;
    const closed = () => void --open;
    child.stdout.on('data', (b: Buffer) => out.push(b)).once('close', closed);
    child.stderr.on('data', (b: Buffer) => err.push(b)).once('close', closed);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      setTimeout(() => {
        const pipesHeld = open > 0;
        child.stdout.destroy();
        child.stderr.destroy();
        resolve({ code: code ?? 128 + (signal ? 9 : 0), stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), pipesHeld });
      }, 100);
    });
  });
}

/** Pids of tarstack-overlay daemons serving a mount point at or below `root`. */
export function overlayDaemons(root: string): number[] {
  const pids: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      const at = argv.indexOf('--serve-detached');
      if (at < 0 || !argv[at - 1]?.endsWith('mountprog/main.js')) continue;
      const req = JSON.parse(argv[at + 1] ?? '{}') as { mountpoint?: string };
      if (req.mountpoint === root || req.mountpoint?.startsWith(root + '/')) pids.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

export async function waitGone(pids: number[], ms = 10_000): Promise<boolean> {
  const alive = (p: number) => fs.existsSync(`/proc/${p}`) && !/\) Z /.test(fs.readFileSync(`/proc/${p}/stat`, 'latin1'));
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (!pids.some((p) => { try { return alive(p); } catch { return false; } })) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

/** A temp root for one test; teardown unmounts everything below it, ends its daemons, removes it. */
export function mountProgRoot(t: ExecutionContext, label: string): string {
  const root = makeTestRoot(label);
  t.teardown(async () => {
    for (const m of strayMounts(root).reverse()) {
      if (exec(['umount', m.mountPoint]).code !== 0) forceUnmount(m.mountPoint);
    }
    const left = overlayDaemons(root);
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        /* gone */
      }
    }
    if (!(await waitGone(left, 3000))) for (const pid of left) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    if (strayMounts(root).length === 0) fs.rmSync(root, { recursive: true, force: true });
  });
  return root;
}

export function mkdirs(root: string, ...names: string[]): string[] {
  return names.map((n) => {
    const p = path.join(root, n);
    fs.mkdirSync(p, { recursive: true });
    return p;
  });
}

/** Every xattr name under a tree (getfattr -R), for checking that an upper holds nothing private. */
export function xattrNamesUnder(dir: string): string[] {
  const r = exec(['getfattr', '-R', '-h', '-m', '-', '--absolute-names', dir]);
  return r.stdout.toString('latin1').split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split('=')[0]!);
}
