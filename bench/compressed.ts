// The `compressed` suite: compressed tars served in place (issue 8), beside decompressing the same
// archive once (`gzip -dc` / `zstd -dc` > /dev/null, the baseline peer). Data: `mixed` (~1 GiB of
// tar: small and medium files, text and incompressible) and `big` (one 1 GiB member, half text,
// half random), as .tar.gz (pigz -6), .tar.zst (one frame, zstd -T0) and that .zst recompressed by
// `image add --recompress` (zstd-seekable); --formats picks them, --mib sizes them. Figures: index
// time (CPU seconds beside), index size as a share of the archive, first byte of a member near the
// end, sequential read of the big member, random 4 KiB reads, and how long a random read holds
// Node's thread decoding on the threadpool versus on the loop. ratarmount is not installable here.
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { readIndex } from '../src/tar/index-file.js';
import { SeekableArchive } from '../src/tar/seekable.js';
import { removeTree } from '../src/util/remove-tree.js';
import { median, type Case, type Ctx, type Sample, type Suite } from './cases.js';
import { Decompressor, Tarstack, type Peer, type Source } from './peers.js';
import { shareAtLeast, timesAtMost, valueAtMost, type FigureSpec } from './report.js';
import { dropCaches, runOk, sh } from './sys.js';

type Format = 'gzip' | 'zstd' | 'zstd-seekable';
type DataSet = 'mixed' | 'big';
const FORMATS: Format[] = ['gzip', 'zstd', 'zstd-seekable'];
const suffix = (f: Format): string => (f === 'gzip' ? 'gz' : 'zst');
const tool = (f: Format): string => (f === 'gzip' ? 'gzip' : 'zstd');
const label = (set: DataSet, f: Format): string => `${set}.tar.${suffix(f)}${f === 'zstd-seekable' ? ' --recompress' : ''}`;

// ---- data ---------------------------------------------------------------------------------------

/** Text-like bytes: words drawn at random (compresses about 3:1, like source code or logs). */
const WORDS = 'the of tar index seek point window member frame block gzip zstd read write file data served in place layer image mount kernel page cache offset length checksum'.split(' ');
let corpus: Buffer | undefined;
function text(n: number): Buffer {
  corpus ??= Buffer.from(Array.from({ length: 700_000 }, () => WORDS[Math.floor(Math.random() * WORDS.length)]).join(' '));
  const at = Math.floor(Math.random() * (corpus.length - n - 1));
  return n < corpus.length - 1 ? corpus.subarray(at, at + n) : Buffer.alloc(n, corpus.toString('latin1', 0, 1 << 20));
}

function writeMixed(dir: string, total: number): void {
  let left = total;
  for (let d = 0; left > 0; d++) {
    const sub = join(dir, `d${String(d).padStart(4, '0')}`);
    mkdirSync(sub, { recursive: true });
    for (let f = 0; f < 50 && left > 0; f++) {
      const size = Math.min(left, f % 25 === 0 ? (1 + Math.floor(Math.random() * 8)) << 20 : 1024 + Math.floor(Math.random() * 96 * 1024));
      writeFileSync(join(sub, `f${String(f).padStart(3, '0')}`), f % 3 === 0 ? randomBytes(size) : text(size));
      left -= size;
    }
  }
}

function writeBig(file: string, total: number): void {
  const fd = openSync(file, 'w');
  for (let at = 0, i = 0; at < total; at += 1 << 20, i++) writeSync(fd, i % 2 ? randomBytes(1 << 20) : text(1 << 20));
  closeSync(fd);
}

