// The `binding` suite: tarstack's libfuse3 binding against fuse-native 2.2.6 and kernel overlayfs
// over the same tree, with nothing behind the binding but memory (bench/many-fs.ts): on `mem-many`
// (100,000 files of 0-8 KiB in 5,000 dirs) cold and warm find and du, tar of every file, with
// request counts; on `mem-big` (a 2 GiB file behind a real fd) sequential reads at 1 MiB and
// 128 KiB (cold, warm, and from a fresh mount with the backing file cached) and random 4 KiB reads
// with fio. What the kernel round trip and the binding cost, apart from tarstack's own work.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { removeTree } from '../src/util/remove-tree.js';
import { ok, type Case, type Ctx, type Sample, type Suite } from './cases.js';
import { FILES, fileData, writeManyTree } from './many-fs.js';
import { BindingPeer, Direct, KernelOverlay, type Mounted, type Peer, type Source } from './peers.js';
import type { FigureSpec } from './report.js';
import { dropCaches, runOk, sh } from './sys.js';

const GiB = 2 ** 30;
const bigBytes = (quick: boolean): number => (quick ? GiB / 8 : 2 * GiB);

/** The data, made once under <data>/binding and kept: the `many` tree on disk, the big file. */
async function prepare(dir: string, quick: boolean, log: (s: string) => void): Promise<{ many: string; big: string }> {
  const many = join(dir, 'many');
  if (!existsSync(join(many, '.complete'))) {
    log('binding: writing the mem-many tree (100,000 files, what the memory tree serves)');
    removeTree(many, { mounts: 'force' });
    writeManyTree(join(many, 'tree'));
    writeFileSync(join(many, '.complete'), '');
  }
  const big = join(dir, quick ? 'quick-big' : 'big');
  if (!existsSync(join(big, '.complete'))) {
    log(`binding: writing the ${bigBytes(quick) / GiB} GiB file`);
    removeTree(big, { mounts: 'force' });
    mkdirSync(join(big, 'tree'), { recursive: true });
    await runOk('sh', ['-c', `head -c ${bigBytes(quick)} /dev/urandom > "$1"`, 'sh', join(big, 'tree', 'big.bin')], { timeoutS: 3600 });
    writeFileSync(join(big, '.complete'), '');
  }
  return { many: join(many, 'tree'), big: join(big, 'tree') };
}

const time = (id: string, label: string): FigureSpec => ({ id, label, unit: 's', better: 'lower' });
const rate = (id: string, label: string, unit: 'MiB/s' | 'IOPS'): FigureSpec => ({ id, label, unit, better: 'higher' });

/** One timed shell command on a mount: its seconds, and the requests the server answered meanwhile. */
async function measure(m: Mounted, script: string, ctx: Ctx, check?: (out: string) => void): Promise<{ seconds: number; out: string; sample: (value: number) => Sample }> {
  const r0 = await m.requests?.();
  const r = await sh(script, { args: [m.dir], timeoutS: ctx.timeoutS });
  const seconds = ok(r, script.split(' ')[0]!);
  const r1 = await m.requests?.();
  check?.(r.stdout);
  const requests = r0 !== undefined && r1 !== undefined ? r1 - r0 : undefined;
  return {
    seconds, out: r.stdout,
    // per-request latency only where there are enough requests for it to mean something
    sample: (value) => ({ value, ...(requests ? { also: { requests, ...(requests >= 100 ? { 'µs/request': (seconds / requests) * 1e6 } : {}) } } : {}) }),
  };
}

const countIs = (n: number) => (out: string): void => {
  if (Number(out.trim()) !== n) throw new Error(`wrong tree: find counted ${out.trim()} files, not ${n}`);
};

/** A few files' bytes, read through the mount, are what the memory tree makes. */
function checkContent(root: string): void {
  for (const k of [0, 1, 4567, FILES - 1]) {
    const leaf = Math.floor(k / 20);
    const path = join(root, `d${String(Math.floor(leaf / 100)).padStart(2, '0')}`, `s${String(leaf % 100).padStart(2, '0')}`, `f${String(k % 20).padStart(2, '0')}`);
    if (!readFileSync(path).equals(fileData(k))) throw new Error(`wrong bytes in ${path}`);
  }
}

/** A cold and a warm figure of one command on a fresh mount (the warm one re-warmed right before). */
function coldWarm(name: string, what: string, script: string, check?: (out: string) => void): Case {
  const cold = time(`${name}-cold`, `${what}, cold`);
  const warm = time(`${name}-warm`, `${what}, warm`);
  return {
    name, source: 'mem-many', figures: [cold, warm], takes: (p) => p.id !== 'direct',
    async run(peer, s, ctx) {
      const m = await peer.mount(s, 'again');
      dropCaches();
      const c = await measure(m, script, ctx, check);
      await measure(m, script, ctx); // other benchmarks on the machine drop caches too: re-warm
      const w = await measure(m, script, ctx, check);
      return { [cold.id]: c.sample(c.seconds), [warm.id]: w.sample(w.seconds) };
    },
  };
}

