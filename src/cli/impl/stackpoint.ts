// `tarstack stackpoint …` (stacko): a named mount path that always shows one instance. cutover
// moves it to an instance of another image (made once, then reused), fallback back to the previous
// instance, set to any instance; each unmounts, mounts the other, and only then records the switch,
// so a failure leaves the stackpoint on its old instance, mounted as before. A busy mount is never
// switched (its users are named) unless --lazy: then it is detached and released when they leave.
// Commands that change a stackpoint hold its lock, so a second one at the same time is refused.
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Context } from '../context.js';
import { printJson, printTable } from '../output.js';
import { checkMountpoint, mountTarget, unmountOne, type MountFlags } from './mount.js';
import { wantsNonempty } from './mount-flags.js';
import { upperPreparer } from '../../store/instance-views.js';
import type { StackpointRecord } from '../../store/stackpoints.js';
import type { InstanceRecord } from '../../store/instances.js';
import { checkName } from '../../store/paths.js';
import { openStack } from '../../store/open-image.js';
import { holdStackpoint, tryHoldInstance } from '../../store/holding.js';
import { UserError } from '../../util/errors.js';

type Sw = { sp: string; lazy?: boolean } & MountFlags;

/** The mount of the stackpoint's current instance at its path, if any. */
function liveMount(ctx: Context, r: StackpointRecord) {
  const at = ctx.stackpoints.mountpoint(r);
  return ctx.mounts.list().find((m) => m.kind === 'instance' && m.target === r.current && m.mountpoint === at && !m.detached);
}

function instanceName(ctx: Context, sp: string, image: string): string {
  const base = `${sp}.${image}`.slice(0, 120);
  for (let n = 1; ; n++) {
    const name = n === 1 ? base : `${base}.${n}`;
    if (!ctx.instances.find(name)) return checkName('instance', name);
  }
}

export async function spCreate(ctx: Context, a: { sp: string; image: string; path?: string }): Promise<void> {
  checkName('stackpoint', a.sp);
  const path = a.path ? resolve(a.path) : null;
  const r = await ctx.locked(() => {
    if (ctx.stackpoints.find(a.sp)) throw new UserError(`a stackpoint named "${a.sp}" already exists`);
    const clash = path && ctx.stackpoints.list().find((x) => ctx.stackpoints.mountpoint(x) === path);
    if (clash) throw new UserError(`${path} is already the path of stackpoint "${clash.name}"`);
    const image = ctx.images.closed(a.image, 'be instantiated');
    ctx.images.stack(image);
    const inst = ctx.instances.create(instanceName(ctx, a.sp, image.name), image.id, upperPreparer(ctx, image.id));
    try {
      return ctx.stackpoints.create(a.sp, path, inst.id);
    } catch (err) {
      ctx.instances.remove(inst);
      throw err;
    }
  });
  if (ctx.opts.json) return printJson(describe(ctx, r));
  process.stdout.write(`created stackpoint ${r.name} at ${ctx.stackpoints.mountpoint(r)} with instance ${ctx.instances.byId(r.current).name} of image ${a.image}\n`);
}

export async function spMount(ctx: Context, a: Sw): Promise<void> {
  await holdStackpoint(ctx, a.sp, async (r) => {
    const at = ctx.stackpoints.mountpoint(r);
    const live = liveMount(ctx, r);
    if (live?.state === 'serving') {
      process.stdout.write(at + '\n');
      return;
    }
    const inst = ctx.instances.byId(r.current);
    const elsewhere = ctx.mounts.list().find((m) => m.kind === 'instance' && m.target === inst.id);
    if (elsewhere) throw new UserError(`instance "${inst.name}" of stackpoint "${r.name}" is mounted at ${elsewhere.mountpoint}${elsewhere.state === 'dead' ? ' (its daemon died)' : ''}; \`tarstack umount ${elsewhere.mountpoint}\` first`);
    mkdirSync(at, { recursive: true });
    await mountTarget(ctx, 'instance', inst.id, checkMountpoint(ctx, at, wantsNonempty(a)), a);
  });
}

