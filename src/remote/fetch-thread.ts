// Node's side of the fetch thread (fetch-worker.ts): one per process, started at the first remote
// read (not with every mount), kept referenced only while a fetch is outstanding.
import { createRequire } from 'node:module';
import type { Worker } from 'node:worker_threads';
import { header, hostOf, HttpError, retryDeadlineMs, type Remote } from './http.js';
import type { ChunkFetch, FetchNews, SyncFetch, Target, Want } from './fetch-worker.js';

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

interface Waiter {
  progress(next: number): void;
  settle(news: FetchNews): void;
}

let worker: Worker | undefined;
let lastId = 0;
const waiting = new Map<number, Waiter>();

function thread(): Worker {
  if (worker) return worker;
  const { Worker } = createRequire(import.meta.url)('node:worker_threads') as typeof import('node:worker_threads');
  const w = new Worker(new URL('../remote/fetch-worker.js', import.meta.url));
  w.unref();
  w.on('message', (n: FetchNews) => {
    const wt = waiting.get(n.id);
    if (!wt) return;
    wt.progress(n.next);
    if (!n.done && n.error === undefined) return;
    waiting.delete(n.id);
    if (waiting.size === 0) w.unref();
    wt.settle(n);
  });
  w.on('error', (err) => {
    // a thread that died: its fetches fail (retried by the next read), the next fetch starts a new one
    worker = undefined;
    for (const [id, wt] of waiting) {
      waiting.delete(id);
      wt.settle({ id, next: -1, error: `the fetch thread failed: ${err.message}` });
    }
  });
  worker = w;
  return w;
}

function target(remote: Remote): Target {
  return { url: remote.url, tlsVerify: remote.tlsVerify, ...(remote.certDir ? { certDir: remote.certDir } : {}), headers: remote.headers(), deadline: Date.now() + retryDeadlineMs() };
}

/**
 * Chunks of a remote blob fetched, checked and written by the fetch thread. It tells what is stored
 * (`progress(next)`: every chunk before `next`) only when a read waits for a chunk (`want`) and at
 * the end, not per piece. `done` rejects with ChunkMismatch, or the request's error after its retries
 * (a 401 renews the remote's headers once and asks again for what is left).
 */
export class ChunkJob {
  readonly done: Promise<void>;
  private id = 0;
  private first: number;

  constructor(private readonly remote: Remote, private readonly r: ChunkRange, private readonly progress: (next: number) => void) {
    this.first = r.first;
    this.done = this.run();
  }

  /** A read waits for chunk k: be told once it is stored. */
  want(k: number): void {
    const m: Want = { kind: 'want', id: this.id, k };
    thread().postMessage(m);
  }

  private async run(): Promise<void> {
    let renewed = false;
    for (let want = Infinity; ; want = -1) {
      const news = await new Promise<FetchNews>((resolve) => {
        const w = thread();
        this.id = ++lastId;
        waiting.set(this.id, { progress: (next) => next > this.first && this.progress((this.first = next)), settle: resolve });
        w.ref();
        const { fd, size, chunkSize, last } = this.r;
        const digests = this.r.digests && this.r.digests.subarray((this.first - this.r.first) * 32);
        const m: ChunkFetch = { kind: 'chunks', id: this.id, ...target(this.remote), fd, size, chunkSize, first: this.first, last, digests, want };
        w.postMessage(m);
      });
      if (news.done) return;
      if (news.mismatch !== undefined) throw new ChunkMismatch(news.mismatch);
      if (news.status === 401 && !renewed && this.remote.renew && (await this.remote.renew(header(news.challenge)))) {
        renewed = true; // asked again for what is left, told at its first chunk (a read may be waiting)
        continue;
      }
      throw new HttpError(news.status ?? 0, news.error ?? 'the fetch failed', false);
    }
  }
}

/** Bytes [start, end) fetched by the fetch thread while this thread waits (bounded by the retry deadline). */
export function fetchSync(remote: Remote, start: number, end: number): Buffer {
  const w = thread();
  const sab = new SharedArrayBuffer(8 + Math.max(end - start, 1024));
  const state = new Int32Array(sab, 0, 2);
  const msg: SyncFetch = { kind: 'sync', ...target(remote), start, end, sab };
  w.postMessage(msg);
  const limit = Date.now() + retryDeadlineMs() + 10_000;
  while (Atomics.load(state, 0) === 0 && Date.now() < limit) Atomics.wait(state, 0, 0, limit - Date.now());
  if (state[0] === 0) throw new Error(`no answer from ${hostOf(remote.url)}`);
  if (state[0] === 2) throw new Error(Buffer.from(sab, 8, state[1]).toString());
  return Buffer.from(Buffer.from(sab, 8, end - start));
}
