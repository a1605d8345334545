// The `sessions` suite: what one more FUSE session costs the process that serves it (issue 14: one
// server, many mounts). A child serves N mounts (--sessions, default 100) of a trivial in-memory
// FileSystem through the native binding, this process reads every mount (a small file from memory,
// a file served from an fd range through the read pool), and the child reports its RSS and thread
// count after 1 and after N sessions. `sessions-write` mounts them writable and also writes 4 MiB
// to each (1 MiB WRITE requests). Needs /dev/fuse. Measures the binding itself, so its one peer is
// the binding; the figures are absolute. Leaves no mount or process behind, also on failure.
import { fork, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mountNative, type NativeMounted } from '../src/fuse/native-backend.js';
import type { Attr, CreateReply, DirEntry, Entry, FileSystem, OpenReply, ReadReply, Statfs, WritableFileSystem } from '../src/vfs/api.js';
import { ROOT_INO } from '../src/vfs/api.js';
import { fsError } from '../src/util/errors.js';
import { removeTree } from '../src/util/remove-tree.js';
import { S_IFDIR, S_IFREG } from '../src/vfs/mode.js';
import type { Case, Sample, Suite } from './cases.js';
import { BindingPeer } from './peers.js';
import type { FigureSpec } from './report.js';
import { onCleanup } from './sys.js';

const SMALL = Buffer.from('a small file served from memory\n');
const RANGED_SIZE = 1 << 20; // one 1 MiB request: a read-pool worker's buffer, fully used

/** Two files and a root: what a session needs to be exercised, nothing that would cost memory per mount. */
class TinyFs implements FileSystem {
  readonly immutable = true;
  constructor(private readonly backingFd: number) {}
  private attr(ino: number): Attr {
    const size = ino === 2 ? SMALL.length : ino === 3 ? RANGED_SIZE : 0;
    const mode = ino === ROOT_INO ? S_IFDIR | 0o755 : S_IFREG | 0o644;
    return { ino, mode, nlink: 1, uid: 0, gid: 0, rdev: 0, size, blocks: Math.ceil(size / 512), atimeSec: 1, atimeNsec: 0, mtimeSec: 1, mtimeNsec: 0, ctimeSec: 1, ctimeNsec: 0 };
  }
  lookup(parent: number, name: string): Entry {
    const ino = parent === ROOT_INO ? ({ small: 2, ranged: 3 } as Record<string, number>)[name] : undefined;
    if (ino === undefined) throw fsError('ENOENT');
    return { ino, generation: 0, attr: this.attr(ino) };
  }
  forget(): void {}
  getattr(ino: number): Attr {
    if (ino < 1 || ino > 3) throw fsError('ESTALE');
    return this.attr(ino);
  }
  readlink(): string {
    throw fsError('EINVAL');
  }
  opendir(ino: number): number {
    if (ino !== ROOT_INO) throw fsError('ENOTDIR');
    return 1;
  }
  *readdir(_ino: number, _fh: number, offset: number): Iterable<DirEntry> {
    const all: DirEntry[] = [
      { name: '.', ino: 1, mode: S_IFDIR, next: 1 },
      { name: '..', ino: 1, mode: S_IFDIR, next: 2 },
      { name: 'small', ino: 2, mode: S_IFREG, next: 3 },
      { name: 'ranged', ino: 3, mode: S_IFREG, next: 4 },
    ];
    yield* all.slice(offset);
  }
  releasedir(): void {}
  open(ino: number): OpenReply {
    if (ino === ROOT_INO) throw fsError('EISDIR');
    return { fh: 0, keepCache: true, directIo: false };
  }
  read(ino: number, _fh: number, pos: number, len: number): ReadReply {
    if (ino === 2) return SMALL.subarray(pos, pos + len);
    const end = Math.min(RANGED_SIZE, pos + len);
    return end > pos ? [{ fd: this.backingFd, pos, len: end - pos }] : Buffer.alloc(0);
  }
  release(): void {}
  statfs(): Statfs {
    return { bsize: 4096, frsize: 4096, blocks: 0, bfree: 0, bavail: 0, files: 3, ffree: 0, favail: 0, namemax: 255 };
  }
  getxattr(): Buffer {
    throw fsError('ENODATA');
  }
  listxattr(): string[] {
    return [];
  }
  destroy(): void {}
}

/** TinyFs plus `sink`, a file that takes writes and forgets them: the big WRITE requests a
 *  writable mount receives (up to 1 MiB each) are what fills a receive buffer. */
