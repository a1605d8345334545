// `image push IMAGE REF`: the stack's layer files uploaded byte for byte (so their digests are the
// same everywhere) when the registry lacks them, a config and an OCI manifest, then for each layer
// tarstack's index and chunk digests as an artifact whose subject is that manifest: found through
// the referrers API, or the tag-schema fallback (an index tagged sha256-HEX) for registries without it.
import { createHash } from 'node:crypto';
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { windowsCut, writeIndex } from '../tar/index-file.js';
import { indexTar } from '../store/image-layers.js';
import { PUSH_SEEK } from './add-remote.js';
import { imageTarChunks } from '../store/open-image.js';
import type { ImageRecord } from '../store/images.js';
import type { Store } from '../store/store.js';
import { UserError } from '../util/errors.js';
import { CHUNK_SIZE, chunkDigestsOf, chunkDigestsOfBuffer, WINDOW_CHUNK_SIZE } from './chunk-digests.js';
import { CHUNK_ANNOTATION, checkCertDir, LAYER_ANNOTATION, WINDOW_CHUNK_ANNOTATION } from './pull.js';
import { digestOf, hostPlatform, MT, parseRef, Registry, type Descriptor } from './registry.js';

const LAYER_MT: Record<string, string> = { none: 'application/vnd.oci.image.layer.v1.tar', gzip: 'application/vnd.oci.image.layer.v1.tar+gzip', zstd: 'application/vnd.oci.image.layer.v1.tar+zstd' };

async function fileDigest(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return `sha256:${h.digest('hex')}`;
}

export interface PushResult {
  manifest: string;
  layers: number;
  uploaded: number;
  indexes: number;
  referrers: boolean;
}

