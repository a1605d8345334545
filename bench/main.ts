// The bench: `npm run bench -- [cases…] [options]` (see --help). Runs each case on every peer of its
// suite, interleaved run by run, after checking that a peer serves the right tree where the data has
// a manifest; prints one ratio table per suite; cleans up every mount and process, also on Ctrl-C
// or a crash.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statfsSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { removeTree } from '../src/util/remove-tree.js';
import { bindingSuite } from './binding.js';
import { peersSuite, summarize, Timeout, type Case, type Ctx, type Options, type Sample, type Suite } from './cases.js';
import { compressedSuite } from './compressed.js';
import { RUN_SPACE_BYTES, type Shape } from './data.js';
import { mountProgramSuite } from './mount-program.js';
import { sessionsSuite } from './sessions.js';
import { instancesSuite } from './instances.js';
import { remoteSuite } from './remote.js';
import type { Peer, Source } from './peers.js';
import { json, markdown, type Cell, type FigureResult, type Meta } from './report.js';
import { chartableSections, ratioChart, type ReportJson } from './chart.js';
import { alive, cleanupNow, cpuBusy, onCleanup, runOk, installCleanupHandlers, killGroup, nowNs, run, sleep, start, statusKiB } from './sys.js';
import { wrongTree } from './verify.js';

const SUITES: Suite[] = [peersSuite, bindingSuite, sessionsSuite, instancesSuite, compressedSuite, mountProgramSuite, remoteSuite];
const QUIET_BUSY = 0.15;

const started = nowNs();
const loadavg = (): number => Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
const loadAtStart = loadavg();
const log = (s: string): void => void process.stderr.write(`[${(Number(nowNs() - started) / 1e9).toFixed(0).padStart(5)} s] ${s}\n`);

