// What every FUSE backend offers the daemon: mount a FileSystem, learn when the mount is gone, end it.

export interface MountOptions {
  mountpoint: string;
  fsname: string;
  subtype?: string;
  readOnly: boolean;
  allowOther?: boolean;
  debug?: boolean;
}

export interface Mounted {
  /** Settles once the kernel has dropped the mount (unmounted by anyone) and the session is over. */
  readonly unmounted: Promise<void>;
  /** Unmount if still mounted (lazily when busy) and end the session. */
  close(): Promise<void>;
  stats(): { requests: number };
}

export type Backend = (fs: import('./ops.js').FileSystem, opts: MountOptions) => Promise<Mounted>;
