// A remote layer opened for serving: its blob through the store's chunk cache, the request target
// (and credentials, for a registry) made from the image's record.
import { readFileSync } from 'node:fs';
import type { IndexData } from '../tar/index-data.js';
import type { TarLayer } from '../layer/tar-layer.js';
import type { RemoteLayerRecord } from '../store/images.js';
import { openPartialTar } from '../store/open-tar.js';
import { chunkCacheOf } from './chunk-cache.js';
import type { Remote } from './http.js';
import { RemoteBlob } from './remote-blob.js';
import { registryRemote } from './registry-auth.js';

export function remoteOf(rec: RemoteLayerRecord): Remote {
  if (rec.kind === 'registry') return registryRemote(rec.url, rec.tlsVerify);
  return { url: rec.url, tlsVerify: rec.tlsVerify, headers: () => ({}) };
}

export function openRemoteLayer(storeRoot: string, rec: RemoteLayerRecord, data: IndexData, chunksPath: string): TarLayer {
  const blob = new RemoteBlob(chunkCacheOf(storeRoot), rec, readFileSync(chunksPath), remoteOf(rec));
  try {
    return openPartialTar(rec.url, data, blob.fd, blob);
  } catch (err) {
    blob.close();
    throw err;
  }
}