/** <data>/compressed/<set>-<MiB>/: the tree, <set>.tar and its .gz and .zst, made once and kept. */
async function prepare(root: string, set: DataSet, mib: number, log: (s: string) => void): Promise<{ tree: string; tar: string }> {
  const base = join(root, `${set}-${mib}`);
  const tar = join(base, `${set}.tar`);
  if (!existsSync(join(base, '.complete'))) {
    log(`compressed: writing ${set} (${mib} MiB)`);
    removeTree(base, { mounts: 'force' });
    mkdirSync(join(base, 'tree'), { recursive: true });
    if (set === 'mixed') writeMixed(join(base, 'tree'), mib << 20);
    else writeBig(join(base, 'tree', 'member.bin'), mib << 20);
    await runOk('sh', ['-c', 'tar -cf "$1" --sort=name -C "$2" . && pigz -6 -k -c "$1" > "$1.gz" && zstd -q -T0 -3 -c "$1" > "$1.zst"', 'sh', tar, join(base, 'tree')], { timeoutS: 3600 });
    writeFileSync(join(base, '.complete'), '');
  }
  return { tree: join(base, 'tree'), tar };
}

// ---- measurements -------------------------------------------------------------------------------

/** Wall and CPU (user + sys) seconds of a shell command, from GNU time. */
async function timedCpu(script: string, args: string[], ctx: Ctx): Promise<{ wall: number; cpu: number }> {
  const r = await runOk('/usr/bin/time', ['-f', '%e %U %S', 'sh', '-c', script, 'sh', ...args], { timeoutS: ctx.timeoutS * 10 });
  const [wall, user, sys] = r.stderr.trim().split('\n').pop()!.split(' ').map(Number);
  return { wall: wall!, cpu: user! + sys! };
}

const tarstack = (peer: Peer): Tarstack | undefined => (peer instanceof Tarstack ? peer : undefined);

/** The index file of a source's image (made by an untimed `image add` when there is none yet). */
async function indexFile(t: Tarstack, s: Source): Promise<string> {
  await t.mount(s, 'again');
  await t.unmount();
  const rec = JSON.parse((await t.cli(s, ['image', 'info', s.name, '--json'])).stdout) as { id: string };
  return join(t.home(s), 'images', rec.id, 'index');
}

const member = (s: Source): string => join(s.tree!, 'member.bin');

