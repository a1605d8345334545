// A remote layer opened for serving: its blob through the store's chunk cache, the request target
// (and credentials, for a registry) made from the image's record.
import { createHash } from 'node:crypto';
import { readFileSync, readSync } from 'node:fs';
import { fsError } from '../util/errors.js';
import { dirname, join } from 'node:path';
import type { IndexData } from '../tar/index-data.js';
import type { TarLayer } from '../layer/tar-layer.js';
import { TOC_SHA_FILE, WINDOW_CHUNKS_FILE, type RemoteLayerRecord } from '../store/images.js';
import { openPartialTar } from '../store/open-tar.js';
import { SeekableArchive } from '../tar/seekable.js';
import { CodecFormat, loadCodec, PointKind } from '../native/codec.js';
import { chunkCacheOf } from './chunk-cache.js';
import type { Remote } from './http.js';
import { RemoteBlob } from './remote-blob.js';
import { registryRemote } from './registry-auth.js';

export function remoteOf(rec: RemoteLayerRecord): Remote {
  if (rec.kind === 'registry') return registryRemote(rec.url, rec.tlsVerify, rec.certDir);
  return { url: rec.url, tlsVerify: rec.tlsVerify, ...(rec.certDir ? { certDir: rec.certDir } : {}), headers: () => ({}) };
}

/**
 * Every chunk of a remote layer's blob (and of its seek windows, when they stay remote) fetched into
 * the store's cache and checked, in requests of 4 MiB (`image pull --full`, for offline use).
 */
export async function fetchWhole(storeRoot: string, rec: RemoteLayerRecord, chunksPath: string, onProgress?: (done: number, total: number) => void): Promise<void> {
  const cache = chunkCacheOf(storeRoot);
  const blobs = [new RemoteBlob(cache, rec, chunkDigests(rec, chunksPath), remoteOf(rec), false)];
  try {
    if (rec.windows) blobs.push(new RemoteBlob(cache, rec.windows, readFileSync(join(dirname(chunksPath), WINDOW_CHUNKS_FILE)), remoteOf({ ...rec, url: rec.windows.url }), false));
    const total = blobs.reduce((a, b) => a + b.info.size, 0);
    let done = 0;
    for (const b of blobs) {
      for (let pos = 0; pos < b.info.size; pos += WHOLE_STEP) {
        const end = Math.min(b.info.size, pos + WHOLE_STEP);
        (await b.ensure(pos, end))();
        done += end - pos;
        onProgress?.(done, total);
      }
    }
    if (isToc(rec)) checkWhole(blobs[0], rec);
  } finally {
    for (const b of blobs) b.close();
  }
}
const WHOLE_STEP = 4 << 20;

const isToc = (rec: RemoteLayerRecord): boolean => rec.index === 'estargz' || rec.index === 'zstd:chunked';

/** The blob's chunk digests; none for a layer indexed from its TOC (its decoded chunks are checked). */
function chunkDigests(rec: RemoteLayerRecord, chunksPath: string): Buffer | null {
  return isToc(rec) ? null : readFileSync(chunksPath);
}

/** A TOC layer's blob, all in the cache, hashed against the layer's digest (nothing checked its chunks). */
function checkWhole(blob: RemoteBlob, rec: RemoteLayerRecord): void {
  const h = createHash('sha256');
  const buf = Buffer.allocUnsafe(1 << 20);
  for (let pos = 0; pos < rec.size; ) {
    const n = readSync(blob.fd, buf, 0, Math.min(buf.length, rec.size - pos), pos);
    if (n <= 0) break;
    h.update(buf.subarray(0, n));
    pos += n;
  }
  const got = `sha256:${h.digest('hex')}`;
  if (got !== rec.digest) {
    blob.forgetAll();
    throw fsError('EIO', `${blob.label}: the blob's digest is ${got}, not ${rec.digest} as the manifest says`);
  }
}

/**
 * The layer's blob through the store's cache; when the index's seek windows stay remote, their blob
 * too (read by range as seeks need them), and the index's windows pointed at its cache file.
 */