class SinkFs extends TinyFs implements WritableFileSystem {
  override lookup(parent: number, name: string): Entry {
    if (parent === ROOT_INO && name === 'sink') return { ino: 4, generation: 0, attr: this.sinkAttr() };
    return super.lookup(parent, name);
  }
  override getattr(ino: number): Attr {
    return ino === 4 ? this.sinkAttr() : super.getattr(ino);
  }
  private sinkAttr(): Attr {
    return { ...super.getattr(2), ino: 4, size: 0, blocks: 0 };
  }
  write(_ino: number, _fh: number, data: Buffer): number {
    return data.length;
  }
  setattr(ino: number): Attr {
    return this.getattr(ino);
  }
  fsync(): void {}
  fsyncdir(): void {}
  mknod(): Entry { throw fsError('EROFS'); }
  mkdir(): Entry { throw fsError('EROFS'); }
  symlink(): Entry { throw fsError('EROFS'); }
  link(): Entry { throw fsError('EROFS'); }
  unlink(): void { throw fsError('EROFS'); }
  rmdir(): void { throw fsError('EROFS'); }
  rename(): void { throw fsError('EROFS'); }
  create(): CreateReply { throw fsError('EROFS'); }
  setxattr(): void { throw fsError('EROFS'); }
  removexattr(): void { throw fsError('EROFS'); }
  fallocate(): void { throw fsError('EOPNOTSUPP'); }
}

interface Usage {
  rssKiB: number;
  /** RSS less file-backed pages (code, the addon): what the process allocated. */
  anonKiB: number;
  threads: number;
  /** V8's heap as reserved (heapTotal), which is what RSS sees of it. */
  heapKiB: number;
}

/** The serving child: mounts on request, reports its own usage after a full GC. */
async function serve(): Promise<void> {
  const backingFd = fs.openSync(process.argv[3]!, 'r');
  // nowait 0: every fd-range read goes through the read pool, so its threads and buffers are counted.
  const session = JSON.parse(process.env.SESSIONS_CONFIG ?? '{"nowait":0}') as object;
  const writable = process.env.SESSIONS_WRITE === '1';
  const mounts: NativeMounted[] = [];
  const usage = (): Usage => {
    (globalThis as { gc?: () => void }).gc?.();
    const status = fs.readFileSync('/proc/self/status', 'utf8');
    const field = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
    return { rssKiB: field('VmRSS'), anonKiB: field('RssAnon'), threads: field('Threads'), heapKiB: Math.round(process.memoryUsage().heapTotal / 1024) };
  };
  process.on('message', (m: { type: string; mountpoints?: string[] }) => {
    if (m.type === 'mount') {
      const t0 = process.hrtime.bigint();
      void Promise.all(m.mountpoints!.map((mountpoint) => mountNative(writable ? new SinkFs(backingFd) : new TinyFs(backingFd), { mountpoint, fsname: 'bench-sessions', readOnly: !writable, session })))
        .then((ms) => {
          mounts.push(...ms);
          const ms_each = Number(process.hrtime.bigint() - t0) / 1e6 / ms.length;
          process.send!({ type: 'mounted', msEach: ms_each });
        })
        .catch((err: unknown) => process.send!({ type: 'failed', error: String(err) }));
    }
    if (m.type === 'usage') process.send!({ type: 'usage', ...usage() });
    if (m.type === 'unmount') {
      void Promise.all(mounts.map((x) => x.close())).then(() => process.send!({ type: 'unmounted', ...usage() }, () => process.exit(0)));
    }
  });
  process.send!({ type: 'ready', ...usage() });
}

class Child {
  private readonly queue = new Map<string, ((m: Record<string, unknown>) => void)[]>();
  constructor(readonly proc: ChildProcess) {
    proc.on('message', (m: Record<string, unknown>) => {
      const w = this.queue.get(m.type as string)?.shift();
      if (w) w(m);
      if (m.type === 'failed') throw new Error(`server child: ${String(m.error)}`);
    });
    proc.on('exit', (code) => {
      if (code !== 0) for (const ws of this.queue.values()) for (const w of ws) w({ type: 'exit', error: `exited ${code}` });
    });
  }
  next(type: string): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const list = this.queue.get(type) ?? [];
      list.push((m) => (m.type === 'exit' ? reject(new Error(String(m.error))) : resolve(m)));
      this.queue.set(type, list);
    });
  }
  ask(msg: object, answer: string): Promise<Record<string, unknown>> {
    const r = this.next(answer);
    this.proc.send(msg);
    return r;
  }
}

/** Reads every file of each mount: entries, attributes, a small read, a 1 MiB read through the
 *  pool; with --write also 4 MiB written to `sink` in 1 MiB writes. */
function exercise(mountpoints: string[], write: boolean): void {
  for (const mp of mountpoints) {
    if (write) fs.writeFileSync(join(mp, 'sink'), Buffer.alloc(4 << 20, 1));
    if (fs.readdirSync(mp).length !== 2) throw new Error(`${mp}: wrong listing`);
    if (!fs.readFileSync(join(mp, 'small')).equals(SMALL)) throw new Error(`${mp}: wrong small file`);
    if (fs.readFileSync(join(mp, 'ranged')).length !== RANGED_SIZE) throw new Error(`${mp}: wrong ranged file`);
  }
}

interface Result {
  one: { rssKiB: number; threads: number; mountMs: number };
  all: { rssKiB: number; threads: number; mountMsEach: number };
  perAddedSession: { rssKiB: number; anonKiB: number; threads: number; heapKiB: number };
  afterUnmount: { rssKiB: number; threads: number; unmountMsEach: number };
}

