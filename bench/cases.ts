// The measurements, each a named case (the names the bench takes on its command line), grouped in
// suites that share data and peers. A case's run() makes one measurement on one peer, a sample per
// figure; main.ts interleaves peers run by run and reports medians. Cold runs remount the peer and
// drop the page cache first. This file: the types, the helpers every suite uses, and the `peers`
// suite (tarstack against kernel overlayfs, fuse-overlayfs and archivemount on TARGETS.md's data).
import { join } from 'node:path';
import { loadShape, type Shape, type ShapeKind } from './data.js';
import { makePeers, type Mounted, type Peer, type Source } from './peers.js';
import { aboveNodeAtMost, ratioAtMost, secondsAtMost, shareAtLeast, type Cell, type FigureSpec, type Section } from './report.js';
import { dropCaches, run, sh, statusKiB, type RunResult } from './sys.js';
import { workJob } from './verify.js';
import type { UserIds } from '../test/helpers/ordinary-user.js';

export interface Options {
  quick: boolean;
  data: string; // data dir (the generated trees and tars, kept between runs)
  run: string; // this run's scratch dir: <data>/run/<pid>, so runs side by side never touch each other's mounts
  tarstack: string; // the checkout measured
  variants: Map<string, string>; // binding suite: extra libfuse3 binding peers, name → SessionConfig JSON
  formats: string[]; // compressed suite: gzip, zstd, zstd-seekable
  mib: number; // compressed suite: MiB of each data set
  sessions: number; // sessions suite: mounts served by one process
}

export interface Ctx {
  reps: number;
  timeoutS: number; // one timed operation; longer counts as "> timeoutS s"
  fioSeconds: number;
  opts: Options;
  nodeBaselineKiB(): Promise<number>;
}

/** A group of cases on the same data and peers, reported as one table. */
export interface Suite {
  section: Section;
  /** Its peers, in column order (probed before use; --peers filters them by id). */
  peers(workDir: string, o: Options): Peer[];
  /** Loads (or makes, once) the data a case needs; described for the report. */
  source(name: string, o: Options, log: (s: string) => void): Promise<{ source: Source; describe: string }>;
  cases(o: Options): Case[];
  /** Cases run when the suite is named without listing cases. */
  defaults?: string[];
}

/** One run's result for one figure: a value in the figure's unit, or a note saying why there is none. */
export interface Sample {
  value?: number;
  sync?: number; // seconds of the `sync` included in value (write cases)
  aboveNode?: number; // MiB above a bare node process (peak RSS of tarstack)
  also?: Record<string, number>; // more numbers shown beside the value, as medians (requests, CPU s…)
  note?: string;
}

export interface Case {
  name: string;
  source: string; // what Suite.source() loads
  writes?: true; // needs a writable peer
  daemonOnly?: true; // meaningless for the kernel (no process to measure)
  single?: true; // one run only, whatever --reps says
  figures: FigureSpec[];
  /** Whether a peer takes part (default: all the suite's peers that can). */
  takes?(peer: Peer): boolean;
  /** One measurement on peer; throws Timeout when an operation passes ctx.timeoutS. */
  run(peer: Peer, source: Source, ctx: Ctx): Promise<Record<string, Sample>>;
}

/** A timed operation on a mount: its value in the figure's unit. */
type Op = (m: Mounted, shape: Shape, ctx: Ctx) => Promise<number>;

export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export class Timeout extends Error {}

/** The cell of one peer and figure: medians of the runs' values, sync share and notes kept. */
export function summarize(samples: Sample[]): Cell {
  const runs = samples.flatMap((s) => (s.value === undefined ? [] : [s.value]));
  const notes = [...new Set(samples.flatMap((s) => (s.note ? [s.note] : [])))];
  if (runs.length === 0) return { note: notes.join(', ') || 'no value' };
  const cell: Cell = { value: median(runs), runs };
  const syncs = samples.flatMap((s) => (s.sync === undefined ? [] : [s.sync]));
  if (syncs.length > 0) notes.unshift(`sync ${median(syncs).toPrecision(2)} s`);
  const also = new Map<string, number[]>();
  for (const s of samples) for (const [k, v] of Object.entries(s.also ?? {})) also.set(k, [...(also.get(k) ?? []), v]);
  for (const [k, vs] of [...also].reverse()) notes.unshift(`${k} ${Number(median(vs).toPrecision(3))}`);
  const above = samples.flatMap((s) => (s.aboveNode === undefined ? [] : [s.aboveNode]));
  if (above.length > 0) {
    cell.aboveNode = median(above);
    notes.unshift(`${cell.aboveNode.toFixed(0)} MiB above node`);
  }
  if (notes.length > 0) cell.note = notes.join(', ');
  return cell;
}

