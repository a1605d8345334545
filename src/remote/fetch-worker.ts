// The fetch thread of a process that reads remote blobs (the store's server). A read's range request
// is streamed here: each chunk checked against its digest and written to the blob's cache file, so
// Node's thread, which answers the kernel, only marks what arrived (the sha256 of every chunk and the
// cache writes were two thirds of its time per GiB read). It also serves RemoteBlob.ensureSync, whose
// caller waits on a SharedArrayBuffer while the bytes are fetched here.
import { parentPort } from 'node:worker_threads';
import { chunkMatches, chunkSink } from './chunk-digests.js';
import { getRange, HttpError, streamRange, type Remote } from './http.js';

/** Where to ask, with what headers, until when. */
export interface Target {
  url: string;
  tlsVerify: boolean;
  certDir?: string;
  headers: Record<string, string>;
  deadline: number;
}

/** Bytes [start, end) into `sab`: Int32 [0] 0 waiting, 1 done, 2 failed; [1] message length; bytes from 8. */
export interface SyncFetch extends Target {
  kind: 'sync';
  start: number;
  end: number;
  sab: SharedArrayBuffer;
}

/** Chunks [first, last] of a blob of `size` bytes, checked against `digests` (theirs only) and written to `fd`. */
export interface ChunkFetch extends Target {
  kind: 'chunks';
  id: number;
  fd: number;
  size: number;
  chunkSize: number;
  first: number;
  last: number;
  digests: Uint8Array | null;
  /** Progress is told once chunk `want` is stored (Infinity: only at the end). */
  want: number;
}

/** A read waits for chunk `k` of fetch `id`: tell when it is stored. */
export interface Want {
  kind: 'want';
  id: number;
  k: number;
}

/** What the thread says of a ChunkFetch: chunks before `next` are stored; then done, or failed. */
export interface FetchNews {
  id: number;
  next: number;
  done?: true;
  error?: string;
  status?: number;
  challenge?: string;
  /** The chunk whose bytes did not match its digest. */
  mismatch?: number;
}

/** Fetches in progress by id: the chunk a read waits for (progress is told only then, and at the end), and the first not stored. */
const fetches = new Map<number, { want: number; next: number }>();
const post = (n: FetchNews): void => parentPort!.postMessage(n);

class Mismatch extends Error {
  constructor(readonly chunk: number) {
    super(`chunk ${chunk} does not match its digest`);
  }
}

const remoteOf = (t: Target): Remote => ({ url: t.url, tlsVerify: t.tlsVerify, certDir: t.certDir, headers: () => t.headers });

function fetchChunks(m: ChunkFetch): void {
  const digests = m.digests && Buffer.from(m.digests.buffer, m.digests.byteOffset, m.digests.byteLength);
  const f = { want: m.want, next: m.first };
  fetches.set(m.id, f);
  const sink = chunkSink(
    m.fd,
    m.size,
    m.chunkSize,
    m.first,
    (k, chunk) => {
      if (digests && !chunkMatches(digests, k - m.first, chunk)) throw new Mismatch(k);
    },
    (_a, b) => {
      f.next = b + 1;
      if (f.next <= f.want) return;
      post({ id: m.id, next: f.next });
      f.want = Infinity;
    },
  );
  const end = Math.min(m.size, (m.last + 1) * m.chunkSize);
  streamRange(remoteOf(m), m.first * m.chunkSize, end, (b) => void sink(b), m.deadline).then(
    () => {
      fetches.delete(m.id);
      post({ id: m.id, next: f.next, done: true });
    },
    (err: unknown) => {
      fetches.delete(m.id);
      const e = err as Error;
      post({ id: m.id, next: f.next, error: e.message ?? String(err), ...(err instanceof HttpError ? { status: err.status, ...(err.challenge ? { challenge: err.challenge } : {}) } : {}), ...(err instanceof Mismatch ? { mismatch: err.chunk } : {}) });
    },
  );
}

function fetchSync(m: SyncFetch): void {
  const state = new Int32Array(m.sab, 0, 2);
  getRange(remoteOf(m), m.start, m.end, m.deadline).then(
    (b) => {
      Buffer.from(m.sab, 8, b.length).set(b);
      Atomics.store(state, 0, 1);
      Atomics.notify(state, 0);
    },
    (err: unknown) => {
      const msg = Buffer.from(String((err as Error).message ?? err)).subarray(0, m.sab.byteLength - 8);
      Buffer.from(m.sab, 8, msg.length).set(msg);
      state[1] = msg.length;
      Atomics.store(state, 0, 2);
      Atomics.notify(state, 0);
    },
  );
}

function want(m: Want): void {
  const f = fetches.get(m.id);
  if (!f) return; // ended: its last news is on the way
  if (f.next > m.k) post({ id: m.id, next: f.next });
  else f.want = Math.min(f.want, m.k);
}

parentPort?.on('message', (m: SyncFetch | ChunkFetch | Want) => (m.kind === 'sync' ? fetchSync(m) : m.kind === 'want' ? want(m) : fetchChunks(m)));