async function main(): Promise<void> {
  const argv = await yargs(hideBin(process.argv))
    .scriptName('npm run bench --')
    .usage('$0 [cases..] [options]\n\nCases by name, or a whole suite by its name (peers, binding, sessions, many-instances, compressed, mount-program, remote), or all.\nDefault: the peers suite (tarstack against kernel overlayfs, fuse-overlayfs, archivemount).')
    .command('$0 [cases..]', false, (y) => y.positional('cases', { type: 'string', array: true, describe: 'cases or suites to run' }))
    .option('runs', { alias: 'reps', type: 'number', describe: 'runs per figure, median reported (default 3; 1 with --quick)' })
    .option('quick', { type: 'boolean', default: false, describe: 'data 10x smaller, one run per figure (CI smoke run)' })
    .option('peers', { type: 'string', describe: 'peer ids to run (default: every peer of the suite), comma-separated' })
    .option('data', { type: 'string', default: '/var/tmp/tarstack-bench', describe: 'data and scratch dir' })
    .option('tarstack', { type: 'string', default: '/work/main', describe: 'the checkout whose dist/ is measured' })
    .option('timeout', { type: 'number', default: 90, describe: 'limit of one timed operation, reported as "> S s"' })
    .option('time-wrong-trees', { type: 'boolean', default: false, describe: 'time peers that serve a wrong tree anyway (shown, never in a ratio)' })
    .option('quiet-wait', { type: 'number', default: 15, describe: `before each run, wait up to S s for the CPUs to be idle (< ${QUIET_BUSY * 100} % busy over 0.5 s)` })
    .option('variant', { type: 'string', array: true, default: [] as string[], describe: 'another peer NAME: binding suite, a libfuse3 binding with SessionConfig JSON (\'{"splice":1}\'); peers suite, tarstack with more environment (\'{"TARSTACK_URING":"1"}\')' })
    .option('formats', { type: 'string', default: 'gzip', describe: 'compressed suite: gzip,zstd,zstd-seekable' })
    .option('mib', { type: 'number', default: 1024, describe: 'compressed suite: MiB of each data set' })
    .option('sessions', { type: 'number', default: 100, describe: 'sessions suite: mounts served by one process (at least 2)' })
    .option('scratch-tmpfs', { type: 'boolean', default: false, describe: 'put the run\'s scratch dir (stores, uppers, kernel overlayfs\'s upper) on a tmpfs: write figures without the disk filesystem\'s own costs' })
    .option('only', { type: 'string', describe: 'cases, comma-separated (the same as listing them)' })
    .option('list', { type: 'boolean', default: false, describe: 'list the suites and their cases, and exit' })
    .option('json', { type: 'boolean', default: false, describe: 'print JSON instead of markdown' })
    .version(false)
    .strict()
    .wrap(Math.min(120, process.stdout.columns ?? 100))
    .parseAsync();

  const o: Options = {
    quick: argv.quick, data: argv.data, run: join(argv.data, 'run', String(process.pid)), tarstack: argv.tarstack,
    variants: new Map(argv.variant.map((v) => v.split(/=(.*)/s) as [string, string])),
    formats: argv.formats.split(','), mib: argv.mib, sessions: argv.sessions,
  };
  if (!(o.sessions >= 2)) throw new Error('--sessions must be at least 2');
  const all = SUITES.flatMap((s) => s.cases(o).map((c) => ({ suite: s, c })));
  if (argv.list) {
    for (const s of SUITES) console.log(`${s.section.id}: ${s.cases(o).map((c) => c.name).join(' ')}`);
    return;
  }
  const wanted = [...((argv.cases as string[] | undefined) ?? []), ...(argv.only?.split(',') ?? [])];
  const picked = pick(wanted.length ? wanted : ['peers'], all);
  if (process.getuid?.() !== 0) throw new Error('run as root: it mounts, and drops the page cache');
  installCleanupHandlers();

  const workDir = o.run;
  removeStaleRuns(dirname(workDir));
  mkdirSync(workDir, { recursive: true });
  if (argv.scratchTmpfs) {
    // ext4 without a journal (this VM's) scans past inodes deleted in the last seconds for each new
    // one: create and untar figures then follow what other processes deleted lately, for every peer
    await runOk('mount', ['-t', 'tmpfs', '-o', 'mode=0755', 'tarstack-bench', workDir]);
    onCleanup(() => void spawnSync('umount', ['-l', workDir]));
  }
  const fs = statfsSync(o.data);
  if (fs.bavail * fs.bsize < RUN_SPACE_BYTES) {
    throw new Error(`not enough disk: a run needs ${RUN_SPACE_BYTES / 2 ** 30} GiB free in ${o.data} besides its data; use --data DIR elsewhere`);
  }

  let baseline: number | undefined;
  const ctx: Ctx = {
    reps: argv.runs ?? (o.quick ? 1 : 3),
    timeoutS: argv.timeout,
    fioSeconds: o.quick ? 3 : 10,
    opts: o,
    nodeBaselineKiB: async () => (baseline ??= await bareNodeHwmKiB()),
  };
  const wantedPeers = argv.peers?.split(',');
  const allPeers: Peer[] = [];
  const unavailable = new Map<Peer, string>();
  const described: string[] = [];
  const busy = { runs: 0, busyStarts: 0 };
  const figures: FigureResult[] = [];
  for (const suite of SUITES) {
    const cases = picked.filter((p) => p.suite === suite).map((p) => p.c);
    if (cases.length === 0) continue;
    const peers = suite.peers(workDir, o).filter((p) => !wantedPeers || wantedPeers.includes(p.id));
    for (const p of peers) {
      const why = await p.probe().catch((e: Error) => e.message); // e.g. spawn ENOENT: not installed
      if (why) unavailable.set(p, why);
      log(`peer ${p.name} ${p.version}: ${why ?? (p.writable ? 'ok' : 'ok, read-only')}`);
      allPeers.push(p);
    }
    const sources = new Map<string, Source>();
    for (const name of new Set(cases.map((c) => c.source))) {
      const { source, describe } = await suite.source(name, o, log);
      sources.set(name, source);
      described.push(describe);
    }
    const trees = new Map<string, string | undefined>(); // peer|source → what is wrong, if anything
    const wrongTreeOf = async (peer: Peer, source: Source): Promise<string | undefined> => {
      const shape = 'manifest' in source ? (source as Shape) : undefined;
      if (!shape) return undefined; // no manifest: the cases check what they read
      const key = `${peer.id}|${source.name}`;
      if (!trees.has(key)) {
        log(`${peer.name}: checking the ${source.name} tree`);
        const m = await peer.mount(source, 'again');
        trees.set(key, await wrongTree(m.dir, shape, 900, m.as));
        await peer.unmount();
        if (trees.get(key)) log(`${peer.name}: WRONG TREE for ${source.name}: ${trees.get(key)}`);
      }
      return trees.get(key);
    };
    for (const c of cases) {
      const source = sources.get(c.source)!;
      const eligible = peers.filter((p) => !unavailable.has(p) && !(c.writes && !p.writable) && !(c.daemonOnly && !p.fuse) && (c.takes?.(p) ?? true));
      const wrong = new Map<Peer, string | undefined>();
      for (const p of eligible) wrong.set(p, await wrongTreeOf(p, source));
      const timed = eligible.filter((p) => !wrong.get(p) || argv['time-wrong-trees']);
      const cells = await measure(c, source, timed, ctx, argv['quiet-wait'], busy);
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
        figures.push({ ...f, section: suite.section.id, cells: row });
      }
    }
    for (const p of peers) await p.unmount();
  }

  removeTree(workDir, { mounts: 'force' });
  const meta: Meta = {
    date: new Date().toISOString(),
    kernel: (await run('uname', ['-r'])).stdout.trim(),
    cpus: cpus().length,
    node: process.version,
    quick: o.quick,
    reps: ctx.reps,
    shapes: argv.scratchTmpfs ? [...described, 'Scratch (stores, uppers) on tmpfs.'] : described,
    sections: SUITES.filter((s) => picked.some((p) => p.suite === s)).map((s) => s.section),
    peers: mergePeers(allPeers, unavailable),
    ...(baseline !== undefined ? { nodeBaselineMiB: baseline / 1024 } : {}),
    seconds: Number(nowNs() - started) / 1e9,
    load: [loadAtStart, loadavg()],
    busyStarts: [busy.busyStarts, busy.runs],
  };
  const results = join(o.data, 'results');
  mkdirSync(results, { recursive: true });
  const stamp = meta.date.replace(/[:.]/g, '-');
  const report = json(figures, meta);
  writeFileSync(join(results, `${stamp}.json`), report);
  writeFileSync(join(results, `${stamp}.md`), markdown(figures, meta));
  // Each section measured against the kernel also as a chart, drawn from the JSON just written.
  const parsed = JSON.parse(report) as ReportJson;
  const charts = chartableSections(parsed).map((id) => join(results, `${stamp}-${id}.svg`));
  for (const [i, id] of chartableSections(parsed).entries()) writeFileSync(charts[i], ratioChart(parsed, id, `${stamp}.json`));
  process.stdout.write(argv.json ? report : markdown(figures, meta));
  log(`results saved in ${results}/${stamp}.{md,json}${charts.length ? `, charts in ${charts.map((c) => c.slice(results.length + 1)).join(', ')}` : ''}`);
}

