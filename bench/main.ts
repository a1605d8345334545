// The bench entry point: node dist/bench/main.js [--quick] [--only NAME,...] [--data DIR] [--json]
// and more (--help). Runs each case on every peer, interleaved run by run, after checking that the
// peer serves the right tree; cleans up every mount and process, also on Ctrl-C or a crash.
import { mkdirSync, readFileSync, statfsSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CASES, DEFAULT_CASES, summarize, Timeout, type Case, type Ctx, type Sample } from './cases.js';
import { loadShape, RUN_SPACE_BYTES, type Shape, type ShapeKind } from './data.js';
import { removeTree } from './mounts.js';
import { makePeers, type Peer } from './peers.js';
import { json, markdown, type Cell, type FigureResult, type Meta } from './report.js';
import { cleanupNow, cpuBusy, installCleanupHandlers, killGroup, nowNs, run, sleep, start, statusKiB } from './sys.js';
import { wrongTree } from './verify.js';

const QUIET_BUSY = 0.15;
const USAGE = `usage: node dist/bench/main.js [options]
  --quick              shapes 10x smaller, one run per figure (CI smoke run)
  --only NAME,...      cases to run (default: all but million): ${CASES.map((c) => c.name).join(', ')}
  --peers ID,...       peers to run (default all): kernel, fuse-overlayfs, archivemount, tarstack
  --data DIR           data and scratch dir (default /var/tmp/tarstack-bench)
  --tarstack REPO      the tarstack checkout whose dist/src/cli/main.js is measured (default /work/main)
  --reps N             runs per figure, median reported (default 3; 1 with --quick)
  --timeout S          limit of one timed operation, reported as "> S s" (default 90)
  --time-wrong-trees   time peers that serve a wrong tree anyway (shown, never in a ratio)
  --quiet-wait S       before each run, wait up to S s (default 15) for the CPUs to be
                       idle (< ${QUIET_BUSY * 100} % busy over 0.5 s): other work on the machine skews figures
  --json               print JSON instead of markdown`;

const started = nowNs();
const loadavg = (): number => Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
const loadAtStart = loadavg();
const log = (s: string): void => void process.stderr.write(`[${(Number(nowNs() - started) / 1e9).toFixed(0).padStart(5)} s] ${s}\n`);