/** One measurement: a serving child with n sessions, in a fresh dir under `scratch`. */
async function measureSessions(n: number, write: boolean, scratch: string): Promise<Result> {
  fs.mkdirSync(scratch, { recursive: true });
  const dir = fs.mkdtempSync(join(scratch, 'sessions-'));
  const backing = join(dir, 'backing');
  fs.writeFileSync(backing, Buffer.alloc(RANGED_SIZE, 0x5a));
  const mps = Array.from({ length: n }, (_, i) => join(dir, `m${i}`));
  for (const mp of mps) fs.mkdirSync(mp);
  const proc = fork(fileURLToPath(import.meta.url), ['--serve', backing], {
    execArgv: ['--expose-gc'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, SESSIONS_WRITE: write ? '1' : '0' },
  });
  const child = new Child(proc);
  const end = (): void => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
    removeTree(dir, { mounts: 'force' }); // a failed run's mounts are aborted and detached first
  };
  const release = onCleanup(end); // Ctrl-C or a crash of the bench
  try {
    await child.next('ready');
    const first = await child.ask({ type: 'mount', mountpoints: mps.slice(0, 1) }, 'mounted');
    exercise(mps.slice(0, 1), write);
    const one = await child.ask({ type: 'usage' }, 'usage');
    const rest = await child.ask({ type: 'mount', mountpoints: mps.slice(1) }, 'mounted');
    exercise(mps, write);
    exercise(mps, write); // twice: whatever a session keeps after use is in the figure
    const all = await child.ask({ type: 'usage' }, 'usage');
    const t0 = process.hrtime.bigint();
    const after = await child.ask({ type: 'unmount' }, 'unmounted');
    const unmountMs = Number(process.hrtime.bigint() - t0) / 1e6;
    const per = (k: keyof Usage): number => ((all[k] as number) - (one[k] as number)) / (n - 1);
    return {
      one: { rssKiB: one.rssKiB as number, threads: one.threads as number, mountMs: first.msEach as number },
      all: { rssKiB: all.rssKiB as number, threads: all.threads as number, mountMsEach: rest.msEach as number },
      perAddedSession: { rssKiB: per('rssKiB'), anonKiB: per('anonKiB'), threads: per('threads'), heapKiB: per('heapKiB') },
      afterUnmount: { rssKiB: after.rssKiB as number, threads: after.threads as number, unmountMsEach: unmountMs / n },
    };
  } finally {
    end();
    release();
  }
}

function sessionsCase(name: string, write: boolean, n: number): Case {
  const what = write ? `${n} writable sessions (4 MiB written to each)` : `${n} sessions`;
  const fig = (id: string, label: string, unit: FigureSpec['unit']): FigureSpec => ({ id: `${name}-${id}`, label: `${what}: ${label}`, unit, better: 'lower' });
  const figures = [
    fig('rss', 'RSS of the serving process per added session', 'KiB'),
    fig('anon', 'of it anonymous (not file-backed)', 'KiB'),
    fig('heap', 'of it V8 heap', 'KiB'),
    fig('threads', 'threads per added session', 'threads'),
    fig('rss-all', 'RSS of the serving process with all mounted', 'MiB'),
    fig('mount', 'mount, each', 'ms'),
    fig('unmount', 'unmount, each', 'ms'),
  ];
  return {
    name, source: 'tiny', figures, takes: (p) => p.id === 'native',
    async run(_peer, _s, ctx) {
      const r = await measureSessions(n, write, join(ctx.opts.run, 'sessions'));
      const v = (value: number, also?: Record<string, number>): Sample => ({ value, ...(also ? { also } : {}) });
      const [rss, anon, heap, threads, rssAll, mount, unmount] = figures.map((f) => f.id);
      return {
        [rss!]: v(r.perAddedSession.rssKiB), [anon!]: v(r.perAddedSession.anonKiB), [heap!]: v(r.perAddedSession.heapKiB),
        [threads!]: v(r.perAddedSession.threads, { 'threads with all': r.all.threads }),
        [rssAll!]: v(r.all.rssKiB / 1024, { 'MiB with one': r.one.rssKiB / 1024, 'MiB after unmount': r.afterUnmount.rssKiB / 1024 }),
        [mount!]: v(r.all.mountMsEach, { 'ms for the first': r.one.mountMs }), [unmount!]: v(r.afterUnmount.unmountMsEach),
      };
    },
  };
}

export const sessionsSuite: Suite = {
  section: { id: 'sessions', title: 'what one more mount costs a serving process (the libfuse3 binding, a trivial filesystem)', subject: 'tarstack binding' },
  peers: (workDir) => [new BindingPeer(workDir, 'native', 'tarstack binding', 'native')],
  source: async () => ({ source: { name: 'tiny' }, describe: 'tiny = a root, a small file and a 1 MiB file behind an fd, per session' }),
  cases: (o) => [sessionsCase('sessions', false, o.sessions), sessionsCase('sessions-write', true, o.sessions)],
};

// This file is also the serving child (forked by measureSessions).
if (process.argv[2] === '--serve') {
  serve().catch((err: unknown) => {
    console.error('sessions bench server:', err);
    process.exit(1);
  });
}
