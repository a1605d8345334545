// The measurements, each a named case (the names --only takes) that runs on one peer and returns a
// cell per figure. Cold runs remount the peer and drop the page cache first; values are medians.
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Shape, ShapeKind } from './data.js';
import type { Mounted, Peer } from './peers.js';
import { aboveNodeAtMost, ratioAtMost, secondsAtMost, shareAtLeast, type Cell, type FigureSpec } from './report.js';
import { dropCaches, run, sh, statusKiB, type RunResult } from './sys.js';
import { workJob } from './verify.js';

export interface Ctx {
  reps: number;
  timeoutS: number; // one timed operation; longer counts as "> timeoutS s"
  fioSeconds: number;
  nodeBaselineKiB(): Promise<number>;
}

export interface Case {
  name: string;
  shape: ShapeKind;
  writes?: true; // needs a writable peer
  daemonOnly?: true; // meaningless for the kernel (no process to measure)
  figures: FigureSpec[];
  run(peer: Peer, shape: Shape, ctx: Ctx): Promise<Record<string, Cell>>;
}

/** A timed operation on a mount: its value in the figure's unit (throws Timeout past ctx.timeoutS). */
type Op = (m: Mounted, shape: Shape, ctx: Ctx) => Promise<number>;

class Timeout extends Error {}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const cellOf = (runs: number[], note?: string): Cell => ({ value: median(runs), runs, ...(note ? { note } : {}) });

/** Seconds of a command that must succeed within ctx.timeoutS. */
function ok(r: RunResult, what: string): number {
  if (r.timedOut) throw new Timeout();
  if (r.code !== 0) throw new Error(`${what}: exit ${r.code}: ${r.stderr.trim().split('\n').slice(-2).join(' ')}`);
  return r.seconds;
}

/** Runs op ctx.reps times, cold (remount + drop caches) or warm (one untimed run first). */
async function repeat(peer: Peer, shape: Shape, ctx: Ctx, temp: 'cold' | 'warm', op: Op): Promise<Cell> {
  const runs: number[] = [];
  try {
    let m = await peer.mount(shape, 'again');
    if (temp === 'warm') await op(m, shape, ctx);
    for (let i = 0; i < ctx.reps; i++) {
      if (temp === 'cold') {
        if (i > 0) m = await peer.mount(shape, 'again');
        dropCaches();
      }
      runs.push(await op(m, shape, ctx));
    }
  } catch (e) {
    if (e instanceof Timeout) return { note: `> ${ctx.timeoutS} s` };
    throw e;
  }
  return cellOf(runs);
}

const findFiles: Op = async (m, shape, ctx) => {
  const r = await sh('find "$1" -type f | wc -l', { args: [m.dir], timeoutS: ctx.timeoutS });
  const s = ok(r, 'find');
  if (Number(r.stdout.trim()) !== shape.manifest.files) throw new Error(`find counted ${r.stdout.trim()} files, expected ${shape.manifest.files}`);
  return s;
};
const du: Op = async (m, _s, ctx) => ok(await run('du', ['-s', m.dir], { timeoutS: ctx.timeoutS }), 'du');
// GNU tar skips reading file data when the archive is /dev/null, so the archive goes through cat
const readAll: Op = async (m, _s, ctx) => ok(await sh('cd "$1" && tar cf - . | cat > /dev/null', { args: [m.dir], timeoutS: ctx.timeoutS }), 'tar');
const seqRead: Op = async (m, shape, ctx) => {
  const big = shape.manifest.bigFile!;
  const s = ok(await run('dd', [`if=${join(m.dir, big.path)}`, 'of=/dev/null', 'bs=1M', 'status=none'], { timeoutS: ctx.timeoutS }), 'dd');
  return big.bytes / 2 ** 20 / s;
};
const randRead: Op = async (m, shape, ctx) => {
  const file = join(m.dir, shape.manifest.bigFile!.path);
  const r = await run('fio', ['--name=randread', `--filename=${file.replace(/:/g, '\\:')}`, '--readonly', '--rw=randread', '--bs=4k',
    '--direct=0', '--ioengine=psync', '--time_based', `--runtime=${ctx.fioSeconds}`, '--output-format=json'],
  { timeoutS: ctx.fioSeconds + ctx.timeoutS });
  ok(r, 'fio');
  return (JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { jobs: { read: { iops: number } }[] }).jobs[0]!.read.iops;
};

