// A tar behind a URL (or a registry blob) made an image layer: one streaming pass downloads it to a
// temp file in the staged image directory (never in memory), hashing it, the tar is indexed there as a
// local one is (gzip seek points, zstd frames), its chunk digests are recorded, and the temp file is
// removed: from then on reads are range requests through the store's chunk cache.
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeIndex } from '../tar/index-file.js';
import { indexTar, tarLayerRecord, type Staged } from '../store/image-layers.js';
import { CHUNKS_FILE, INDEX_FILE, type ImageRecord, type RemoteLayerRecord } from '../store/images.js';
import type { Store } from '../store/store.js';
import { UserError } from '../util/errors.js';
import { writingTo } from '../util/error-funnel.js';
import { download, getRange, HttpError, type Remote } from './http.js';
import { CHUNK_SIZE, chunkDigestsOf } from './remote-blob.js';

/**
 * Seek points of a remote compressed layer every 1 MiB of output (local tars: 4 MiB): a read far from
 * the last point fetches the compressed bytes back to it, so closer points cost fewer bytes on the
 * wire, for 32 KiB of window each in the index (3 % of the decoded size for gzip; zstd frames and
 * xz blocks need none).
 */
export const REMOTE_SEEK = { spacing: 1 << 20 };

export interface StreamedLayer {
  staged: Staged;
  layer: ImageRecord['layer'];
}

/**
 * Stage one remote layer: `want` (sha256:HEX), when known, is checked at the end of the pass.
 * `rec` is the rest of the record (kind, url, ref…).
 */
export async function stageRemoteLayer(store: Store, remote: Remote, label: string, rec: Omit<RemoteLayerRecord, 'digest' | 'size' | 'chunkSize' | 'index'>, want?: string): Promise<StreamedLayer> {
  // A server that ignores Range would make every read a full download: refuse it now.
  try {
    await getRange(remote, 0, 1, Date.now() + 5000);
  } catch (err) {
    if (err instanceof HttpError) throw new UserError(`${label}: ${err.message}`);
    throw err;
  }
  const s = store.images.stage();
  const staged: Staged = { ...s, tar: join(s.dir, 'download.tmp') };
  try {
    let got: { sha256: string; size: number };
    try {
      got = await store.withProgress(`fetching ${label}`, (onProgress) => writingTo(staged.tar, () => download(remote, staged.tar, onProgress)));
    } catch (err) {
      if (err instanceof HttpError) throw new UserError(`${label}: ${err.message}`);
      throw err;
    }
    const digest = `sha256:${got.sha256}`;
    if (want && want !== digest) throw new UserError(`${label}: the blob's digest is ${digest}, not ${want} as the manifest says; nothing was added`);
    const { data } = indexTar(store, staged.tar, label, label, REMOTE_SEEK);
    writingTo(join(s.dir, CHUNKS_FILE), () => writeFileSync(join(s.dir, CHUNKS_FILE), chunkDigestsOf(staged.tar, got.size, CHUNK_SIZE)));
    writingTo(join(s.dir, INDEX_FILE), () => writeIndex(join(s.dir, INDEX_FILE), data));
    rmSync(staged.tar);
    const remoteRec: RemoteLayerRecord = { ...rec, digest, size: got.size, chunkSize: CHUNK_SIZE, index: 'stream' };
    const layer = { ...tarLayerRecord(data, rec.url, false), identity: { size: got.size, mtimeNs: '0', ino: 0, dev: 0 }, remote: remoteRec };
    return { staged, layer };
  } catch (err) {
    store.images.discard(staged);
    throw err;
  }
}

/** `image add URL`: one remote tar as an image. */
export async function addUrlImage(store: Store, a: { url: string; name: string; parent?: string; tlsVerify: boolean }): Promise<ImageRecord> {
  store.images.checkFree(a.name, '--name');
  const parent = a.parent ? store.images.closed(a.parent, 'be a parent') : null;
  const remote: Remote = { url: a.url, tlsVerify: a.tlsVerify, headers: () => ({}) };
  const { staged, layer } = await stageRemoteLayer(store, remote, a.url, { kind: 'url', url: a.url, tlsVerify: a.tlsVerify });
  try {
    return await store.locked(() => {
      if (parent && !store.images.list().some((x) => x.id === parent.id)) throw new UserError(`parent image "${parent.name}" was removed meanwhile`);
      return store.images.commit(staged, { name: a.name, parent: parent?.id ?? null, created: new Date().toISOString(), layer });
    });
  } catch (err) {
    store.images.discard(staged);
    throw err;
  }
}