export async function spUmount(ctx: Context, a: Sw): Promise<void> {
  await holdStackpoint(ctx, a.sp, async (r) => {
    const live = liveMount(ctx, r);
    if (!live) throw new UserError(`stackpoint "${r.name}" is not mounted`);
    await unmountOne(ctx, live.mountpoint, { lazy: a.lazy });
  });
}

export async function spCutover(ctx: Context, a: Sw & { image: string }): Promise<void> {
  await holdStackpoint(ctx, a.sp, async (r) => {
    const image = ctx.images.closed(a.image, 'be instantiated');
    ctx.images.stack(image);
    const current = ctx.instances.byId(r.current);
    if (current.image === image.id) throw new UserError(`stackpoint "${r.name}" is already on image "${image.name}" (instance "${current.name}")`);
    const known = new Set(ctx.instances.list().map((i) => i.id));
    const reuse = [...r.instances].reverse().find((id) => known.has(id) && ctx.instances.byId(id).image === image.id);
    const target = reuse
      ? ctx.instances.byId(reuse)
      : await ctx.locked(() => ctx.instances.create(instanceName(ctx, r.name, image.name), image.id, upperPreparer(ctx, image.id)));
    try {
      await switchTo(ctx, r, target, a, 'cutover');
    } catch (err) {
      if (!reuse) await ctx.locked(() => ctx.instances.remove(target)); // made for this cutover: nothing refers to it
      throw err;
    }
  });
}

export async function spFallback(ctx: Context, a: Sw): Promise<void> {
  await holdStackpoint(ctx, a.sp, async (r) => {
    if (!r.previous) throw new UserError(`stackpoint "${r.name}" has no previous instance to fall back to`);
    const prev = ctx.instances.list().find((i) => i.id === r.previous);
    if (!prev) throw new UserError(`the previous instance of stackpoint "${r.name}" (id ${r.previous}) was removed`);
    await switchTo(ctx, r, prev, a, 'fallback');
  });
}

export async function spSet(ctx: Context, a: Sw & { instance: string }): Promise<void> {
  await holdStackpoint(ctx, a.sp, async (r) => {
    const inst = ctx.instances.get(a.instance);
    if (inst.id === r.current) throw new UserError(`stackpoint "${r.name}" is already on instance "${inst.name}"`);
    await switchTo(ctx, r, inst, a, 'set');
  });
}

/** The target must be mountable before the old mount is touched: not mounted anywhere, image sound. */
function preflight(ctx: Context, target: InstanceRecord): void {
  const image = ctx.images.byId(target.image);
  if (image.editing) throw new UserError(`instance "${target.name}" holds the edits of image "${image.name}", which is not closed`);
  const release = tryHoldInstance(ctx, target);
  if (!release) {
    const m = ctx.mounts.list().find((x) => x.kind === 'instance' && x.target === target.id);
    if (m?.detached) throw new UserError(`instance "${target.name}" still serves the users of its detached mount (daemon pid ${m.pid}); try again once they have left`);
    throw new UserError(`instance "${target.name}" is mounted${m ? ` at ${m.mountpoint}` : ''}; unmount it first`);
  }
  release();
  for (const layer of openStack(ctx.images, ctx.images.stack(image))) layer.close();
}

async function switchTo(ctx: Context, r: StackpointRecord, target: InstanceRecord, a: Sw, what: string): Promise<void> {
  const old = ctx.instances.byId(r.current);
  preflight(ctx, target);
  const live = liveMount(ctx, r);
  if (live?.state === 'dead') throw new UserError(`the mount of stackpoint "${r.name}" is dead (its daemon is gone): \`tarstack stackpoint umount ${r.name}\` first`);
  if (live) {
    await unmountOne(ctx, live.mountpoint, { lazy: a.lazy });
    try {
      await mountTarget(ctx, 'instance', target.id, checkMountpoint(ctx, live.mountpoint, false), a);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      if (a.lazy) throw new UserError(`${what} of stackpoint "${r.name}" failed: ${why}; it stays on instance "${old.name}", which still serves its users detached: mount it again with \`tarstack stackpoint mount ${r.name}\` once they have left`);
      try {
        await mountTarget(ctx, 'instance', old.id, checkMountpoint(ctx, live.mountpoint, false), a);
      } catch (err2) {
        throw new UserError(`${what} of stackpoint "${r.name}" failed: ${why}; and its instance "${old.name}" could not be mounted again: ${(err2 as Error).message}`);
      }
      throw new UserError(`${what} of stackpoint "${r.name}" failed: ${why}; it stays on instance "${old.name}", mounted at ${live.mountpoint}`);
    }
  }
  await ctx.locked(() => {
    const now = ctx.stackpoints.get(r.name);
    now.previous = now.current;
    now.current = target.id;
    now.instances = [...now.instances.filter((id) => id !== target.id), target.id];
    ctx.stackpoints.save(now);
  });
  if (!live) process.stdout.write(`stackpoint ${r.name} now uses instance ${target.name} (not mounted)\n`);
}

