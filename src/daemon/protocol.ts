// What the CLI hands a mount daemon, and the one readiness line the daemon writes back on fd 3.
import { closeSync, writeSync } from 'node:fs';

export interface DaemonArgs {
  store: string;
  mountId: string;
  kind: 'image' | 'instance';
  /** Id of the image or instance to serve. */
  target: string;
  mountpoint: string;
  backend: BackendName;
  allowOther: boolean;
  /** Mount flags for libfuse: suid/nosuid, dev/nodev, and any -o flag (src/cli/impl/mount-flags.ts). */
  flags?: string[];
  /** Instances mounted by an ordinary user: show owners as stored, or mapped to that user (the default). */
  owners?: 'stored' | 'mapped';
  log: string;
  /** An instance mount whose changes vanish at unmount (`mount --tmp`). */
  tmp?: boolean;
}

export type BackendName = 'native' | 'fuse-native';

export type Readiness = { ok: true; pid: number } | { ok: false; error: string };

export const READY_FD = 3;

/**
 * The daemon side of fd 3: one line, written synchronously (the daemon may exit right after saying it
 * failed), once; a daemon started without the pipe (by hand) has nobody waiting.
 */
export function readinessLine(): (r: Readiness) => void {
  let told = false;
  return (r) => {
    if (told) return;
    told = true;
    try {
      writeSync(READY_FD, JSON.stringify(r) + '\n');
      closeSync(READY_FD);
    } catch {
      /* nobody waits */
    }
  };
}

/** A daemon never dies of a stray error: it is logged (with `who`), and requests go on being answered. */
export function surviveStrayErrors(who: string): void {
  process.on('uncaughtException', (err) => console.error(`${who}: uncaught: ${err.stack ?? String(err)}`));
  process.on('unhandledRejection', (err) => console.error(`${who}: unhandled rejection: ${(err as Error)?.stack ?? String(err)}`));
}
