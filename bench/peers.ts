// The filesystems compared, each behind one interface: mount a shape (timed, optionally with the
// time of the first answered request), find the processes serving it, unmount and end them.
// Kernel overlayfs and fuse-overlayfs serve the extracted tree; archivemount and tarstack the tar.
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Shape } from './data.js';
import { isMounted, removeTree, trackMount, unmount } from './mounts.js';
import { endPid, fuseServers, killGroup, onCleanup, run, runOk, sleep, start, startMonoNs, waitGone, type RunResult } from './sys.js';
import { WORK_JS } from './verify.js';

/** first: nothing cached (fresh index / fresh upper); again: reuse the cache; writable: a fresh writable instance. */
export type MountMode = 'first' | 'again' | 'writable';

export interface Mounted {
  dir: string;
  servers: number[]; // pids serving a FUSE mount; empty for the kernel
  seconds: number; // wall time of the mount command(s), indexing included
  readyNs?: bigint; // when a polling process first saw the mount answer a stat (if polled)
  daemonStartNs?: bigint; // start of the earliest server process (±5 ms)
}

export interface Peer {
  readonly id: string; // for --peers and paths
  readonly name: string; // column heading
  readonly fuse: boolean;
  writable: boolean;
  version: string;
  notes: string[]; // oddities seen while running, for the report
  /** Why this peer cannot run here, or undefined when it can. */
  probe(): Promise<string | undefined>;
  mount(shape: Shape, mode: MountMode, poll?: boolean): Promise<Mounted>;
  unmount(): Promise<void>;
}

const MOUNT_TIMEOUT_S = 900; // indexing a million-member tar may take minutes

abstract class BasePeer implements Peer {
  abstract readonly id: string;
  abstract readonly name: string;
  abstract readonly fuse: boolean;
  writable = false;
  version = '';
  notes: string[] = [];
  private current?: { dir: string; servers: number[]; release: () => void };

  constructor(protected readonly workDir: string) {}

  abstract probe(): Promise<string | undefined>;
  /** Runs the mount command(s); returns their total wall time. */
  protected abstract doMount(shape: Shape, mode: MountMode, mnt: string): Promise<number>;
  /** The peer's own unmount; the base class falls back to abort + lazy unmount if it fails. */
  protected async doUnmount(mnt: string): Promise<void> {
    unmount(mnt);
  }

  protected base(shape: Shape): string {
    return join(this.workDir, this.id, shape.name);
  }

  async mount(shape: Shape, mode: MountMode, poll = false): Promise<Mounted> {
    await this.unmount();
    const mnt = join(this.base(shape), 'mnt');
    mkdirSync(mnt, { recursive: true });
    const untrack = trackMount(mnt);
    const poller = poll ? await startPoller(mnt) : undefined;
    let seconds: number;
    try {
      seconds = await this.doMount(shape, mode, mnt);
      if (!isMounted(mnt)) throw new Error(`${this.name}: mount command succeeded but nothing is mounted on ${mnt}`);
    } catch (e) {
      poller?.cancel();
      unmount(mnt);
      fuseServers(mnt).forEach((p) => endPid(p)); // a daemon that started but never mounted
      untrack();
      throw e;
    }
    const servers = this.fuse ? await findServers(mnt) : [];
    // on Ctrl-C or a crash: unmount first, then end the servers that outlive it
    const release = onCleanup(() => (unmount(mnt), servers.forEach((p) => endPid(p))));
    untrack();
    this.current = { dir: mnt, servers, release };
    if (this.fuse && servers.length === 0) this.note(`no process found serving ${mnt} (cmdline with the mountpoint + /dev/fuse open)`);
    const starts = servers.map(startMonoNs).filter((t): t is bigint => t !== undefined);
    return {
      dir: mnt, servers, seconds,
      readyNs: poller ? await poller.ready : undefined,
      daemonStartNs: starts.length > 0 ? starts.reduce((a, b) => (a < b ? a : b)) : undefined,
    };
  }

