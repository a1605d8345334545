// The CLI's side of the mount server: find it (server.json names its socket; without one, the
// default socket, where systemd may listen for it), start it when asked and nobody serves, send one
// request and read one reply. Every failure is one line: a dead server's stale socket is replaced,
// an unreachable or silent one is named with its pid and log.
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { StorePaths } from '../store/paths.js';
import { UserError } from '../util/errors.js';
import { pidAlive, statFields } from '../util/proc.js';
import { reachablePath, secureRunDir, ServerFiles } from './files.js';
import { PROTOCOL_VERSION, type Reply, type Request, type ServerInfo } from './protocol.js';

// by a path from dist/src (not this file's directory): in the CLI's bundle this code sits in dist/src/bundle/
const SERVER_MAIN = fileURLToPath(new URL('../server/main.js', import.meta.url));
/**
 * libuv's threads in the server (the default is 4): every mount's copy-up fills, fsyncs and decoding
 * run there, and a mount over a hung filesystem holds some (at most 2 fills each) until it answers.
 */
const THREADPOOL = 16;
/**
 * V8's young generation in the server, per semi-space (MiB; Node 20's default grows to 16). Every
 * FUSE request leaves short-lived garbage, and with the default the young generation grew to tens
 * of MiB as mounts were added (issue 14: RSS per added instance). Scavenges cost by what survives,
 * which here is little, so smaller ones cost little CPU.
 */
const SEMI_SPACE_MIB = 2;
/** A mount may copy a --tmp upper or wait for the kernel's INIT: generous, but never forever. */
const REPLY_TIMEOUT_MS = 120_000;

/** Nobody listens (no socket, or a dead server's), or the server went away before it answered. */
type Outcome = { reply: Reply } | { absent: true } | { gone: true };

/** A process stopped by a signal (state T or t in /proc/PID/stat). */
function stopped(pid: number): boolean {
  const state = statFields(pid)?.[0];
  return state === 'T' || state === 't';
}

function send(socket: string, req: Request, timeoutMs: number, who: string, pid: number | undefined): Promise<Outcome> {
  let at: ReturnType<typeof reachablePath>;
  try {
    at = reachablePath(socket);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return Promise.resolve({ absent: true }); // no run directory yet: no server ever
    return Promise.reject(new UserError(`cannot reach ${who} at ${socket}: ${code === 'EACCES' ? 'permission denied (the store belongs to another user)' : code}`));
  }
  return new Promise<Outcome>((resolve, reject) => {
    let text = '';
    let answered = false;
    const c = connect(at.path);
    const timer = setTimeout(() => finish(new UserError(`${who} did not answer within ${timeoutMs / 1000} s`)), timeoutMs);
    // A stopped server would make us wait out the whole timeout: say so at once.
    const watch = setInterval(() => {
      if (pid !== undefined && stopped(pid)) finish(new UserError(`${who} is stopped (by a signal): \`kill -CONT ${pid}\` resumes it`));
    }, 500);
    const finish = (o: Outcome | Error): void => {
      if (answered) return;
      answered = true;
      clearTimeout(timer);
      clearInterval(watch);
      at.close();
      c.destroy();
      if (o instanceof Error) reject(o);
      else resolve(o);
    };
    c.setEncoding('utf8');
    // The write side stays open until the answer: the server takes an end-of-file before it started
    // on a request for the client having given up, and drops the request.
    c.on('connect', () => c.write(JSON.stringify({ v: PROTOCOL_VERSION, ...req }) + '\n'));
    c.on('data', (d: string) => {
      text += d;
      const nl = text.indexOf('\n');
      if (nl < 0 || answered) return;
      try {
        finish({ reply: JSON.parse(text.slice(0, nl)) as Reply });
      } catch {
        finish(new UserError(`${who} answered nonsense: ${JSON.stringify(text.slice(0, 80))}`));
      }
    });
    c.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') return finish({ absent: true });
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') return finish({ gone: true });
      if (err.code === 'EACCES') return finish(new UserError(`cannot reach ${who}: permission denied on ${socket} (the store belongs to another user)`));
      finish(new UserError(`cannot reach ${who} at ${socket}: ${err.code ?? err.message}`));
    });
    c.on('close', () => finish({ gone: true }));
  });
}

