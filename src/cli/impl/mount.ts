// Mounting and unmounting: `image mount`, `umount`, `status`. A mount point is checked before the
// store's server is asked to mount (one request; the server is started on first use); a busy mount
// is never pulled from under its users (they are named, or --lazy detaches); a mount whose server
// was killed is reported dead, cleared by `umount`, and brought back by `mount --all`.
import { execFile } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import type { Context } from '../context.js';
import { printJson, printTable } from '../output.js';
import type { BackendName, DaemonArgs } from '../../daemon/protocol.js';
import { checkMountpoint, daemonArgs, imageMountArgs, instanceMountArgs, type MountFlags } from '../../store/mounting.js';
import { askServer } from '../../server/client.js';
import { mountAt, type MountInfo } from '../../util/mounts.js';
import { holdersOf, pidAlive } from '../../util/proc.js';
import { UserError } from '../../util/errors.js';
import type { MountRecord } from '../../store/mounts.js';
import type { ImageRecord, RemoteLayerRecord } from '../../store/images.js';

const run = promisify(execFile);

export type { MountFlags };

export async function imageMount(ctx: Context, a: { image: string; dir: string } & MountFlags): Promise<void> {
  await mountWith(ctx, await imageMountArgs(ctx, a), a);
}

export async function instanceMount(ctx: Context, a: { instance?: string; dir?: string; all?: boolean } & MountFlags): Promise<void> {
  if (a.all) return mountAll(ctx, a);
  if (!a.instance) throw new UserError('mount needs an instance name (or --all)');
  await mountWith(ctx, await instanceMountArgs(ctx, { ...a, instance: a.instance }), a);
}

/**
 * `mount --all`: every dead mount (its server was killed) made again where and as it was, then every
 * instance not mounted at its default mount point. One failure does not stop the others.
 */