  async unmount(): Promise<void> {
    const cur = this.current;
    if (!cur) return;
    this.current = undefined;
    try {
      await this.doUnmount(cur.dir);
    } catch (e) {
      this.note(`unmount: ${(e as Error).message.split('\n')[0]}`);
    }
    if (unmount(cur.dir) === 'forced') this.note('a mount had to be aborted');
    if (!(await waitGone(cur.servers, 10_000))) {
      this.note('a server outlived its unmount by 10 s and was killed');
      cur.servers.forEach((p) => endPid(p));
    }
    cur.release();
  }

  protected note(s: string): void {
    if (!this.notes.includes(s)) this.notes.push(s);
  }
}

/** A poller that stats mnt every 0.2 ms from its own process; `ready` is when it first answered. */
async function startPoller(mnt: string): Promise<{ ready: Promise<bigint | undefined>; cancel: () => void }> {
  let armed!: () => void;
  const armedP = new Promise<void>((r) => (armed = r));
  let readyNs: bigint | undefined;
  const job = start(process.execPath, [WORK_JS, 'poll'], {
    env: { ...process.env, BENCH_POLL_DIR: mnt }, timeoutS: MOUNT_TIMEOUT_S,
    onLine: (line) => {
      const j = JSON.parse(line) as { armed?: boolean; readyNs?: string };
      if (j.armed) armed();
      if (j.readyNs) readyNs = BigInt(j.readyNs);
    },
  });
  await Promise.race([armedP, job.done]);
  return {
    ready: job.done.then(() => readyNs),
    cancel: () => killGroup(job.pid),
  };
}

/** The server pids of a FUSE mount; a daemon may still be forking when the mount command returns. */
async function findServers(mnt: string): Promise<number[]> {
  for (let waited = 0; waited < 3000; waited += 20) {
    const pids = fuseServers(mnt);
    if (pids.length > 0) return pids;
    await sleep(20);
  }
  return [];
}

const firstLine = (r: RunResult): string => (r.stdout + r.stderr).trim().split('\n')[0] ?? '';

/** Upper and work dirs for overlay peers: 'ro' stays empty for the read cases, 'rw' is fresh per write case. */
function overlayDirs(base: string, mode: MountMode): { upper: string; work: string } {
  const kind = mode === 'writable' ? 'rw' : 'ro';
  const upper = join(base, `upper-${kind}`);
  const work = join(base, `work-${kind}`);
  if (mode !== 'again') {
    removeTree(upper);
    removeTree(work);
  }
  mkdirSync(upper, { recursive: true });
  mkdirSync(work, { recursive: true });
  return { upper, work };
}

export class KernelOverlay extends BasePeer {
  readonly id = 'kernel';
  readonly name = 'kernel overlayfs';
  readonly fuse = false;
  override writable = true;

  async probe(): Promise<string | undefined> {
    this.version = (await run('uname', ['-r'])).stdout.trim();
    return (await run('grep', ['-qw', 'overlay', '/proc/filesystems'])).code === 0 ? undefined : 'overlay not in /proc/filesystems';
  }

  protected async doMount(shape: Shape, mode: MountMode, mnt: string): Promise<number> {
    const { upper, work } = overlayDirs(this.base(shape), mode);
    const opts = `lowerdir=${shape.tree},upperdir=${upper},workdir=${work}`;
    return (await runOk('mount', ['-t', 'overlay', 'overlay', '-o', opts, mnt], { timeoutS: 60 })).seconds;
  }
}

export class FuseOverlayfs extends BasePeer {
  readonly id = 'fuse-overlayfs';
  readonly name = 'fuse-overlayfs';
  readonly fuse = true;
  override writable = true;

  async probe(): Promise<string | undefined> {
    const r = await run('fuse-overlayfs', ['--version']);
    this.version = /fuse-overlayfs: version (\S+)/.exec(r.stdout + r.stderr)?.[1] ?? '';
    return this.version ? undefined : `fuse-overlayfs --version: ${firstLine(r)}`;
  }

  protected async doMount(shape: Shape, mode: MountMode, mnt: string): Promise<number> {
    const { upper, work } = overlayDirs(this.base(shape), mode);
    const opts = `lowerdir=${shape.tree},upperdir=${upper},workdir=${work}`;
    return (await runOk('fuse-overlayfs', ['-o', opts, mnt], { timeoutS: 60 })).seconds;
  }
}

