// `image pull REF`: an image in an OCI registry becomes a stack of images whose layers are the
// registry's blobs, read lazily. A layer whose tarstack index was pushed beside it (an artifact
// referring to the image's manifest) gets that index, checked by digest, and no layer byte is read;
// any other layer is streamed once to index it, its digest checked at the end of the pass.
import { statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { readIndex, IndexFormatError } from '../tar/index-file.js';
import type { Staged } from '../store/image-layers.js';
import { tarLayerRecord } from '../store/layer-record.js';
import { writeIndex } from '../tar/index-file.js';
import { CHUNK_SIZE } from './chunk-digests.js';
import { fetchToc, indexFromToc, TocError, tocOf } from './toc.js';
import type { Remote } from './http.js';
import { CHUNKS_FILE, INDEX_FILE, TOC_SHA_FILE, WINDOW_CHUNKS_FILE, type ImageRecord, type RemoteLayerRecord } from '../store/images.js';
import { checkName } from '../store/paths.js';
import type { Store } from '../store/store.js';
import { UserError } from '../util/errors.js';
import { cacheBytesLimit } from './chunk-cache.js';
import { IndexingThread } from './indexing-thread.js';
import { registryRemote } from './registry-auth.js';
import { HttpError } from './http.js';
import { digestOf, MT, parseRef, Registry, type Descriptor } from './registry.js';

const LAYER_TYPES = /^application\/vnd\.(oci\.image\.layer\.v1\.tar|docker\.image\.rootfs\.diff\.tar)(\.gzip|\+gzip|\+zstd)?$/;
export const LAYER_ANNOTATION = 'org.tarstack.layer.digest';
export const CHUNK_ANNOTATION = 'org.tarstack.chunk.size';
export const WINDOW_CHUNK_ANNOTATION = 'org.tarstack.windows.chunk.size';

/** A name from a reference: its repository's last part (tarstack names take no '/'). */
export function nameOfRef(repo: string): string {
  return repo.split('/').pop()!.replace(/[^A-Za-z0-9._+@-]/g, '_');
}

/** How a pulled layer got its index. */
export type IndexSource = RemoteLayerRecord['index'];

export interface PullResult {
  names: string[];
  manifest: string;
  indexes: IndexSource[];
  /** Layers whose TOC was announced but not used (then streamed), and why. */
  tocRefused: string[];
  /** With --full: bytes of blobs now held in the cache. */
  fetched?: number;
}

/**
 * `--full`: every layer's blob fetched into the store's cache (checked chunk by chunk), so the image
 * is served with the registry gone. Refused up front when the cache cannot hold them all.
 */
async function fetchLayersWhole(store: Store, names: string[]): Promise<number> {
  const recs = names.map((n) => store.images.closed(n, 'be fetched')).filter((r) => r.layer.remote);
  const limit = cacheBytesLimit();
  const need = recs.reduce((a, r) => a + r.layer.remote!.size + (r.layer.remote!.windows?.size ?? 0), 0);
  if (need > limit) throw new UserError(`--full needs ${fmtBytes(need)} of chunk cache and the store's cache holds ${fmtBytes(limit)}; raise it with --cache-size or TARSTACK_CACHE_SIZE (the image was pulled, its layers are read lazily)`);
  const { fetchWhole } = await import('./open-remote.js');
  for (const [i, r] of recs.entries()) {
    await store.withProgress(`fetching layer ${i + 1}/${recs.length} in full`, (onProgress) => fetchWhole(store.images.root, r.layer.remote!, store.images.chunksPath(r), onProgress));
  }
  return need;
}

const fmtBytes = (n: number): string => (n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(1)} GiB` : `${(n / 2 ** 20).toFixed(1)} MiB`);

export async function pullImage(store: Store, a: { ref: string; name?: string; tlsVerify: boolean; certDir?: string; platform?: string; full?: boolean }): Promise<PullResult> {
  const ref = parseRef(a.ref);
  const certDir = checkCertDir(a.certDir);
  const reg = new Registry(ref.host, a.tlsVerify, certDir);
  const { manifest, digest } = await reg.manifest(ref.repo, ref.reference, a.platform);
  const layers = manifest.layers;
  if (layers.length === 0) throw new UserError(`${a.ref}: the image has no layers`);
  for (const l of layers) if (!LAYER_TYPES.test(l.mediaType)) throw new UserError(`${a.ref}: layer ${l.digest} is ${l.mediaType}, which tarstack does not serve`);
  const n = layers.length;
  const top = checkName('image', a.name ?? nameOfRef(ref.repo));
  const names = layers.map((_, i) => checkName('image', i === n - 1 ? top : `${top}-layer${i + 1}`));
  for (const name of names) store.images.checkFree(name, name === top ? '--name' : undefined);
  const pushed = await pushedIndexes(reg, ref.repo, digest);
  // A layer to stream: the indexing thread starts now, its start-up beside the first download's
  // request (not before: a pull whose indexes were all pushed would pay ~30 ms of CPU for nothing),
  // and serves every streamed layer of the pull.
  const indexing = new Indexing();
  if (!layers.every((l) => pushed.has(l.digest) || tocOf(l))) indexing.get();
  const staged: Staged[] = [];
  const records: Array<ImageRecord['layer']> = [];
  const indexes: IndexSource[] = [];
  const tocRefused: string[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const l = layers[i];
      const url = await reg.blobUrl(ref.repo, l.digest);
      const rec = { kind: 'registry' as const, url, ref: a.ref, manifest: digest, tlsVerify: a.tlsVerify, ...(certDir ? { certDir } : {}) };
      const label = `${ref.host}/${ref.repo} layer ${i + 1}/${n}`;
      const art = pushed.get(l.digest);
      const fetched = art ? await fetchPushedIndex(store, reg, ref.repo, art, l, rec).catch(() => undefined) : undefined;
      const toc = fetched ? undefined : tocOf(l);
      const fromToc = toc ? await stageFromToc(store, registryRemote(url, a.tlsVerify, certDir), l, toc, rec).catch((err: unknown) => {
        if (!(err instanceof TocError)) throw err;
        tocRefused.push(`layer ${i + 1} (${l.digest}): its ${toc.kind} TOC was not used: ${err.message}`);
        return undefined;
      }) : undefined;
      const s = fetched ?? fromToc ?? (await (await import('./add-remote.js')).stageRemoteLayer(store, registryRemote(url, a.tlsVerify, certDir), label, rec, l.digest, indexing.get()));
      staged.push(s.staged);
      records.push(s.layer);
      indexes.push(s.layer.remote!.index);
    }
    await store.locked(() => store.images.commitChain(staged, names, records, null));
  } catch (err) {
    for (const s of staged) store.images.discard(s);
    throw err;
  } finally {
    await indexing.close();
  }
  const fetched = a.full ? await fetchLayersWhole(store, names) : undefined;
  return { names, manifest: digest, indexes, tocRefused, ...(fetched !== undefined ? { fetched } : {}) };
}

/** A pull's indexing thread: made once a layer is to be streamed (or at its first use), closed at the end. */
class Indexing {
  private thread: IndexingThread | undefined;
  get(): IndexingThread {
    return (this.thread ??= new IndexingThread());
  }
  async close(): Promise<void> {
    const t = this.thread;
    this.thread = undefined;
    await t?.close();
  }
}

/** --cert-dir made absolute (the store's server reads with it later), refused in one line unless a directory. */
export function checkCertDir(dir: string | undefined): string | undefined {
  if (dir === undefined) return undefined;
  const abs = resolve(dir);
  let ok = false;
  try {
    ok = statSync(abs).isDirectory();
  } catch {
    ok = false;
  }
  if (!ok) throw new UserError(`--cert-dir ${dir}: not a directory`);
  return abs;
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

/**
 * Stage a layer from its pushed index: the artifact's blobs (fetched together), each checked by
 * digest, then the index read back. Its seek windows, when pushed apart, are not fetched: the record
 * says where they are, and reads fetch the ones their seeks need.
 */
async function fetchPushedIndex(store: Store, reg: Registry, repo: string, art: Descriptor, layer: Descriptor, rec: Omit<RemoteLayerRecord, 'digest' | 'size' | 'chunkSize' | 'index'>): Promise<{ staged: Staged; layer: ImageRecord['layer'] }> {
  const m = JSON.parse((await manifestBytes(reg, repo, art.digest)).toString()) as { layers: Descriptor[]; annotations?: Record<string, string> };
  const find = (mt: string): Descriptor | undefined => m.layers.find((d) => d.mediaType === mt);
  const headDesc = find(`${MT.tarstackIndexHead}+gzip`);
  const indexDesc = headDesc ?? find(MT.tarstackIndex) ?? find(`${MT.tarstackIndex}+gzip`);
  const chunksDesc = find(MT.tarstackChunks);
  const windowsDesc = headDesc && find(MT.tarstackWindows);
  const windowChunksDesc = headDesc && find(MT.tarstackWindowChunks);
  const chunkSize = Number(m.annotations?.[CHUNK_ANNOTATION]);
  const windowChunkSize = Number(m.annotations?.[WINDOW_CHUNK_ANNOTATION]);
  if (!indexDesc || !chunksDesc || !(chunkSize > 0)) throw new Error('not a tarstack index artifact');
  if (headDesc && (!windowsDesc || !windowChunksDesc || !(windowChunkSize > 0))) throw new Error('its seek windows are missing');
  const s = store.images.stage();
  const staged: Staged = { ...s, tar: rec.url };
  try {
    const [index, chunks, windowChunks] = await Promise.all([reg.blob(repo, indexDesc.digest), reg.blob(repo, chunksDesc.digest), windowChunksDesc ? reg.blob(repo, windowChunksDesc.digest) : undefined]);
    const indexBytes = indexDesc.mediaType.endsWith('+gzip') ? gunzipSync(index) : index;
    writeFileSync(join(s.dir, INDEX_FILE), indexBytes);
    if (chunks.length !== Math.ceil(layer.size / chunkSize) * 32) throw new Error('its chunk digests do not cover the layer');
    writeFileSync(join(s.dir, CHUNKS_FILE), chunks);
    let data;
    try {
      data = readIndex(join(s.dir, INDEX_FILE), { members: 'all' });
    } catch (err) {
      if (err instanceof IndexFormatError) throw new Error(`its index is unreadable here: ${err.message}`);
      throw err;
    }
    let windows: RemoteLayerRecord['windows'];
    if (windowsDesc && windowChunks) {
      const w = data.seek?.windows;
      if (!w || Buffer.isBuffer(w) || w.offset !== indexBytes.length || w.bytes !== windowsDesc.size) throw new Error('its seek windows do not fit its index');
      if (windowChunks.length !== Math.ceil(windowsDesc.size / windowChunkSize) * 32) throw new Error('the chunk digests of its seek windows do not cover them');
      writeFileSync(join(s.dir, WINDOW_CHUNKS_FILE), windowChunks);
      windows = { url: await reg.blobUrl(repo, windowsDesc.digest), digest: windowsDesc.digest, size: windowsDesc.size, chunkSize: windowChunkSize };
    }
    const remote: RemoteLayerRecord = { ...rec, digest: layer.digest, size: layer.size, chunkSize, index: 'pushed', ...(windows ? { windows } : {}) };
    return { staged, layer: { ...tarLayerRecord(data, rec.url, false), identity: { size: layer.size, mtimeNs: '0', ino: 0, dev: 0 }, remote } };
  } catch (err) {
    store.images.discard(s);
    throw err;
  }
}

/**
 * Stage a layer from the TOC it carries (eStargz, zstd:chunked): the TOC fetched by range and checked
 * against the manifest's annotation, then made the index (remote/toc.ts). A TocError: not usable, the
 * layer is streamed instead (a TOC that does not match its annotation means the blob does not match
 * its manifest, which the streaming pass then says).
 */
async function stageFromToc(store: Store, remote: Remote, layer: Descriptor, toc: NonNullable<ReturnType<typeof tocOf>>, rec: Omit<RemoteLayerRecord, 'digest' | 'size' | 'chunkSize' | 'index'>): Promise<{ staged: Staged; layer: ImageRecord['layer'] }> {
  let json: Buffer;
  try {
    json = await fetchToc(remote, layer.size, toc);
  } catch (err) {
    if (err instanceof HttpError) throw new TocError(err.message);
    throw err;
  }
  const { data, chunkSha } = indexFromToc(json, toc.kind, layer.size, 0);
  const s = store.images.stage();
  const staged: Staged = { ...s, tar: rec.url };
  try {
    writeIndex(join(s.dir, INDEX_FILE), data);
    writeFileSync(join(s.dir, TOC_SHA_FILE), chunkSha);
    const remoteRec: RemoteLayerRecord = { ...rec, digest: layer.digest, size: layer.size, chunkSize: CHUNK_SIZE, index: toc.kind };
    return { staged, layer: { ...tarLayerRecord(data, rec.url, false), identity: { size: layer.size, mtimeNs: '0', ino: 0, dev: 0 }, remote: remoteRec } };
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
