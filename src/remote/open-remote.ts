// A remote layer opened for serving: its blob through the store's chunk cache, the request target
// (and credentials, for a registry) made from the image's record.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { IndexData } from '../tar/index-data.js';
import type { TarLayer } from '../layer/tar-layer.js';
import { WINDOW_CHUNKS_FILE, type RemoteLayerRecord } from '../store/images.js';
import { openPartialTar } from '../store/open-tar.js';
import { SeekableArchive } from '../tar/seekable.js';
import { chunkCacheOf } from './chunk-cache.js';
import type { Remote } from './http.js';
import { RemoteBlob } from './remote-blob.js';
import { registryRemote } from './registry-auth.js';

export function remoteOf(rec: RemoteLayerRecord): Remote {
  if (rec.kind === 'registry') return registryRemote(rec.url, rec.tlsVerify);
  return { url: rec.url, tlsVerify: rec.tlsVerify, headers: () => ({}) };
}

/**
 * Every chunk of a remote layer's blob (and of its seek windows, when they stay remote) fetched into
 * the store's cache and checked, in requests of 4 MiB (`image pull --full`, for offline use).
 */
export async function fetchWhole(storeRoot: string, rec: RemoteLayerRecord, chunksPath: string, onProgress?: (done: number, total: number) => void): Promise<void> {
  const cache = chunkCacheOf(storeRoot);
  const blobs = [new RemoteBlob(cache, rec, readFileSync(chunksPath), remoteOf(rec), false)];
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
  } finally {
    for (const b of blobs) b.close();
  }
}
const WHOLE_STEP = 4 << 20;

/**
 * The layer's blob through the store's cache; when the index's seek windows stay remote, their blob
 * too (read by range as seeks need them), and the index's windows pointed at its cache file.
 */
function openBlob(storeRoot: string, rec: RemoteLayerRecord, data: IndexData, chunksPath: string): RemoteBlob {
  const cache = chunkCacheOf(storeRoot);
  const blob = new RemoteBlob(cache, rec, readFileSync(chunksPath), remoteOf(rec));
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
    if (check === 'all') blob.ensureSync(0, rec.size)();
    return openPartialTar(rec.url, data, blob.fd, blob);
  } catch (err) {
    blob.close();
    throw err;
  }
}

/** A remote layer's tar as tar readers see it (decoded when compressed), in chunks of 1 MiB, every byte checked. */
export async function* remoteTarChunks(storeRoot: string, rec: RemoteLayerRecord, data: IndexData, chunksPath: string): AsyncGenerator<Buffer> {
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
