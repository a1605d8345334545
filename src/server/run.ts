// Running the store's server in this process: one per store (it holds run/server.lock for its
// life, which the kernel releases even on kill -9), listening once it holds it, ending when its
// MountServer is done. Detached, it leaves when idle; for a service manager (`serve --foreground`)
// it stays, unless systemd handed it its socket (LISTEN_FDS), which brings it back on demand.
import { openSync } from 'node:fs';
import { loadSys, LOCK_EX, LOCK_NB } from '../native/sys.js';
import { StorePaths } from '../store/paths.js';
import { UserError } from '../util/errors.js';
import { secureRunDir, ServerFiles } from './files.js';
import { MountServer } from './server.js';

/** How long the server stays after its last mount is gone (TARSTACK_SERVER_GRACE_MS). */
const DEFAULT_GRACE_MS = 2000;
/** A server that is leaving holds the lock a moment longer; one still serving detached mounts, longer. */
const LOCK_WAIT_MS = 10_000;

export interface RunOptions {
  foreground: boolean;
  /** The file this process's output goes to (a detached server); else it logs to its stderr. */
  log?: string;
  /** Called once requests are accepted. */
  onReady(pid: number): void;
}

export async function runServer(root: string, o: RunOptions): Promise<void> {
  const paths = new StorePaths(root);
  secureRunDir(paths);
  const files = new ServerFiles(paths, o.log);
  await holdServerLock(files);
  const activated = process.env.LISTEN_PID === String(process.pid) && Number(process.env.LISTEN_FDS) >= 1;
  for (const k of ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES']) delete process.env[k];
  const grace = Number(process.env.TARSTACK_SERVER_GRACE_MS ?? DEFAULT_GRACE_MS);
  const server = new MountServer(paths, {
    graceMs: o.foreground && !activated ? null : Number.isFinite(grace) && grace >= 0 ? grace : DEFAULT_GRACE_MS,
    ...(activated ? { listenFd: 3 } : {}),
    ...(o.log ? { log: o.log } : {}),
  });
  await server.listen();
  const stop = (): void => void server.stop();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', () => undefined);
  console.error(`tarstack server ${process.pid}: serving store ${root} (${new Date().toISOString()})`);
  o.onReady(process.pid);
  await server.done;
  console.error(`tarstack server ${process.pid}: nothing left to serve, exiting`);
}

/** Take run/server.lock, waiting a while for a server that is leaving; it stays held until exit. */
async function holdServerLock(files: ServerFiles): Promise<void> {
  const fd = openSync(files.lock, 'a', 0o600);
  const sys = loadSys();
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      sys.flock(fd, LOCK_EX | LOCK_NB);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EWOULDBLOCK' && code !== 'EAGAIN') throw err;
    }
    if (Date.now() > deadline) {
      const pid = files.readInfo()?.pid;
      throw new UserError(`another tarstack server${pid ? ` (pid ${pid})` : ''} holds store ${files.paths.root}; it is still ending (serving detached mounts until their users leave?) — try again later`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}
