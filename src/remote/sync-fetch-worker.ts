// The worker behind RemoteBlob.ensureSync: copy-up and checks read synchronously, so their missing
// chunks are fetched here while the caller waits on a SharedArrayBuffer (Atomics.wait).
import { parentPort } from 'node:worker_threads';
import { getRange, type Remote } from './http.js';

export interface SyncFetch {
  url: string;
  tlsVerify: boolean;
  certDir?: string;
  headers: Record<string, string>;
  start: number;
  end: number;
  deadline: number;
  /** Int32 [0]: 0 waiting, 1 done, 2 failed; [1]: message length; bytes from 8. */
  sab: SharedArrayBuffer;
}

parentPort?.on('message', (m: SyncFetch) => {
  const state = new Int32Array(m.sab, 0, 2);
  const remote: Remote = { url: m.url, tlsVerify: m.tlsVerify, certDir: m.certDir, headers: () => m.headers };
  getRange(remote, m.start, m.end, m.deadline).then(
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
});
