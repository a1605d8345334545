// Typed access to the `fetch` object of native-bindings (src/fetch.c): range GETs of remote blobs
// with libcurl on native threads, whole chunks checked (sha256) and written to a cache fd there.
import { loadAddon } from './addon.js';

export type FetchHandle = { readonly __fetch: unique symbol };

/** Where to ask and how: url, host (for messages), headers ("name: value"), TLS (PEM; ca null: no verification or none given), deadline (ms since the epoch). */
export type FetchTarget = [url: string, host: string, headers: string[], tlsVerify: boolean, ca: Buffer | null, cert: Buffer | null, key: Buffer | null, deadline: number];

export const enum NewsEnd {
  Progress = 0,
  Done = 1,
  Failed = 2,
}

/** A job's news: chunks before `next` are stored; then done (a range job's bytes), or failed (mismatch: the chunk, else -1). */
export type OnNews = (next: number, end: NewsEnd, status: number, message: string | undefined, challenge: string | undefined, mismatch: number, bytes: Buffer | undefined) => void;

export interface NativeFetch {
  /** Chunks [first, last] of a blob of `size` bytes to `fd` (kept open until the end), each checked against its 32 bytes of `digests`; news once chunk `want` is stored, and at the end. */
  chunks(t: FetchTarget, fd: number, size: number, chunkSize: number, first: number, last: number, digests: Buffer | null, want: number, onNews: OnNews): FetchHandle;
  /** A read waits for chunk k: returns the first chunk not stored; if that is <= k, news come once k is stored. */
  want(h: FetchHandle, k: number): number;
  /** Bytes [start, end) into memory, given by the last news. */
  range(t: FetchTarget, start: number, end: number, onNews: OnNews): FetchHandle;
  /** chunks() while the calling thread waits: returns last + 1; throws an Error with `status`, `mismatch` (-1: none) and `next` (the first chunk not stored). */
  chunksSync(t: FetchTarget, fd: number, size: number, chunkSize: number, first: number, last: number, digests: Buffer | null): number;
}

let fetch: NativeFetch | undefined;
export function loadFetch(): NativeFetch {
  fetch ??= (loadAddon() as { fetch: NativeFetch }).fetch;
  return fetch;
}
