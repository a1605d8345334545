// The `many-instances` suite (issue 14): N writable instances of one image mounted at once, 2,000
// files read in each, and what that costs: RSS of every process serving them (one tarstack server;
// one fuse-overlayfs per mount; none for kernel overlayfs), RSS per added instance, and the wall
// time of one mount command. The image: 2,500 files of 0-40 KiB in 100 directories (~50 MB), as a
// tar for tarstack and extracted as the lower of the overlays. Each run starts from fresh uppers
// (a fresh store for tarstack) and leaves no mount or process behind, also on failure.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { removeTree } from '../src/util/remove-tree.js';
import { median, type Case, type Sample, type Suite } from './cases.js';
import { fuseOverlayfs, KernelOverlay, Tarstack, type Peer, type Source } from './peers.js';
import { valueAtMost, type FigureSpec } from './report.js';
import { endPid, fuseServers, onCleanup, runOk, sh, statusKiB, waitGone } from './sys.js';

const DIRS = 100;
const FILES_PER_DIR = 25;
const READ_FILES = 2000;

/** The tree and its tar, made once under <data>/instances. */
function prepare(root: string, log: (s: string) => void): Promise<{ tree: string; tar: string }> {
  const tree = join(root, 'tree');
  const tar = join(root, 'img.tar');
  if (existsSync(join(root, '.complete'))) return Promise.resolve({ tree, tar });
  log('many-instances: writing the image');
  removeTree(root, { mounts: 'force' });
  let seed = 1;
  const next = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
  for (let d = 0; d < DIRS; d++) {
    mkdirSync(join(tree, `d${d}`), { recursive: true });
    for (let f = 0; f < FILES_PER_DIR; f++) {
      const body = Buffer.alloc(next() % 40960);
      for (let i = 0; i + 4 <= body.length; i += 4) body.writeUInt32LE(next(), i); // incompressible, as real data mostly is
      writeFileSync(join(tree, `d${d}`, `f${f}`), body);
    }
  }
  return runOk('tar', ['-C', tree, '-cf', tar, '.'], { timeoutS: 600 }).then(() => {
    writeFileSync(join(root, '.complete'), '');
    return { tree, tar };
  });
}

interface Image extends Source {
  tree: string;
  tar: string;
}

/** What one run measured: RSS (KiB) with one instance and with all, and each mount's wall time. */
interface Measured {
  oneKiB: number;
  allKiB: number;
  mountMs: number[];
}

const readFiles = (dir: string): Promise<unknown> =>
  sh(`find "$1" -type f | head -n ${READ_FILES} | xargs -d '\\n' cat > /dev/null`, { args: [dir], timeoutS: 600 });

/** Mount n instances one after the other with `mountOne`, read files in each; RSS from `rss()` after the first and after all. */
async function measure(n: number, dirs: string[], mountOne: (i: number) => Promise<number>, rss: () => number): Promise<Measured> {
  const mountMs: number[] = [];
  let oneKiB = 0;
  for (let i = 0; i < n; i++) {
    mountMs.push(await mountOne(i));
    await readFiles(dirs[i]!);
    if (i === 0) oneKiB = rss();
  }
  for (const d of dirs) await readFiles(d); // twice: whatever a mount keeps after use is in the figure
  return { oneKiB, allKiB: rss(), mountMs };
}

const sumRss = (pids: number[]): number => pids.reduce((s, p) => s + (statusKiB(p, 'VmRSS') ?? 0), 0);

async function viaTarstack(peer: Tarstack, img: Image, n: number, dirs: string[]): Promise<Measured> {
  const src: Source = { ...img, name: 'instances' };
  await peer.addImage(src);
  for (let i = 0; i < n; i++) await peer.cli(src, ['instance', 'create', `i${i}`, src.name]);
  const info = (): { pid: number } => JSON.parse(readFileSync(join(peer.home(src), 'run', 'server.json'), 'utf8')) as { pid: number };
  try {
    return await measure(n, dirs, async (i) => (await peer.cli(src, ['mount', `i${i}`, dirs[i]!])).seconds * 1000, () => statusKiB(info().pid, 'VmRSS') ?? 0);
  } finally {
    const pid = (() => {
      try {
        return info().pid;
      } catch {
        return undefined;
      }
    })();
    await peer.cli(src, ['serve', '--stop']).catch(() => undefined); // unmounts them all, ends the server
    if (pid !== undefined && !(await waitGone([pid], 10_000))) endPid(pid);
  }
}

