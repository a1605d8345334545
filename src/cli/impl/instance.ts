// `tarstack instance …` (and tar-overlay's top-level aliases): create, list, info, rename, reset,
// rm, diff. Mounting is in mount.ts. Anything that touches an upper holds its instance lock, so it
// never races a mount.
import type { Context } from '../context.js';
import { formatBytes, printJson, printTable } from '../output.js';
import type { InstanceRecord } from '../../store/instances.js';
import type { Change } from '../../overlay/diff.js';
import { UserError } from '../../util/errors.js';
import { fromByteString, toByteString } from '../../util/latin1.js';
import { duBytes } from '../../util/du.js';

// Loaded by the verbs that use them: `list` and `info` are run often and need none (start-up time).
const views = (): Promise<typeof import('../../store/instance-views.js')> => import('../../store/instance-views.js');
const space = (): Promise<typeof import('../../overlay/space.js')> => import('../../overlay/space.js');

export async function instanceCreate(ctx: Context, a: { instance: string; image: string; tmp?: boolean; size?: string; dir?: string[] }): Promise<void> {
  // create-dirs (the instance's whole filesystem) only for --dir: a plain create is run by the dozen
  const [{ upperPreparer }, { parseSize }, dirs] = await Promise.all([views(), space(), a.dir?.length ? import('./create-dirs.js') : undefined]);
  const sizeLimit = a.size === undefined ? undefined : parseSize(a.size);
  if (a.size !== undefined && sizeLimit === undefined) throw new UserError(`--size ${JSON.stringify(a.size)}: give a size such as 512M, 1G or 1.5GiB`);
  const r = await ctx.locked(async () => {
    const image = ctx.images.closed(a.image, 'be instantiated');
    ctx.images.stack(image);
    const made = ctx.instances.create(a.instance, image.id, upperPreparer(ctx, image.id), { ...(a.tmp ? { tmp: true } : {}), ...(sizeLimit ? { sizeLimit } : {}) });
    if (a.dir?.length) {
      try {
        await dirs!.createDirs(ctx, made, a.dir);
      } catch (err) {
        ctx.instances.remove(made);
        throw err;
      }
    }
    return made;
  });
  if (ctx.opts.json) printJson(await describe(ctx, r));
  else process.stdout.write(`created instance ${r.name} of image ${a.image}${a.tmp ? ' (changes vanish at unmount)' : ''}${sizeLimit ? ` (at most ${formatBytes(sizeLimit)} of data)` : ''}\n`);
}

async function describe(ctx: Context, r: InstanceRecord): Promise<Record<string, unknown>> {
  const dataBytes = r.sizeLimit ? (await space()).dataBytes : undefined;
  const mount = ctx.mounts.list().find((m) => m.kind === 'instance' && m.target === r.id);
  return {
    name: r.name,
    id: r.id,
    image: ctx.images.byId(r.image).name,
    created: r.created,
    upper: ctx.instances.upper(r),
    upperBytes: duBytes(ctx.instances.upper(r)),
    tmp: !!r.tmp,
    sizeLimit: r.sizeLimit ?? null,
    dataBytes: dataBytes ? dataBytes([ctx.instances.upper(r), `${ctx.instances.work(r)}/index`]) : null,
    mounted: mount ? { mountpoint: mount.mountpoint, pid: mount.pid, state: mount.state, features: mount.features ?? [] } : null,
  };
}

export async function instanceList(ctx: Context): Promise<void> {
  const all = ctx.instances.list();
  if (ctx.opts.json) {
    const described = [];
    for (const r of all) described.push(await describe(ctx, r));
    return printJson(described);
  }
  if (all.length === 0) {
    process.stdout.write('no instances (make one with `tarstack create <instance> <image>`)\n');
    return;
  }
  const mounts = ctx.mounts.list();
  printTable(
    ['NAME', 'IMAGE', 'MOUNTED'],
    all.map((r) => {
      const m = mounts.find((x) => x.kind === 'instance' && x.target === r.id);
      return [r.name, ctx.images.byId(r.image).name, m ? `${m.mountpoint}${m.state === 'dead' ? ' (dead)' : ''}` : '-'];
    }),
  );
}

