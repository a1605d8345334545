// The thread that indexes streamed layers (stream-index-worker.ts), one job at a time. Its start-up
// (a Node context and the indexer's modules: 40-60 ms CPU, ~100 ms wall on a busy machine) is paid
// once per pull, and early: a pull starts it as soon as it knows a layer is to be streamed, before
// that layer's download is asked for, and its later layers reuse it.
import { createRequire } from 'node:module';
import type { Worker } from 'node:worker_threads';
import type { StreamIndexAnswer, StreamIndexJob } from './stream-index-worker.js';

/** The job's SharedArrayBuffer: its state words and its two byte counts (written, wanted). */
export const SHARED_BYTES = 24;
export function sharedCounts(sab: SharedArrayBuffer): [Float64Array, Float64Array] {
  return [new Float64Array(sab, 8, 1), new Float64Array(sab, 16, 1)];
}
/**
 * A full memory barrier (an atomic read-modify-write of the seq word, adding 0): each side stores its
 * count, fences, then reads the other's, so no wake-up is lost between them.
 */
export function fence(state: Int32Array): void {
  Atomics.add(state, 0, 0);
}

export class IndexingThread {
  private readonly worker: Worker;
  private pending: { resolve(a: StreamIndexAnswer): void; reject(err: Error): void } | undefined;
  /** Why no job can run any more (the thread failed or was closed). */
  private dead: Error | undefined;

  constructor() {
    // worker_threads loads at first use, as in remote-blob.ts (remote code loads no more than it needs)
    const { Worker } = createRequire(import.meta.url)('node:worker_threads') as typeof import('node:worker_threads');
    this.worker = new Worker(new URL('../remote/stream-index-worker.js', import.meta.url));
    // idle, it keeps no process alive; a job refs it until its answer
    this.worker.unref();
    this.worker.on('message', (a: StreamIndexAnswer) => this.settle(undefined, a));
    this.worker.on('error', (err: Error) => this.settle(err));
    this.worker.on('exit', (code) => this.settle(new Error(`the indexing thread exited (${code}) without an answer`)));
  }

  /** Index one download (see StreamIndexJob); one job at a time. */
  run(job: StreamIndexJob): Promise<StreamIndexAnswer> {
    if (this.dead) return Promise.reject(this.dead);
    if (this.pending) return Promise.reject(new Error('the indexing thread is busy'));
    const answer = new Promise<StreamIndexAnswer>((resolve, reject) => (this.pending = { resolve, reject }));
    this.worker.ref();
    this.worker.postMessage(job);
    return answer;
  }

  async close(): Promise<void> {
    this.dead ??= new Error('the indexing thread was closed');
    this.worker.ref(); // an unref'd worker's exit would not keep the process alive to see it
    await this.worker.terminate();
  }

  private settle(err: Error | undefined, answer?: StreamIndexAnswer): void {
    if (err) this.dead ??= err;
    const p = this.pending;
    this.pending = undefined;
    this.worker.unref();
    if (!p) return;
    if (err) p.reject(err);
    else p.resolve(answer!);
  }
}
