// Measures tarstack's libfuse3 binding against fuse-native 2.2.6 and kernel overlayfs over the same
// tree: on `many` (100,000 small files served from memory) cold/warm find and du, tar of every
// file, with request counts; on `big` (a 2 GiB file behind a real fd) sequential reads at 1 MiB and
// 128 KiB, cold and warm, and random 4 KiB reads with fio. Medians of --runs, printed as ratios to
// overlayfs. Needs root (drop_caches, overlay mounts). Peers are run round-robin in each run.
//   node dist/bench/native-binding.js [--runs 3] [--tests find,du,tar,seq,rand]
//        [--peers kernel,native,fuse-native] [--variant NAME='{"splice":1}' ...] [--dir DIR]
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { ChildMount, forceUnmount, isMounted, startChild } from '../test/helpers/mount-harness.js';
import { FILES, fileData, writeManyTree } from './many-fs.js';

type Kind = 'many' | 'big';
const BIG_SIZE = 2 * 1024 * 1024 * 1024;

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : dflt;
}
const DIR = arg('dir', '/var/tmp/tarstack-native-bench');
const RUNS = Number(arg('runs', '3'));
const TESTS = arg('tests', 'find,du,tar,seq,rand').split(',');
const variants = new Map<string, string>([['native', '{}']]);
for (let i = 0; i < process.argv.length; i++) {
  if (process.argv[i] !== '--variant') continue;
  const [name, json] = process.argv[i + 1]!.split(/=(.*)/s);
  variants.set(name!, json!);
}
const PEERS = arg('peers', ['kernel', ...variants.keys(), 'fuse-native'].join(',')).split(',');
const SERVE = new URL('./serve.js', import.meta.url).pathname;

function sh(cmd: string): string {
  return execFileSync('sh', ['-c', cmd], { encoding: 'utf8', maxBuffer: 1 << 26 });
}
function dropCaches(): void {
  sh('sync; echo 3 > /proc/sys/vm/drop_caches');
}
function timed(cmd: string): { s: number; out: string } {
  const t0 = process.hrtime.bigint();
  const out = sh(cmd);
  return { s: Number(process.hrtime.bigint() - t0) / 1e9, out };
}

// ---- data sets ------------------------------------------------------------------------------

function prepare(): void {
  const tree = join(DIR, 'many', 'tree');
  if (!fs.existsSync(join(DIR, 'many', '.complete'))) {
    console.error('writing the many tree ...');
    fs.rmSync(tree, { recursive: true, force: true });
    writeManyTree(tree);
    fs.writeFileSync(join(DIR, 'many', '.complete'), '');
  }
  const big = join(DIR, 'big', 'tree', 'big.bin');
  if (!fs.existsSync(join(DIR, 'big', '.complete'))) {
    console.error('writing the 2 GiB file ...');
    fs.mkdirSync(join(DIR, 'big', 'tree'), { recursive: true });
    sh(`head -c ${BIG_SIZE} /dev/urandom > ${big}`);
    fs.writeFileSync(join(DIR, 'big', '.complete'), '');
  }
}
const bigFile = () => join(DIR, 'big', 'tree', 'big.bin');

// ---- peers ----------------------------------------------------------------------------------

interface Peer {
  name: string;
  root(kind: Kind): string; // where the tree appears
  /** Makes the next access cold: caches dropped and, for FUSE, a fresh mount. */
  cold(kind: Kind): Promise<void>;
  /** A fresh mount without dropping caches (FUSE only). */
  remount?(kind: Kind): Promise<void>;
  requests(kind: Kind): Promise<number | undefined>;
  close(): Promise<void>;
}

function kernelPeer(): Peer {
  const mnt = (k: Kind) => join(DIR, 'ovl', k, 'mnt');
  const mount = (k: Kind) => {
    if (isMounted(mnt(k))) return;
    for (const d of ['upper', 'work', 'mnt']) fs.mkdirSync(join(DIR, 'ovl', k, d), { recursive: true });
    const o = join(DIR, 'ovl', k);
    sh(`mount -t overlay overlay -o lowerdir=${join(DIR, k, 'tree')},upperdir=${o}/upper,workdir=${o}/work ${mnt(k)}`);
  };
  return {
    name: 'kernel',
    root: mnt,
    cold: async (k) => {
      mount(k);
      dropCaches();
    },
    requests: async () => undefined,
    close: async () => {
      for (const k of ['many', 'big'] as Kind[]) spawnSync('umount', [mnt(k)]);
    },
  };
}

