// What every command implementation gets: the store's paths and its collections.
import { mkdirSync } from 'node:fs';
import { Images } from '../store/images.js';
import { Instances } from '../store/instances.js';
import { Mounts } from '../store/mounts.js';
import { Stackpoints } from '../store/stackpoints.js';
import { StorePaths, storeRoot } from '../store/paths.js';
import { withLock } from '../store/lock.js';

export interface GlobalOptions {
  store?: string;
  json?: boolean;
}

export class Context {
  readonly paths: StorePaths;
  readonly images: Images;
  readonly mounts: Mounts;
  readonly instances: Instances;
  readonly stackpoints: Stackpoints;
  constructor(readonly opts: GlobalOptions) {
    this.paths = new StorePaths(storeRoot(opts.store));
    mkdirSync(this.paths.root, { recursive: true, mode: 0o755 });
    this.images = new Images(this.paths);
    this.mounts = new Mounts(this.paths);
    this.instances = new Instances(this.paths);
    this.stackpoints = new Stackpoints(this.paths);
  }

  /** Run `fn` holding the store lock: metadata changes never interleave. */
  locked<T>(fn: () => T | Promise<T>): Promise<T> {
    return withLock(this.paths.lock, fn);
  }
}
