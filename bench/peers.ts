// The filesystems compared, each behind one interface: mount a source (timed, optionally with the
// time of the first answered request), find the processes serving it, unmount and end them.
// Kernel overlayfs, fuse-overlayfs and tarstack-overlay serve directory lowers; archivemount and
// tarstack serve the tar; the FUSE bindings serve a tree from memory in a bench child; `direct` is
// the tree on the host filesystem, and a decompressor stands for "decompress the archive once".
import { chownSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMounted } from '../src/util/mounts.js';
import { removeTree } from '../src/util/remove-tree.js';
import { unmount } from '../src/util/unmount.js';
import { startChild, type ChildMount } from '../test/helpers/mount-harness.js';
import { ordinaryUser, userEnv, type UserIds } from '../test/helpers/ordinary-user.js';
import { endPid, fuseServers, killGroup, onCleanup, run, runOk, sleep, start, startMonoNs, waitGone, type RunResult } from './sys.js';
import { WORK_JS } from './verify.js';

/** What a peer serves. Each peer uses the fields it understands and refuses a source without them. */
export interface Source {
  name: string; // for paths, and the tarstack image name
  tree?: string; // the tree as plain files (the lower of the overlay peers, the `direct` peer)
  lowers?: string[]; // directory lowers, top first (default [tree])
  tar?: string; // the archive (archivemount, tarstack); tarstack takes it compressed too
  addArgs?: string[]; // more `tarstack image add` arguments (--recompress)
  memory?: 'many' | 'big'; // served from memory by a bench child (the FUSE binding peers)
  bigFile?: string; // the file behind memory 'big'
}

/** first: nothing cached (fresh index / fresh upper); again: reuse the cache; writable: fresh and writable. */
export type MountMode = 'first' | 'again' | 'writable';

export interface Mounted {
  dir: string;
  servers: number[]; // pids serving a FUSE mount; empty for the kernel
  seconds: number; // wall time of the mount command(s), indexing included
  readyNs?: bigint; // when a polling process first saw the mount answer a stat (if polled)
  daemonStartNs?: bigint; // start of the earliest server process (±5 ms)
  /** FUSE requests the server has answered so far (the binding peers count them). */
  requests?: () => Promise<number>;
  /** Who may use the mount when not root: a rootless mount admits only its owner's processes. */
  as?: UserIds;
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
  mount(source: Source, mode: MountMode, poll?: boolean): Promise<Mounted>;
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
  private current?: { dir: string; servers: number[]; release: () => void; stop?: () => Promise<void> };
  /** The ordinary user a rootless peer mounts as; its dirs are theirs, and the cases run as them. */
  protected runAs?: UserIds;

  constructor(protected readonly workDir: string) {}

  abstract probe(): Promise<string | undefined>;
  /** Runs the mount command(s); returns their total wall time, and how to end a mount it serves itself. */
  protected abstract doMount(source: Source, mode: MountMode, mnt: string): Promise<{ seconds: number; stop?: () => Promise<void>; requests?: () => Promise<number> }>;
  /** The peer's own unmount; the base class falls back to abort + lazy unmount if it fails. */
  protected async doUnmount(mnt: string): Promise<void> {
    unmount(mnt);
  }

  protected base(source: Source): string {
    return join(this.workDir, this.id, source.name);
  }

  /** mkdir -p, the made dir given to the peer's user (fusermount3 mounts only on a dir they may write). */
  protected ownDir(dir: string): string {
    mkdirSync(dir, { recursive: true });
    if (this.runAs) chownSync(dir, this.runAs.uid, this.runAs.gid);
    return dir;
  }