function casesFor(f: Format): Case[] {
  const src = (set: DataSet) => `${set}-${f}`;
  const fig = (id: string, text: string, unit: FigureSpec['unit'], better: FigureSpec['better'], target?: FigureSpec['target']): FigureSpec =>
    ({ id: `${id}-${f}`, label: text, unit, better, ...(target ? { target } : {}) });
  const cases: Case[] = [];
  for (const set of ['mixed', 'big'] as const) {
    const idx = fig(`compressed-index-${set}`, `${label(set, f)}: index time (image add${f === 'zstd-seekable' ? ' --recompress: decode, compress, index' : ''}) vs \`${tool(f)} -dc\``, 's', 'lower',
      f === 'zstd-seekable' ? undefined : timesAtMost(1.3, `${tool(f)} -dc`));
    cases.push({
      name: `compressed-index-${set}-${f}`, source: src(set), figures: [idx],
      async run(peer, s, ctx) {
        // both read the archive from the page cache
        await sh('cat "$1" > /dev/null', { args: [s.tar!] });
        const t = tarstack(peer);
        const r = t
          ? await timedCpu(`TARSTACK_HOME="$1" "$2" "$3" image add "$4" --name "$5" ${(s.addArgs ?? []).join(' ')}`, [freshHome(t, s), process.execPath, join(ctx.opts.tarstack, 'dist/src/cli/main.js'), s.tar!, s.name], ctx)
          : await timedCpu(`${tool(f)} -dc "$1" > /dev/null`, [s.tar!], ctx);
        return { [idx.id]: { value: r.wall, also: { 'CPU s': r.cpu } } };
      },
    });
    const size = fig(`compressed-index-size-${set}`, `${label(set, f)}: index size / archive`, '%', 'lower', valueAtMost(2, '%'));
    cases.push({
      name: `compressed-index-size-${set}-${f}`, source: src(set), figures: [size], single: true, takes: (p) => !!tarstack(p),
      async run(peer, s) {
        const ix = await indexFile(tarstack(peer)!, s);
        const archive = f === 'zstd-seekable' ? join(ix, '..', 'layer.tar.zst') : s.tar!;
        const d = readIndex(ix);
        const seekBytes = d.seek ? (Buffer.isBuffer(d.seek.windows) ? d.seek.windows.length : d.seek.windows.bytes) + d.seek.count * 36 + d.seek.pieceCrc.byteLength : 0;
        const sample: Sample = { value: (100 * statSync(ix).size) / statSync(archive).size, also: { 'seek table %': (100 * seekBytes) / statSync(archive).size, 'seek points': d.seek?.count ?? 0 } };
        return { [size.id]: sample };
      },
    });
  }
  // mixed: the last files in tar order (created with --sort=name): the farthest from the archive's start
  for (const temp of ['warm', 'cold'] as const) {
    const ttfb = fig(`compressed-first-byte-${temp}`, `${label('mixed', f)}: first byte of a member near the end, ${temp} (median of 5)`, 'ms', 'lower', temp === 'warm' ? valueAtMost(50, 'ms') : undefined);
    cases.push({
      name: `compressed-first-byte-${temp}-${f}`, source: src('mixed'), figures: [ttfb], takes: (p) => !!tarstack(p),
      async run(peer, s) {
        const files = (await runOk('sh', ['-c', 'cd "$1" && find . -type f | sort | tail -5', 'sh', s.tree!])).stdout.split('\n').filter(Boolean);
        await sh('cat "$1" > /dev/null', { args: [s.tar!] });
        const times: number[] = [];
        for (const file of files) {
          if (temp === 'cold') dropCaches();
          const m = await peer.mount(s, 'again');
          const buf = Buffer.alloc(4096);
          const t0 = process.hrtime.bigint();
          const fd = openSync(join(m.dir, file), 'r');
          readSync(fd, buf, 0, 4096, 0);
          closeSync(fd);
          times.push(Number(process.hrtime.bigint() - t0) / 1e6);
          await peer.unmount();
        }
        return { [ttfb.id]: { value: median(times) } };
      },
    });
  }
  // through an image mount, and through a writable instance of the image (its lower files)
  for (const [kind, mode] of [['', 'again'], ['-instance', 'writable']] as const) {
    const through = kind ? ', through an instance mount' : '';
    const seq = fig(`compressed-seq${kind}`, `${label('big', f)}: sequential read of the member (dd bs=1M)${through} vs \`${tool(f)} -dc\``, 'MiB/s', 'higher', shareAtLeast(0.7, `${tool(f)} -dc`));
    cases.push({
      name: `compressed-seq${kind}-${f}`, source: src('big'), figures: [seq],
      async run(peer, s, ctx) {
        await sh('cat "$1" > /dev/null', { args: [s.tar!] });
        if (!tarstack(peer)) {
          const r = await timedCpu(`${tool(f)} -dc "$1" > /dev/null`, [s.tar!], ctx);
          return { [seq.id]: { value: statSync(s.tar!.replace(/\.(gz|zst)$/, '')).size / 2 ** 20 / r.wall } };
        }
        const m = await peer.mount(s, mode);
        const r = await timedCpu('dd if="$1" of=/dev/null bs=1M status=none', [join(m.dir, 'member.bin')], ctx);
        return { [seq.id]: { value: statSync(member(s)).size / 2 ** 20 / r.wall } };
      },
    });
  }
  for (const jobs of [1, 4]) {
    const rand = fig(`compressed-rand-${jobs}`, `${label('big', f)}: random 4 KiB reads in the member, ${jobs} job${jobs > 1 ? 's' : ''} (fio psync)`, 'IOPS', 'higher');
    cases.push({
      name: `compressed-rand-${jobs}-${f}`, source: src('big'), figures: [rand], takes: (p) => !!tarstack(p),
      async run(peer, s, ctx) {
        const m = await peer.mount(s, 'again');
        const r = await runOk('fio', ['--name=r', `--filename=${join(m.dir, 'member.bin')}`, '--rw=randread', '--bs=4k', '--ioengine=psync', `--runtime=${ctx.fioSeconds}`, '--time_based',
          '--readonly', '--invalidate=0', `--numjobs=${jobs}`, '--group_reporting', '--output-format=json'], { timeoutS: ctx.timeoutS + ctx.fioSeconds });
        return { [rand.id]: { value: (JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { jobs: { read: { iops: number } }[] }).jobs[0]!.read.iops } };
      },
    });
  }
  if (f === 'gzip') cases.push(loopStall(src('big')));
  return cases;
}

