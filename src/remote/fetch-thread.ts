// Range GETs of remote blobs, done on native threads (native-bindings/src/fetch.c: libcurl, each
// chunk's sha256 and its write to the blob's cache file there), so Node's thread, which answers the
// kernel, only marks what arrived. A fetch holds the loop while it runs, never longer. Connection
// errors, timeouts (no byte for 5 s), 5xx, 429 and short 206 answers are retried with backoff (50 ms
// doubling to 1 s) until the deadline (retryDeadlineMs), resuming after the last chunk stored; a 200
// is taken only for a range from 0 (else "ignores Range requests", not retried); redirects are
// followed (5 at most), Authorization going to the first host only; TLS trusts certDirTrust's CAs.
import { loadFetch, NewsEnd, type FetchTarget, type FetchHandle } from '../native/fetch.js';
import { certDirTrust, hostOf, HttpError, retryDeadlineMs, systemCAs, type CertDirTrust, type Remote } from './http.js';

/** Chunks [first, last] of a blob of `size` bytes to write to `fd`, and the digests of those chunks. */
export interface ChunkRange {
  fd: number;
  size: number;
  chunkSize: number;
  first: number;
  last: number;
  digests: Buffer | null;
}

/** A fetched chunk did not match its digest. */
export class ChunkMismatch extends Error {
  constructor(readonly chunk: number) {
    super(`chunk ${chunk} does not match its digest`);
  }
}

/** How a fetch ended: done (a range's bytes), or failed with a status (0: no answer), a message and a challenge (401). */
interface End {
  failed: boolean;
  status: number;
  message: string;
  challenge?: string;
  mismatch: number;
  bytes?: Buffer;
}

let systemPem: Buffer | undefined;
const pems = new WeakMap<CertDirTrust, [Buffer, Buffer | null, Buffer | null]>();

/** What fetch.c needs to ask for `remote`: the TLS material is certDirTrust's, as the https agents'. */
function target(remote: Remote, deadline = Date.now() + retryDeadlineMs()): FetchTarget {
  let tls: [Buffer | null, Buffer | null, Buffer | null] = [null, null, null];
  const host = hostOf(remote.url);
  if (remote.tlsVerify && remote.url.startsWith('https:')) {
    const t = certDirTrust(host, remote.certDir);
    if (!t) tls = [(systemPem ??= Buffer.from(systemCAs().join('\n'))), null, null];
    else {
      let p = pems.get(t);
      if (!p) pems.set(t, (p = [Buffer.from(t.ca.join('\n')), t.cert ? Buffer.from(t.cert) : null, t.key ? Buffer.from(t.key) : null]));
      tls = p;
    }
  }
  return [remote.url, host, Object.entries(remote.headers()).map(([k, v]) => `${k}: ${v}`), remote.tlsVerify, ...tls, deadline];
}

/**
 * Asks with `start(target, onNews)` until it ends; a 401 renews the remote's headers once and asks
 * again (`again` says so). Resolves when done, else throws ChunkMismatch or the HttpError.
 */
async function withRenewal(remote: Remote, start: (t: FetchTarget, again: boolean, end: (e: End) => void) => void, deadline?: number): Promise<End> {
  for (let renewed = false; ; ) {
    const e = await new Promise<End>((resolve) => start(target(remote, deadline), renewed, resolve));
    if (!e.failed) return e;
    if (e.mismatch >= 0) throw new ChunkMismatch(e.mismatch);
    if (e.status === 401 && !renewed && remote.renew && (await remote.renew(e.challenge))) {
      renewed = true;
      continue;
    }
    throw new HttpError(e.status, e.message, false, e.challenge);
  }
}

/** The news callback: progress to `progress`, the end to `end`. */
const onNews = (progress: (next: number) => void, end: (e: End) => void) =>
  (next: number, how: NewsEnd, status: number, message: string | undefined, challenge: string | undefined, mismatch: number, bytes: Buffer | undefined): void => {
    progress(next);
    if (how !== NewsEnd.Progress) end({ failed: how === NewsEnd.Failed, status, message: message ?? 'the fetch failed', challenge, mismatch, bytes });
  };

/**
 * Chunks of a remote blob fetched, checked and written on a native thread. It tells what is stored
 * (`progress(next)`: every chunk before `next`) only when a read waits for a chunk (`want`) and at
 * the end, not per piece. `done` rejects with ChunkMismatch, or the request's error after its retries
 * (a 401 renews the remote's headers once and asks again for what is left).
 */
export class ChunkJob {
  readonly done: Promise<void>;
  private h: FetchHandle | undefined;
  private first: number;

  constructor(private readonly remote: Remote, private readonly r: ChunkRange, private readonly progress: (next: number) => void) {
    this.first = r.first;
    this.done = this.run();
  }

  /** A read waits for chunk k: be told once it is stored. */
  want(k: number): void {
    if (this.h) this.advance(loadFetch().want(this.h, k));
  }

  private advance(next: number): void {
    if (next > this.first) this.progress((this.first = next));
  }

  private async run(): Promise<void> {
    const { fd, size, chunkSize, last } = this.r;
    await withRenewal(this.remote, (t, again, end) => {
      const digests = this.r.digests && this.r.digests.subarray((this.first - this.r.first) * 32);
      // asked again (401): told at its first chunk, a read may be waiting
      this.h = loadFetch().chunks(t, fd, size, chunkSize, this.first, last, digests, again ? -1 : Infinity, onNews((n) => this.advance(n), end));
    });
  }
}

/** Bytes [start, end) of a remote blob, fetched on a native thread: retried until the deadline, then an HttpError. */
export async function getRange(remote: Remote, start: number, end: number, deadline?: number): Promise<Buffer> {
  const e = await withRenewal(remote, (t, _again, done) => loadFetch().range(t, start, end, onNews(() => undefined, done)), deadline);
  return e.bytes!;
}

/**
 * Chunks [first, last] fetched, checked and written while this thread waits (bounded by the retry
 * deadline), as a ChunkJob does on its thread. Throws ChunkMismatch or an HttpError, with `stored`:
 * the first chunk not stored (those before it were checked and written).
 */
export function fetchChunksSync(remote: Remote, r: ChunkRange): void {
  try {
    loadFetch().chunksSync(target(remote), r.fd, r.size, r.chunkSize, r.first, r.last, r.digests);
  } catch (err) {
    const e = err as Error & { status?: number; mismatch?: number; next?: number };
    if (e.next === undefined) throw err; // a wrong argument, not the fetch
    const failure = e.mismatch !== undefined && e.mismatch >= 0 ? new ChunkMismatch(e.mismatch) : new HttpError(e.status ?? 0, e.message, false);
    throw Object.assign(failure, { stored: e.next });
  }
}