export async function instanceInfo(ctx: Context, a: { instance: string }): Promise<void> {
  const r = ctx.instances.get(a.instance);
  const d = await describe(ctx, r);
  if (ctx.opts.json) return printJson(d);
  const m = d.mounted as { mountpoint: string; pid: number; state: string } | null;
  printTable(
    ['FIELD', 'VALUE'],
    [
      ['name', r.name],
      ['id', r.id],
      ['image', String(d.image)],
      ['created', r.created],
      ['upper', `${d.upper} (${formatBytes(d.upperBytes as number)})`],
      ...(r.tmp ? [['tmp', 'yes: changes vanish at unmount']] : []),
      ...(r.sizeLimit ? [['size', `${formatBytes(d.dataBytes as number)} of ${formatBytes(r.sizeLimit)} used`]] : []),
      ['mounted', m ? `${m.mountpoint} (pid ${m.pid}, ${m.state})` : '-'],
    ],
  );
}

/** Run `fn` under the store lock, holding the instance's lock: refused while it is mounted. */
async function withInstance<T>(ctx: Context, name: string, what: string, fn: (r: InstanceRecord) => T): Promise<T> {
  const { holdInstance } = await import('../../store/holding.js');
  return ctx.locked(() => {
    const r = ctx.instances.get(name);
    return holdInstance(ctx, r, what, () => fn(r));
  });
}

export async function instanceReset(ctx: Context, a: { instance: string }): Promise<void> {
  const { upperPreparer } = await views();
  await withInstance(ctx, a.instance, 'reset', (r) => ctx.instances.reset(r, upperPreparer(ctx, r.image)));
  process.stdout.write(`reset instance ${a.instance} to its image\n`);
}

export async function instanceRm(ctx: Context, a: { instance: string }): Promise<void> {
  await withInstance(ctx, a.instance, 'remove', (r) => {
    const sp = ctx.stackpoints.list().find((x) => x.current === r.id || x.previous === r.id);
    if (sp) throw new UserError(`instance "${r.name}" is the ${sp.current === r.id ? 'current' : 'previous'} instance of stackpoint "${sp.name}"; switch it or remove the stackpoint first`);
    ctx.instances.remove(r);
  });
  process.stdout.write(`removed instance ${a.instance}\n`);
}

export async function instanceRename(ctx: Context, a: { instance: string; newName: string }): Promise<void> {
  await ctx.locked(() => ctx.instances.rename(ctx.instances.get(a.instance), a.newName));
  process.stdout.write(`renamed instance ${a.instance} to ${a.newName}\n`);
}

export async function instanceDiff(ctx: Context, a: { instance: string; porcelain?: boolean }): Promise<void> {
  const changes = await (await views()).diffInstance(ctx, ctx.instances.get(a.instance));
  // Paths are bytes: porcelain and tree output write them as they are; JSON can only carry UTF-8.
  if (ctx.opts.json) return printJson(changes.map((c) => ({ ...c, path: fromByteString(c.path) })));
  const text = a.porcelain ? changes.map((c) => `${c.change[0].toUpperCase()} ${c.path}\n`).join('') : renderTree(changes);
  process.stdout.write(Buffer.from(text, 'latin1'));
}

/** tree's glyphs as UTF-8 bytes in a byte string, like the paths they are drawn beside. */
const [MID, LAST, BAR] = ['├── ', '└── ', '│   '].map(toByteString);

/** The changes as `tree` draws a directory (byte strings in, byte string out), each entry marked [A], [M] or [D]. */
export function renderTree(changes: Change[]): string {
  interface T {
    kids: Map<string, T>;
    mark?: string;
    dir: boolean;
  }
  const root: T = { kids: new Map(), dir: true };
  for (const c of changes) {
    let t = root;
    const parts = c.path.split('/');
    parts.forEach((p, i) => {
      let k = t.kids.get(p);
      if (!k) t.kids.set(p, (k = { kids: new Map(), dir: true }));
      if (i === parts.length - 1) {
        k.mark = k.mark ? 'M' : c.change[0].toUpperCase(); // deleted and added again: a change of type
        k.dir = c.type === 'dir';
      }
      t = k;
    });
  }
  const lines = ['.'];
  let dirs = 0;
  let files = 0;
  const draw = (t: T, indent: string): void => {
    const names = [...t.kids.keys()].sort();
    names.forEach((name, i) => {
      const k = t.kids.get(name)!;
      const last = i === names.length - 1;
      if (k.dir) dirs++;
      else files++;
      lines.push(`${indent}${last ? LAST : MID}${k.mark ? `[${k.mark}] ` : ''}${name}`);
      draw(k, indent + (last ? '    ' : BAR));
    });
  };
  draw(root, '');
  lines.push('', `${dirs} ${dirs === 1 ? 'directory' : 'directories'}, ${files} ${files === 1 ? 'file' : 'files'}`); // as tree(1) says it
  return lines.join('\n') + '\n';
}