/** Seconds of a command that must succeed within ctx.timeoutS. */
export function ok(r: RunResult, what: string): number {
  if (r.timedOut) throw new Timeout();
  if (r.code !== 0) throw new Error(`${what}: exit ${r.code}: ${r.stderr.trim().split('\n').slice(-2).join(' ')}`);
  return r.seconds;
}

/** One run of op: cold (fresh mount + dropped caches) or warm (an untimed run of op first). */
async function once(peer: Peer, shape: Shape, ctx: Ctx, temp: 'cold' | 'warm', op: Op): Promise<number> {
  const m = await peer.mount(shape, 'again');
  if (temp === 'warm') await op(m, shape, ctx);
  else dropCaches();
  return op(m, shape, ctx);
}

const findFiles: Op = async (m, shape, ctx) => {
  const r = await sh('find "$1" -type f | wc -l', { args: [m.dir], timeoutS: ctx.timeoutS, as: m.as });
  const s = ok(r, 'find');
  if (Number(r.stdout.trim()) !== shape.manifest.files) throw new Error(`find counted ${r.stdout.trim()} files, expected ${shape.manifest.files}`);
  return s;
};
const du: Op = async (m, _s, ctx) => ok(await run('du', ['-s', m.dir], { timeoutS: ctx.timeoutS, as: m.as }), 'du');
// GNU tar skips reading file data when the archive is /dev/null, so the archive goes through cat
const readAll: Op = async (m, _s, ctx) => ok(await sh('cd "$1" && tar cf - . | cat > /dev/null', { args: [m.dir], timeoutS: ctx.timeoutS, as: m.as }), 'tar');
const seqRead: Op = async (m, shape, ctx) => {
  const big = shape.manifest.bigFile!;
  const s = ok(await run('dd', [`if=${join(m.dir, big.path)}`, 'of=/dev/null', 'bs=1M', 'status=none'], { timeoutS: ctx.timeoutS, as: m.as }), 'dd');
  return big.bytes / 2 ** 20 / s;
};
const randRead: Op = async (m, shape, ctx) => {
  const file = join(m.dir, shape.manifest.bigFile!.path);
  const r = await run('fio', ['--name=randread', `--filename=${file.replace(/:/g, '\\:')}`, '--readonly', '--rw=randread', '--bs=4k',
    '--direct=0', '--ioengine=psync', '--time_based', `--runtime=${ctx.fioSeconds}`, '--output-format=json'],
  { timeoutS: ctx.fioSeconds + ctx.timeoutS, as: m.as });
  ok(r, 'fio');
  return (JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { jobs: { read: { iops: number } }[] }).jobs[0]!.read.iops;
};

export const secs = (id: string, label: string, target?: FigureSpec['target']): FigureSpec => ({ id, label, unit: 's', better: 'lower', ...(target ? { target } : {}) });
const readCase = (name: string, shape: ShapeKind, spec: FigureSpec, temp: 'cold' | 'warm', op: Op): Case => ({
  name, source: shape, figures: [spec],
  run: async (peer, s, ctx) => ({ [spec.id]: { value: await once(peer, s as Shape, ctx, temp, op) } }),
});

/**
 * Peak RSS of the serving processes after a full walk and read of the tree (one run). A walk past
 * walkLimitS (archivemount re-reads the tar for every file) is cut and its peak so far shown.
 */
function peakRss(name: string, shape: ShapeKind, label: string, aboveNodeMiB: number, walkLimitS: number): Case {
  return {
    name, source: shape, daemonOnly: true, single: true,
    figures: [{ id: name, label, unit: 'MiB', better: 'lower', target: aboveNodeAtMost(aboveNodeMiB) }],
    async run(peer, s, ctx) {
      const m = await peer.mount(s, 'again');
      if (m.servers.length === 0) return { [name]: { note: 'server pid not found' } };
      const r = await sh('find "$1" > /dev/null && cd "$1" && tar cf - . | cat > /dev/null', { args: [m.dir], timeoutS: walkLimitS, as: m.as });
      if (!r.timedOut) ok(r, 'walk and read');
      const kib = m.servers.map((p) => statusKiB(p, 'VmHWM') ?? 0).reduce((a, b) => a + b, 0);
      const sample: Sample = { value: kib / 1024 };
      if (r.timedOut) sample.note = `walk stopped at ${walkLimitS} s`;
      if (peer.name === 'tarstack') sample.aboveNode = (kib - (await ctx.nodeBaselineKiB())) / 1024;
      return { [name]: sample };
    },
  };
}