const secs = (id: string, label: string, target?: FigureSpec['target']): FigureSpec => ({ id, label, unit: 's', better: 'lower', ...(target ? { target } : {}) });
const readCase = (name: string, shape: ShapeKind, spec: FigureSpec, temp: 'cold' | 'warm', op: Op): Case => ({
  name, shape, figures: [spec],
  run: async (peer, s, ctx) => ({ [spec.id]: await repeat(peer, s, ctx, temp, op) }),
});

/** A walk that takes longer (archivemount re-reads the tar for every file) is cut; its peak so far is shown. */
const PEAK_WALK_LIMIT_S = 300;

/** Peak RSS of the serving processes after a full walk and read of the tree. */
function peakRss(name: string, shape: ShapeKind, label: string, aboveNodeMiB: number): Case {
  const id = `${name}`;
  return {
    name, shape, daemonOnly: true,
    figures: [{ id, label, unit: 'MiB', better: 'lower', target: aboveNodeAtMost(aboveNodeMiB) }],
    async run(peer, s, ctx) {
      const m = await peer.mount(s, 'again');
      if (m.servers.length === 0) return { [id]: { note: 'server pid not found' } };
      const r = await sh('find "$1" > /dev/null && cd "$1" && tar cf - . | cat > /dev/null', { args: [m.dir], timeoutS: PEAK_WALK_LIMIT_S });
      if (!r.timedOut) ok(r, 'walk and read');
      const kib = m.servers.map((p) => statusKiB(p, 'VmHWM') ?? 0).reduce((a, b) => a + b, 0);
      const cell: Cell = { value: kib / 1024 };
      const notes = r.timedOut ? [`walk stopped at ${PEAK_WALK_LIMIT_S} s`] : [];
      if (peer.name === 'tarstack') {
        cell.aboveNode = (kib - (await ctx.nodeBaselineKiB())) / 1024;
        notes.unshift(`${cell.aboveNode.toFixed(0)} MiB above node`);
      }
      if (notes.length > 0) cell.note = notes.join(', ');
      return { [id]: cell };
    },
  };
}

/** A write case: per run a fresh writable mount, drop caches, the op, then `sync`; value = op + sync. */
function writeCase(name: string, shape: ShapeKind, label: string, target: FigureSpec['target'], op: (m: Mounted, shape: Shape, ctx: Ctx) => Promise<number>): Case {
  return {
    name, shape, writes: true, figures: [secs(name, label, target)],
    async run(peer, s, ctx) {
      const runs: number[] = [];
      const syncs: number[] = [];
      try {
        for (let i = 0; i < ctx.reps; i++) {
          const m = await peer.mount(s, 'writable');
          dropCaches();
          const opSeconds = await op(m, s, ctx);
          const sync = ok(await run('sync', [], { timeoutS: ctx.timeoutS }), 'sync');
          runs.push(opSeconds + sync);
          syncs.push(sync);
        }
      } catch (e) {
        if (e instanceof Timeout) return { [name]: { note: `> ${ctx.timeoutS} s` } };
        throw e;
      } finally {
        await peer.unmount();
      }
      return { [name]: cellOf(runs, `sync ${median(syncs).toPrecision(2)} s`) };
    },
  };
}

async function job(args: string[], ctx: Ctx): Promise<number> {
  try {
    return (await workJob<{ seconds: number }>(args, ctx.timeoutS)).seconds;
  } catch (e) {
    if (/timed out/.test((e as Error).message)) throw new Timeout();
    throw e;
  }
}