  async mount(source: Source, mode: MountMode, poll = false): Promise<Mounted> {
    await this.unmount();
    this.ownDir(this.base(source));
    const mnt = this.ownDir(join(this.base(source), 'mnt'));
    const untrack = onCleanup(() => unmount(mnt));
    const poller = poll ? await startPoller(mnt, this.runAs) : undefined;
    let made: Awaited<ReturnType<BasePeer['doMount']>>;
    try {
      made = await this.doMount(source, mode, mnt);
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
    this.current = { dir: mnt, servers, release, ...(made.stop ? { stop: made.stop } : {}) };
    if (this.fuse && servers.length === 0) this.note(`no process found serving ${mnt} (cmdline with the mountpoint + /dev/fuse open)`);
    const starts = servers.map(startMonoNs).filter((t): t is bigint => t !== undefined);
    return {
      dir: mnt, servers, seconds: made.seconds,
      readyNs: poller ? await poller.ready : undefined,
      daemonStartNs: starts.length > 0 ? starts.reduce((a, b) => (a < b ? a : b)) : undefined,
      ...(made.requests ? { requests: made.requests } : {}),
      ...(this.runAs ? { as: this.runAs } : {}),
    };
  }

  async unmount(): Promise<void> {
    const cur = this.current;
    if (!cur) return;
    this.current = undefined;
    try {
      await (cur.stop ? cur.stop() : this.doUnmount(cur.dir));
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
async function startPoller(mnt: string, as?: UserIds): Promise<{ ready: Promise<bigint | undefined>; cancel: () => void }> {
  let armed!: () => void;
  const armedP = new Promise<void>((r) => (armed = r));
  let readyNs: bigint | undefined;
  const job = start(process.execPath, [WORK_JS, 'poll'], {
    env: { ...process.env, BENCH_POLL_DIR: mnt }, timeoutS: MOUNT_TIMEOUT_S, as,
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
const need = <T>(peer: Peer, what: string, v: T | undefined): T => {
  if (v === undefined) throw new Error(`${peer.name} cannot serve a source without ${what}`);
  return v;
};

/** Upper and work dirs for overlay peers: 'ro' stays empty for the read cases, 'rw' is fresh per write case. */
function overlayDirs(base: string, mode: MountMode): { upper: string; work: string } {
  const kind = mode === 'writable' ? 'rw' : 'ro';
  const upper = join(base, `upper-${kind}`);
  const work = join(base, `work-${kind}`);
  if (mode !== 'again') {
    removeTree(upper, { mounts: 'force' });
    removeTree(work, { mounts: 'force' });
  }
  mkdirSync(upper, { recursive: true });
  mkdirSync(work, { recursive: true });
  return { upper, work };
}

/** The lowerdir= option: the source's lowers, or its tree. */
function lowerdir(peer: Peer, s: Source): string {
  return (s.lowers ?? [need(peer, 'a tree', s.tree)]).map((l) => l.replace(/:/g, '\\:')).join(':');
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

  protected async doMount(source: Source, mode: MountMode, mnt: string) {
    const { upper, work } = overlayDirs(this.base(source), mode);
    // redirect_dir=on: a renamed lower directory is a redirect, as tarstack-overlay writes it
    const opts = `lowerdir=${lowerdir(this, source)},upperdir=${upper},workdir=${work}${source.lowers ? ',redirect_dir=on' : ''}`;
    return { seconds: (await runOk('mount', ['-t', 'overlay', 'overlay', '-o', opts, mnt], { timeoutS: 60 })).seconds };
  }
}

/** A FUSE overlay program taking fuse-overlayfs's arguments: fuse-overlayfs itself, or tarstack-overlay. */
class OverlayProgram extends BasePeer {
  readonly fuse = true;
  override writable = true;

  constructor(workDir: string, readonly id: string, readonly name: string, private readonly argv: string[], private readonly version0: (r: RunResult) => string) {
    super(workDir);
  }

  async probe(): Promise<string | undefined> {
    const r = await run(this.argv[0]!, [...this.argv.slice(1), '--version']);
    this.version = this.version0(r);
    return this.version ? undefined : `${this.name} --version: ${firstLine(r)}`;
  }

  protected async doMount(source: Source, mode: MountMode, mnt: string) {
    const { upper, work } = overlayDirs(this.base(source), mode);
    const opts = `lowerdir=${lowerdir(this, source)},upperdir=${upper},workdir=${work}`;
    return { seconds: (await runOk(this.argv[0]!, [...this.argv.slice(1), '-o', opts, mnt], { timeoutS: 60 })).seconds };
  }
}

export const fuseOverlayfs = (workDir: string): Peer =>
  new OverlayProgram(workDir, 'fuse-overlayfs', 'fuse-overlayfs', ['fuse-overlayfs'], (r) => /fuse-overlayfs: version (\S+)/.exec(r.stdout + r.stderr)?.[1] ?? '');

/** tarstack-overlay from the measured checkout (its `--version` prints the package version). */
export const tarstackOverlay = (workDir: string, repo: string): Peer =>
  new OverlayProgram(workDir, 'tarstack-overlay', 'tarstack-overlay', [process.execPath, join(repo, 'dist/src/mountprog/main.js')], (r) => (r.code === 0 ? `${repo} ${r.stdout.trim()}` : ''));

export class Archivemount extends BasePeer {
  readonly id = 'archivemount';
  readonly name = 'archivemount';
  readonly fuse = true;

  async probe(): Promise<string | undefined> {
    const r = await run('archivemount', ['--version']);
    this.version = /archivemount version (\S+)/.exec(r.stdout + r.stderr)?.[1] ?? '';
    return this.version ? undefined : `archivemount --version: ${firstLine(r)}`;
  }

  protected async doMount(source: Source, _mode: MountMode, mnt: string) {
    return { seconds: (await runOk('archivemount', ['-o', 'readonly', need(this, 'a tar', source.tar), mnt], { timeoutS: MOUNT_TIMEOUT_S })).seconds };
  }
}

/**
 * tarstack through its CLI (the contract in bench/README.md): `image add TAR --name N`,
 * `image mount N DIR` (returns once serving, prints DIR last), `umount DIR`; writes through
 * `instance create I N` + `mount I DIR`, enabled once `instance --help` succeeds.
 */
export class Tarstack extends BasePeer {
  readonly fuse = true;
  private readonly main: string;
  private readonly indexed = new Set<string>(); // sources whose image is in the store
  private instances = 0;

  /** A variant (`--variant NAME='{"TARSTACK_PASSTHROUGH":"0"}'`) is the same CLI with more
   *  environment, which its store's server inherits: id and name tarstack-NAME. A rootless one runs
   *  every command, its store's server and the cases on its mounts as an ordinary user. */
  constructor(workDir: string, private readonly repo: string, readonly id = 'tarstack', readonly name = 'tarstack', private readonly env: Record<string, string> = {},
    private readonly rootless = false) {
    super(workDir);
    this.main = join(repo, 'dist/src/cli/main.js');
  }

  async probe(): Promise<string | undefined> {
    if (!existsSync(this.main)) return `not built: ${this.main} is missing (build ${this.repo} first)`;
    if (this.rootless) {
      const user = ordinaryUser();
      if (typeof user === 'string') return user;
      this.runAs = user;
    }
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

  /** The CLI's main module (run with node). */
  get mainPath(): string {
    return this.main;
  }

  /** The store of a source's runs (TARSTACK_HOME). */
  home(source: Source): string {
    return join(this.base(source), 'home');
  }

  /** The tarstack CLI on a source's store; fails on a non-zero exit. */
  cli(source: Source, args: string[]): Promise<RunResult> {
    return this.cliOn(this.home(source), args, MOUNT_TIMEOUT_S);
  }

  /** The CLI on the store at home, as the peer's user: root's environment, or a user's own. */
  private cliOn(home: string, args: string[], timeoutS: number): Promise<RunResult> {
    const base = this.runAs ? userEnv(dirname(home)) : process.env;
    const env = { ...base, ...this.env, TARSTACK_HOME: home };
    return runOk(process.execPath, [this.main, ...args], { env, timeoutS, as: this.runAs });
  }

  /** A fresh store with the source's image in it; returns the seconds `image add` took. */
  async addImage(source: Source): Promise<number> {
    this.indexed.delete(source.name);
    removeTree(this.home(source), { mounts: 'force' });
    const r = await this.cli(source, ['image', 'add', need(this, 'a tar', source.tar), '--name', source.name, ...(source.addArgs ?? [])]);
    this.indexed.add(source.name);
    return r.seconds;
  }

  protected async doMount(source: Source, mode: MountMode, mnt: string) {
    let seconds = 0;
    if (mode === 'first') seconds += await this.addImage(source);
    else if (!this.indexed.has(source.name)) await this.addImage(source); // untimed: builds the cache
    let r: RunResult;
    if (mode === 'writable') {
      const inst = `bench${++this.instances}`;
      seconds += (await this.cli(source, ['instance', 'create', inst, source.name])).seconds;
      r = await this.cli(source, ['mount', inst, mnt]);
    } else {
      r = await this.cli(source, ['image', 'mount', source.name, mnt]);
    }
    const last = r.stdout.trim().split('\n').pop();
    if (last !== mnt) this.note(`mount printed ${JSON.stringify(last)} last, not the mount path`);
    return { seconds: seconds + r.seconds };
  }

  protected override async doUnmount(mnt: string): Promise<void> {
    await this.cliOn(join(dirname(mnt), 'home'), ['umount', mnt], 60);
  }
}

const SERVE_JS = fileURLToPath(new URL('./serve.js', import.meta.url));

/**
 * A FUSE binding serving a tree from memory (bench/many-fs.ts) in a bench child (bench/serve.ts):
 * tarstack's libfuse3 binding (src/fuse/native-backend.ts; `session` tunes it, a variant per
 * --variant) or fuse-native (src/fuse/fuse-native-backend.ts). Counts the requests it answers.
 */
export class BindingPeer extends BasePeer {
  readonly fuse = true;

  constructor(workDir: string, readonly id: string, readonly name: string, private readonly backend: 'native' | 'fuse-native', private readonly session = '{}') {
    super(workDir);
  }

  async probe(): Promise<string | undefined> {
    this.version = this.backend === 'native' ? `libfuse3 binding ${this.session}` : 'fuse-native 2.2.6 (libfuse 2)';
    return existsSync('/dev/fuse') ? undefined : 'no /dev/fuse';
  }

  protected async doMount(source: Source, _mode: MountMode, mnt: string) {
    const kind = need(this, 'a memory tree', source.memory);
    const t0 = process.hrtime.bigint();
    const { mount } = await startChild(SERVE_JS, mnt, [this.backend, kind, ...(kind === 'big' ? [need(this, 'a big file', source.bigFile)] : [])], { BENCH_SESSION: this.session });
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    return { seconds, stop: () => stopChild(mount), requests: async () => (await mount.ask('stats')).requests as number };
  }
}

async function stopChild(c: ChildMount): Promise<void> {
  const done = c.next('unmounted').catch(() => undefined);
  c.child.send({ type: 'unmount' });
  await done;
  await c.cleanup();
}

/** The tree read straight from the host filesystem, no overlay: what any layer above it costs. */
export class Direct extends BasePeer {
  readonly id = 'direct';
  readonly name = 'direct';
  readonly fuse = false;

  async probe(): Promise<string | undefined> {
    this.version = 'the host filesystem';
    return undefined;
  }

  override async mount(source: Source): Promise<Mounted> {
    return { dir: need(this, 'a tree', source.tree), servers: [], seconds: 0 };
  }

  protected async doMount(): Promise<never> {
    throw new Error('direct mounts nothing');
  }
}

/** Every peer of the comparison of tarstack with its peers, in report column order. */
export function makePeers(workDir: string, tarstackRepo: string, variants = new Map<string, string>()): Peer[] {
  const more = [...variants].map(([name, env]) => new Tarstack(workDir, tarstackRepo, `tarstack-${name}`, `tarstack-${name}`, JSON.parse(env) as Record<string, string>));
  const rootless = new Tarstack(workDir, tarstackRepo, 'tarstack-rootless', 'tarstack as a user', {}, true);
  return [new KernelOverlay(workDir), fuseOverlayfs(workDir), new Archivemount(workDir), new Tarstack(workDir, tarstackRepo), rootless, ...more];
}

/**
 * "Decompress the archive once" (gzip -dc, zstd -dc to /dev/null): the baseline of the compressed
 * cases, which time it where tarstack indexes or reads. Serves nothing; mount() names the archive.
 */
export class Decompressor extends BasePeer {
  readonly id = 'decompress';
  readonly name = 'gzip/zstd -dc';
  readonly fuse = false;

  async probe(): Promise<string | undefined> {
    const versions = await Promise.all(['gzip', 'zstd'].map((t) => run(t, ['--version'])));
    this.version = versions.map((r, i) => `${['gzip', 'zstd'][i]} ${/v?(\d+\.\d+(?:\.\d+)?)/.exec(firstLine(r))?.[1] ?? '?'}`).join(', ');
    return versions.every((r) => r.code === 0) ? undefined : 'gzip or zstd is missing';
  }

  override async mount(source: Source): Promise<Mounted> {
    return { dir: need(this, 'a tar', source.tar), servers: [], seconds: 0 };
  }

  protected async doMount(): Promise<never> {
    throw new Error('a decompressor mounts nothing');
  }
}