export async function pushImage(store: Store, a: { image: string; ref: string; tlsVerify: boolean; certDir?: string }): Promise<PushResult> {
  const ref = parseRef(a.ref);
  if (ref.reference.startsWith('sha256:')) throw new UserError(`${a.ref}: push to a tag, not a digest`);
  const top = store.images.closed(a.image, 'be pushed');
  const stack = store.images.stack(top).reverse(); // bottom first, as a manifest lists layers
  const reg = new Registry(ref.host, a.tlsVerify, checkCertDir(a.certDir));
  const layers: Descriptor[] = [];
  const diffIds: string[] = [];
  let uploaded = 0;
  for (const r of stack) {
    if (r.layer.kind === 'dir') throw new UserError(`image "${r.name}" is a directory layer; only tar layers can be pushed (commit it to a tar layer first)`);
    const format = r.layer.compression?.format ?? 'none';
    if (!LAYER_MT[format]) throw new UserError(`image "${r.name}": an ${format} layer has no OCI media type; add it with --recompress (zstd) to push it`);
    const remote = r.layer.remote;
    const digest = remote ? remote.digest : await fileDigest(r.layer.tar);
    const size = remote ? remote.size : r.layer.identity.size;
    if (!(await reg.hasBlob(ref.repo, digest))) {
      if (remote) throw new UserError(`image "${r.name}": its layer lives in ${remote.ref ?? remote.url} and ${ref.host}/${ref.repo} lacks it; pushing a remote layer elsewhere is not supported yet`);
      await reg.putBlob(ref.repo, { file: r.layer.tar, size, digest });
      uploaded++;
    }
    layers.push({ mediaType: LAYER_MT[format], digest, size });
    if (remote && format !== 'none') throw new UserError(`image "${r.name}": pushing a pulled ${format} layer again is not supported yet (its diff_id would need a full decode)`);
    diffIds.push(format === 'none' ? digest : await decodedDigest(store, r));
  }
  const [os, architecture] = hostPlatform().split('/');
  const config = Buffer.from(JSON.stringify({ architecture, os, rootfs: { type: 'layers', diff_ids: diffIds }, config: {} }));
  const configDigest = await reg.putBlob(ref.repo, config);
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.ociManifest, config: { mediaType: MT.ociConfig, digest: configDigest, size: config.length }, layers }));
  await reg.putManifest(ref.repo, ref.reference, manifest, MT.ociManifest);
  const manifestDigest = digestOf(manifest);
  const subject: Descriptor = { mediaType: MT.ociManifest, digest: manifestDigest, size: manifest.length };

  // The indexes: one artifact per layer, its subject the image's manifest.
  const empty = Buffer.from('{}');
  const emptyDigest = await reg.putBlob(ref.repo, empty);
  const artifacts: Descriptor[] = [];
  let referrers = false;
  for (let i = 0; i < stack.length; i++) {
    const r = stack[i];
    const index = r.layer.compression && !r.layer.remote ? remoteShapedIndex(store, r) : readFileSync(store.images.indexPath(r));
    const chunks = r.layer.remote ? readFileSync(store.images.chunksPath(r)) : chunkDigestsOf(r.layer.tar, layers[i].size, CHUNK_SIZE);
    const chunkSize = r.layer.remote ? r.layer.remote.chunkSize : CHUNK_SIZE;
    // The seek windows (most of a gzip layer's index) go apart, fetched by range only for the seeks a
    // puller makes; the rest is one small gzip'd head.
    const cut = windowsCut(index);
    const head = cut === undefined ? index : index.subarray(0, cut);
    const packed = gzipSync(head, { level: 9 });
    const indexDigest = await reg.putBlob(ref.repo, packed);
    const chunksDigest = await reg.putBlob(ref.repo, chunks);
    const blobs: Descriptor[] = [{ mediaType: `${cut === undefined ? MT.tarstackIndex : MT.tarstackIndexHead}+gzip`, digest: indexDigest, size: packed.length }, { mediaType: MT.tarstackChunks, digest: chunksDigest, size: chunks.length }];
    const annotations: Record<string, string> = { [LAYER_ANNOTATION]: layers[i].digest, [CHUNK_ANNOTATION]: String(chunkSize) };
    if (cut !== undefined) {
      const windows = index.subarray(cut);
      const windowChunks = chunkDigestsOfBuffer(windows, WINDOW_CHUNK_SIZE);
      blobs.push({ mediaType: MT.tarstackWindows, digest: await reg.putBlob(ref.repo, windows), size: windows.length });
      blobs.push({ mediaType: MT.tarstackWindowChunks, digest: await reg.putBlob(ref.repo, windowChunks), size: windowChunks.length });
      annotations[WINDOW_CHUNK_ANNOTATION] = String(WINDOW_CHUNK_SIZE);
    }
    const art = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: MT.ociManifest,
      artifactType: MT.tarstackIndex,
      config: { mediaType: MT.emptyConfig, digest: emptyDigest, size: empty.length },
      layers: blobs,
      subject,
      annotations,
    }));
    const artDigest = digestOf(art);
    const headers = await reg.putManifest(ref.repo, artDigest, art, MT.ociManifest);
    if (headers['oci-subject']) referrers = true;
    artifacts.push({ mediaType: MT.ociManifest, digest: artDigest, size: art.length, artifactType: MT.tarstackIndex, annotations });
  }
  if (!referrers) {
    // Tag-schema fallback: the referrers list as an index tagged sha256-HEX, merged with what is there.
    const tag = manifestDigest.replace(':', '-');
    const have = (await reg.referrers(ref.repo, manifestDigest)).filter((d) => !artifacts.some((x) => x.digest === d.digest));
    const list = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.ociIndex, manifests: [...have, ...artifacts] }));
    await reg.putManifest(ref.repo, tag, list, MT.ociIndex);
  }
  return { manifest: manifestDigest, layers: stack.length, uploaded, indexes: artifacts.length, referrers };
}

/** A compressed layer's index with the seek points remote reads want (the store's has local spacing). */
function remoteShapedIndex(store: Store, r: ImageRecord): Buffer {
  mkdirSync(join(store.images.root, 'run'), { recursive: true });
  const dir = mkdtempSync(join(store.images.root, 'run', 'push-'));
  try {
    const { data } = indexTar(store, r.layer.tar, r.name, r.name, { ...PUSH_SEEK, windowLevel: 9 });
    writeIndex(join(dir, 'index'), data);
    return readFileSync(join(dir, 'index'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function decodedDigest(store: Store, r: ImageRecord): Promise<string> {
  const h = createHash('sha256');
  for await (const c of imageTarChunks(store.images, r)) h.update(c);
  return `sha256:${h.digest('hex')}`;
}