function describe(files: ServerFiles, info: ServerInfo | undefined): string {
  return info ? `the tarstack server (pid ${info.pid}, log ${info.log})` : `the tarstack server of store ${files.paths.root}`;
}

export interface AskOptions {
  /** Start a server when none serves the store (else: undefined is the answer). */
  start: boolean;
  timeoutMs?: number;
  /** Before a request is sent again because its server went away mid-way: throw to give up instead. */
  beforeRetry?(): void;
}

/**
 * Send `req` to the store's server and return its reply (an error reply becomes a UserError). With
 * `start`, a server is started when none serves; without, undefined means none does.
 */
export async function askServer(paths: StorePaths, req: Request, opts: AskOptions): Promise<Extract<Reply, { ok: true }> | undefined> {
  const files = new ServerFiles(paths);
  let code: Promise<StartCode> | undefined;
  for (let attempt = 0; ; attempt++) {
    const info = files.readInfo();
    const who = describe(files, info);
    // Nobody said they serve (or that one died): the code that starts a server loads while we look.
    if (opts.start && (!info || !pidAlive(info.pid)) && !code) {
      code = loadStartCode();
      code.catch(() => undefined); // unused when a server answers after all; else awaited below
    }
    const out = await send(info?.socket ?? files.socket, req, opts.timeoutMs ?? REPLY_TIMEOUT_MS, who, info?.pid);
    if ('reply' in out) {
      if (out.reply.ok) return out.reply;
      if (!out.reply.retry) throw new UserError(out.reply.error);
    } else if ('gone' in out && info && pidAlive(info.pid) && files.readInfo()?.pid === info.pid) {
      throw new UserError(`${who} closed the connection without answering (see its log)`);
    }
    // Nobody serves, or the server was ending (it said so, or died mid-way): a new one is asked.
    if (!opts.start) return undefined;
    if (attempt >= 2) throw new UserError(`${who} could not be reached after starting it`);
    if (!('absent' in out)) opts.beforeRetry?.();
    await startServer(files, await (code ??= loadStartCode()));
  }
}

/**
 * What starting a server takes, loaded only then: a CLI asking a running server never needs it
 * (start-up time; the mount records bring node:crypto, for their ids).
 */
type StartCode = [typeof import('../store/lock.js'), typeof import('../daemon/spawn.js'), typeof import('../store/mounts.js')];
const loadStartCode = (): Promise<StartCode> => Promise.all([import('../store/lock.js'), import('../daemon/spawn.js'), import('../store/mounts.js')]);

/**
 * Start a detached server unless one just started; CLIs starting at once take turns. Old logs are
 * pruned while the server starts (it is the wait of a first mount).
 */
async function startServer(files: ServerFiles, [{ withLock }, { startDetached }, { Mounts }]: StartCode): Promise<void> {
  secureRunDir(files.paths);
  await withLock(files.startLock, async () => {
    const info = files.readInfo();
    if (info && pidAlive(info.pid)) return; // started by another CLI meanwhile
    const log = files.newLog();
    const started = startDetached(SERVER_MAIN, ['--store', files.paths.root, '--log', log], log, {
      cwd: '/',
      env: { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? String(THREADPOOL) },
      nodeArgs: [`--max-semi-space-size=${SEMI_SPACE_MIB}`],
    });
    const pruned = Promise.resolve().then(() => files.pruneLogs(new Set(new Mounts(files.paths).list().map((m) => m.log))));
    await Promise.all([started, pruned.catch(() => undefined)]); // housekeeping: never fails a start
  });
}