async function mountAll(ctx: Context, a: MountFlags): Promise<void> {
  const failed: string[] = [];
  for (const rec of ctx.mounts.list().filter((m) => m.state === 'dead')) {
    try {
      await clearDead(rec);
      ctx.mounts.drop(rec.id);
      const o = rec.options;
      // As it was made: its flags say suid/nosuid and dev/nodev explicitly (older records: the defaults).
      const flags: MountFlags = { backend: (o?.backend ?? rec.backend) as BackendName, allowOther: o?.allowOther, owners: o?.owners, tmp: o?.tmp, ...(o?.flags ? { o: o.flags } : {}) };
      await mountTarget(ctx, rec.kind, rec.target, await checkMountpoint(ctx, rec.mountpoint, true), flags);
    } catch (err) {
      failed.push(`${rec.mountpoint} (${rec.name}): ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  const mounted = new Set(ctx.mounts.list().map((m) => m.target));
  for (const r of ctx.instances.list()) {
    if (mounted.has(r.id)) continue;
    try {
      await mountTarget(ctx, 'instance', r.id, await checkMountpoint(ctx, ctx.instances.defaultMountpoint(r), false), a);
    } catch (err) {
      failed.push(`${r.name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  if (failed.length) throw new UserError(`could not mount ${failed.join('; ')}`);
}

/** A dead mount point is unmounted; its users (who get ENOTCONN there) cannot keep it, so it is detached if busy. */
async function clearDead(rec: MountRecord): Promise<void> {
  if (!mountAt(rec.mountpoint)) return;
  try {
    await run('fusermount', ['-u', rec.mountpoint]);
  } catch {
    await run('fusermount', ['-u', '-z', rec.mountpoint]);
  }
}

export async function mountTarget(ctx: Context, kind: DaemonArgs['kind'], target: string, mountpoint: string, a: MountFlags): Promise<void> {
  await mountWith(ctx, daemonArgs(ctx, kind, target, mountpoint, a), a);
}

/** Serve `args`: in this process (--foreground), else by the store's server (started if need be). */
async function mountWith(ctx: Context, args: DaemonArgs, a: MountFlags): Promise<void> {
  const { mountpoint } = args;
  if (a.foreground) {
    const { serve } = await import('../../daemon/serve.js');
    await serve(args, () => process.stdout.write(mountpoint + '\n'));
    process.exit(0); // a FUSE binding may keep handles alive after its session ended
  }
  await askServer(ctx.paths, { op: 'mount', args }, {
    start: true,
    beforeRetry: () => {
      if (mountAt(mountpoint)) throw new UserError(`the tarstack server ended while mounting at ${mountpoint}: see \`tarstack status\``);
    },
  });
  process.stdout.write(mountpoint + '\n');
}

export async function umount(ctx: Context, a: { target?: string; lazy?: boolean; force?: boolean; all?: boolean }): Promise<void> {
  if (a.all) {
    for (const rec of ctx.mounts.list()) await unmountOne(ctx, rec.mountpoint, a);
    return;
  }
  if (!a.target) throw new UserError('umount needs an instance name or a mount point (or --all)');
  // A path when it has a '/' or names an existing directory; else an instance name.
  if (a.target.includes('/') || existsSync(a.target)) return unmountOne(ctx, resolve(a.target), a);
  const r = ctx.instances.get(a.target);
  const live = ctx.mounts.list().find((m) => m.kind === 'instance' && m.target === r.id);
  if (!live) throw new UserError(`instance "${r.name}" is not mounted`);
  await unmountOne(ctx, live.mountpoint, a);
}

export async function unmountOne(ctx: Context, mountpoint: string, a: { lazy?: boolean; force?: boolean }): Promise<void> {
  const rec = ctx.mounts.at(mountpoint);
  const m = mountAt(mountpoint);
  if (!m && !rec) throw new UserError(`${mountpoint} is not mounted`);
  if (m && !rec && m.fstype !== 'fuse.tarstack') throw new UserError(`${mountpoint} is not a tarstack mount (${m.fstype})`);
  if (m) {
    if (a.force) abortConnection(m);
    try {
      await run('fusermount', ['-u', ...(a.lazy || a.force ? ['-z'] : []), mountpoint]);
    } catch (err) {
      const msg = String((err as { stderr?: string }).stderr ?? err);
      if (/busy/i.test(msg)) {
        const holders = holdersOf(mountpoint, rec ? [rec.pid, process.pid] : [process.pid]);
        const who = holders.length ? holders.map((h) => `pid ${h.pid} (${h.command})`).join(', ') : 'unknown processes';
        throw new UserError(`${mountpoint} is busy: in use by ${who}; end them or use --lazy`);
      }
      throw new UserError(`cannot unmount ${mountpoint}: ${msg.trim().split('\n').pop()}`);
    }
  }
  if (rec && m && a.lazy && !a.force) {
    // Detached: its server serves the users still inside until the kernel ends the session; a new
    // mount may take the mount point meanwhile.
    if (!rec.server) ctx.mounts.markDetached(rec.id);
    else if (ctx.mounts.serverAlive(rec)) await askServer(ctx.paths, { op: 'detach', id: rec.id }, { start: false });
    process.stdout.write(`detached ${mountpoint} (released when its last user leaves)\n`);
    return;
  }
  if (rec) {
    await letGo(ctx, rec);
    ctx.mounts.drop(rec.id);
  }
  process.stdout.write(`unmounted ${mountpoint}\n`);
}

/**
 * The mount is gone: wait until whoever served it has let go (lock, --tmp upper, record), so the
 * instance can be used again as soon as `umount` returns. The server is asked; a `--foreground`
 * mount's own process is told by SIGTERM (it would notice by itself, but later) and waited for.
 */
async function letGo(ctx: Context, rec: MountRecord): Promise<void> {
  if (!ctx.mounts.serverAlive(rec)) return;
  if (rec.server) {
    try {
      await askServer(ctx.paths, { op: 'release', id: rec.id }, { start: false }); // a busy machine may take long: the usual limit
    } catch (err) {
      throw new UserError(`${rec.mountpoint} is unmounted, but its server did not let go of it: ${(err as Error).message}`);
    }
    return;
  }
  await waitForExit(rec);
}

/** Abort a hung FUSE connection (fusectl), so the unmount cannot block on the daemon. */
function abortConnection(m: MountInfo): void {
  const minor = m.majorMinor.split(':')[1];
  const dir = '/sys/fs/fuse/connections';
  if (!existsSync(`${dir}/${minor}`)) return;
  try {
    writeFileSync(`${dir}/${minor}/abort`, '1');
  } catch {
    /* not ours to abort (another user's mount) or already gone */
  }
}

/** A `--foreground` mount's process: SIGTERM, then make sure it ends. */
async function waitForExit(rec: MountRecord): Promise<void> {
  const until = async (ms: number): Promise<boolean> => {
    const deadline = Date.now() + ms;
    while (pidAlive(rec.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    return !pidAlive(rec.pid);
  };
  if (!pidAlive(rec.pid)) return;
  process.kill(rec.pid, 'SIGTERM');
  if (!(await until(10_000))) {
    process.kill(rec.pid, 'SIGKILL');
    await until(2_000);
  }
}

export async function status(ctx: Context, a: { instance?: string } = {}): Promise<void> {
  const only = a.instance ? ctx.instances.get(a.instance).id : undefined;
  const all = ctx.mounts.list().filter((m) => only === undefined || m.target === only);
  if (only !== undefined && !ctx.opts.json && all.length === 0) {
    process.stdout.write(`${a.instance}: not mounted\n`);
    return;
  }
  const remote = await remoteReach(ctx, all);
  if (ctx.opts.json) return printJson(all.map((m) => ({ mountpoint: m.mountpoint, kind: m.kind, name: m.name, pid: m.pid, state: m.state, detached: !!m.detached, backend: m.backend, features: m.features ?? [], started: m.started, log: m.log, ...(remote.has(m.id) ? { remote: remote.get(m.id) } : {}) })));
  if (all.length === 0) {
    process.stdout.write('nothing mounted\n');
    return;
  }
  printTable(
    ['MOUNTPOINT', 'KIND', 'NAME', 'PID', 'STATE'],
    all.map((m) => [m.mountpoint, m.kind, m.name, String(m.pid), m.detached ? 'detached (until its last user leaves)' : m.state === 'dead' ? 'dead (server gone: `tarstack umount` clears it, `tarstack mount --all` mounts it again)' : m.state]),
  );
  for (const m of all.filter((r) => r.features?.length)) process.stdout.write(`${m.mountpoint}: kernel FUSE features: ${m.features!.join(', ')}\n`);
  // Why a server died is in its log: named for each dead mount (logs of dead mounts are kept).
  for (const m of all.filter((r) => r.state === 'dead')) process.stdout.write(`${m.mountpoint}: its server's log: ${m.log}\n`);
  for (const m of all) {
    for (const r of remote.get(m.id) ?? []) {
      if (!r.reachable) process.stdout.write(`${m.mountpoint}: its layers' registry ${r.host} is unreachable (${r.error}): what is not in the chunk cache reads as EIO until it answers\n`);
    }
  }
}

/** How long status waits for a remote layer's server to answer. */
const REACH_MS = 3000;

/**
 * For each mount of an image stack with remote layers: is each server (registry or URL host) of its
 * layers answering? One request per server (a HEAD of a layer's blob; any HTTP answer counts), all
 * at once, each bounded.
 */
async function remoteReach(ctx: Context, mounts: MountRecord[]): Promise<Map<string, Array<{ host: string; reachable: boolean; error?: string }>>> {
  const hostsOf = new Map<string, Map<string, RemoteLayerRecord>>();
  for (const m of mounts) {
    let top: ImageRecord | undefined;
    try {
      top = ctx.images.byId(m.kind === 'image' ? m.target : ctx.instances.byId(m.target).image);
    } catch {
      continue; // removed meanwhile: nothing to say about its layers
    }
    const hosts = new Map<string, RemoteLayerRecord>();
    for (const r of ctx.images.stack(top)) if (r.layer.remote) hosts.set(new URL(r.layer.remote.url).host, r.layer.remote);
    if (hosts.size) hostsOf.set(m.id, hosts);
  }
  const out = new Map<string, Array<{ host: string; reachable: boolean; error?: string }>>();
  if (hostsOf.size === 0) return out;
  const [{ remoteOf }, { request }] = await Promise.all([import('../../remote/open-remote.js'), import('../../remote/http.js')]);
  const probes = new Map<string, Promise<{ reachable: boolean; error?: string }>>();
  for (const hosts of hostsOf.values()) {
    for (const [host, rec] of hosts) {
      if (probes.has(host)) continue;
      const remote = remoteOf(rec);
      const probe = Promise.race([
        request(rec.url, { method: 'HEAD', headers: remote.headers(), tlsVerify: rec.tlsVerify, redirects: 0 }).then(() => ({ reachable: true })),
        new Promise<never>((_, reject) => {
          setTimeout(() => reject(new Error(`no answer in ${REACH_MS / 1000} s`)), REACH_MS).unref();
        }),
      ]).catch((err: unknown) => ({ reachable: false as boolean, error: String((err as Error).message ?? err).replace(`${host}: `, '') }));
      probes.set(host, probe);
    }
  }
  for (const [id, hosts] of hostsOf) out.set(id, await Promise.all([...hosts.keys()].map(async (host) => ({ host, ...(await probes.get(host)!) }))));
  return out;
}
