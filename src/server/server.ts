// The store's mount server: every mount of the store is a FUSE session of this one process, on its
// one event loop, over layers shared between mounts of the same image. Requests arrive on a unix
// socket (protocol.ts). A mount's failure is that mount's: its errors are replies to it, its end
// releases only what it held. The server leaves once its last mount is gone and a grace period
// passed (unless it runs for a service manager), or when told to stop (SIGTERM): then it unmounts
// every mount, detaches busy ones, and exits once the last of them has ended.
import { createServer, type Server, type Socket } from 'node:net';
import { chmodSync, rmSync } from 'node:fs';
import { openMount, type LiveMount } from '../daemon/serve.js';
import type { DaemonArgs } from '../daemon/protocol.js';
import type { StorePaths } from '../store/paths.js';
import { Store } from '../store/store.js';
import { imageMountArgs, instanceMountArgs, type MountFlags } from '../store/mounting.js';
import { UserError } from '../util/errors.js';
import { pidStartTicks } from '../util/proc.js';
import { reachablePath, ServerFiles } from './files.js';
import { PROTOCOL_VERSION, type Reply, type Request, type ServerStatus } from './protocol.js';
import { SharedLayers } from './shared-layers.js';

/** How long a request line may be: a mount request is well under 4 KiB. */
const MAX_REQUEST = 1 << 20;
/** After saying it leaves, the server still accepts for this long, answering "ask a new server". */
const LEAVING_MS = 50;
/** A new server waits at least this long for its first request (the CLI that started it is connecting). */
const FIRST_REQUEST_MS = 10_000;
/** A connection that has not sent its request line by then is closed (it would keep the server from idling out). */
const REQUEST_WAIT_MS = 30_000;
/** How often a detached server checks its log's size, beside each mount and end (ServerFiles.capLog). */
const LOG_CHECK_MS = 60_000;

export interface ServerOptions {
  /** Leave this long after the last mount is gone; null: stay until stopped. */
  graceMs: number | null;
  /** A listening socket handed over (systemd socket activation) instead of binding our own. */
  listenFd?: number;
  /** Its log file (a detached server's); else its standard error. */
  log?: string;
}

export class MountServer {
  private readonly files: ServerFiles;
  private readonly live = new Map<string, LiveMount>();
  /** Mount points being mounted or served here: a second request for one is refused at once. */
  private readonly claimed = new Set<string>();
  private readonly layers = new SharedLayers();
  /** The store as mount-named requests check it (made on the first). */
  private store: Store | undefined;
  private listener: Server | undefined;
  private connections = new Set<Socket>();
  private pending = 0;
  private idle: NodeJS.Timeout | undefined;
  private leaving = false;
  private stopping = false;
  private asked = false;
  private markDone!: () => void;
  /** Settles when the server has nothing left to serve and may exit. */
  readonly done = new Promise<void>((resolve) => (this.markDone = resolve));

  constructor(
    private readonly paths: StorePaths,
    private readonly opts: ServerOptions,
  ) {
    this.files = new ServerFiles(paths, opts.log);
  }

