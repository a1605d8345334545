// `tarstack image …`: add (index a tar in place, or reference a directory), list, info, rename, rm, verify.
import { statSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import type { Context } from '../context.js';
import { formatBytes, printJson, printTable, warn } from '../output.js';
import { layerCounts, type ImageRecord, type LayerCompression, type RemoteLayerRecord } from '../../store/images.js';
import { addDirImage, addTarImage, defaultImageName } from '../../store/image-layers.js';
import { checkName } from '../../store/paths.js';
import { cachedBytes } from '../../remote/chunk-cache.js';
import { UserError } from '../../util/errors.js';

export async function imageAdd(ctx: Context, a: { tar: string; name?: string; parent?: string; copy?: boolean; recompress?: boolean; tlsVerify?: boolean }): Promise<void> {
  if (/^https?:\/\//i.test(a.tar)) return addUrl(ctx, a);
  const tar = resolve(a.tar);
  let st;
  try {
    st = statSync(tar);
  } catch (err) {
    throw new UserError(`${a.tar}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  if (st.isDirectory()) {
    if (a.copy) throw new UserError('--copy applies to tars; a directory layer is always referenced in place');
    const record = await addDirImage(ctx, tar, a);
    if (ctx.opts.json) printJson(describe(ctx, record));
    else process.stdout.write(`added image ${record.name}: directory ${tar} (served in place)\n`);
    return;
  }
  if (!st.isFile()) throw new UserError(`${a.tar} is neither a tar file nor a directory`);
  const { record, data, bytesRead } = await addTarImage(ctx, { ...a, tar, given: a.tar });
  const name = record.name;
  for (const w of data.warnings.slice(0, 50)) warn(`${basename(tar)}: ${w.message}`);
  if (data.warnings.length > 5) warn(`${basename(tar)}: ${data.warnings.length - 5} more (see \`tarstack image info ${name}\`)`);
  const compression = record.layer.compression;
  if (ctx.opts.json) return printJson(describe(ctx, record));
  const counted = `${record.layer.members} members, ${countsText(record.layer)}`;
  if (compression) {
    process.stdout.write(`added image ${name}: ${counted} (${formatBytes(data.source.size)} ${compression.format} tar, ${formatBytes(compression.decodedBytes)} decoded)\n`);
    process.stdout.write(`${compression.randomAccess ? '' : 'note: '}${compression.note}\n`);
  } else process.stdout.write(`added image ${name}: ${counted} (${formatBytes(data.source.size)} tar, ${formatBytes(bytesRead)} read to index)\n`);
}

async function addUrl(ctx: Context, a: { tar: string; name?: string; parent?: string; copy?: boolean; recompress?: boolean; tlsVerify?: boolean }): Promise<void> {
  if (a.copy || a.recompress) throw new UserError('--copy and --recompress apply to local tars; a URL is read where it is');
  let url: URL;
  try {
    url = new URL(a.tar);
  } catch {
    throw new UserError(`${a.tar}: not a valid URL`);
  }
  const { addUrlImage } = await import('../../remote/add-remote.js');
  const name = checkName('image', a.name ?? defaultImageName(decodeURIComponent(url.pathname.split('/').pop() || url.host)));
  const record = await addUrlImage(ctx, { url: url.toString(), name, parent: a.parent, tlsVerify: a.tlsVerify !== false });
  if (ctx.opts.json) return printJson(describe(ctx, record));
  const c = record.layer.compression;
  process.stdout.write(`added image ${name}: ${record.layer.members} members, ${countsText(record.layer)} (${formatBytes(record.layer.identity.size)} ${c ? `${c.format} ` : ''}tar at ${url.host}, read by range)\n`);
}

/** "185 entries, 2 whiteouts" (whiteouts only when there are any), as image info counts them. */
export function countsText(layer: ImageRecord['layer']): string {
  const { entries, whiteouts } = layerCounts(layer);
  return `${entries} ${entries === 1 ? 'entry' : 'entries'}${whiteouts ? `, ${whiteouts} ${whiteouts === 1 ? 'whiteout' : 'whiteouts'}` : ''}`;
}

function describe(ctx: Context, r: ImageRecord): Record<string, unknown> {
  const stack = ctx.images.stack(r);
  return {
    name: r.name,
    id: r.id,
    parent: r.parent ? ctx.images.byId(r.parent).name : null,
    stack: stack.map((s) => s.name),
    created: r.created,
    kind: r.layer.kind ?? 'tar',
    tar: r.layer.tar,
    copied: r.layer.copied,
    tarBytes: r.layer.kind === 'dir' ? null : r.layer.identity.size,
    members: r.layer.kind === 'dir' ? null : r.layer.members,
    ...layerCounts(r.layer),
    warnings: r.layer.warnings,
    compression: r.layer.compression ?? null,
    remote: r.layer.remote ? { ...r.layer.remote, cachedBytes: cachedBytes(ctx.images.root, r.layer.remote.digest.replace(/^sha256:/, ''), r.layer.remote.size, r.layer.remote.chunkSize) } : null,
    tarStatus: tarStatus(r),
    editing: !!r.editing,
  };
}

function tarStatus(r: ImageRecord): 'ok' | 'missing' | 'changed' {
  if (r.layer.remote) return 'ok'; // named by its digest; every chunk is checked as it is read
  try {
    const st = statSync(r.layer.tar, { bigint: true });
    const id = r.layer.identity;
    if (r.layer.kind === 'dir') return st.isDirectory() && Number(st.ino) === id.ino ? 'ok' : 'changed';
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
    // A directory layer is served as it is, never scanned: it has no counts and no tar size.
    all.map((r) => [r.editing ? `${r.name} (editing)` : r.name, r.parent ? (byId.get(r.parent) ?? '?') : '-', String(layerCounts(r.layer).entries ?? '-'), r.layer.kind === 'dir' ? '-' : formatBytes(r.layer.identity.size), tarStatus(r) === 'ok' ? r.layer.tar : `${r.layer.tar} (${tarStatus(r)})`]),
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
    ...(r.editing ? [['state', `open for editing (\`tarstack image edit ${r.name}\`, then \`tarstack image close ${r.name}\`)`]] : []),
    ['stack', (d.stack as string[]).join(' <- ')],
    ...(r.layer.remote ? remoteLines(d.remote as RemoteLayerRecord & { cachedBytes: number }) : []),
    r.layer.kind === 'dir' ? ['directory', `${r.layer.tar} (served in place) [${d.tarStatus}]`] : ['tar', `${r.layer.tar}${r.layer.copied ? ' (copied into the store)' : ''} [${d.tarStatus}]`],
    ...(r.layer.kind === 'dir' ? [['entries', 'not counted (a directory is served as it is)']] : tarLines(r)),
    ['created', r.created],
    ['mounts', mounts.length ? mounts.map((m) => `${m.mountpoint} (pid ${m.pid}, ${m.state})`).join(', ') : '-'],
  ];
  printTable(['FIELD', 'VALUE'], lines);
}

const INDEX_SOURCES: Record<RemoteLayerRecord['index'], string> = {
  pushed: 'tarstack index, fetched from the registry (pushed beside the layer)',
  estargz: "the layer's eStargz TOC (its digest checked against the manifest; every chunk checked against it)",
  'zstd:chunked': "the layer's zstd:chunked manifest (its digest checked against the manifest; every chunk checked against it)",
  stream: 'made by a streaming pass over the layer',
};

function remoteLines(x: RemoteLayerRecord & { cachedBytes: number }): string[][] {
  return [
    ...(x.ref ? [['registry', `${x.ref}${x.manifest ? ` (manifest ${x.manifest})` : ''}`]] : []),
    ['blob', `${x.digest} (${formatBytes(x.size)})`],
    ['cached', `${formatBytes(x.cachedBytes)} of ${formatBytes(x.size)} (${x.size ? Math.round((100 * x.cachedBytes) / x.size) : 100}%)`],
    ['index', INDEX_SOURCES[x.index] ?? x.index],
  ];
}

function tarLines(r: ImageRecord): string[][] {
  const { entries, whiteouts } = layerCounts(r.layer);
  return [
    ['size', formatBytes(r.layer.identity.size)],
    ...(r.layer.compression ? compressionLines(r.layer.compression) : []),
    ['members', String(r.layer.members)],
    ['entries', String(entries)],
    ...(whiteouts !== null ? [['whiteouts', String(whiteouts)]] : []),
    ['warnings', String(r.layer.warnings)],
  ];
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

export async function imageVerify(ctx: Context, a: { image: string }): Promise<void> {
  const { openLayer } = await import('../../store/open-image.js'); // only here: `image add` loads none of the layer code
  const r = ctx.images.get(a.image);
  const results: Array<{ image: string; tar: string; members: number; ok: boolean; error?: string; dir?: boolean }> = [];
  for (const layer of ctx.images.stack(r)) {
    try {
      openLayer(ctx.images, layer, 'all').close();
      results.push({ image: layer.name, tar: layer.layer.tar, members: layer.layer.members, ok: true, ...(layer.layer.kind === 'dir' ? { dir: true } : {}) });
    } catch (err) {
      if (!(err instanceof UserError)) throw err;
      results.push({ image: layer.name, tar: layer.layer.tar, members: layer.layer.members, ok: false, error: err.message });
    }
  }
  const bad = results.filter((x) => !x.ok);
  const okLine = (x: (typeof results)[number]) => (x.dir ? `${x.tar} is the directory that was added` : `${x.members} members match ${x.tar}`);
  if (ctx.opts.json) printJson({ image: r.name, ok: bad.length === 0, layers: results });
  else for (const x of results) process.stdout.write(x.ok ? `ok      ${x.image}: ${okLine(x)}\n` : `FAILED  ${x.error}\n`);
  if (bad.length) throw new UserError(`image "${r.name}" failed verification (${bad.length} of ${results.length} layers)`, 1);
}