export class Archivemount extends BasePeer {
  readonly id = 'archivemount';
  readonly name = 'archivemount';
  readonly fuse = true;

  async probe(): Promise<string | undefined> {
    const r = await run('archivemount', ['--version']);
    this.version = /archivemount version (\S+)/.exec(r.stdout + r.stderr)?.[1] ?? '';
    return this.version ? undefined : `archivemount --version: ${firstLine(r)}`;
  }

  protected async doMount(shape: Shape, _mode: MountMode, mnt: string): Promise<number> {
    return (await runOk('archivemount', ['-o', 'readonly', shape.tar, mnt], { timeoutS: MOUNT_TIMEOUT_S })).seconds;
  }
}

/**
 * tarstack through its CLI (the contract in the report's README): `image add TAR --name N`,
 * `image mount N DIR` (returns once serving, prints DIR last), `umount DIR`; writes through
 * `instance create I N` + `mount I DIR`, enabled once `instance --help` succeeds.
 */
export class Tarstack extends BasePeer {
  readonly id = 'tarstack';
  readonly name = 'tarstack';
  readonly fuse = true;
  private readonly main: string;
  private readonly indexed = new Set<string>(); // shapes whose image is in the store
  private instances = 0;

  constructor(workDir: string, private readonly repo: string) {
    super(workDir);
    this.main = join(repo, 'dist/src/cli/main.js');
  }

  async probe(): Promise<string | undefined> {
    if (!existsSync(this.main)) return `not built: ${this.main} is missing (build ${this.repo} first)`;
    const help = await run(process.execPath, [this.main, '--help'], { timeoutS: 30 });
    if (help.code !== 0) return `\`tarstack --help\` failed: ${firstLine(help)}`;
    const git = await run('git', ['-C', this.repo, 'rev-parse', '--short', 'HEAD']);
    this.version = git.code === 0 ? `${this.repo}@${git.stdout.trim()}` : this.repo;
    // yargs answers `X --help` for an unknown X with the global help and exit 0, so the help
    // must also list `instance create` before the write cases are turned on
    const inst = await run(process.execPath, [this.main, 'instance', '--help'], { timeoutS: 30 });
    this.writable = inst.code === 0 && /instance create/.test(inst.stdout);
    return undefined;
  }

  private cli(shape: Shape, args: string[]): Promise<RunResult> {
    const env = { ...process.env, TARSTACK_HOME: join(this.base(shape), 'home') };
    return runOk(process.execPath, [this.main, ...args], { env, timeoutS: MOUNT_TIMEOUT_S });
  }

  private async addImage(shape: Shape): Promise<number> {
    this.indexed.delete(shape.name);
    removeTree(join(this.base(shape), 'home'));
    const r = await this.cli(shape, ['image', 'add', shape.tar, '--name', shape.name]);
    this.indexed.add(shape.name);
    return r.seconds;
  }

  protected async doMount(shape: Shape, mode: MountMode, mnt: string): Promise<number> {
    let seconds = 0;
    if (mode === 'first') seconds += await this.addImage(shape);
    else if (!this.indexed.has(shape.name)) await this.addImage(shape); // untimed: builds the cache
    let r: RunResult;
    if (mode === 'writable') {
      const inst = `bench${++this.instances}`;
      seconds += (await this.cli(shape, ['instance', 'create', inst, shape.name])).seconds;
      r = await this.cli(shape, ['mount', inst, mnt]);
    } else {
      r = await this.cli(shape, ['image', 'mount', shape.name, mnt]);
    }
    const last = r.stdout.trim().split('\n').pop();
    if (last !== mnt) this.note(`mount printed ${JSON.stringify(last)} last, not the mount path`);
    return seconds + r.seconds;
  }

  protected override async doUnmount(mnt: string): Promise<void> {
    const env = { ...process.env, TARSTACK_HOME: join(dirname(mnt), 'home') };
    await runOk(process.execPath, [this.main, 'umount', mnt], { env, timeoutS: 60 });
  }
}

/** Every peer, in report column order. */
export function makePeers(workDir: string, tarstackRepo: string): Peer[] {
  return [new KernelOverlay(workDir), new FuseOverlayfs(workDir), new Archivemount(workDir), new Tarstack(workDir, tarstackRepo)];
}