async function main(): Promise<void> {
  const { values: o } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false }, only: { type: 'string' }, peers: { type: 'string' },
      data: { type: 'string', default: '/var/tmp/tarstack-bench' }, tarstack: { type: 'string', default: '/work/main' },
      reps: { type: 'string' }, timeout: { type: 'string', default: '90' }, 'time-wrong-trees': { type: 'boolean', default: false },
      'quiet-wait': { type: 'string', default: '15' },
      json: { type: 'boolean', default: false }, help: { type: 'boolean', default: false },
    },
  });
  if (o.help) return void console.log(USAGE);
  if (process.getuid?.() !== 0) throw new Error('run as root: it mounts, and drops the page cache');
  const only = o.only?.split(',') ?? DEFAULT_CASES;
  const unknown = only.filter((n) => !CASES.some((c) => c.name === n));
  if (unknown.length) throw new Error(`unknown case ${unknown.join(', ')}; cases: ${CASES.map((c) => c.name).join(', ')}`);
  const cases = CASES.filter((c) => only.includes(c.name));
  installCleanupHandlers();

  const workDir = join(o.data, 'run');
  removeTree(workDir); // a killed earlier run may have left mounts and uppers
  mkdirSync(workDir, { recursive: true });
  const fs = statfsSync(o.data);
  if (fs.bavail * fs.bsize < RUN_SPACE_BYTES) {
    throw new Error(`not enough disk: a run needs ${RUN_SPACE_BYTES / 2 ** 30} GiB free in ${o.data} besides its data; use --data DIR elsewhere`);
  }

  const wanted = o.peers?.split(',');
  const peers = makePeers(workDir, o.tarstack).filter((p) => !wanted || wanted.includes(p.id));
  const unavailable = new Map<Peer, string>();
  for (const p of peers) {
    const why = await p.probe();
    if (why) unavailable.set(p, why);
    log(`peer ${p.name} ${p.version}: ${why ?? (p.writable ? 'ok' : 'ok, read-only')}`);
  }

  const shapes = new Map<ShapeKind, Shape>();
  for (const kind of new Set(cases.map((c) => c.shape))) shapes.set(kind, await loadShape(o.data, kind, o.quick, log));

  let baseline: number | undefined;
  const ctx: Ctx = {
    reps: Number(o.reps ?? (o.quick ? 1 : 3)),
    timeoutS: Number(o.timeout),
    fioSeconds: o.quick ? 3 : 10,
    nodeBaselineKiB: async () => (baseline ??= await bareNodeHwmKiB()),
  };

  const trees = new Map<string, string | undefined>(); // peer|shape → what is wrong, if anything
  const wrongTreeOf = async (peer: Peer, shape: Shape): Promise<string | undefined> => {
    const key = `${peer.id}|${shape.name}`;
    if (!trees.has(key)) {
      log(`${peer.name}: checking the ${shape.name} tree`);
      const m = await peer.mount(shape, 'again');
      trees.set(key, await wrongTree(m.dir, shape, 900));
      await peer.unmount();
      if (trees.get(key)) log(`${peer.name}: WRONG TREE for ${shape.name}: ${trees.get(key)}`);
    }
    return trees.get(key);
  };
  const busy = { runs: 0, busyStarts: 0 };
  const figures: FigureResult[] = [];
  for (const c of cases) {
    const shape = shapes.get(c.shape)!;
    const eligible = peers.filter((p) => !unavailable.has(p) && !(c.writes && !p.writable) && !(c.daemonOnly && !p.fuse));
    const wrong = new Map<Peer, string | undefined>();
    for (const p of eligible) wrong.set(p, await wrongTreeOf(p, shape));
    const timed = eligible.filter((p) => !wrong.get(p) || o['time-wrong-trees']);
    const cells = await measure(c, shape, timed, ctx, Number(o['quiet-wait']), busy);
    for (const f of c.figures) {
      const row: Record<string, Cell> = {};
      for (const p of eligible) {
        const cell = cells.get(p)?.[f.id];
        const why = wrong.get(p);
        if (!why) {
          if (cell) row[p.name] = cell;
        } else {
          row[p.name] = cell ? { ...cell, excluded: true, note: ['wrong tree', cell.note].filter(Boolean).join(', ') } : { note: 'wrong tree' };
        }
      }
      figures.push({ ...f, cells: row });
    }
  }

  for (const p of peers) await p.unmount();
  removeTree(workDir);
  const meta: Meta = {
    date: new Date().toISOString(),
    kernel: (await run('uname', ['-r'])).stdout.trim(),
    cpus: cpus().length,
    node: process.version,
    quick: o.quick,
    reps: ctx.reps,
    shapes: [...shapes.values()].map(describeShape),
    peers: peers.map((p) => ({
      name: p.name, fuse: p.fuse, version: p.version, writable: p.writable, notes: p.notes,
      ...(unavailable.has(p) ? { unavailable: unavailable.get(p)! } : {}),
    })),
    ...(baseline !== undefined ? { nodeBaselineMiB: baseline / 1024 } : {}),
    seconds: Number(nowNs() - started) / 1e9,
    load: [loadAtStart, loadavg()],
    busyStarts: [busy.busyStarts, busy.runs],
  };
  const results = join(o.data, 'results');
  mkdirSync(results, { recursive: true });
  const stamp = meta.date.replace(/[:.]/g, '-');
  writeFileSync(join(results, `${stamp}.json`), json(figures, meta));
  writeFileSync(join(results, `${stamp}.md`), markdown(figures, meta));
  process.stdout.write(o.json ? json(figures, meta) : markdown(figures, meta));
  log(`results saved in ${results}/${stamp}.{md,json}`);
}