export const CASES: Case[] = [
  {
    name: 'first-mount', shape: 'many',
    figures: [secs('first-mount', 'first mount incl. index, `many`, cold', secondsAtMost(1))],
    async run(peer, s, ctx) {
      const runs: number[] = [];
      for (let i = 0; i < ctx.reps; i++) {
        await peer.unmount();
        dropCaches();
        runs.push((await peer.mount(s, 'first')).seconds);
      }
      return { 'first-mount': cellOf(runs) };
    },
  },
  {
    name: 'remount', shape: 'many',
    figures: [
      secs('remount', 'remount with a cached index, `many`, cold: CLI wall time', secondsAtMost(0.25)),
      secs('remount-ready', 'remount: server process start → first answered stat (±5 ms)', secondsAtMost(0.1)),
    ],
    async run(peer, s, ctx) {
      await peer.mount(s, 'again'); // builds the cache if there is none yet
      const wall: number[] = [];
      const ready: number[] = [];
      for (let i = 0; i < ctx.reps; i++) {
        await peer.unmount();
        dropCaches();
        const m = await peer.mount(s, 'again', true);
        wall.push(m.seconds);
        if (m.readyNs !== undefined && m.daemonStartNs !== undefined) ready.push(Number(m.readyNs - m.daemonStartNs) / 1e9);
      }
      return {
        remount: cellOf(wall),
        'remount-ready': ready.length > 0 ? cellOf(ready) : { note: peer.fuse ? 'server pid not found' : 'no daemon' },
      };
    },
  },
  readCase('find-cold', 'many', secs('find-cold', '`find -type f`, cold', ratioAtMost(1.5)), 'cold', findFiles),
  readCase('find-warm', 'many', secs('find-warm', '`find -type f`, warm', ratioAtMost(2)), 'warm', findFiles),
  readCase('du-cold', 'many', secs('du-cold', '`du -s`, cold', ratioAtMost(1.5)), 'cold', du),
  readCase('read-small-cold', 'many', secs('read-small-cold', 'read every small file (`tar cf - | cat`), cold', ratioAtMost(1.3)), 'cold', readAll),
  peakRss('peak-rss', 'many', 'daemon peak RSS (VmHWM) after walking and reading `many`', 60),
  readCase('seq-read-cold', 'big', { id: 'seq-read-cold', label: 'sequential read of the 2 GiB member (dd bs=1M), cold', unit: 'MiB/s', better: 'higher', target: shareAtLeast(0.8) }, 'cold', seqRead),
  readCase('seq-read-warm', 'big', { id: 'seq-read-warm', label: 'the same, warm', unit: 'MiB/s', better: 'higher', target: shareAtLeast(0.7) }, 'warm', seqRead),
  readCase('rand-read-cold', 'big', { id: 'rand-read-cold', label: 'random 4 KiB reads of the 2 GiB member (fio psync), cold', unit: 'IOPS', better: 'higher', target: shareAtLeast(0.8) }, 'cold', randRead),
  writeCase('append', 'big', 'append 1 byte to the 2 GiB lower file (copy-up), incl. sync', secondsAtMost(0.1), async (m, s, ctx) => {
    const file = join(m.dir, s.manifest.bigFile!.path);
    const seconds = await job(['append', file], ctx);
    if (statSync(file).size !== s.manifest.bigFile!.bytes + 1) throw new Error('append: the file did not grow by one byte');
    return seconds;
  }),
  writeCase('create', 'many', 'create 10,000 one-byte files, incl. sync', ratioAtMost(1.3), (m, s, ctx) =>
    job(['create', join(m.dir, 'bench-created'), String(s.manifest.files / 10)], ctx)),
  writeCase('rm-rf', 'many', '`rm -rf` of a 10,000-file lower subtree, incl. sync', ratioAtMost(1.0), async (m, s, ctx) => {
    const dir = join(m.dir, s.manifest.rmSubtree!.path);
    const seconds = ok(await run('rm', ['-rf', dir], { timeoutS: ctx.timeoutS }), 'rm -rf');
    if (existsSync(dir)) throw new Error('rm -rf: the subtree is still there');
    return seconds;
  }),
  writeCase('untar', 'many', 'untar a 20,000-file source tree into the mount, incl. sync', undefined, async (m, s, ctx) => {
    const dest = join(m.dir, 'bench-untar');
    mkdirSync(dest);
    return ok(await run('tar', ['-xf', s.manifest.untar!.tar, '-C', dest], { timeoutS: ctx.timeoutS }), 'untar');
  }),
  // only on request (--only million): the memory figure at a million members
  peakRss('million', 'million', 'daemon peak RSS after walking and reading 1,000,000 members', 150),
];

export const DEFAULT_CASES = CASES.filter((c) => c.name !== 'million').map((c) => c.name);