  /** Listen, say so in server.json; resolves once requests are accepted. */
  async listen(): Promise<void> {
    const server = createServer((c) => this.accept(c));
    this.listener = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if (this.opts.listenFd !== undefined) return server.listen({ fd: this.opts.listenFd }, resolve);
      rmSync(this.files.socket, { force: true }); // a dead server's; server.lock says none lives
      // Kept open while listening: libuv unlinks the path it bound when the listener closes.
      const at = reachablePath(this.files.socket);
      server.once('close', () => at.close());
      server.listen({ path: at.path }, () => {
        chmodSync(at.path, 0o600);
        resolve();
      });
    });
    server.on('error', (err) => console.error(`tarstack server: listener: ${err.message}`));
    if (this.opts.log) setInterval(() => this.files.capLog(), LOG_CHECK_MS).unref();
    this.files.writeInfo({ version: PROTOCOL_VERSION, pid: process.pid, pidStart: pidStartTicks(process.pid), socket: this.files.socket, started: new Date().toISOString(), log: this.files.log });
    this.armIdle();
  }

  private accept(c: Socket): void {
    this.asked = true;
    this.connections.add(c);
    let text = '';
    let gone = false;
    c.setEncoding('utf8');
    c.setTimeout(REQUEST_WAIT_MS, () => c.destroy());
    const answer = (r: Reply): void => {
      if (!c.destroyed) c.end(JSON.stringify(r) + '\n');
    };
    c.on('data', (d: string) => {
      if (text.includes('\n')) return;
      text += d;
      if (text.length > MAX_REQUEST) return answer({ ok: false, error: 'request too long' });
      const nl = text.indexOf('\n');
      if (nl < 0) return;
      c.setTimeout(0);
      let req: Request & { v?: number };
      try {
        req = JSON.parse(text.slice(0, nl)) as Request & { v?: number };
      } catch {
        return answer({ ok: false, error: 'the request is not JSON' });
      }
      if (req.v !== PROTOCOL_VERSION) return answer({ ok: false, error: `the tarstack server (pid ${process.pid}) speaks protocol ${PROTOCOL_VERSION}, this tarstack ${String(req.v)}: it is from another version; \`tarstack serve --stop\` ends it once its mounts are unmounted` });
      // A client that gave up before we got to its request (end-of-file already queued behind it:
      // we were stopped, or busy) is not answered, and its request not carried out.
      setImmediate(() => {
        if (gone) return console.error(`tarstack server: ${req.op} request dropped: its client left before it was served`);
        this.handle(req).then(answer, (err: unknown) => {
          console.error(`tarstack server: ${req.op}: ${(err as Error)?.stack ?? String(err)}`);
          answer({ ok: false, error: err instanceof UserError ? err.message : `the server failed: ${(err as Error)?.message ?? String(err)}` });
        });
      });
    });
    c.on('end', () => (gone = true));
    c.on('error', () => (gone = true)); // a client that went away gets no answer; nothing else changes
    c.on('close', () => {
      gone = true;
      this.connections.delete(c);
      this.armIdle();
    });
  }

  async handle(req: Request): Promise<Reply> {
    if (this.leaving) {
      if (req.op === 'release' || req.op === 'detach' || req.op === 'stop') return { ok: true }; // nothing is mounted
      return { ok: false, error: 'the server was leaving', retry: true };
    }
    switch (req.op) {
      case 'mount':
        return this.mount(req.args);
      case 'mount-named':
        return this.mountNamed(req);
      case 'release': {
        await this.live.get(req.id)?.ended.catch(() => undefined);
        return { ok: true };
      }
      case 'detach': {
        const m = this.live.get(req.id);
        if (m) {
          m.markDetached();
          this.claimed.delete(m.record.mountpoint);
        }
        return { ok: true };
      }
      case 'status':
        return { ok: true, status: this.status() };
      case 'stop':
        void this.stop();
        return { ok: true };
      default:
        return { ok: false, error: `unknown request ${JSON.stringify((req as { op?: unknown }).op)}` };
    }
  }

  /** A mount asked for by name: checked here as the CLI would (store/mounting.ts), then mounted. */
  private async mountNamed(req: Extract<Request, { op: 'mount-named' }>): Promise<Reply> {
    if (req.store !== this.paths.root) return { ok: false, error: `this server serves store ${this.paths.root}, not ${req.store}` };
    this.store ??= new Store(this.paths.root);
    // The CLI's environment, not the server's, chooses the default backend: it sends its choice.
    const flags: MountFlags = { ...req.flags, backend: req.flags?.backend ?? 'native' };
    let args: DaemonArgs;
    this.pending++; // the checks await the filesystem: the server must not idle out meanwhile
    try {
      args = req.kind === 'image' ? await imageMountArgs(this.store, { ...flags, image: req.name, dir: req.dir ?? '' }) : await instanceMountArgs(this.store, { ...flags, instance: req.name, dir: req.dir });
    } catch (err) {
      if (err instanceof UserError) return { ok: false, error: err.message };
      throw err;
    } finally {
      this.pending--;
    }
    return this.mount(args);
  }

  private async mount(args: DaemonArgs): Promise<Reply> {
    if (this.stopping) return { ok: false, error: `the tarstack server (pid ${process.pid}) is stopping; mount again once it has ended` };
    if (args.store !== this.paths.root) return { ok: false, error: `this server serves store ${this.paths.root}, not ${args.store}` };
    const mp = args.mountpoint;
    if (this.claimed.has(mp)) return { ok: false, error: `${mp} is already mounted, or being mounted, by this store's server` };
    const outer = this.ownMountAbove(mp) ?? this.ownMountAbove(this.paths.root);
    if (outer) return { ok: false, error: `cannot mount at ${mp}: it (or the store) lies inside ${outer}, a mount of the same server, which cannot serve itself` };
    const t0 = performance.now();
    this.claimed.add(mp);
    this.pending++;
    clearTimeout(this.idle);
    try {
      const live = await openMount({ ...args, log: this.files.log }, { layers: (images, stack) => this.layers.open(images, stack), server: true });
      this.live.set(args.mountId, live);
      live.ended
        .catch((err: unknown) => console.error(`tarstack server: releasing ${mp}: ${(err as Error)?.stack ?? String(err)}`))
        .finally(() => this.ended(args.mountId, live));
      const ms = performance.now() - t0;
      console.error(`tarstack server: mounted ${live.record.name} at ${mp} (${args.mountId}) in ${ms.toFixed(1)} ms, ${performance.now().toFixed(0)} ms after the server started`);
      return { ok: true, record: live.record, ms };
    } catch (err) {
      this.claimed.delete(mp);
      if (!(err instanceof UserError)) console.error(`tarstack server: mounting at ${mp}: ${(err as Error)?.stack ?? String(err)}`);
      return { ok: false, error: err instanceof UserError ? err.message : `cannot mount at ${mp}: ${(err as Error)?.message ?? String(err)}` };
    } finally {
      this.pending--;
      this.files.capLog();
      this.armIdle();
    }
  }

  private ended(id: string, live: LiveMount): void {
    if (this.live.get(id) === live) this.live.delete(id);
    if (!live.record.detached) this.claimed.delete(live.record.mountpoint); // a detached one gave its mount point up
    console.error(`tarstack server: ${live.record.mountpoint} (${id}) ended; ${this.live.size} mount(s) left`);
    this.files.capLog();
    if (this.stopping && this.live.size === 0) this.leave();
    this.armIdle();
  }

  /** One of this server's own mounts at or above `path`, which a mount there would deadlock on. */
  private ownMountAbove(path: string): string | undefined {
    for (const m of this.live.values()) {
      const mp = m.record.mountpoint;
      if (!m.record.detached && path.startsWith(mp.endsWith('/') ? mp : mp + '/')) return mp;
    }
    return undefined;
  }

  private status(): ServerStatus {
    return {
      pid: process.pid,
      mounts: [...this.live.values()].map((m) => ({ id: m.record.id, mountpoint: m.record.mountpoint, detached: !!m.record.detached })),
      ...this.layers.stats(),
      ...memory(),
    };
  }

  /** Nothing mounted, nothing asked: leave after the grace period (never, for a service manager's server). */
  private armIdle(): void {
    clearTimeout(this.idle);
    if (this.opts.graceMs === null || this.leaving || this.stopping) return;
    if (this.live.size > 0 || this.pending > 0 || this.connections.size > 0) return;
    this.idle = setTimeout(
      () => {
        if (this.live.size === 0 && this.pending === 0 && this.connections.size === 0) this.leave();
      },
      this.asked ? this.opts.graceMs : Math.max(this.opts.graceMs, FIRST_REQUEST_MS),
    );
    this.idle.unref();
  }

  /** SIGTERM or `serve --stop`: unmount everything (detaching what is busy), leave when all ended. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearTimeout(this.idle);
    console.error(`tarstack server: stopping: ${this.live.size} mount(s) to end`);
    if (this.live.size === 0) return this.leave();
    await Promise.all(
      [...this.live.values()].map(async (m) => {
        try {
          await m.close();
        } catch {
          try {
            await m.detach();
          } catch (err) {
            console.error(`tarstack server: cannot unmount ${m.record.mountpoint}: ${String(err)}`);
          }
        }
      }),
    );
  }

  /**
   * Go: new clients find no server.json and no socket (so they start a new server, which waits for
   * server.lock); a client already connecting is accepted a moment longer and told to ask again.
   */
  private leave(): void {
    if (this.leaving) return;
    this.leaving = true;
    this.files.dropInfo();
    if (this.opts.listenFd === undefined) rmSync(this.files.socket, { force: true });
    setTimeout(() => {
      this.listener?.close();
      const end = (): void => (this.connections.size === 0 ? this.markDone() : void setTimeout(end, 10));
      end();
    }, LEAVING_MS);
  }
}

function memory(): Pick<ServerStatus, 'rssBytes' | 'heapUsedBytes' | 'externalBytes'> {
  const m = process.memoryUsage();
  return { rssBytes: m.rss, heapUsedBytes: m.heapUsed, externalBytes: m.external };
}
