// `image import` of an image archive: an OCI image layout (image-spec image-layout.md: index.json →
// manifest → config and layers, every blob named by its sha256) or a `docker save` archive
// (manifest.json → config and layer tars). The archive's headers are scanned once; its layers are
// then copied out of it, checked against their digests (the blob's, and the uncompressed layer's
// diff_id from the config), gunzipped when compressed. Anything missing or not matching is an error.
import { createHash } from 'node:crypto';
import { closeSync, createReadStream, createWriteStream, openSync, readSync } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { pipeline } from 'node:stream/promises';
import { PassThrough, Transform } from 'node:stream';
import { FdReader } from '../tar/reader.js';
import { scanTar, TarFormatError, type Member } from '../tar/scan.js';
import { normaliseName } from '../tar/names.js';
import { UserError } from '../util/errors.js';
import { NAME_ANNOTATION, REF_ANNOTATION } from './oci-write.js';

export interface ArchiveLayer {
  member: Member;
  /** sha256:… of the stored blob, when the archive names one. */
  digest?: string;
  size?: number;
  /** sha256:… of the uncompressed layer (config rootfs.diff_ids). */
  diffId?: string;
  /** The tarstack image name it was exported as. */
  name?: string;
  zstd: boolean;
}

export interface ImageArchive {
  format: 'oci' | 'docker';
  ref?: string;
  /** Bottom first. */
  layers: ArchiveLayer[];
}

const JSON_MAX = 64 * 1024 * 1024;
const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386' };

class Archive {
  readonly members = new Map<string, Member>();
  noEnd = false;
  constructor(readonly file: string, readonly fd: number) {}

  fail(what: string): never {
    throw new UserError(`${this.file}: ${what} (the archive is corrupt or incomplete)`);
  }

  member(path: string, what: string): Member {
    const m = this.members.get(path.replace(/^(\.\/)+/, ''));
    if (!m || m.type !== 'file' || m.sparse) this.fail(`${what} ${path} is missing`);
    return m;
  }

  body(m: Member): Buffer {
    if (m.size > JSON_MAX) this.fail(`${m.path} is too big to be metadata`);
    const b = Buffer.alloc(m.size);
    const n = readSync(this.fd, b, 0, m.size, m.dataOffset);
    if (n !== m.size) this.fail(`${m.path} is cut short`);
    return b;
  }

  json(m: Member, digest?: string): Record<string, unknown> {
    const b = this.body(m);
    if (digest && `sha256:${createHash('sha256').update(b).digest('hex')}` !== digest) this.fail(`${m.path} does not match its digest ${digest}`);
    try {
      const v = JSON.parse(b.toString('utf8')) as unknown;
      if (v && typeof v === 'object') return v as Record<string, unknown>;
    } catch {
      /* reported below */
    }
    return this.fail(`${m.path} is not valid JSON`);
  }

  blob(digest: unknown): Member {
    if (typeof digest !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(digest)) this.fail(`unsupported or malformed digest ${JSON.stringify(digest)}`);
    return this.member(`blobs/sha256/${digest.slice(7)}`, 'blob');
  }
}

/** What kind of archive `file` is: an image archive's layers, or null for a plain layer tar (refused if cut short). */
export function readImageArchive(file: string): ImageArchive | null {
  const fd = openSync(file, 'r');
  try {
    const a = new Archive(file, fd);
    try {
      scanTar(new FdReader(fd), {
        member: (m) => {
          const n = normaliseName(m.path);
          if (n.ok) a.members.set(n.components.join('/'), m);
        },
        warning: (w) => void (w.code === 'NO_END_MARKER' && (a.noEnd = true)),
      });
    } catch (err) {
      if (err instanceof TarFormatError) throw new UserError(`${file}: ${err.message}`);
      throw err;
    }
    // An import copies the archive into the store: one cut short at a member boundary is refused
    // too, not taken for a smaller tar. oci-layout comes first in a layout and docker save writes
    // <id>/layer.tar members before its manifest, so a cut archive is still recognised as one.
    if (a.noEnd) a.fail('it ends without its end-of-archive blocks');
    if (a.members.has('oci-layout')) return readOci(a);
    if (a.members.has('manifest.json') || [...a.members.keys()].some((k) => /^[0-9a-f]{64}\/layer\.tar$/.test(k))) return readDocker(a);
    return null;
  } finally {
    closeSync(fd);
  }
}