/** A fresh TARSTACK_HOME for a timed `image add` (nothing indexed yet). */
function freshHome(t: Tarstack, s: Source): string {
  const home = `${t.home(s)}-index`;
  removeTree(home, { mounts: 'force' });
  return home;
}

/**
 * 200 random 4 KiB reads in-process, decoding on the threadpool (what serving does) or on Node's
 * thread: how long each read holds the loop (the synchronous part of the call), which is what
 * delays every other FUSE request. Timed per call rather than with an event-loop-delay monitor,
 * which on a loaded machine mostly measures waiting for a CPU.
 */
function loopStall(source: string): Case {
  const fig = (where: string): FigureSpec => ({ id: `compressed-loop-${where}`, label: `big.tar.gz: a random 4 KiB read holds Node's loop, p99, decoding ${where === 'pool' ? 'on the threadpool' : 'on the loop'}`, unit: 'ms', better: 'lower' });
  const [pool, loop] = [fig('pool'), fig('loop')];
  return {
    name: 'compressed-loop-gzip', source, figures: [pool, loop], takes: (p) => !!tarstack(p),
    async run(peer, s) {
      const d = readIndex(await indexFile(tarstack(peer)!, s));
      const size = statSync(member(s)).size;
      const reads = Array.from({ length: 200 }, () => Math.floor(Math.random() * (size - 4096)));
      const held = async (sync: boolean): Promise<Sample> => {
        const a = new SeekableArchive(openSync(s.tar!, 'r'), d.seek!, s.tar!);
        const buf = Buffer.alloc(4096);
        const ms: number[] = [];
        const t0 = process.hrtime.bigint();
        for (const pos of reads) {
          const c0 = process.hrtime.bigint();
          const p = sync ? a.readInto(pos, buf, 0, 4096) : a.read(pos, 4096);
          ms.push(Number(process.hrtime.bigint() - c0) / 1e6);
          await p;
        }
        const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
        a.close();
        ms.sort((x, y) => x - y);
        return { value: ms[197]!, also: { 'p50 ms': ms[100]!, 'max ms': ms[199]!, 'reads/s': reads.length / seconds } };
      };
      return { [pool.id]: await held(false), [loop.id]: await held(true) };
    },
  };
}

export const compressedSuite: Suite = {
  section: { id: 'compressed', title: 'compressed tars served in place, beside decompressing them once', subject: 'tarstack', reference: 'gzip/zstd -dc' },
  peers: (workDir, o) => [new Tarstack(workDir, o.tarstack), new Decompressor(workDir)],
  async source(name, o, log) {
    const [set, ...rest] = name.split('-') as [DataSet, ...string[]];
    const f = rest.join('-') as Format;
    const mib = o.quick ? Math.max(16, Math.floor(o.mib / 10)) : o.mib;
    const { tree, tar } = await prepare(join(o.data, 'compressed'), set, mib, log);
    const source: Source = { name, tree, tar: `${tar}.${suffix(f)}`, ...(f === 'zstd-seekable' ? { addArgs: ['--recompress'] } : {}) };
    return { source, describe: `${label(set, f)} = ${(statSync(source.tar!).size / 2 ** 20).toFixed(0)} MiB archive of a ${mib} MiB ${set === 'big' ? 'member' : 'tree'}` };
  },
  cases: (o) => o.formats.flatMap((f) => {
    if (!FORMATS.includes(f as Format)) throw new Error(`unknown format ${f}; formats: ${FORMATS.join(', ')}`);
    return casesFor(f as Format);
  }),
};