/** The big file read straight from ext4, no overlay: what any layer above it costs. */
function directPeer(): Peer {
  return {
    name: 'direct',
    root: (k: Kind) => join(DIR, k, 'tree'),
    cold: async () => dropCaches(),
    requests: async () => undefined,
    close: async () => undefined,
  };
}

function fusePeer(name: string, backend: 'native' | 'fuse-native', session: string): Peer {
  const mnt = (k: Kind) => join(DIR, 'fuse', name, k);
  const children = new Map<Kind, ChildMount>();
  const stop = async (k: Kind) => {
    const c = children.get(k);
    if (!c) return;
    children.delete(k);
    const done = c.next('unmounted').catch(() => undefined);
    c.child.send({ type: 'unmount' });
    await done;
    await c.cleanup();
  };
  const start = async (k: Kind) => {
    fs.mkdirSync(mnt(k), { recursive: true });
    forceUnmount(mnt(k));
    const args = [backend, k, ...(k === 'big' ? [bigFile()] : [])];
    const { mount } = await startChild(SERVE, mnt(k), args, { BENCH_SESSION: session });
    children.set(k, mount);
  };
  return {
    name,
    root: mnt,
    async cold(k) {
      await stop(k);
      dropCaches();
      await start(k);
    },
    async remount(k) {
      await stop(k);
      await start(k);
    },
    async requests(k) {
      const c = children.get(k);
      return c ? ((await c.ask('stats')).requests as number) : undefined;
    },
    async close() {
      for (const k of [...children.keys()]) await stop(k);
    },
  };
}

// ---- measurements ---------------------------------------------------------------------------

interface Sample { value: number; requests?: number; seconds: number }
const results = new Map<string, Map<string, Sample[]>>(); // test -> peer -> samples
const pressure: number[] = [];

function record(test: string, peer: string, s: Sample): void {
  if (!results.has(test)) results.set(test, new Map());
  const m = results.get(test)!;
  if (!m.has(peer)) m.set(peer, []);
  m.get(peer)!.push(s);
}

