// Building images by editing (stacko, wafers): `image new` makes an image open for editing (its
// layer a placeholder root), `image edit` mounts a writable instance of it, `image close` freezes
// that instance's changes into the image's layer and makes it immutable; `commit` freezes any
// instance into a new image on top of its own; `stack`/`unstack` do new+edit at a stacks directory
// ($TARSTACK_STACKS) and unmount again, keeping the changes for the next `stack`.
import { existsSync, mkdirSync, readdirSync, rmdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Context } from '../context.js';
import { formatBytes, printJson } from '../output.js';
import { checkMountpoint, mountTarget, unmountOne, type MountFlags } from './mount.js';
import { wantsNonempty } from './mount-flags.js';
import { stageLayer } from '../../store/image-layers.js';
import { holdInstance } from '../../store/holding.js';
import { freezeInstance, upperPreparer, writeRootLayer } from '../../store/instance-views.js';
import { layerCounts, type ImageRecord } from '../../store/images.js';
import { countsText } from './image.js';
import type { InstanceRecord } from '../../store/instances.js';
import { checkName } from '../../store/paths.js';
import { META_VERSION } from '../../store/meta.js';
import { loadSys, RENAME_EXCHANGE } from '../../native/sys.js';
import { UserError } from '../../util/errors.js';
import type { FreezeResult } from '../../image/freeze.js';

/** The instance that holds an open image's tree while it is edited (any instance of it: no other may exist). */
export function editInstance(ctx: Context, image: ImageRecord): InstanceRecord | undefined {
  return ctx.instances.list().find((i) => i.image === image.id);
}

export async function imageNew(ctx: Context, a: { image: string; parent?: string }): Promise<ImageRecord> {
  checkName('image', a.image);
  ctx.images.checkFree(a.image);
  const parent = a.parent ? ctx.images.closed(a.parent, 'be a parent') : null;
  if (parent) ctx.images.stack(parent); // a broken chain is refused before anything is made
  const { staged, layer } = await stageLayer(ctx, `the root of ${a.image}`, (tar) => writeRootLayer(ctx, parent, tar));
  const r = await ctx.locked(() => {
    if (parent && !ctx.images.list().some((x) => x.id === parent.id)) throw new UserError(`parent image "${parent.name}" was removed meanwhile`);
    return ctx.images.commit(staged, { name: a.image, parent: parent?.id ?? null, created: new Date().toISOString(), layer, editing: true });
  }).catch((err: unknown) => {
    ctx.images.discard(staged);
    throw err;
  });
  return r;
}

export async function imageNewCommand(ctx: Context, a: { image: string; parent?: string }): Promise<void> {
  const r = await imageNew(ctx, a);
  if (ctx.opts.json) return printJson({ name: r.name, id: r.id, parent: a.parent ?? null, editing: true });
  process.stdout.write(`created image ${r.name}${a.parent ? ` on ${a.parent}` : ''}, open for editing (\`tarstack image edit ${r.name}\`, then \`tarstack image close ${r.name}\`)\n`);
}

function openImage(ctx: Context, name: string): ImageRecord {
  const r = ctx.images.get(name);
  if (!r.editing) throw new UserError(`image "${r.name}" is closed (immutable); build on it with \`tarstack image new NEW --parent ${r.name}\``);
  return r;
}

/** Mount the open image's edit instance writable (made on first use); an existing mount is simply named again. */
async function editMount(ctx: Context, r: ImageRecord, dir: string | undefined, flags: MountFlags & { mkdir?: boolean }): Promise<string> {
  const inst = await ctx.locked(() => editInstance(ctx, r) ?? ctx.instances.create(uniqueName(ctx, `${r.name}@edit`), r.id, upperPreparer(ctx, r.id)));
  const live = ctx.mounts.list().find((m) => m.kind === 'instance' && m.target === inst.id);
  const want = dir ? resolve(dir) : undefined;
  if (live) {
    if (live.state === 'dead') throw new UserError(`image "${r.name}" was being edited at ${live.mountpoint} but its daemon died: run \`tarstack umount ${live.mountpoint}\` first`);
    if (want && want !== live.mountpoint) throw new UserError(`image "${r.name}" is already being edited at ${live.mountpoint}`);
    process.stdout.write(live.mountpoint + '\n');
    return live.mountpoint;
  }
  const at = want ?? ctx.instances.defaultMountpoint(inst);
  if (flags.mkdir) mkdirSync(at, { recursive: true });
  await mountTarget(ctx, 'instance', inst.id, checkMountpoint(ctx, at, wantsNonempty(flags)), flags);
  return at;
}

function uniqueName(ctx: Context, base: string): string {
  for (let n = 1; ; n++) {
    const name = n === 1 ? base : `${base}${n}`;
    if (!ctx.instances.find(name)) return checkName('instance', name);
  }
}

export async function imageEdit(ctx: Context, a: { image: string; dir?: string } & MountFlags): Promise<void> {
  const r = openImage(ctx, a.image);
  ctx.images.stack(r);
  await editMount(ctx, r, a.dir, a);
}