/** A file's size seen by the mount's user (root may not look into a rootless mount). */
async function sizeOf(m: Mounted, file: string): Promise<number> {
  const r = await run('stat', ['-c', '%s', file], { as: m.as });
  ok(r, 'stat');
  return Number(r.stdout.trim());
}

/** A write case: a fresh writable mount, drop caches, the op, then `sync`; value = op + sync. */
function writeCase(name: string, shape: ShapeKind, label: string, target: FigureSpec['target'], op: Op): Case {
  return {
    name, source: shape, writes: true, figures: [secs(name, label, target)],
    async run(peer, s, ctx) {
      const m = await peer.mount(s, 'writable');
      dropCaches();
      const opSeconds = await op(m, s as Shape, ctx);
      const sync = ok(await run('sync', [], { timeoutS: ctx.timeoutS }), 'sync');
      return { [name]: { value: opSeconds + sync, sync } };
    },
  };
}

export async function job(args: string[], ctx: Ctx, as?: UserIds): Promise<number> {
  try {
    return (await workJob<{ seconds: number }>(args, ctx.timeoutS, undefined, as)).seconds;
  } catch (e) {
    if (/timed out/.test((e as Error).message)) throw new Timeout();
    throw e;
  }
}

const CASES: Case[] = [
  {
    name: 'first-mount', source: 'many',
    figures: [secs('first-mount', 'first mount incl. index, `many`, cold', secondsAtMost(1))],
    async run(peer, s) {
      await peer.unmount();
      dropCaches();
      return { 'first-mount': { value: (await peer.mount(s, 'first')).seconds } };
    },
  },
  {
    name: 'remount', source: 'many',
    figures: [
      secs('remount', 'remount with a cached index, `many`, cold: CLI wall time', secondsAtMost(0.25)),
      secs('remount-ready', 'remount: server process start → first answered stat (±5 ms)', secondsAtMost(0.1)),
    ],
    async run(peer, s) {
      await peer.mount(s, 'again'); // builds the cache (untimed) if there is none yet
      await peer.unmount();
      dropCaches();
      const m = await peer.mount(s, 'again', true);
      // start times have 10 ms ticks: a server that forks after indexing can come out a few ms "early"
      const ready = m.readyNs !== undefined && m.daemonStartNs !== undefined ? Math.max(0, Number(m.readyNs - m.daemonStartNs) / 1e9) : undefined;
      return {
        remount: { value: m.seconds },
        'remount-ready': ready !== undefined ? { value: ready } : { note: peer.fuse ? 'server pid not found' : 'no daemon' },
      };
    },
  },
  readCase('find-cold', 'many', secs('find-cold', '`find -type f`, cold', ratioAtMost(1.5)), 'cold', findFiles),
  readCase('find-warm', 'many', secs('find-warm', '`find -type f`, warm', ratioAtMost(2)), 'warm', findFiles),
  readCase('du-cold', 'many', secs('du-cold', '`du -s`, cold', ratioAtMost(1.5)), 'cold', du),
  readCase('read-small-cold', 'many', secs('read-small-cold', 'read every small file (`tar cf - | cat`), cold', ratioAtMost(1.3)), 'cold', readAll),
  peakRss('peak-rss', 'many', 'daemon peak RSS (VmHWM) after walking and reading `many`', 60, 300),
  readCase('seq-read-cold', 'big', { id: 'seq-read-cold', label: 'sequential read of the 2 GiB member (dd bs=1M), cold', unit: 'MiB/s', better: 'higher', target: shareAtLeast(0.8) }, 'cold', seqRead),
  readCase('seq-read-warm', 'big', { id: 'seq-read-warm', label: 'the same, warm', unit: 'MiB/s', better: 'higher', target: shareAtLeast(0.7) }, 'warm', seqRead),
  readCase('rand-read-cold', 'big', { id: 'rand-read-cold', label: 'random 4 KiB reads of the 2 GiB member (fio psync), cold', unit: 'IOPS', better: 'higher', target: shareAtLeast(0.8) }, 'cold', randRead),
  writeCase('append', 'big', 'append 1 byte to the 2 GiB lower file (copy-up), incl. sync', secondsAtMost(0.1), async (m, s, ctx) => {
    const file = join(m.dir, s.manifest.bigFile!.path);
    const seconds = await job(['append', file], ctx, m.as);
    if ((await sizeOf(m, file)) !== s.manifest.bigFile!.bytes + 1) throw new Error('append: the file did not grow by one byte');
    return seconds;
  }),
  writeCase('create', 'many', 'create 10,000 one-byte files, incl. sync', ratioAtMost(1.3), (m, s, ctx) =>
    job(['create', join(m.dir, 'bench-created'), String(s.manifest.files / 10)], ctx, m.as)),
  writeCase('rm-rf', 'many', '`rm -rf` of a 10,000-file lower subtree, incl. sync', ratioAtMost(1.0), async (m, s, ctx) => {
    const dir = join(m.dir, s.manifest.rmSubtree!.path);
    const seconds = ok(await run('rm', ['-rf', dir], { timeoutS: ctx.timeoutS, as: m.as }), 'rm -rf');
    if ((await run('test', ['-e', dir], { as: m.as })).code !== 1) throw new Error('rm -rf: the subtree is still there');
    return seconds;
  }),
  writeCase('untar', 'many', 'untar a 20,000-file source tree into the mount, incl. sync', ratioAtMost(2), async (m, s, ctx) => {
    const dest = join(m.dir, 'bench-untar');
    ok(await run('mkdir', [dest], { as: m.as }), 'mkdir');
    return ok(await run('tar', ['-xf', s.manifest.untar!.tar, '-C', dest], { timeoutS: ctx.timeoutS, as: m.as }), 'untar');
  }),
  {
    // Issue 17's "1 GiB file written through the mount": write (dd bs=1M, incl. fsync), then read it
    // back cold and warm. An upper file, so FUSE passthrough serves it where negotiated.
    name: 'upper-seq', source: 'many', writes: true,
    figures: [
      { id: 'upper-write', label: 'write a 1 GiB file through the mount (dd bs=1M conv=fsync)', unit: 'MiB/s', better: 'higher' },
      { id: 'upper-read-cold', label: 'sequential read of that file (dd bs=1M), cold', unit: 'MiB/s', better: 'higher', target: shareAtLeast(0.9) },
      { id: 'upper-read-warm', label: 'the same, warm', unit: 'MiB/s', better: 'higher', target: shareAtLeast(0.9) },
    ],
    async run(peer, s, ctx) {
      const m = await peer.mount(s, 'writable');
      const file = join(m.dir, 'bench-upper-1g');
      const mib = (s as Shape).manifest.files >= 100000 ? 1024 : 128; // --quick: 128 MiB
      const dd = async (args: string[]): Promise<number> => ok(await run('dd', [...args, 'bs=1M', 'status=none'], { timeoutS: ctx.timeoutS, as: m.as }), 'dd');
      const write = await dd(['if=/dev/zero', `of=${file}`, `count=${mib}`, 'conv=fsync']);
      if ((await sizeOf(m, file)) !== mib * 2 ** 20) throw new Error('upper-seq: the file has the wrong size');
      dropCaches();
      const cold = await dd([`if=${file}`, 'of=/dev/null']);
      const warm = await dd([`if=${file}`, 'of=/dev/null']);
      return { 'upper-write': { value: mib / write }, 'upper-read-cold': { value: mib / cold }, 'upper-read-warm': { value: mib / warm } };
    },
  },
  // only on request (--only million): the memory figure at a million members
  peakRss('million', 'million', 'daemon peak RSS after walking and reading 1,000,000 members', 150, 900),
];