async function viaOverlay(peer: Peer, img: Image, n: number, base: string, dirs: string[]): Promise<Measured> {
  const fuse = peer.id !== 'kernel';
  const mountOne = async (i: number): Promise<number> => {
    const [upper, work] = [join(base, `upper${i}`), join(base, `work${i}`)];
    mkdirSync(upper, { recursive: true });
    mkdirSync(work, { recursive: true });
    const opts = `lowerdir=${img.tree},upperdir=${upper},workdir=${work}`;
    const r = fuse ? await runOk('fuse-overlayfs', ['-o', opts, dirs[i]!], { timeoutS: 60 }) : await runOk('mount', ['-t', 'overlay', 'overlay', '-o', opts, dirs[i]!], { timeoutS: 60 });
    return r.seconds * 1000;
  };
  const servers = (): number[] => (fuse ? dirs.flatMap((d) => fuseServers(d)) : []);
  const m = await measure(n, dirs, mountOne, () => sumRss(servers()));
  const pids = servers();
  for (const d of dirs) await runOk('umount', [d], { timeoutS: 60 }).catch(() => undefined);
  if (!(await waitGone(pids, 10_000))) pids.forEach((p) => endPid(p));
  return m;
}

function instancesCase(n: number): Case {
  const name = `many-instances-${n}`;
  const fig = (id: string, label: string, unit: FigureSpec['unit'], target?: FigureSpec['target']): FigureSpec => ({ id: `${name}-${id}`, label: `${n} instances: ${label}`, unit, better: 'lower', ...(target ? { target } : {}) });
  const figures = [
    fig('rss', `RSS of the processes serving them, ${READ_FILES} files read in each`, 'MiB', n >= 100 ? valueAtMost(250, 'MiB') : undefined),
    fig('added', 'RSS per added instance', 'KiB', valueAtMost(2048, 'KiB')),
    fig('mount', 'one mount command, wall', 'ms'),
  ];
  return {
    name, source: 'instances', figures, single: true,
    async run(peer, s, ctx) {
      const img = s as Image;
      const base = join(ctx.opts.run, 'instances', peer.id);
      removeTree(base, { mounts: 'force' });
      const dirs = Array.from({ length: n }, (_, i) => join(base, `m${i}`));
      for (const d of dirs) mkdirSync(d, { recursive: true });
      const release = onCleanup(() => removeTree(base, { mounts: 'force' }));
      try {
        const m = peer instanceof Tarstack ? await viaTarstack(peer, img, n, dirs) : await viaOverlay(peer, img, n, base, dirs);
        const sorted = [...m.mountMs].sort((a, b) => a - b);
        const v = (value: number, also?: Record<string, number>): Sample => ({ value, ...(also ? { also } : {}) });
        const [rss, added, mount] = figures.map((f) => f.id);
        return {
          [rss!]: v(m.allKiB / 1024, { 'MiB with one': m.oneKiB / 1024 }),
          [added!]: v((m.allKiB - m.oneKiB) / (n - 1)),
          [mount!]: v(sorted[sorted.length >> 1]!, { 'ms for the first': m.mountMs[0]! }),
        };
      } finally {
        removeTree(base, { mounts: 'force' });
        release();
      }
    },
  };
}

/** Rounds of the start-up case: each runs every command once, in a rotating order. */
const CLI_ROUNDS = 15;

/**
 * CLI start-up (issue 14): `node -e 0`, `tarstack --version`, `list`, `status` and a `mount` of an
 * instance while the server runs (its unmount untimed), interleaved round by round in the same run;
 * medians. The overlays' mount commands are the peers' figure for `mount`.
 */