/** The cases named (a case, a suite's name for its default cases, or `all`), in suite order. */
function pick(names: string[], all: { suite: Suite; c: Case }[]): { suite: Suite; c: Case }[] {
  const chosen = new Set<Case>();
  for (const n of names) {
    const suite = SUITES.find((s) => s.section.id === n);
    const found = n === 'all' ? all.filter((x) => x.suite !== peersSuite || x.c.name !== 'million')
      : suite ? all.filter((x) => x.suite === suite && (!suite.defaults || suite.defaults.includes(x.c.name)))
      : all.filter((x) => x.c.name === n);
    if (found.length === 0) throw new Error(`unknown case ${n}; suites: ${SUITES.map((s) => s.section.id).join(', ')}, all (--list shows every case)`);
    for (const x of found) chosen.add(x.c);
  }
  return all.filter((x) => chosen.has(x.c));
}

/** One entry per peer name (a peer may serve several suites), notes merged. */
function mergePeers(peers: Peer[], unavailable: Map<Peer, string>): Meta['peers'] {
  const out = new Map<string, Meta['peers'][number]>();
  for (const p of peers) {
    const had = out.get(p.name);
    if (had) {
      for (const n of p.notes) if (!had.notes.includes(n)) had.notes.push(n);
      continue;
    }
    out.set(p.name, { name: p.name, fuse: p.fuse, version: p.version, writable: p.writable, notes: [...p.notes], ...(unavailable.has(p) ? { unavailable: unavailable.get(p)! } : {}) });
  }
  return [...out.values()];
}

/**
 * Runs case c on each peer, ctx.reps times, peers interleaved run by run (in a rotating order) so
 * that load from elsewhere on the machine falls on all of them alike. A timeout or an error ends a
 * peer's runs for this case and becomes its cell.
 */
async function measure(c: Case, source: Source, peers: Peer[], ctx: Ctx, quietWaitS: number,
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
        const got = await c.run(peer, source, ctx);
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

/**
 * Scratch dirs of earlier runs that are gone: a killed run may have left mounts and uppers. A run
 * still going (another checkout's bench on the same data) keeps its own.
 */
function removeStaleRuns(runs: string): void {
  for (const name of existsSync(runs) ? readdirSync(runs) : []) {
    if (!/^\d+$/.test(name) || !alive(Number(name))) removeTree(join(runs, name), { mounts: 'force' });
  }
}
