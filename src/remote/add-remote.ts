// A tar behind a URL (or a registry blob) made an image layer: one streaming pass indexes it as it
// arrives. The bytes go to a temp file in the staged image directory (never memory) as the pipe
// between the download, here, and the indexer, a worker thread that decodes them as they come (gzip
// seek points, zstd frames, as for a local tar) and waits for bytes it has not got yet; the blob's
// digest and its chunk digests are computed on the way, the digest checked at the end, and the temp
// file is removed: from then on reads are range requests through the store's chunk cache.
import { closeSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { writeFully } from '../tar/reader.js';
import { join } from 'node:path';
import type { Staged } from '../store/image-layers.js';
import { CHUNKS_FILE, INDEX_FILE, type ImageRecord, type RemoteLayerRecord } from '../store/images.js';
import type { Store } from '../store/store.js';
import { UserError } from '../util/errors.js';
import { writingTo } from '../util/error-funnel.js';
import { getRange } from './fetch-thread.js';
import { download, header, HttpError, type Remote } from './http.js';
import { CHUNK_SIZE, ChunkHasher } from './chunk-digests.js';
import { fence, IndexingThread, SHARED_BYTES, sharedCounts } from './indexing-thread.js';
import type { StreamIndexAnswer } from './stream-index-worker.js';

/**
 * Seek points of a streamed remote layer every 1 MiB of output (local tars: 4 MiB): a read far from
 * the last point fetches the compressed bytes back to it, so closer points cost fewer bytes on the
 * wire, for 32 KiB of window each in the index (3 % of the decoded size for gzip, stored undeflated:
 * deflating them cost the pass half as much as decoding; zstd frames and xz blocks need none).
 */
export const REMOTE_SEEK = { spacing: 1 << 20 };
/**
 * Seek points of a pushed index every 256 KiB (one decoded piece): its windows stay in the registry
 * and a puller fetches only those its reads seek to, so closer points cost nothing until used, and a
 * small read fetches about a quarter of what REMOTE_SEEK's would (bench `remote`: bytes on the wire).
 */
export const PUSH_SEEK = { spacing: 256 << 10 };

export interface StreamedLayer {
  staged: Staged;
  layer: ImageRecord['layer'];
}

/**
 * Stage one remote layer: `want` (sha256:HEX), when known, is checked at the end of the pass.
 * `rec` is the rest of the record (kind, url, ref…). `thread` indexes it (the caller's, started
 * early and kept for its next layers), else a thread of its own.
 */
export async function stageRemoteLayer(store: Store, remote: Remote, label: string, rec: Omit<RemoteLayerRecord, 'digest' | 'size' | 'chunkSize' | 'index'>, want?: string, thread?: IndexingThread): Promise<StreamedLayer> {
  const s = store.images.stage();
  const staged: Staged = { ...s, tar: join(s.dir, 'download.tmp') };
  const tmp = staged.tar;
  const indexing = thread ?? new IndexingThread(); // started before the download is asked for
  const own = thread ? undefined : indexing;
  const sab = new SharedArrayBuffer(SHARED_BYTES);
  const state = new Int32Array(sab, 0, 2);
  const [written, wanted] = sharedCounts(sab);
  wanted[0] = Infinity;
  const signal = (st: number): void => {
    if (st) Atomics.store(state, 1, st);
    Atomics.add(state, 0, 1);
    Atomics.notify(state, 0);
  };
  const abort = new AbortController();
  let indexer: Promise<StreamIndexAnswer> | undefined;
  /** What ended the download early: the indexer refusing the tar, or the server refusing ranges. */
  let failed: Error | undefined;
  const fail = (err: Error): void => {
    failed ??= err;
    abort.abort(failed);
  };
  let rangeChecked: Promise<void> | undefined;
  let fd: number | undefined;
  let announced = 0;
  const start = (size: number): void => {
    announced = size;
    indexer = indexing.run({ file: tmp, size, url: rec.url, spacing: REMOTE_SEEK.spacing, indexPath: join(s.dir, INDEX_FILE), sab });
    indexer.catch(() => undefined);
    // A tar the indexer refuses ends the download at once.
    void indexer.then((a) => {
      if (!a.ok && a.message !== 'abandoned') fail(a.format ? new UserError(`${label}: ${a.message}`) : new Error(a.message));
    }, () => undefined);
  };
  try {
    fd = writingTo(tmp, () => openSync(tmp, 'w'));
    const hasher = new ChunkHasher(CHUNK_SIZE);
    let got: { sha256: string; size: number };
    try {
      const out = fd;
      got = await store.withProgress(`fetching ${label}`, (onProgress) =>
        download(remote, {
          start: (total, headers) => {
            // A server that ignores Range would make every read a full download: one that does not
            // say it takes ranges is asked for one byte, beside the download, which it ends if refused.
            if (!/\bbytes\b/i.test(header(headers['accept-ranges']) ?? '')) rangeChecked = checkRanges(remote, label).catch(fail);
            if (total > 0) start(total);
          },
          data: (b) => {
            writingTo(tmp, () => writeFully(out, b, written[0]));
            hasher.update(b);
            written[0] += b.length;
            fence(state);
            if (written[0] >= wanted[0]) signal(0);
          },
        }, onProgress, abort.signal),
      );
    } catch (err) {
      if (failed) throw failed;
      if (err instanceof HttpError) throw new UserError(`${label}: ${err.message}`);
      throw err;
    }
    await rangeChecked;
    if (failed) throw failed;
    const digest = `sha256:${got.sha256}`;
    if (want && want !== digest) throw new UserError(`${label}: the blob's digest is ${digest}, not ${want} as the manifest says; nothing was added`);
    if (indexer && got.size !== announced) throw new UserError(`${label}: the server sent ${got.size} bytes, not the ${announced} it announced`);
    signal(1);
    if (!indexer) start(got.size); // no Content-Length: indexed once it is all here
    const answer = await indexer!;
    if (!answer.ok) throw failed ?? (answer.format ? new UserError(`${label}: ${answer.message}`) : new Error(answer.message));
    writingTo(join(s.dir, CHUNKS_FILE), () => writeFileSync(join(s.dir, CHUNKS_FILE), hasher.digests()));
    const remoteRec: RemoteLayerRecord = { ...rec, digest, size: got.size, chunkSize: CHUNK_SIZE, index: 'stream' };
    const layer = { ...answer.layer, identity: { size: got.size, mtimeNs: '0', ino: 0, dev: 0 }, remote: remoteRec };
    return { staged, layer };
  } catch (err) {
    signal(2); // a job still running ends at its next read
    await indexer?.catch(() => undefined); // and writes nowhere in the staged directory after this
    store.images.discard(staged);
    throw err;
  } finally {
    await own?.close();
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
  }
}

/** Refused in one line unless the server answers a range request with that range. */
async function checkRanges(remote: Remote, label: string): Promise<void> {
  try {
    await getRange(remote, 0, 1, Date.now() + 5000);
  } catch (err) {
    if (err instanceof HttpError) throw new UserError(`${label}: ${err.message}`);
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