/** CPU pressure (PSI "some avg10"): other work on the machine skews every figure. */
function cpuPressure(): number {
  try {
    return Number(/avg10=([0-9.]+)/.exec(fs.readFileSync('/proc/pressure/cpu', 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** Waits (up to 5 s) for the machine to calm down, and records how busy it still was. */
async function quiet(): Promise<number> {
  for (let i = 0; i < 10 && cpuPressure() > 20; i++) await new Promise((r) => setTimeout(r, 500));
  return cpuPressure();
}

async function measure(p: Peer, kind: Kind, test: string, cmd: string, value: (s: number, out: string) => number, check?: (out: string) => void): Promise<void> {
  pressure.push(await quiet());
  // Other benchmarks on this machine drop caches too: a warm figure re-warms right before timing.
  if (test.includes('warm')) sh(cmd);
  const r0 = await p.requests(kind);
  const { s, out } = timed(cmd);
  const r1 = await p.requests(kind);
  check?.(out);
  record(test, p.name, { value: value(s, out), seconds: s, ...(r0 !== undefined && r1 !== undefined ? { requests: r1 - r0 } : {}) });
}

const secs = (s: number) => s;
const mibps = (s: number) => BIG_SIZE / (1 << 20) / s;
const countIs = (n: number) => (out: string) => {
  if (Number(out.trim()) !== n) throw new Error(`wrong tree: find counted ${out.trim()} files, not ${n}`);
};

function checkContent(p: Peer): void {
  for (const k of [0, 1, 4567, FILES - 1]) {
    const leaf = Math.floor(k / 20);
    const path = join(p.root('many'), `d${String(Math.floor(leaf / 100)).padStart(2, '0')}`, `s${String(leaf % 100).padStart(2, '0')}`, `f${String(k % 20).padStart(2, '0')}`);
    if (!fs.readFileSync(path).equals(fileData(k))) throw new Error(`${p.name} serves wrong bytes in ${path}`);
  }
}

async function runMany(p: Peer): Promise<void> {
  const root = p.root('many');
  if (TESTS.includes('find')) {
    await p.cold('many');
    await measure(p, 'many', 'find cold (s)', `find ${root} -type f | wc -l`, secs, countIs(FILES));
    await measure(p, 'many', 'find warm (s)', `find ${root} -type f | wc -l`, secs, countIs(FILES));
  }
  if (TESTS.includes('du')) {
    await p.cold('many');
    await measure(p, 'many', 'du -s cold (s)', `du -s ${root}`, secs);
    await measure(p, 'many', 'du -s warm (s)', `du -s ${root}`, secs);
  }
  if (TESTS.includes('tar')) {
    await p.cold('many');
    checkContent(p);
    await p.cold('many');
    await measure(p, 'many', 'tar cf - (every file) cold (s)', `tar cf - -C ${root} . | cat > /dev/null`, secs);
  }
}

async function runBig(p: Peer): Promise<void> {
  const file = join(p.root('big'), 'big.bin');
  if (TESTS.includes('seq')) {
    for (const bs of ['1M', '128k']) {
      await p.cold('big');
      await measure(p, 'big', `seq read bs=${bs} cold (MiB/s)`, `dd if=${file} of=/dev/null bs=${bs} 2>/dev/null`, mibps);
      await measure(p, 'big', `seq read bs=${bs} warm (MiB/s)`, `dd if=${file} of=/dev/null bs=${bs} 2>/dev/null`, mibps);
      if (p.remount) {
        await p.remount('big'); // backing file cached, FUSE page cache empty: the read path itself
        await measure(p, 'big', `seq read bs=${bs} fresh mount, backing cached (MiB/s)`, `dd if=${file} of=/dev/null bs=${bs} 2>/dev/null`, mibps);
      }
    }
  }
  if (TESTS.includes('rand')) {
    await p.cold('big');
    const fio = `fio --name=r --filename=${file} --rw=randread --bs=4k --ioengine=psync --runtime=8 --time_based --readonly --invalidate=0 --output-format=json`;
    await measure(p, 'big', 'random 4 KiB reads cold, qd1 (IOPS)', fio, (_s, out) => (JSON.parse(out) as { jobs: { read: { iops: number } }[] }).jobs[0]!.read.iops);
    await p.cold('big');
    await measure(p, 'big', 'random 4 KiB reads cold, 4 jobs (IOPS)', `${fio} --numjobs=4 --group_reporting`, (_s, out) => (JSON.parse(out) as { jobs: { read: { iops: number } }[] }).jobs[0]!.read.iops);
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

function report(): void {
  console.log(`CPU pressure (PSI some avg10) at measurement starts: median ${median(pressure).toFixed(0)}%, max ${Math.max(...pressure).toFixed(0)}%`);
  for (const [test, byPeer] of results) {
    const base = byPeer.get('kernel');
    const baseValue = base ? median(base.map((s) => s.value)) : undefined;
    console.log(`\n${test}`);
    for (const [peer, samples] of byPeer) {
      const v = median(samples.map((s) => s.value));
      const reqs = samples.filter((s) => s.requests !== undefined).map((s) => s.requests!);
      const req = reqs.length ? median(reqs) : undefined;
      const lat = req ? `, ${((median(samples.map((s) => s.seconds)) / req) * 1e6).toFixed(1)} us/request (wall/requests)` : '';
      const ratio = baseValue !== undefined && peer !== 'kernel' ? `  ${(v / baseValue).toFixed(2)}x kernel` : '';
      const extra = req !== undefined ? `  ${req} requests${lat}` : '';
      console.log(`  ${peer.padEnd(14)} ${v.toFixed(v < 10 ? 3 : 0).padStart(9)}${ratio}${extra}   [${samples.map((s) => s.value.toFixed(v < 10 ? 3 : 0)).join(' ')}]`);
    }
  }
  fs.writeFileSync(join(DIR, 'results.json'), JSON.stringify(Object.fromEntries([...results].map(([t, m]) => [t, Object.fromEntries(m)])), null, 1));
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root (drop_caches, overlay mounts)');
  fs.mkdirSync(DIR, { recursive: true });
  prepare();
  const peers: Peer[] = [];
  const stop = (sig: string) => {
    console.error(`bench: ${sig}, unmounting`);
    void Promise.all(peers.map((p) => p.close().catch(() => undefined))).finally(() => process.exit(1));
  };
  process.once('SIGINT', stop).once('SIGTERM', stop);
  try {
    for (const name of PEERS) {
      if (name === 'kernel') peers.push(kernelPeer());
      else if (name === 'direct') peers.push(directPeer());
      else if (name === 'fuse-native') peers.push(fusePeer(name, 'fuse-native', '{}'));
      else peers.push(fusePeer(name, 'native', variants.get(name) ?? '{}'));
    }
    for (let run = 0; run < RUNS; run++) {
      for (const p of peers) {
        console.error(`run ${run + 1}/${RUNS}: ${p.name}`);
        if (p.name !== 'direct') await runMany(p);
        await runBig(p);
        await p.close();
      }
    }
  } finally {
    for (const p of peers) await p.close().catch(() => undefined);
  }
  report();
}

main().catch((err: unknown) => {
  console.error('bench:', err);
  process.exit(1);
});
