// The mount server's socket protocol: a connection carries one request, a JSON line, and gets one
// JSON line back. `v` is checked so a CLI never half-understands a server left running from
// another tarstack version. server.json (in the store's run dir, written once the server listens)
// names the serving process and its socket, so every CLI finds the same server whatever its
// environment.
import type { DaemonArgs } from '../daemon/protocol.js';
import type { MountFlags } from '../store/mounting.js';
import type { MountRecord } from '../store/mounts.js';

export const PROTOCOL_VERSION = 1;

export type Request =
  /** Mount, record, and answer once the mount serves. */
  | { op: 'mount'; args: DaemonArgs }
  /**
   * The same for an image or instance named as on the command line (`dir` absolute): the server
   * checks what the CLI would have (store/mounting.ts), so a CLI finding a server makes one request.
   */
  | { op: 'mount-named'; store: string; kind: 'image' | 'instance'; name: string; dir?: string; flags: MountFlags }
  /** The CLI has unmounted it: answer once the server has let go (lock, record, --tmp upper). */
  | { op: 'release'; id: string }
  /** The CLI has detached it lazily: it serves on until its last user leaves. */
  | { op: 'detach'; id: string }
  | { op: 'status' }
  /** Drain: unmount every mount (detach busy ones), exit once all are gone. */
  | { op: 'stop' };

export interface ServerStatus {
  pid: number;
  mounts: Array<{ id: string; mountpoint: string; detached: boolean }>;
  /** Layers open, and how many mounts hold them (shared image state). */
  layers: number;
  leases: number;
  rssBytes: number;
  /** V8's heap in use, and memory outside it held by JS objects (Buffers): what of the RSS is JS. */
  heapUsedBytes: number;
  externalBytes: number;
}

export type Reply =
  | { ok: true; record?: MountRecord; status?: ServerStatus; ms?: number }
  /** retry: the server was ending and did nothing; ask a new one. */
  | { ok: false; error: string; retry?: boolean };

export interface ServerInfo {
  version: number;
  pid: number;
  pidStart?: number;
  socket: string;
  started: string;
  log: string;
}