function openBlob(storeRoot: string, rec: RemoteLayerRecord, data: IndexData, chunksPath: string): RemoteBlob {
  const cache = chunkCacheOf(storeRoot);
  const blob = new RemoteBlob(cache, rec, chunkDigests(rec, chunksPath), remoteOf(rec));
  if (isToc(rec) && data.seek) {
    try {
      data.seek.pieceSha = readFileSync(join(dirname(chunksPath), TOC_SHA_FILE));
      if (data.seek.pieceSha.length !== data.seek.count * 32) throw new Error(`${rec.url}: its TOC digests do not cover its index`);
    } catch (err) {
      blob.close();
      throw err;
    }
  }
  if (rec.windows && data.seek) {
    try {
      const digests = readFileSync(join(dirname(chunksPath), WINDOW_CHUNKS_FILE));
      blob.windows = new RemoteBlob(cache, rec.windows, digests, remoteOf({ ...rec, url: rec.windows.url }), false);
    } catch (err) {
      blob.close();
      throw err;
    }
    data.seek.windows = { path: blob.windows.file.path, offset: 0, bytes: rec.windows.size };
  }
  return blob;
}

/** check 'all' (`image verify`): every chunk fetched if missing and checked against its digest first. */
export function openRemoteLayer(storeRoot: string, rec: RemoteLayerRecord, data: IndexData, chunksPath: string, check: 'sample' | 'all' = 'sample'): TarLayer {
  const blob = openBlob(storeRoot, rec, data, chunksPath);
  try {
    if (check === 'all') {
      blob.ensureSync(0, rec.size)();
      if (isToc(rec)) checkWhole(blob, rec);
    }
    return openPartialTar(rec.url, data, blob.fd, blob);
  } catch (err) {
    blob.close();
    throw err;
  }
}

/** A remote layer's tar as tar readers see it (decoded when compressed), in chunks of 1 MiB, every byte checked. */
export async function* remoteTarChunks(storeRoot: string, rec: RemoteLayerRecord, data: IndexData, chunksPath: string): AsyncGenerator<Buffer> {
  if (isToc(rec)) {
    yield* tocTarChunks(storeRoot, rec, chunksPath);
    return;
  }
  const blob = openBlob(storeRoot, rec, data, chunksPath);
  const archive = data.seek ? new SeekableArchive(blob.fd, data.seek, rec.url, blob) : undefined;
  try {
    const size = archive ? archive.size : rec.size;
    for (let pos = 0; pos < size; pos += 1 << 20) {
      const len = Math.min(1 << 20, size - pos);
      yield archive ? Buffer.from(await archive.read(pos, len)) : await blob.read(pos, len);
    }
  } finally {
    archive?.close();
    blob.close();
  }
}

/**
 * A TOC layer's tar: its index's decoded stream is only the files' contents, so the whole blob is
 * fetched into the cache, checked against the layer's digest, and decoded from its start.
 */
async function* tocTarChunks(storeRoot: string, rec: RemoteLayerRecord, chunksPath: string): AsyncGenerator<Buffer> {
  await fetchWhole(storeRoot, rec, chunksPath);
  const blob = new RemoteBlob(chunkCacheOf(storeRoot), rec, null, remoteOf(rec), false);
  const unpin = await blob.ensure(0, rec.size);
  const codec = loadCodec();
  const h = codec.open(rec.index === 'estargz' ? CodecFormat.Gzip : CodecFormat.Zstd, blob.fd, rec.size);
  try {
    checkWhole(blob, rec);
    let kind: number = rec.index === 'estargz' ? PointKind.GzipMember : PointKind.ZstdFrame;
    for (;;) {
      const out = Buffer.allocUnsafe(1 << 20);
      const n = await codec.decode(h, kind, 0, null, out, out.length, null);
      kind = 0;
      if (n > 0) yield out.subarray(0, n);
      if (n < out.length) break;
    }
  } finally {
    codec.close(h);
    unpin();
    blob.close();
  }
}
