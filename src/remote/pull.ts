// `image pull REF`: an image in an OCI registry becomes a stack of images whose layers are the
// registry's blobs, read lazily. A layer whose tarstack index was pushed beside it (an artifact
// referring to the image's manifest) gets that index, checked by digest, and no layer byte is read;
// any other layer is streamed once to index it, its digest checked at the end of the pass.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { readIndex, IndexFormatError } from '../tar/index-file.js';
import { tarLayerRecord, type Staged } from '../store/image-layers.js';
import { CHUNKS_FILE, INDEX_FILE, type ImageRecord, type RemoteLayerRecord } from '../store/images.js';
import { checkName } from '../store/paths.js';
import type { Store } from '../store/store.js';
import { UserError } from '../util/errors.js';
import { stageRemoteLayer } from './add-remote.js';
import { registryRemote } from './registry-auth.js';
import { digestOf, MT, parseRef, Registry, type Descriptor } from './registry.js';

const LAYER_TYPES = /^application\/vnd\.(oci\.image\.layer\.v1\.tar|docker\.image\.rootfs\.diff\.tar)(\.gzip|\+gzip|\+zstd)?$/;
export const LAYER_ANNOTATION = 'org.tarstack.layer.digest';
export const CHUNK_ANNOTATION = 'org.tarstack.chunk.size';

/** A name from a reference: its repository's last part (tarstack names take no '/'). */
export function nameOfRef(repo: string): string {
  return repo.split('/').pop()!.replace(/[^A-Za-z0-9._+@-]/g, '_');
}

export interface PullResult {
  names: string[];
  manifest: string;
  indexes: Array<'pushed' | 'stream'>;
}

export async function pullImage(store: Store, a: { ref: string; name?: string; tlsVerify: boolean; platform?: string }): Promise<PullResult> {
  const ref = parseRef(a.ref);
  const reg = new Registry(ref.host, a.tlsVerify);
  const { manifest, digest } = await reg.manifest(ref.repo, ref.reference, a.platform);
  const layers = manifest.layers;
  if (layers.length === 0) throw new UserError(`${a.ref}: the image has no layers`);
  for (const l of layers) if (!LAYER_TYPES.test(l.mediaType)) throw new UserError(`${a.ref}: layer ${l.digest} is ${l.mediaType}, which tarstack does not serve`);
  const n = layers.length;
  const top = checkName('image', a.name ?? nameOfRef(ref.repo));
  const names = layers.map((_, i) => checkName('image', i === n - 1 ? top : `${top}-layer${i + 1}`));
  for (const name of names) store.images.checkFree(name, name === top ? '--name' : undefined);
  const pushed = await pushedIndexes(reg, ref.repo, digest);
  const staged: Staged[] = [];
  const records: Array<ImageRecord['layer']> = [];
  const indexes: Array<'pushed' | 'stream'> = [];
  try {
    for (let i = 0; i < n; i++) {
      const l = layers[i];
      const url = await reg.blobUrl(ref.repo, l.digest);
      const rec = { kind: 'registry' as const, url, ref: a.ref, manifest: digest, tlsVerify: a.tlsVerify };
      const label = `${ref.host}/${ref.repo} layer ${i + 1}/${n}`;
      const art = pushed.get(l.digest);
      const fetched = art ? await fetchPushedIndex(store, reg, ref.repo, art, l, rec).catch(() => undefined) : undefined;
      const s = fetched ?? (await stageRemoteLayer(store, registryRemote(url, a.tlsVerify), label, rec, l.digest));
      staged.push(s.staged);
      records.push(s.layer);
      indexes.push(fetched ? 'pushed' : 'stream');
    }
    await store.locked(() => store.images.commitChain(staged, names, records, null));
  } catch (err) {
    for (const s of staged) store.images.discard(s);
    throw err;
  }
  return { names, manifest: digest, indexes };
}

/** The tarstack index artifacts referring to the image's manifest, by the layer digest they index. */
async function pushedIndexes(reg: Registry, repo: string, manifest: string): Promise<Map<string, Descriptor>> {
  const out = new Map<string, Descriptor>();
  for (const d of await reg.referrers(repo, manifest)) {
    const layer = d.annotations?.[LAYER_ANNOTATION];
    if (d.artifactType === MT.tarstackIndex && layer) out.set(layer, d);
  }
  return out;
}

/** Stage a layer from its pushed index: the artifact's blobs, each checked by digest, then the index read back. */
async function fetchPushedIndex(store: Store, reg: Registry, repo: string, art: Descriptor, layer: Descriptor, rec: Omit<RemoteLayerRecord, 'digest' | 'size' | 'chunkSize' | 'index'>): Promise<{ staged: Staged; layer: ImageRecord['layer'] }> {
  const m = JSON.parse((await manifestBytes(reg, repo, art.digest)).toString()) as { layers: Descriptor[]; annotations?: Record<string, string> };
  const indexDesc = m.layers.find((d) => d.mediaType === MT.tarstackIndex || d.mediaType === `${MT.tarstackIndex}+gzip`);
  const chunksDesc = m.layers.find((d) => d.mediaType === MT.tarstackChunks);
  const chunkSize = Number(m.annotations?.[CHUNK_ANNOTATION]);
  if (!indexDesc || !chunksDesc || !(chunkSize > 0)) throw new Error('not a tarstack index artifact');
  const s = store.images.stage();
  const staged: Staged = { ...s, tar: rec.url };
  try {
    const index = await reg.blob(repo, indexDesc.digest);
    writeFileSync(join(s.dir, INDEX_FILE), indexDesc.mediaType.endsWith('+gzip') ? gunzipSync(index) : index);
    writeFileSync(join(s.dir, CHUNKS_FILE), await reg.blob(repo, chunksDesc.digest));
    if (readFileSync(join(s.dir, CHUNKS_FILE)).length !== Math.ceil(layer.size / chunkSize) * 32) throw new Error('its chunk digests do not cover the layer');
    let data;
    try {
      data = readIndex(join(s.dir, INDEX_FILE), { members: 'all' });
    } catch (err) {
      if (err instanceof IndexFormatError) throw new Error(`its index is unreadable here: ${err.message}`);
      throw err;
    }
    const remote: RemoteLayerRecord = { ...rec, digest: layer.digest, size: layer.size, chunkSize, index: 'pushed' };
    return { staged, layer: { ...tarLayerRecord(data, rec.url, false), identity: { size: layer.size, mtimeNs: '0', ino: 0, dev: 0 }, remote } };
  } catch (err) {
    store.images.discard(s);
    throw err;
  }
}

async function manifestBytes(reg: Registry, repo: string, digest: string): Promise<Buffer> {
  const res = await reg.call(`/v2/${repo}/manifests/${digest}`, { headers: { accept: MT.ociManifest } });
  if (res.status !== 200) throw new Error(`artifact ${digest}: HTTP ${res.status}`);
  if (digestOf(res.body) !== digest) throw new Error(`artifact ${digest} does not match its digest`);
  return res.body;
}
