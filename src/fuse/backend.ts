// What every FUSE backend (fuse-native, tarstack's own libfuse3 binding) offers the mount daemon:
// mount options in, a handle to the live mount out.

export interface MountOptions {
  mountpoint: string;
  /** Shown as the source in /proc/mounts. */
  fsname: string;
  /** Shown as fuse.<subtype> in /proc/mounts. */
  subtype?: string;
  readOnly: boolean;
  /** Other users may enter the mount; always comes with default_permissions (kernel checks modes). */
  allowOther?: boolean;
  /** More mount flags for libfuse (suid, dev, noexec, noatime, ...), applied after the defaults. */
  flags?: string[];
  /** The kernel checks modes and owners as reported (default_permissions), even without allow_other. */
  defaultPermissions?: boolean;
  /** libfuse prints every request to stderr. */
  debug?: boolean;
}

export interface Mounted {
  /** Resolves once the session has ended, whoever unmounted it, after FileSystem.destroy ran. */
  readonly unmounted: Promise<void>;
  /** ends the session after the mount point has been unmounted by someone else, or unmounts via fusermount3 -u itself */
  close(opts?: { lazy?: boolean }): Promise<void>;
  stats(): { requests: number };
  /** Kernel FUSE features beyond libfuse's defaults this mount uses (e.g. passthrough, max_pages=1024). */
  features?(): string[];
}

export type Backend = (fs: import('../vfs/api.js').FileSystem, opts: MountOptions) => Promise<Mounted>;
