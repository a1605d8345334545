// `image export` and `image import`. Export writes the merged tree as one tar, or with --layers the
// stack as an OCI image-layout archive of its layer tars; to -o FILE (written aside, renamed into
// place) or to stdout. Import takes a plain tar layer (copied into the store), or an OCI layout /
// `docker save` archive whose layers become a stack of images, bottom first, digests checked; a
// layer already in the store under its name, with the same content and parent, is reused. Nothing
// is published until every layer is copied and checked.
import { constants, copyFileSync, createReadStream, rmSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { basename, join, resolve } from 'node:path';
import { mkdirSync } from 'node:fs';
import type { Context } from '../context.js';
import { formatBytes, printJson } from '../output.js';
import { defaultImageName, stageLayer, type Staged } from '../../store/image-layers.js';
import { exportTree } from '../../image/export-tree.js';
import { writeOciArchive } from '../../image/oci-write.js';
import { copyLayer, readImageArchive } from '../../image/oci-read.js';
import type { ImageRecord } from '../../store/images.js';
import { imageTarChunks, openStack } from '../../store/open-image.js';
import { checkName } from '../../store/paths.js';
import { Overlay } from '../../overlay/overlay.js';
import { UserError } from '../../util/errors.js';

export async function imageExport(ctx: Context, a: { image: string; output?: string; layers?: boolean }): Promise<void> {
  const r = ctx.images.get(a.image);
  if (r.editing) throw new UserError(`image "${r.name}" is being edited; close it first (\`tarstack image close ${r.name}\`)`);
  const stack = ctx.images.stack(r);
  if (!a.output && process.stdout.isTTY) throw new UserError('refusing to write a tar to a terminal: use -o FILE, or redirect stdout');
  const tmpDir = join(ctx.paths.run, 'tmp');
  mkdirSync(tmpDir, { recursive: true });
  const out = a.output ? resolve(a.output) : join(tmpDir, `export-${process.pid}.tar`);
  try {
    const layers = openStack(ctx.images, stack); // every tar checked before anything is written
    let what: string;
    if (a.layers) {
      for (const l of layers) l.close();
      // A remote layer (pulled, or added by URL) is exported decoded: its bytes are read through the chunk cache.
      const decoded = (l: ImageRecord) => ((l.layer.compression && l.layer.compression.format !== 'gzip') || l.layer.remote ? { decoded: () => imageTarChunks(ctx.images, l) } : {});
      await writeOciArchive(out, r.name, [...stack].reverse().map((l) => ({ name: l.name, tar: l.layer.tar, ...decoded(l) })));
      what = `${stack.length} layers`;
    } else {
      const fs = new Overlay(layers);
      try {
        const res = await exportTree(fs, out);
        what = `${res.entries} entries${res.skipped.length ? ` (${res.skipped.length} sockets left out)` : ''}`;
      } finally {
        fs.destroy();
      }
    }
    if (!a.output) {
      await pipeline(createReadStream(out), process.stdout);
      return;
    }
    const bytes = statSync(out).size;
    if (ctx.opts.json) return printJson({ image: r.name, file: out, layers: !!a.layers, bytes });
    process.stdout.write(`exported image ${r.name} (${what}, ${formatBytes(bytes)}) to ${out}\n`);
  } finally {
    if (!a.output) rmSync(out, { force: true });
  }
}

/** A name from a reference such as "docker.io/library/alpine:3.19": characters tarstack does not take become '_'. */
function nameOfRef(ref: string): string {
  return ref.replace(/^[^/]*\.[^/]*\//, '').replace(/[^A-Za-z0-9._+@-]/g, '_').replace(/^[^A-Za-z0-9]+/, '').slice(0, 128);
}

/** sha256 of an image's layer tar as decoded (an OCI diff_id); a directory layer has none. */
async function diffIdOf(ctx: Context, r: ImageRecord): Promise<string | undefined> {
  if (r.layer.kind === 'dir') return undefined;
  const h = createHash('sha256');
  for await (const c of imageTarChunks(ctx.images, r)) h.update(c);
  return `sha256:${h.digest('hex')}`;
}

export async function imageImport(ctx: Context, a: { file: string; name?: string; parent?: string; prefix?: string }): Promise<void> {
  const file = resolve(a.file);
  const st = statSync(file, { throwIfNoEntry: false });
  if (!st) throw new UserError(`${a.file}: no such file`);
  if (!st.isFile()) throw new UserError(`${a.file} is not a regular file`);
  const archive = readImageArchive(file);
  const prefix = a.prefix ?? '';
  if (!archive) return importLayer(ctx, file, checkName('image', prefix + (a.name ?? defaultImageName(file))), a.parent);
  if (a.parent) throw new UserError(`${a.file} is an image archive, which brings its own stack: --parent applies to a plain tar layer`);
  const n = archive.layers.length;
  if (n === 0) throw new UserError(`${a.file}: the image has no layers`);
  const top = a.name ?? archive.layers[n - 1].name ?? (archive.ref ? nameOfRef(archive.ref) : defaultImageName(file));
  const names = archive.layers.map((l, i) => checkName('image', prefix + (i === n - 1 ? top : (l.name ?? `${top}-layer${i + 1}`))));
  if (new Set(names).size !== n) throw new UserError(`${a.file}: two layers would get the same name (${names.join(', ')}); import with --name or --prefix`);

  // Which layers are already here (same name, parent and content): those are reused.
  const ids: string[] = [];
  let fresh = 0;
  for (; fresh < n; fresh++) {
    const have = ctx.images.find(names[fresh]);
    if (!have) break;
    const parent = fresh === 0 ? null : ids[fresh - 1];
    const same = !have.editing && have.parent === parent && archive.layers[fresh].diffId !== undefined && (await diffIdOf(ctx, have)) === archive.layers[fresh].diffId;
    if (!same) throw new UserError(`an image named "${names[fresh]}" already exists with other content or another parent; import with --prefix or --name`);
    ids.push(have.id);
  }
  const staged: Staged[] = [];
  const layers: Array<ImageRecord['layer']> = [];
  try {
    for (let i = fresh; i < n; i++) {
      const s = await stageLayer(ctx, names[i], (tar) => copyLayer(file, archive.layers[i], i, tar));
      staged.push(s.staged);
      layers.push(s.layer);
    }
    await ctx.locked(() => {
      for (let i = fresh; i < n; i++) if (ctx.images.find(names[i])) throw new UserError(`an image named "${names[i]}" was made meanwhile`);
      for (let i = 0; i < fresh; i++) if (!ctx.images.list().some((x) => x.id === ids[i])) throw new UserError(`image "${names[i]}" was removed meanwhile`);
      ctx.images.commitChain(staged, names.slice(fresh), layers, fresh === 0 ? null : ids[fresh - 1]);
    });
  } catch (err) {
    for (const s of staged) ctx.images.discard(s);
    throw err;
  }
  const reused = names.slice(0, fresh);
  if (ctx.opts.json) return printJson({ image: names[n - 1], format: archive.format, stack: [...names].reverse(), reused });
  process.stdout.write(`imported image ${names[n - 1]} from ${basename(file)} (${archive.format}): ${[...names].reverse().join(' <- ')}${reused.length ? ` (already here: ${reused.join(', ')})` : ''}\n`);
}

async function importLayer(ctx: Context, file: string, name: string, parentName?: string): Promise<void> {
  ctx.images.checkFree(name, '--name');
  const parent = parentName ? ctx.images.closed(parentName, 'be a parent') : null;
  if (parent) ctx.images.stack(parent);
  const { staged, layer } = await stageLayer(ctx, basename(file), async (tar) => copyFileSync(file, tar, constants.COPYFILE_FICLONE));
  const r = await ctx.locked(() => {
    if (parent && !ctx.images.list().some((x) => x.id === parent.id)) throw new UserError(`parent image "${parent.name}" was removed meanwhile`);
    return ctx.images.commit(staged, { name, parent: parent?.id ?? null, created: new Date().toISOString(), layer });
  }).catch((err: unknown) => {
    ctx.images.discard(staged);
    throw err;
  });
  if (ctx.opts.json) return printJson({ image: r.name, format: 'layer', stack: ctx.images.stack(r).map((x) => x.name), reused: [] });
  process.stdout.write(`imported image ${r.name} from ${basename(file)} (a tar layer, ${layer.members} members)\n`);
}
