// What every command implementation gets: the store (its services' view: paths, collections, lock)
// with progress shown on the terminal, and the global options.
import { Store } from '../store/store.js';
import { storeRoot } from '../store/paths.js';
import { progress } from './output.js';

export interface GlobalOptions {
  store?: string;
  json?: boolean;
  cacheSize?: string;
}

export class Context extends Store {
  constructor(readonly opts: GlobalOptions) {
    super(storeRoot(opts.store), progress);
  }
}
