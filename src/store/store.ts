// A store as its services use it: its paths, its collections (images, instances, mounts,
// stackpoints), the store lock that orders metadata changes, and where long work reports progress
// (a terminal's progress line in the CLI; nowhere by default).
import { mkdirSync } from 'node:fs';
import { Images } from './images.js';
import { Instances } from './instances.js';
import { Mounts } from './mounts.js';
import { Stackpoints } from './stackpoints.js';
import { StorePaths } from './paths.js';

/** One piece of long work being reported (indexing, recompressing): updated as it goes, then done. */
export interface Progress {
  update(done: number, total: number): void;
  done(): void;
}

export type ProgressReporter = (label: string) => Progress;

const silent: ProgressReporter = () => ({ update: () => undefined, done: () => undefined });

export class Store {
  readonly paths: StorePaths;
  readonly images: Images;
  readonly mounts: Mounts;
  readonly instances: Instances;
  readonly stackpoints: Stackpoints;

  constructor(root: string, readonly progress: ProgressReporter = silent) {
    this.paths = new StorePaths(root);
    mkdirSync(this.paths.root, { recursive: true, mode: 0o755 });
    this.images = new Images(this.paths);
    this.mounts = new Mounts(this.paths);
    this.instances = new Instances(this.paths);
    this.stackpoints = new Stackpoints(this.paths);
  }

  /** Run `fn` holding the store lock: metadata changes never interleave. */
  async locked<T>(fn: () => T | Promise<T>): Promise<T> {
    const { withLock } = await import('./lock.js'); // only commands that change the store load it
    return withLock(this.paths.lock, fn);
  }

  /** Run `work` reporting its progress under `label`; the report ends however the work does. */
  withProgress<T>(label: string, work: (onProgress: (done: number, total: number) => void) => T): T {
    const p = this.progress(label);
    let result: T;
    try {
      result = work((done, total) => p.update(done, total));
    } catch (err) {
      p.done();
      throw err;
    }
    if (result instanceof Promise) return result.finally(() => p.done()) as T;
    p.done();
    return result;
  }
}