function describe(ctx: Context, r: StackpointRecord): Record<string, unknown> {
  const inst = (id: string | null) => {
    const i = id ? ctx.instances.list().find((x) => x.id === id) : undefined;
    return i ? { name: i.name, image: ctx.images.byId(i.image).name } : id ? { name: null, id, missing: true } : null;
  };
  const live = liveMount(ctx, r);
  return {
    name: r.name,
    path: ctx.stackpoints.mountpoint(r),
    current: inst(r.current),
    previous: inst(r.previous),
    instances: r.instances.map((id) => inst(id)),
    mounted: live ? { pid: live.pid, state: live.state } : null,
    created: r.created,
  };
}

export function spList(ctx: Context): void {
  const all = ctx.stackpoints.list();
  if (ctx.opts.json) return printJson(all.map((r) => describe(ctx, r)));
  if (all.length === 0) {
    process.stdout.write('no stackpoints (make one with `tarstack stackpoint create <stackpoint> <image>`)\n');
    return;
  }
  const show = (x: unknown): string => (x ? `${(x as { name: string }).name} (${(x as { image: string }).image})` : '-');
  printTable(
    ['NAME', 'PATH', 'INSTANCE', 'PREVIOUS', 'MOUNTED'],
    all.map((r) => {
      const d = describe(ctx, r);
      const m = d.mounted as { state: string } | null;
      return [r.name, String(d.path), show(d.current), show(d.previous), m ? m.state : '-'];
    }),
  );
}

export function spPath(ctx: Context, a: { sp: string }): void {
  process.stdout.write(ctx.stackpoints.mountpoint(ctx.stackpoints.get(a.sp)) + '\n');
}

export function spStatus(ctx: Context, a: { sp: string }): void {
  const r = ctx.stackpoints.get(a.sp);
  const d = describe(ctx, r);
  if (ctx.opts.json) return printJson(d);
  const cur = d.current as { name: string; image: string };
  const m = d.mounted as { pid: number; state: string } | null;
  const state = m ? (m.state === 'dead' ? `mounted but dead (daemon gone: \`tarstack stackpoint umount ${r.name}\`)` : `mounted (pid ${m.pid})`) : 'not mounted';
  process.stdout.write(`${r.name}: ${state} at ${d.path}, instance ${cur.name} of image ${cur.image}\n`);
}

export async function spRm(ctx: Context, a: { sp: string; instances?: boolean }): Promise<void> {
  await holdStackpoint(ctx, a.sp, async (r) => {
    if (liveMount(ctx, r)) throw new UserError(`stackpoint "${r.name}" is mounted at ${ctx.stackpoints.mountpoint(r)}; unmount it first`);
    const removed: string[] = [];
    await ctx.locked(() => {
      ctx.stackpoints.remove(r);
      if (!a.instances) return;
      for (const id of r.instances) {
        const inst = ctx.instances.list().find((i) => i.id === id);
        if (!inst || ctx.stackpoints.using(id).length) continue;
        const release = tryHoldInstance(ctx, inst);
        if (!release) continue; // mounted by hand somewhere: kept
        try {
          ctx.instances.remove(inst);
          removed.push(inst.name);
        } finally {
          release();
        }
      }
    });
    const kept = r.instances.filter((id) => ctx.instances.list().some((i) => i.id === id)).map((id) => ctx.instances.byId(id).name);
    process.stdout.write(`removed stackpoint ${r.name}${removed.length ? `, and instances ${removed.join(', ')}` : ''}${kept.length ? ` (instances kept: ${kept.join(', ')})` : ''}\n`);
  });
}
