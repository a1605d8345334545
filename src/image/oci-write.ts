// `image export --layers`: an image's stack as an OCI image-layout archive (image-spec
// image-layout.md: oci-layout, index.json, blobs/sha256/…), each layer's tar stored as it is in the
// store, plus docker's manifest.json so `docker load` takes it too. Each layer descriptor carries
// the tarstack image name (io.tarstack.image.name), so an import rebuilds the same named stack.
import { createHash } from 'node:crypto';
import { createReadStream, openSync, readSync, closeSync, statSync } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import type { Attr } from '../vfs/api.js';
import { LayerWriter } from './layer-writer.js';

export const MT = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar',
  layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
};
export const NAME_ANNOTATION = 'io.tarstack.image.name';
export const REF_ANNOTATION = 'org.opencontainers.image.ref.name';

export interface ExportLayer {
  name: string;
  /** The layer's file as the store holds it: a tar, or a gzip tar (exported as it is). */
  tar: string;
  /**
   * A zstd or xz layer's decoded tar, which is exported instead (as a plain tar blob): OCI has no
   * media type for xz, and `image import` takes gzip or plain layers only.
   */
  decoded?: () => AsyncIterable<Buffer>;
}

interface Blob {
  digest: string;
  size: number;
  body: () => AsyncIterable<Buffer>;
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** sha256 and size of a decoded layer tar (its blob digest and diff_id alike). */
async function decodedDigest(decoded: () => AsyncIterable<Buffer>): Promise<{ digest: string; diffId: string; gzip: boolean; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const c of decoded()) {
    h.update(c);
    size += c.length;
  }
  const digest = `sha256:${h.digest('hex')}`;
  return { digest, diffId: digest, gzip: false, size };
}

/** sha256 of a file's bytes, and of its gunzipped bytes when it is gzip (the layer's diff_id). */
async function digests(path: string): Promise<{ digest: string; diffId: string; gzip: boolean; size: number }> {
  const blob = createHash('sha256');
  await pipeline(createReadStream(path), new Writable({ write: (c: Buffer, _e, cb) => (blob.update(c), cb()) }));
  const digest = `sha256:${blob.digest('hex')}`;
  const head = Buffer.alloc(2);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, head, 0, 2, 0);
  } finally {
    closeSync(fd);
  }
  const gzip = head[0] === 0x1f && head[1] === 0x8b;
  let diffId = digest;
  if (gzip) {
    const plain = createHash('sha256');
    await pipeline(createReadStream(path), createGunzip(), new Writable({ write: (c: Buffer, _e, cb) => (plain.update(c), cb()) }));
    diffId = `sha256:${plain.digest('hex')}`;
  }
  return { digest, diffId, gzip, size: statSync(path).size };
}

const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

/** Write the archive; `layers` bottom first, `top` the image's name. */
export async function writeOciArchive(out: string, top: string, layers: ExportLayer[]): Promise<{ bytes: number }> {
  const created = new Date().toISOString();
  const blobs = new Map<string, Blob>();
  const descriptors: Array<Record<string, unknown>> = [];
  const diffIds: string[] = [];
  for (const l of layers) {
    const d = l.decoded ? await decodedDigest(l.decoded) : await digests(l.tar);
    blobs.set(d.digest, { digest: d.digest, size: d.size, body: l.decoded ?? (() => createReadStream(l.tar) as AsyncIterable<Buffer>) });
    descriptors.push({ mediaType: d.gzip ? MT.layerGzip : MT.layer, digest: d.digest, size: d.size, annotations: { [NAME_ANNOTATION]: l.name } });
    diffIds.push(d.diffId);
  }
  const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
  const config = json({
    created,
    architecture: GOARCH[process.arch] ?? process.arch,
    os: 'linux',
    config: {},
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: layers.map((l) => ({ created, created_by: `tarstack image ${l.name}` })),
  });
  const manifest = json({ schemaVersion: 2, mediaType: MT.manifest, config: { mediaType: MT.config, digest: sha256(config), size: config.length }, layers: descriptors });
  const index = json({ schemaVersion: 2, mediaType: MT.index, manifests: [{ mediaType: MT.manifest, digest: sha256(manifest), size: manifest.length, annotations: { [REF_ANNOTATION]: top } }] });
  const repoTag = /^[a-z0-9][a-z0-9._-]*$/.test(top) ? [`${top}:latest`] : null;
  const dockerManifest = json([{ Config: `blobs/sha256/${sha256(config).slice(7)}`, RepoTags: repoTag, Layers: descriptors.map((d) => `blobs/sha256/${String(d.digest).slice(7)}`) }]);
  for (const b of [config, manifest]) blobs.set(sha256(b), { digest: sha256(b), size: b.length, body: async function* () { yield b; } });

  const w = new LayerWriter(out);
  const now = Math.floor(Date.now() / 1000);
  const attr = (mode: number, size: number): Attr => ({ ino: 0, mode, nlink: 1, uid: 0, gid: 0, rdev: 0, size, blocks: 0, atimeSec: now, atimeNsec: 0, mtimeSec: now, mtimeNsec: 0, ctimeSec: now, ctimeNsec: 0 });
  const file = (path: string, b: Buffer) => w.add({ path, attr: attr(0o100644, b.length), xattrs: [], body: async function* () { yield b; } });
  try {
    await file('oci-layout', json({ imageLayoutVersion: '1.0.0' }));
    await w.add({ path: 'blobs', attr: attr(0o40755, 0), xattrs: [] });
    await w.add({ path: 'blobs/sha256', attr: attr(0o40755, 0), xattrs: [] });
    for (const b of blobs.values()) await w.add({ path: `blobs/sha256/${b.digest.slice(7)}`, attr: attr(0o100644, b.size), xattrs: [], body: b.body });
    await file('index.json', index);
    await file('manifest.json', dockerManifest);
    await w.close();
  } catch (err) {
    w.abort();
    throw err;
  }
  return { bytes: statSync(out).size };
}
