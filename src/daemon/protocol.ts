// What the CLI hands a mount daemon, and the one readiness line the daemon writes back on fd 3.

export interface DaemonArgs {
  store: string;
  mountId: string;
  kind: 'image' | 'instance';
  /** Id of the image or instance to serve. */
  target: string;
  mountpoint: string;
  backend: BackendName;
  allowOther: boolean;
  /** Instances mounted by an ordinary user: show owners as stored, or mapped to that user (the default). */
  owners?: 'stored' | 'mapped';
  log: string;
  /** An instance mount whose changes vanish at unmount (`mount --tmp`). */
  tmp?: boolean;
}

export type BackendName = 'native' | 'fuse-native';

export type Readiness = { ok: true; pid: number } | { ok: false; error: string };

export const READY_FD = 3;