const FIND = 'find "$1" -type f | wc -l';

function seqCase(bs: '1M' | '128k'): Case {
  const f = (k: string, label: string) => rate(`binding-seq-${bs}-${k}`, `sequential read of the big file, bs=${bs}, ${label}`, 'MiB/s');
  const [cold, warm, fresh] = [f('cold', 'cold'), f('warm', 'warm'), f('fresh', 'fresh mount, backing file cached')];
  return {
    name: `binding-seq-${bs.toLowerCase()}`, source: 'mem-big', figures: [cold, warm, fresh],
    async run(peer, s, ctx) {
      const mib = bigBytes(ctx.opts.quick) / 2 ** 20;
      const dd = `dd if="$1/big.bin" of=/dev/null bs=${bs} 2>/dev/null`;
      let m = await peer.mount(s, 'again');
      dropCaches();
      const c = await measure(m, dd, ctx);
      await measure(m, dd, ctx);
      const w = await measure(m, dd, ctx);
      const out: Record<string, Sample> = { [cold.id]: c.sample(mib / c.seconds), [warm.id]: w.sample(mib / w.seconds) };
      if (peer.fuse) {
        m = await peer.mount(s, 'again'); // the backing file cached, the FUSE page cache empty: the read path itself
        const r = await measure(m, dd, ctx);
        out[fresh.id] = r.sample(mib / r.seconds);
      }
      return out;
    },
  };
}

function randCase(jobs: 1 | 4): Case {
  const fig = rate(`binding-rand-${jobs}`, `random 4 KiB reads of the big file, cold, ${jobs === 1 ? 'qd1' : '4 jobs'} (fio psync)`, 'IOPS');
  return {
    name: `binding-rand-${jobs}`, source: 'mem-big', figures: [fig],
    async run(peer, s, ctx) {
      const m = await peer.mount(s, 'again');
      dropCaches();
      const fio = `fio --name=r --filename="$1/big.bin" --rw=randread --bs=4k --ioengine=psync --runtime=${ctx.fioSeconds} --time_based --readonly --invalidate=0 --output-format=json${jobs > 1 ? ` --numjobs=${jobs} --group_reporting` : ''}`;
      const r = await measure(m, fio, { ...ctx, timeoutS: ctx.timeoutS + ctx.fioSeconds });
      const iops = (JSON.parse(r.out.slice(r.out.indexOf('{'))) as { jobs: { read: { iops: number } }[] }).jobs[0]!.read.iops;
      return { [fig.id]: r.sample(iops) };
    },
  };
}

const CASES: Case[] = [
  coldWarm('binding-find', '`find -type f` of mem-many', FIND, countIs(FILES)),
  coldWarm('binding-du', '`du -s` of mem-many', 'du -s "$1"'),
  {
    name: 'binding-tar', source: 'mem-many', figures: [time('binding-tar', '`tar cf - | cat` of every file of mem-many, cold')], takes: (p) => p.id !== 'direct',
    async run(peer, s, ctx) {
      checkContent((await peer.mount(s, 'again')).dir);
      const m = await peer.mount(s, 'again');
      dropCaches();
      const r = await measure(m, 'cd "$1" && tar cf - . | cat > /dev/null', ctx);
      return { 'binding-tar': r.sample(r.seconds) };
    },
  },
  seqCase('1M'),
  seqCase('128k'),
  randCase(1),
  randCase(4),
];

export const bindingSuite: Suite = {
  section: { id: 'binding', title: 'the FUSE binding: tarstack\'s libfuse3 binding against fuse-native, a memory tree', subject: 'tarstack binding', reference: 'kernel overlayfs' },
  peers: (workDir, o) => [
    new KernelOverlay(workDir),
    new BindingPeer(workDir, 'native', 'tarstack binding', 'native'),
    ...[...o.variants].map(([name, session]) => new BindingPeer(workDir, name, name, 'native', session)),
    new BindingPeer(workDir, 'fuse-native', 'fuse-native', 'fuse-native'),
    new Direct(workDir),
  ] as Peer[],
  async source(name, o, log) {
    const data = await prepare(join(o.data, 'binding'), o.quick, log);
    const source: Source = name === 'mem-many'
      ? { name, tree: data.many, memory: 'many' }
      : { name, tree: data.big, memory: 'big', bigFile: join(data.big, 'big.bin') };
    const describe = name === 'mem-many' ? 'mem-many = 100,000 files of 0-8 KiB in 5,000 dirs, from memory' : `mem-big = one ${bigBytes(o.quick) / GiB} GiB file behind an fd`;
    return { source, describe };
  },
  cases: () => CASES,
};
