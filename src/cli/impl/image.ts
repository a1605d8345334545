// `tarstack image …`: add (index a tar in place), list, info, rename, rm, verify.
import { constants, copyFileSync, existsSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { Context } from '../context.js';
import { formatBytes, printJson, printTable, progress, warn } from '../output.js';
import { indexTarFile } from '../../tar/indexer.js';
import { writeIndex } from '../../tar/index-file.js';
import { TarFormatError } from '../../tar/scan.js';
import { accessNote, SeekIndex } from '../../tar/seek-table.js';
import { recompressToZstd } from '../../tar/recompress.js';
import type { IndexData } from '../../tar/index-data.js';
import { INDEX_FILE, type ImageRecord, type LayerCompression } from '../../store/images.js';
import { openLayer } from '../../store/open-image.js';
import { checkName } from '../../store/paths.js';
import { UserError } from '../../util/errors.js';

const ARCHIVE_EXT = /(\.tar(\.(gz|bz2|xz|zst|zstd|lz4))?|\.t(gz|bz2|xz|zst))$/i;

export function defaultImageName(tar: string): string {
  return basename(tar).replace(ARCHIVE_EXT, '');
}

export async function imageAdd(ctx: Context, a: { tar: string; name?: string; parent?: string; copy?: boolean; recompress?: boolean }): Promise<void> {
  const tar = resolve(a.tar);
  let st;
  try {
    st = statSync(tar);
  } catch (err) {
    throw new UserError(`${a.tar}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  if (st.isDirectory()) throw new UserError(`${a.tar} is a directory, not a tar`);
  if (!st.isFile()) throw new UserError(`${a.tar} is not a regular file, not a tar`);
  const name = checkName('image', a.name ?? defaultImageName(tar));
  if (ctx.images.find(name)) throw new UserError(`an image named "${name}" already exists`);
  const parent = a.parent ? ctx.images.get(a.parent) : null;

  const staged = ctx.images.stage();
  try {
    let source = tar;
    let stored: string | undefined; // the file in the store, when the image owns one
    if (a.recompress) {
      stored = 'layer.tar.zst';
      source = join(staged.dir, stored);
      const bar = progress(`recompressing ${basename(tar)}`);
      try {
        await recompressToZstd(tar, source, (done, total) => bar.update(done, total));
      } catch (err) {
        if (err instanceof TarFormatError) throw new UserError(`${a.tar}: ${err.message}`);
        throw err;
      } finally {
        bar.done();
      }
    } else if (a.copy) {
      stored = 'layer.tar';
      source = join(staged.dir, stored);
      copyFileSync(tar, source, constants.COPYFILE_FICLONE);
    }
    const bar = progress(`indexing ${basename(tar)}`);
    let result;
    try {
      result = indexTarFile(source, { onProgress: (done, total) => bar.update(done, total) });
    } catch (err) {
      if (err instanceof TarFormatError) throw new UserError(`${a.tar}: ${err.message}`);
      throw err;
    } finally {
      bar.done();
    }
    const data = result.data;
    const compression = compressionOf(data, a.recompress ? tar : undefined);
    writeIndex(join(staged.dir, INDEX_FILE), data);
    const record = await ctx.locked(() => {
      if (parent && !existsSync(ctx.paths.image(parent.id))) throw new UserError(`parent image "${parent.name}" was removed meanwhile`);
      return ctx.images.commit(staged, {
        name,
        parent: parent?.id ?? null,
        created: new Date().toISOString(),
        layer: {
          tar: stored ? join(ctx.paths.image(staged.id), stored) : tar,
          copied: !!stored,
          identity: data.source,
          nodes: data.nodeCount,
          members: data.members.count,
          warnings: data.warnings.length,
          ...(compression ? { compression } : {}),
        },
      });
    });
    for (const w of data.warnings.slice(0, 50)) warn(`${basename(tar)}: ${w.message}`);
    if (data.warnings.length > 5) warn(`${basename(tar)}: ${data.warnings.length - 5} more (see \`tarstack image info ${name}\`)`);
    if (ctx.opts.json) printJson(describe(ctx, record));
    else if (compression) {
      process.stdout.write(`added image ${name}: ${data.members.count} members, ${data.nodeCount - 1} entries (${formatBytes(data.source.size)} ${compression.format} tar, ${formatBytes(compression.decodedBytes)} decoded)\n`);
      process.stdout.write(`${compression.randomAccess ? '' : 'note: '}${compression.note}\n`);
    } else process.stdout.write(`added image ${name}: ${data.members.count} members, ${data.nodeCount - 1} entries (${formatBytes(data.source.size)} tar, ${formatBytes(result.bytesRead)} read to index)\n`);
  } catch (err) {
    ctx.images.discard(staged);
    throw err;
  }
}

function compressionOf(d: IndexData, recompressedFrom: string | undefined): LayerCompression | undefined {
  if (!d.seek) return undefined;
  const { randomAccess, note } = accessNote(d.seek, new SeekIndex(d.seek).maxChunk());
  return { format: d.seek.format, decodedBytes: d.seek.size, seekPoints: d.seek.count, randomAccess, note, ...(recompressedFrom ? { recompressedFrom } : {}) };
}

function describe(ctx: Context, r: ImageRecord): Record<string, unknown> {
  const stack = ctx.images.stack(r);
  return {
    name: r.name,
    id: r.id,
    parent: r.parent ? ctx.images.byId(r.parent).name : null,
    stack: stack.map((s) => s.name),
    created: r.created,
    tar: r.layer.tar,
    copied: r.layer.copied,
    tarBytes: r.layer.identity.size,
    members: r.layer.members,
    entries: r.layer.nodes - 1,
    warnings: r.layer.warnings,
    compression: r.layer.compression ?? null,
    tarStatus: tarStatus(r),
  };
}

function tarStatus(r: ImageRecord): 'ok' | 'missing' | 'changed' {
  try {
    const st = statSync(r.layer.tar, { bigint: true });
    const id = r.layer.identity;
    return Number(st.size) === id.size && st.mtimeNs.toString() === id.mtimeNs && Number(st.ino) === id.ino ? 'ok' : 'changed';
  } catch {
    return 'missing';
  }
}

export function imageList(ctx: Context): void {
  const all = ctx.images.list();
  if (ctx.opts.json) return printJson(all.map((r) => describe(ctx, r)));
  if (all.length === 0) {
    process.stdout.write('no images (add one with `tarstack image add <tar>`)\n');
    return;
  }
  const byId = new Map(all.map((r) => [r.id, r.name]));
  printTable(
    ['NAME', 'PARENT', 'ENTRIES', 'SIZE', 'TAR'],
    all.map((r) => [r.name, r.parent ? (byId.get(r.parent) ?? '?') : '-', String(r.layer.nodes - 1), formatBytes(r.layer.identity.size), tarStatus(r) === 'ok' ? r.layer.tar : `${r.layer.tar} (${tarStatus(r)})`]),
  );
}

export function imageInfo(ctx: Context, a: { image: string }): void {
  const r = ctx.images.get(a.image);
  const d = describe(ctx, r);
  const mounts = ctx.mounts.list().filter((m) => m.kind === 'image' && ctx.images.stack(ctx.images.byId(m.target)).some((s) => s.id === r.id));
  d.mounts = mounts.map((m) => ({ mountpoint: m.mountpoint, pid: m.pid, state: m.state }));
  if (ctx.opts.json) return printJson(d);
  const lines = [
    ['name', r.name],
    ['id', r.id],
    ['stack', (d.stack as string[]).join(' <- ')],
    ['tar', `${r.layer.tar}${r.layer.copied ? ' (copied into the store)' : ''} [${d.tarStatus}]`],
    ['size', formatBytes(r.layer.identity.size)],
    ...(r.layer.compression ? compressionLines(r.layer.compression) : []),
    ['members', String(r.layer.members)],
    ['entries', String(r.layer.nodes - 1)],
    ['warnings', String(r.layer.warnings)],
    ['created', r.created],
    ['mounts', mounts.length ? mounts.map((m) => `${m.mountpoint} (pid ${m.pid}, ${m.state})`).join(', ') : '-'],
  ];
  printTable(['FIELD', 'VALUE'], lines);
}

function compressionLines(c: LayerCompression): string[][] {
  return [
    ['compression', `${c.format}, ${formatBytes(c.decodedBytes)} decoded${c.recompressedFrom ? ` (a seekable copy of ${c.recompressedFrom})` : ''}`],
    ['access', c.randomAccess ? c.note : `sequential: ${c.note}`],
  ];
}

export async function imageRename(ctx: Context, a: { image: string; newName: string }): Promise<void> {
  await ctx.locked(() => ctx.images.rename(a.image, a.newName));
  process.stdout.write(`renamed image ${a.image} to ${a.newName}\n`);
}

export async function imageRm(ctx: Context, a: { image: string }): Promise<void> {
  await ctx.locked(() => {
    const r = ctx.images.get(a.image);
    const kids = ctx.images.children(r);
    if (kids.length) throw new UserError(`image "${r.name}" is the parent of ${kids.map((k) => `"${k.name}"`).join(', ')}; remove those first`);
    const insts = ctx.instances.list().filter((i) => ctx.images.stack(ctx.images.byId(i.image)).some((s) => s.id === r.id));
    if (insts.length) throw new UserError(`image "${r.name}" is used by instance ${insts.map((i) => `"${i.name}"`).join(', ')}; remove those first`);
    const users = ctx.mounts.list().filter((m) => m.kind === 'image' && ctx.images.stack(ctx.images.byId(m.target)).some((s) => s.id === r.id));
    if (users.length) throw new UserError(`image "${r.name}" is in use by the mount at ${users.map((m) => m.mountpoint).join(', ')}`);
    ctx.images.remove(r);
  });
  process.stdout.write(`removed image ${a.image}\n`);
}

export function imageVerify(ctx: Context, a: { image: string }): void {
  const r = ctx.images.get(a.image);
  const results: Array<{ image: string; tar: string; members: number; ok: boolean; error?: string }> = [];
  for (const layer of ctx.images.stack(r)) {
    try {
      openLayer(ctx.images, layer, 'all').close();
      results.push({ image: layer.name, tar: layer.layer.tar, members: layer.layer.members, ok: true });
    } catch (err) {
      if (!(err instanceof UserError)) throw err;
      results.push({ image: layer.name, tar: layer.layer.tar, members: layer.layer.members, ok: false, error: err.message });
    }
  }
  const bad = results.filter((x) => !x.ok);
  if (ctx.opts.json) printJson({ image: r.name, ok: bad.length === 0, layers: results });
  else for (const x of results) process.stdout.write(x.ok ? `ok      ${x.image}: ${x.members} members match ${x.tar}\n` : `FAILED  ${x.error}\n`);
  if (bad.length) throw new UserError(`image "${r.name}" failed verification (${bad.length} of ${results.length} layers)`, 1);
}