/** Unmount the edit instance if mounted (refused while busy), freeze it, and publish the layer in place of the placeholder. */
export async function imageClose(ctx: Context, a: { image: string }): Promise<void> {
  const r = openImage(ctx, a.image);
  const inst = editInstance(ctx, r);
  const live = inst && ctx.mounts.list().find((m) => m.kind === 'instance' && m.target === inst.id);
  if (live) await unmountOne(ctx, live.mountpoint, {});
  let stats: FreezeResult | undefined;
  const { staged, layer } = inst
    ? await holdInstance(ctx, inst, 'close the image of', () => stageLayer(ctx, r.name, async (tar) => void (stats = await freezeInstance(ctx, inst, tar)), r.id))
    : await stageLayer(ctx, r.name, (tar) => writeRootLayer(ctx, r.parent ? ctx.images.byId(r.parent) : null, tar), r.id);
  await ctx.locked(() => {
    const now = ctx.images.list().find((x) => x.id === r.id);
    if (!now?.editing) throw new UserError(`image "${r.name}" was closed or removed meanwhile`);
    const closed: ImageRecord = { ...now, version: META_VERSION, layer };
    delete closed.editing;
    const sys = loadSys();
    const bytes = (p: string): string => Buffer.from(p).toString('latin1');
    ctx.images.replace(staged, closed, (x, y) => sys.rename2(bytes(x), bytes(y), RENAME_EXCHANGE));
    if (inst) ctx.instances.remove(inst);
  }).catch((err: unknown) => {
    ctx.images.discard(staged);
    throw err;
  });
  if (ctx.opts.json) return printJson({ name: r.name, ...layerCounts(layer), bytes: stats?.bytes ?? 0, skipped: stats?.skipped ?? [] });
  process.stdout.write(`closed image ${r.name}: ${describe(layer, stats)}\n`);
}

/** What a frozen layer holds, counted as `image info` counts it (from the layer's index), and its file data. */
const describe = (layer: ImageRecord['layer'], s: FreezeResult | undefined): string =>
  s ? `${countsText(layer)}, ${formatBytes(s.bytes)} of file data${s.skipped.length ? ` (${s.skipped.length} sockets left out)` : ''}` : 'no changes';

export async function commit(ctx: Context, a: { instance: string; image: string }): Promise<void> {
  const inst = ctx.instances.get(a.instance);
  const base = ctx.images.byId(inst.image);
  if (base.editing) throw new UserError(`instance "${inst.name}" holds the edits of image "${base.name}": close it with \`tarstack image close ${base.name}\``);
  checkName('image', a.image);
  ctx.images.checkFree(a.image);
  let stats: FreezeResult | undefined;
  const { staged, layer } = await holdInstance(ctx, inst, 'commit', () => stageLayer(ctx, a.image, async (tar) => void (stats = await freezeInstance(ctx, inst, tar))));
  const r = await ctx.locked(() => {
    if (!ctx.images.list().some((x) => x.id === base.id)) throw new UserError(`image "${base.name}" was removed meanwhile`);
    return ctx.images.commit(staged, { name: a.image, parent: base.id, created: new Date().toISOString(), layer });
  }).catch((err: unknown) => {
    ctx.images.discard(staged);
    throw err;
  });
  if (ctx.opts.json) return printJson({ name: r.name, id: r.id, parent: base.name, ...layerCounts(layer), bytes: stats!.bytes });
  process.stdout.write(`committed instance ${inst.name} as image ${r.name} on ${base.name}: ${describe(layer, stats)}\n`);
}

/** $TARSTACK_STACKS, else stacks/ in the store (wafers' $STACKS). */
export function stacksDir(ctx: Context): string {
  return resolve(process.env.TARSTACK_STACKS || join(ctx.paths.root, 'stacks'));
}

export async function stack(ctx: Context, a: { name: string; parent?: string } & MountFlags): Promise<void> {
  const existing = ctx.images.find(a.name);
  if (!existing && !a.parent) throw new UserError(`no image named "${a.name}": name a parent to make it (\`tarstack stack ${a.name} PARENT\`)`);
  if (existing && a.parent) {
    const parent = existing.parent ? ctx.images.byId(existing.parent).name : null;
    if (parent !== a.parent) throw new UserError(`image "${a.name}" already exists on ${parent ? `"${parent}"` : 'no parent'}, not "${a.parent}"`);
  }
  const r = existing ? openImage(ctx, a.name) : await imageNew(ctx, { image: a.name, parent: a.parent });
  // Says what this command did (made one image, or took the one there), then the stack it shows.
  const chain = ctx.images.stack(r).map((l) => l.name).join(' <- ');
  process.stdout.write(existing ? `editing image ${r.name} (stack: ${chain})\n` : `created image ${r.name} on ${a.parent}, open for editing (stack: ${chain})\n`);
  await editMount(ctx, r, join(stacksDir(ctx), a.name), { ...a, mkdir: true });
}

export async function unstack(ctx: Context, a: { names: string[]; lazy?: boolean }): Promise<void> {
  const failures: string[] = [];
  for (const name of a.names) {
    try {
      const r = ctx.images.get(name);
      const inst = editInstance(ctx, r);
      const live = inst && ctx.mounts.list().find((m) => m.kind === 'instance' && m.target === inst.id);
      if (!live) throw new UserError(`"${name}" is not stacked`);
      await unmountOne(ctx, live.mountpoint, { lazy: a.lazy });
      const dir = join(stacksDir(ctx), name);
      if (live.mountpoint === dir && !a.lazy && existsSync(dir) && readdirSync(dir).length === 0) rmdirSync(dir);
    } catch (err) {
      if (!(err instanceof UserError) || a.names.length === 1) throw err;
      failures.push(err.message);
    }
  }
  if (failures.length) throw new UserError(failures.join('; '));
}
