// Where a store's server lives, all in the store's run dir, which only the store's owner may enter
// (Node cannot read SO_PEERCRED, so the directory is what keeps other users off the socket):
// server.sock, server.json (who serves, and at which socket), server.lock (held by the live server:
// one per store), server-start.lock (CLIs starting a server take turns), and logs/: each detached
// server's own log (server-<start time>-<pid of the CLI that started it>.log, and .log.1 once it grew
// past its cap; the last KEEP_LOGS are kept, and any a mount record names), server.log a link to the
// newest.
import { chmodSync, closeSync, fstatSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync, constants } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { loadSys } from '../native/sys.js';
import type { StorePaths } from '../store/paths.js';
import { UserError } from '../util/errors.js';
import type { ServerInfo } from './protocol.js';

/** Detached servers' logs kept (each server's own, from start to exit); older ones are removed. */
export const KEEP_LOGS = 10;
/**
 * A long-lived server's log is cut past this size (TARSTACK_SERVER_LOG_MAX bytes): the file so far
 * becomes LOG.1 (the one before goes) and the server writes on in a new LOG, so one server's logs stay
 * under twice this.
 */
const LOG_MAX = 16 << 20;
/** What a server run in the foreground (by a service manager) logs to. */
export const FOREGROUND_LOG = 'standard error of `tarstack serve --foreground` (its service manager\'s journal)';

/** Longest socket path connect(2) and bind(2) take (sun_path is 108 bytes with its NUL). */
const SUN_PATH_MAX = 107;

export class ServerFiles {
  /** `log`: this server's own log file (a detached server is told it by the CLI that started it). */
  constructor(
    readonly paths: StorePaths,
    private readonly ownLog?: string,
  ) {}

  get socket(): string {
    return join(this.paths.run, 'server.sock');
  }
  get infoFile(): string {
    return join(this.paths.run, 'server.json');
  }
  get lock(): string {
    return join(this.paths.run, 'server.lock');
  }
  get startLock(): string {
    return join(this.paths.run, 'server-start.lock');
  }
  /** This server's log: its own file, else its standard error (foreground). */
  get log(): string {
    return this.ownLog ?? FOREGROUND_LOG;
  }

  /** The newest server's log (a link), where people look first. */
  get newestLog(): string {
    return join(this.paths.logs, 'server.log');
  }

  /**
   * A log file for a server about to start, made the newest (server.log links to it). Older logs are
   * pruned apart (pruneLogs), while that server starts.
   */
  newLog(): string {
    mkdirSync(this.paths.logs, { recursive: true, mode: 0o700 });
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const log = join(this.paths.logs, `server-${stamp}-${process.pid}.log`);
    writeFileSync(log, '', { flag: 'a', mode: 0o600 });
    const link = this.newestLog;
    try {
      if (!lstatSync(link).isSymbolicLink()) renameSync(link, join(this.paths.logs, 'server-0000-before-one-log-per-server.log')); // an older tarstack's one log
    } catch {
      /* none yet */
    }
    const tmp = `${link}.tmp-${process.pid}`;
    rmSync(tmp, { force: true });
    symlinkSync(basename(log), tmp);
    renameSync(tmp, link);
    return log;
  }

  /** Logs past the last KEEP_LOGS go, except those a mount record names (`status` shows a dead mount's). */
  pruneLogs(named: Set<string>): void {
    const logs = readdirSync(this.paths.logs).filter((n) => /^server-.*\.log$/.test(n)).sort();
    for (const old of logs.slice(0, Math.max(0, logs.length - KEEP_LOGS))) {
      const path = join(this.paths.logs, old);
      if (named.has(path)) continue;
      rmSync(path, { force: true });
      rmSync(`${path}.1`, { force: true });
    }
  }

  /**
   * A detached server's log past its cap: it becomes LOG.1 and this process's standard output and
   * error (where the log goes, for its native threads too) move to a new LOG. True when it was cut.
   */
  capLog(maxBytes = Number(process.env.TARSTACK_SERVER_LOG_MAX) || LOG_MAX): boolean {
    const log = this.ownLog;
    if (!log) return false; // the service manager's journal keeps its own limits
    try {
      if (fstatSync(2).size <= maxBytes) return false;
      const fresh = openSync(`${log}.new`, 'a', 0o600);
      try {
        renameSync(log, `${log}.1`);
        renameSync(`${log}.new`, log);
        const sys = loadSys();
        sys.dup2(fresh, 1);
        sys.dup2(fresh, 2);
      } finally {
        closeSync(fresh);
      }
      console.error(`tarstack server ${process.pid}: log cut at ${maxBytes} bytes; the lines before are in ${log}.1 (${new Date().toISOString()})`);
      return true;
    } catch (err) {
      console.error(`tarstack server ${process.pid}: cannot cut its log ${log}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
      return false;
    }
  }

  /** Who serves the store, as it said when it started listening; undefined when nobody said so. */
  readInfo(): ServerInfo | undefined {
    let text: string;
    try {
      text = readFileSync(this.infoFile, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      if (code === 'EACCES') throw new UserError(`cannot reach the tarstack server of store ${this.paths.root}: permission denied (the store belongs to another user)`);
      throw new UserError(`cannot read ${this.infoFile}: ${code ?? String(err)}`);
    }
    try {
      const info = JSON.parse(text) as ServerInfo;
      return typeof info.pid === 'number' && typeof info.socket === 'string' ? info : undefined;
    } catch {
      return undefined; // damaged: as good as absent (a new server rewrites it)
    }
  }

  writeInfo(info: ServerInfo): void {
    const tmp = `${this.infoFile}.tmp-${process.pid}`;
    writeFileSync(tmp, JSON.stringify(info) + '\n', { mode: 0o600 });
    renameSync(tmp, this.infoFile);
  }

  dropInfo(): void {
    rmSync(this.infoFile, { force: true });
  }
}

/** The run dir exists, belongs to us and only we may enter it. */
export function secureRunDir(paths: StorePaths): void {
  mkdirSync(paths.logs, { recursive: true, mode: 0o700 });
  const st = statSync(paths.run);
  const uid = process.getuid?.() ?? 0;
  if (st.uid !== uid) throw new UserError(`the store's run directory ${paths.run} belongs to uid ${st.uid}, not to you (uid ${uid}): use your own store`);
  if ((st.mode & 0o077) !== 0) chmodSync(paths.run, 0o700);
}

/**
 * A path connect(2) and bind(2) accept for `socket`: itself, or when too long for sun_path, the
 * same file reached through /proc/self/fd of its open directory (kept open until `close`).
 */
export function reachablePath(socket: string): { path: string; close(): void } {
  if (Buffer.byteLength(socket) <= SUN_PATH_MAX) return { path: socket, close: () => undefined };
  const fd = openSync(dirname(socket), constants.O_RDONLY | constants.O_DIRECTORY);
  return { path: `/proc/self/fd/${fd}/${basename(socket)}`, close: () => closeSync(fd) };
}