/** tarstack against its peers on TARGETS.md's shapes (bench/data.ts). */
export const peersSuite: Suite = {
  section: { id: 'peers', title: 'tarstack against kernel overlayfs, fuse-overlayfs and archivemount', subject: 'tarstack', reference: 'kernel overlayfs' },
  peers: (workDir, o) => makePeers(workDir, o.tarstack, o.variants),
  async source(name, o, log) {
    const shape = await loadShape(o.data, name as ShapeKind, o.quick, log);
    return { source: shape, describe: describeShape(shape) };
  },
  cases: () => CASES,
  defaults: CASES.filter((c) => c.name !== 'million').map((c) => c.name),
};

function describeShape(s: Shape): string {
  const m = s.manifest;
  const n = (x: number): string => x.toLocaleString('en-US');
  const what = m.bigFile
    ? `${m.files} files (${(m.bigFile.bytes / 2 ** 30).toFixed(2)} GiB + ${m.files - 1} × ${((m.totalBytes - m.bigFile.bytes) / (m.files - 1) / 2 ** 20).toFixed(0)} MiB)`
    : `${n(m.files)} files in ${n(m.dirs)} dirs`;
  return `${s.name} = ${what}, tar ${(m.tarBytes / 1e6).toFixed(0)} MB`;
}
