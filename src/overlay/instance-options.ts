// How an instance is served: what InstanceFs (instance-fs.ts) takes besides its layers and upper.
import type { UpperFormat } from './upper-format.js';

export interface InstanceOptions {
  /** Read the instance without serving it (e.g. `diff` while it may be mounted elsewhere). */
  offline?: boolean;
  /** The upper may hold `.wh.NAME` whiteout files (an upper another tool wrote). */
  whiteoutFiles?: boolean;
  /** What the upper looks like on disk (default: tarstack's, with its private xattrs). */
  format?: UpperFormat;
  /** Copy-up copies whole files, never lazily (an upper that other tools read directly). */
  wholeFiles?: boolean;
  /** Bytes of file data the upper may hold (`create --size`): past it writes fail with ENOSPC. */
  sizeLimit?: number;
  /** Keep owners, modes, devices and xattrs the host refuses in tarstack's metadata (kept.ts). Default: not root. */
  keepRefused?: boolean;
  /**
   * Owners shown: 'stored' (the tar's, and what chown set), or 'mapped': everything shows as owned
   * by the mounting user, as after `tar -x` run by that user. Default 'stored'.
   */
  owners?: 'stored' | 'mapped';
  fillsOffLoop?: boolean; // a write's lazy fills copy and sync off Node's thread (file-data.ts): write() may return a promise
}
