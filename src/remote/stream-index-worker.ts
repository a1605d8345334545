// The indexing half of a streaming pull (add-remote.ts): this thread indexes the download's temp file
// while the main thread is still writing it, waiting on a SharedArrayBuffer for the bytes each read
// needs, so the layer is decoded as its bytes arrive instead of after the download. It writes the
// index file and answers with the layer record; a failed download (state 2) abandons it. One thread
// takes a job per message, layer after layer (indexing-thread.ts).
import { parentPort } from 'node:worker_threads';
import { indexTarFile } from '../tar/indexer.js';
import { writeIndex } from '../tar/index-file.js';
import { TarFormatError } from '../tar/scan.js';
import { tarLayerRecord } from '../store/layer-record.js';
import type { ImageRecord } from '../store/images.js';
import { fence, sharedCounts } from './indexing-thread.js';

export interface StreamIndexJob {
  file: string;
  /** The blob's size (Content-Length, or the manifest's). */
  size: number;
  /** The record's `tar` (the URL) and messages' subject. */
  url: string;
  spacing: number;
  indexPath: string;
  /**
   * Int32 [0]: bumped on each wake-up, [1]: 0 downloading, 1 done, 2 abandoned; Float64 at 8: bytes
   * written; Float64 at 16: bytes this thread waits for (the writer wakes it once they are there,
   * not on every write: a wake-up per 64 KiB received was ~400 context switches a 25 MB layer).
   */
  sab: SharedArrayBuffer;
}

export type StreamIndexAnswer = { ok: true; layer: ImageRecord['layer'] } | { ok: false; message: string; format: boolean };

/** Thrown by the gate when the download was abandoned: nothing to report, the main thread has the cause. */
class Abandoned extends Error {}

function run(job: StreamIndexJob): StreamIndexAnswer {
  const state = new Int32Array(job.sab, 0, 2);
  const [written, wanted] = sharedCounts(job.sab);
  const gate = (end: number): void => {
    for (;;) {
      const seq = Atomics.load(state, 0);
      const st = Atomics.load(state, 1);
      if (written[0] >= end || st === 1) {
        wanted[0] = Infinity; // not waiting: the writer wakes no one
        return;
      }
      if (st === 2) throw new Abandoned('abandoned');
      wanted[0] = end;
      fence(state);
      // A write either came before the fence (seen here) or sees `wanted` and bumps seq.
      if (written[0] >= end) continue;
      Atomics.wait(state, 0, seq, 1000);
    }
  };
  try {
    const { data } = indexTarFile(job.file, { gate, source: { size: job.size, mtimeNs: '0', ino: 0, dev: 0 }, seek: { spacing: job.spacing, windowLevel: 0 } });
    try {
      writeIndex(job.indexPath, data);
    } catch (err) {
      return { ok: false, message: `${job.indexPath}: ${(err as Error).message}`, format: false };
    }
    return { ok: true, layer: tarLayerRecord(data, job.url, false) };
  } catch (err) {
    if (err instanceof TarFormatError) return { ok: false, message: err.message, format: true };
    return { ok: false, message: err instanceof Abandoned ? 'abandoned' : String((err as Error).message ?? err), format: false };
  }
}

parentPort?.on('message', (job: StreamIndexJob) => parentPort!.postMessage(run(job)));