/**
 * Runs case c on each peer, ctx.reps times, peers interleaved run by run (in a rotating order) so
 * that load from elsewhere on the machine falls on all of them alike. A timeout or an error ends a
 * peer's runs for this case and becomes its cell.
 */
async function measure(c: Case, shape: Shape, peers: Peer[], ctx: Ctx, quietWaitS: number,
  busy: { runs: number; busyStarts: number }): Promise<Map<Peer, Record<string, Cell>>> {
  const samples = new Map<Peer, Record<string, Sample[]>>(peers.map((p) => [p, {}]));
  const ended = new Map<Peer, Record<string, Cell>>();
  const reps = c.single ? 1 : ctx.reps;
  for (let rep = 0; rep < reps; rep++) {
    for (const peer of [...peers.slice(rep % peers.length), ...peers.slice(0, rep % peers.length)]) {
      if (ended.has(peer)) continue;
      if (!(await quiet(quietWaitS))) busy.busyStarts++;
      busy.runs++;
      const all = (cell: Cell): Record<string, Cell> => Object.fromEntries(c.figures.map((f) => [f.id, cell]));
      try {
        const got = await c.run(peer, shape, ctx);
        log(`${c.name} on ${peer.name}, run ${rep + 1}/${reps}: ${Object.entries(got).map(([k, v]) => `${k}=${v.value?.toPrecision(4) ?? ''}${v.note ? ` (${v.note})` : ''}`).join(' ')}`);
        for (const [id, sample] of Object.entries(got)) (samples.get(peer)![id] ??= []).push(sample);
      } catch (e) {
        const note = e instanceof Timeout ? `> ${ctx.timeoutS} s` : `error: ${(e as Error).message.split('\n')[0]!.slice(0, 80)}`;
        log(`${c.name} on ${peer.name}, run ${rep + 1}/${reps}: ${e instanceof Timeout ? note : (e as Error).stack}`);
        ended.set(peer, all({ note }));
      } finally {
        await peer.unmount();
      }
    }
  }
  return new Map(peers.map((p) => [p, ended.get(p) ?? Object.fromEntries(Object.entries(samples.get(p)!).map(([id, ss]) => [id, summarize(ss)]))]));
}

/** Waits up to maxS for the CPUs to go quiet; false if they did not. */
async function quiet(maxS: number): Promise<boolean> {
  let busy = await cpuBusy(500);
  if (busy < QUIET_BUSY) return true;
  log(`  the CPUs are ${(busy * 100).toFixed(0)} % busy with other work: waiting up to ${maxS} s`);
  for (let waited = 0; waited < maxS && busy >= QUIET_BUSY; waited++) busy = await cpuBusy(1000);
  if (busy >= QUIET_BUSY) log(`  still ${(busy * 100).toFixed(0)} % busy: measuring anyway`);
  return busy < QUIET_BUSY;
}

function describeShape(s: Shape): string {
  const m = s.manifest;
  const n = (x: number): string => x.toLocaleString('en-US');
  const what = m.bigFile
    ? `${m.files} files (${(m.bigFile.bytes / 2 ** 30).toFixed(2)} GiB + ${m.files - 1} × ${((m.totalBytes - m.bigFile.bytes) / (m.files - 1) / 2 ** 20).toFixed(0)} MiB)`
    : `${n(m.files)} files in ${n(m.dirs)} dirs`;
  return `${s.name} = ${what}, tar ${(m.tarBytes / 1e6).toFixed(0)} MB`;
}

/** VmHWM of a node process that only waits: what every Node daemon pays before doing anything. */
async function bareNodeHwmKiB(): Promise<number> {
  const job = start(process.execPath, ['-e', 'setTimeout(() => {}, 1e9)']);
  await sleep(1000);
  const kib = statusKiB(job.pid, 'VmHWM');
  killGroup(job.pid);
  await job.done;
  if (kib === undefined) throw new Error('could not read the VmHWM of a bare node process');
  return kib;
}

main().then(() => cleanupNow(), (e: unknown) => {
  process.stderr.write(`bench: ${(e as Error).message ?? e}\n`);
  cleanupNow();
  process.exitCode = 1;
});