function cliStartCase(): Case {
  const name = 'cli-start';
  const fig = (id: string, label: string, unit: FigureSpec['unit'], target?: FigureSpec['target']): FigureSpec => ({ id: `${name}-${id}`, label, unit, better: 'lower', ...(target ? { target } : {}) });
  const figures = [
    fig('node', 'start-up: `node -e 0`, wall', 'ms'),
    fig('version', 'start-up: `tarstack --version`, wall', 'ms'),
    fig('list', 'start-up: `tarstack list` (2 instances), wall', 'ms'),
    fig('status', 'start-up: `tarstack status` (1 mount), wall', 'ms'),
    fig('mount', 'start-up: `mount` of an instance, server running (overlays: their mount command), wall', 'ms'),
    fig('mount-share', 'start-up: that `mount` ÷ `node -e 0` of the same rounds', '%', valueAtMost(150, '%')),
  ];
  return {
    name, source: 'instances', figures, single: true,
    async run(peer, s, ctx) {
      const img = s as Image;
      const base = join(ctx.opts.run, 'cli-start', peer.id);
      removeTree(base, { mounts: 'force' });
      const [held, timed] = [join(base, 'held'), join(base, 'timed')];
      for (const d of [held, timed]) mkdirSync(d, { recursive: true });
      const release = onCleanup(() => removeTree(base, { mounts: 'force' }));
      const ms = async (cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<number> => (await runOk(cmd, args, { timeoutS: 60, ...(env ? { env } : {}) })).seconds * 1000;
      const t = new Map<string, number[]>(figures.slice(0, 5).map((f) => [f.id, []]));
      const add = (id: string, v: number): void => void t.get(`${name}-${id}`)!.push(v);
      try {
        if (peer instanceof Tarstack) {
          const src: Source = { ...img, name: 'cli' };
          await peer.addImage(src);
          for (const i of ['held', 'timed']) await peer.cli(src, ['instance', 'create', i, src.name]);
          await peer.cli(src, ['mount', 'held', held]); // the server runs from here on
          const env = { ...process.env, TARSTACK_HOME: peer.home(src) };
          const cli = peer.mainPath;
          const steps: Array<[string, () => Promise<number>]> = [
            ['node', () => ms(process.execPath, ['-e', '0'])],
            ['version', () => ms(process.execPath, [cli, '--version'], env)],
            ['list', () => ms(process.execPath, [cli, 'list'], env)],
            ['status', () => ms(process.execPath, [cli, 'status'], env)],
            ['mount', async () => {
              const v = await ms(process.execPath, [cli, 'mount', 'timed', timed], env);
              await runOk(process.execPath, [cli, 'umount', 'timed'], { env, timeoutS: 60 });
              return v;
            }],
          ];
          try {
            for (let r = 0; r < CLI_ROUNDS; r++) for (let k = 0; k < steps.length; k++) {
              const [id, step] = steps[(k + r) % steps.length]!;
              add(id, await step());
            }
          } finally {
            await peer.cli(src, ['serve', '--stop']).catch(() => undefined);
          }
        } else {
          const fuse = peer.id !== 'kernel';
          for (let r = 0; r < CLI_ROUNDS; r++) {
            add('node', await ms(process.execPath, ['-e', '0']));
            const [upper, work] = [join(base, `upper${r}`), join(base, `work${r}`)];
            for (const d of [upper, work]) mkdirSync(d, { recursive: true });
            const opts = `lowerdir=${img.tree},upperdir=${upper},workdir=${work}`;
            add('mount', fuse ? await ms('fuse-overlayfs', ['-o', opts, timed]) : await ms('mount', ['-t', 'overlay', 'overlay', '-o', opts, timed]));
            await runOk('umount', [timed], { timeoutS: 60 });
          }
        }
        const out: Record<string, Sample> = {};
        for (const [id, xs] of t) out[id] = xs.length ? { value: median(xs) } : { note: 'n/a' };
        const node = median(t.get(`${name}-node`)!);
        out[`${name}-mount-share`] = { value: (median(t.get(`${name}-mount`)!) / node) * 100 };
        return out;
      } finally {
        removeTree(base, { mounts: 'force' });
        release();
      }
    },
  };
}

export const instancesSuite: Suite = {
  section: { id: 'many-instances', title: 'many writable instances of one image, mounted at once', subject: 'tarstack' },
  peers: (workDir, o) => [new KernelOverlay(workDir), fuseOverlayfs(workDir), new Tarstack(workDir, o.tarstack)],
  async source(name, o, log) {
    const { tree, tar } = await prepare(join(o.data, 'instances'), log);
    const source: Image = { name, tree, tar };
    return { source, describe: `instances = ${DIRS * FILES_PER_DIR} files of 0-40 KiB in ${DIRS} directories (~50 MB), one image, an upper per instance` };
  },
  cases: (o) => (o.quick ? [instancesCase(10), cliStartCase()] : [instancesCase(10), instancesCase(100), cliStartCase()]),
};