function readOci(a: Archive): ImageArchive {
  let desc = pickManifest(a, a.json(a.member('index.json', 'file')));
  let manifest = a.json(a.blob(desc.digest), desc.digest as string);
  if (Array.isArray(manifest.manifests)) {
    desc = pickManifest(a, manifest); // an index of per-platform manifests
    manifest = a.json(a.blob(desc.digest), desc.digest as string);
  }
  const cfgDesc = manifest.config as Record<string, unknown> | undefined;
  const layers = manifest.layers;
  if (!cfgDesc || !Array.isArray(layers)) a.fail('the image manifest has no config or layers');
  const config = a.json(a.blob(cfgDesc.digest), cfgDesc.digest as string);
  const diffIds = diffIdsOf(a, config, layers.length);
  const ann = desc.annotations as Record<string, string> | undefined;
  return {
    format: 'oci',
    ref: ann?.[REF_ANNOTATION],
    layers: (layers as Array<Record<string, unknown>>).map((d, i) => ({
      member: a.blob(d.digest),
      digest: d.digest as string,
      size: typeof d.size === 'number' ? d.size : undefined,
      diffId: diffIds[i],
      name: (d.annotations as Record<string, string> | undefined)?.[NAME_ANNOTATION],
      zstd: String(d.mediaType ?? '').includes('zstd'),
    })),
  };
}

/** This machine's linux platform if the index lists several, else the first manifest. */
function pickManifest(a: Archive, index: Record<string, unknown>): Record<string, unknown> {
  const list = index.manifests;
  if (!Array.isArray(list) || list.length === 0) a.fail('its index lists no image');
  const arch = GOARCH[process.arch] ?? process.arch;
  const ours = (list as Array<Record<string, unknown>>).find((m) => {
    const p = m.platform as Record<string, unknown> | undefined;
    return p?.os === 'linux' && p.architecture === arch;
  });
  return ours ?? (list[0] as Record<string, unknown>);
}

function diffIdsOf(a: Archive, config: Record<string, unknown>, count: number): string[] {
  const ids = (config.rootfs as Record<string, unknown> | undefined)?.diff_ids;
  if (!Array.isArray(ids) || ids.length !== count || ids.some((x) => typeof x !== 'string')) a.fail(`the image config does not list one diff_id per layer (${count} layers)`);
  return ids as string[];
}

function readDocker(a: Archive): ImageArchive {
  const list = a.json(a.member('manifest.json', 'file'));
  const entry = (Array.isArray(list) ? list[0] : undefined) as Record<string, unknown> | undefined;
  if (!entry || typeof entry.Config !== 'string' || !Array.isArray(entry.Layers)) a.fail('manifest.json names no image');
  const named = /([0-9a-f]{64})(\.json)?$/.exec(entry.Config);
  const config = a.json(a.member(entry.Config, 'image config'), named ? `sha256:${named[1]}` : undefined);
  const diffIds = diffIdsOf(a, config, entry.Layers.length);
  const tags = entry.RepoTags as unknown;
  return {
    format: 'docker',
    ref: Array.isArray(tags) && typeof tags[0] === 'string' ? tags[0] : undefined,
    layers: (entry.Layers as unknown[]).map((p, i) => {
      if (typeof p !== 'string') a.fail('manifest.json lists a layer that is not a path');
      const blob = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(p);
      return { member: a.member(p, 'layer'), digest: blob ? `sha256:${blob[1]}` : undefined, diffId: diffIds[i], zstd: false };
    }),
  };
}

/** Copy a layer out of the archive into `dest` as a plain tar, checking its digests (gunzipping a gzip blob). */
export async function copyLayer(file: string, layer: ArchiveLayer, k: number, dest: string): Promise<void> {
  const what = `${file}: layer ${k + 1}`;
  if (layer.zstd) throw new UserError(`${what} is zstd-compressed, which this tarstack cannot import yet`);
  const m = layer.member;
  if (layer.size !== undefined && layer.size !== m.size) throw new UserError(`${what} has ${m.size} bytes, its descriptor says ${layer.size} (the archive is corrupt or incomplete)`);
  const head = Buffer.alloc(2);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, head, 0, 2, m.dataOffset);
  } finally {
    closeSync(fd);
  }
  const gzip = m.size >= 2 && head[0] === 0x1f && head[1] === 0x8b;
  const blob = createHash('sha256');
  const diff = createHash('sha256');
  const tap = (h: ReturnType<typeof createHash>): Transform => new Transform({ transform: (c: Buffer, _e, cb) => (h.update(c), cb(null, c)) });
  const src = m.size > 0 ? createReadStream(file, { start: m.dataOffset, end: m.dataOffset + m.size - 1 }) : new PassThrough().end();
  try {
    await pipeline(src, tap(blob), gzip ? createGunzip() : new PassThrough(), tap(diff), createWriteStream(dest, { mode: 0o644 }));
  } catch (err) {
    throw new UserError(`${what} cannot be read: ${(err as Error).message} (the archive is corrupt or incomplete)`);
  }
  const got = (h: ReturnType<typeof createHash>): string => `sha256:${h.digest('hex')}`;
  const [b, d] = [got(blob), got(diff)];
  if (layer.digest && b !== layer.digest) throw new UserError(`${what} does not match its digest ${layer.digest} (got ${b}): the archive is corrupt`);
  if (layer.diffId && d !== layer.diffId) throw new UserError(`${what} does not match its diff_id ${layer.diffId} (got ${d}): the archive is corrupt`);
}
