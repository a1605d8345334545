// Test mounts served by a child process (instance-child.ts), so a test can count by opcode what
// reaches the daemon: serveInstance starts one for given paths (a writable instance, or with upper
// and work '-' the tar as a read-only image); servedIn makes fresh instances of a small layer (d/,
// d/lower, a 3 MiB d/big). Each is unmounted and ended in the test's teardown, whatever happened.
import type { ExecutionContext } from 'ava';
import { fork, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { OP } from '../../src/fuse/lowlevel.js';
import type { MountStats } from '../../src/fuse/native-backend.js';
import { forceUnmount, mountAt } from './mounted.js';
import type { UserIds } from './ordinary-user.js';
import { pack, type PackEntry } from './pack.js';

const CHILD = fileURLToPath(new URL('./instance-child.js', import.meta.url));
const MiB = 1 << 20;

/** Resolves once the child serves; the function asks it for its MountStats. */
export async function serveInstance(t: ExecutionContext, args: [mnt: string, tar: string, upper: string, work: string], env: Record<string, string> = {}, user?: UserIds): Promise<() => Promise<MountStats>> {
  const mnt = args[0];
  const child: ChildProcess = fork(CHILD, args, {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, ...env },
    ...(user ? { uid: user.uid, gid: user.gid } : {}),
  });
  const messages: Array<{ type: string } & MountStats> = [];
  let wake: (() => void) | null = null;
  child.on('message', (m: { type: string } & MountStats) => (messages.push(m), wake?.()));
  child.on('exit', () => wake?.());
  const next = async (type: string): Promise<MountStats> => {
    for (;;) {
      const i = messages.findIndex((m) => m.type === type);
      if (i >= 0) return messages.splice(i, 1)[0]!;
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`instance child exited before '${type}'`);
      await new Promise<void>((r) => (wake = r));
    }
  };
  t.teardown(async () => {
    if (mountAt(mnt)) spawnSync('fusermount3', ['-u', '-z', mnt], { stdio: 'ignore' });
    if (child.exitCode === null && child.signalCode === null) await next('ended').catch(() => undefined);
    if (mountAt(mnt)) forceUnmount(mnt);
    if (child.exitCode === null && child.signalCode === null) child.kill();
  });
  await next('ready');
  return () => (child.send({ type: 'stats' }), next('stats'));
}

export interface Served {
  mnt: string;
  upper: string;
  tar: string;
  stats(): Promise<MountStats>;
}

/** serve(t, user?, env?) mounts a fresh instance under root (m1, m2, ...), its layer holding `extra`
 *  too; teardown unmounts it. */
export function servedIn(root: string, extra: PackEntry[] = []): (t: ExecutionContext, user?: UserIds, env?: Record<string, string>) => Promise<Served> {
  let seq = 0;
  return async (t, user, env = {}) => {
    const dir = path.join(root, `m${++seq}`);
    const [mnt, upper, work] = ['mnt', 'upper', 'work'].map((d) => path.join(dir, d)) as [string, string, string];
    for (const d of [dir, mnt, upper, work]) fs.mkdirSync(d, { recursive: true });
    const tar = path.join(dir, 'lower.tar');
    fs.writeFileSync(tar, await pack([
      { name: 'd/', type: 'directory', mode: 0o777 },
      { name: 'd/lower', body: 'from the layer\n', mode: 0o666 },
      { name: 'd/big', body: Buffer.alloc(3 * MiB, 5), mode: 0o666 },
      ...extra,
    ]));
    if (user) for (const p of [dir, mnt, upper, work, tar]) fs.chownSync(p, user.uid, user.gid);
    const stats = await serveInstance(t, [mnt, tar, upper, work], env, user);
    return { mnt, upper, tar, stats };
  };
}

/** Drops the mount's page cache of a file (posix_fadvise DONTNEED, through dd): its next reads are READs again. */
export function dropCache(file: string): void {
  const r = spawnSync('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);
  if (r.status !== 0) throw new Error(`dd nocache: ${r.stderr.toString()}`);
}

/** Requests of the named opcodes between two stats. */
export function delta(a: MountStats, b: MountStats): Record<keyof typeof OP, number> {
  const out = {} as Record<keyof typeof OP, number>;
  for (const [k, v] of Object.entries(OP)) out[k as keyof typeof OP] = (b.ops[v] ?? 0) - (a.ops[v] ?? 0);
  return out;
}

/** How serveImageOf compresses the tar: one zstd frame, 4 MiB zstd frames, 3 MiB gzip members. */
const COMPRESS = {
  zstd: ['.zst', 'zstd -q -3 -c "$1"'],
  'zstd-frames': ['.zst', 'split -b 4M --filter="zstd -q -3 -c" "$1"'],
  'gzip-members': ['.gz', 'split -b 3M --filter="gzip -c" "$1"'],
} as const;

/** An image of `entries` in dir/image.tar (or compressed: dir/image.tar.zst / .gz) served read-only at dir/mnt. */
export function serveImageOf(t: ExecutionContext, dir: string, entries: PackEntry[], env: Record<string, string> = {}, compress?: keyof typeof COMPRESS): Promise<{ mnt: string; tar: string; stats(): Promise<MountStats> }> {
  return serveLayerOf(t, dir, entries, env, compress, false);
}

/** The same as a writable instance (upper dir/upper, work dir/work). */
export function serveInstanceOf(t: ExecutionContext, dir: string, entries: PackEntry[], env: Record<string, string> = {}, compress?: keyof typeof COMPRESS): Promise<{ mnt: string; tar: string; stats(): Promise<MountStats> }> {
  return serveLayerOf(t, dir, entries, env, compress, true);
}

async function serveLayerOf(t: ExecutionContext, dir: string, entries: PackEntry[], env: Record<string, string>, compress: keyof typeof COMPRESS | undefined, writable: boolean): Promise<{ mnt: string; tar: string; stats(): Promise<MountStats> }> {
  const [mnt, upper, work] = ['mnt', 'upper', 'work'].map((d) => path.join(dir, d)) as [string, string, string];
  for (const d of writable ? [mnt, upper, work] : [mnt]) fs.mkdirSync(d, { recursive: true });
  let tar = path.join(dir, 'image.tar');
  fs.writeFileSync(tar, await pack(entries));
  if (compress) {
    const [ext, cmd] = COMPRESS[compress];
    const z = spawnSync('sh', ['-c', `${cmd} > "$1${ext}"`, 'sh', tar]);
    if (z.status !== 0) throw new Error(`${compress}: ${z.stderr.toString()}`);
    tar += ext;
  }
  return { mnt, tar, stats: await serveInstance(t, [mnt, tar, writable ? upper : '-', writable ? work : '-'], env) };
}
