// Compressed tars served in place (issue 8): on `mixed` (~1 GiB of tar: small and medium files, text
// and incompressible) and `big` (one 1 GiB member, half text, half random), as .tar.gz (pigz -6) and
// optionally .tar.zst (one frame, as zstd -T0 writes it) and its `image add --recompress` copy
// (zstd-seekable): index time against `gzip -dc > /dev/null`, index size as a share of the archive,
// first byte of a member near the end, a sequential read of the big member against `gzip -dc`
// throughput, random 4 KiB reads (fio), and how long random reads hold Node's thread when decoding
// on the threadpool versus on the loop. Medians of --runs; CPU seconds beside wall ones,
// since other work on a shared machine inflates wall time. ratarmount is not installable here.
//   node dist/bench/compressed.js [--dir DIR] [--runs 3] [--formats gzip,zstd,zstd-seekable] [--mib 1024]
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { readIndex } from '../src/tar/index-file.js';
import { SeekableArchive } from '../src/tar/seekable.js';
import { forceUnmount, strayMounts } from '../test/helpers/mount.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : dflt;
}
const DIR = arg('dir', '/var/tmp/tarstack-compressed-bench');
const RUNS = Number(arg('runs', '3'));
const FORMATS = arg('formats', 'gzip').split(',');
const MIB = Number(arg('mib', '1024'));
const CLI = new URL('../src/cli/main.js', import.meta.url).pathname;
const HOME = join(DIR, 'store');
const MNT = join(DIR, 'mnt');

const sh = (cmd: string): string => execFileSync('sh', ['-c', cmd], { encoding: 'utf8', maxBuffer: 1 << 26 });
const seconds = (f: () => void): number => {
  const t0 = process.hrtime.bigint();
  f();
  return Number(process.hrtime.bigint() - t0) / 1e9;
};
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
/** Wall and CPU (user + sys) seconds of a shell command, from GNU time. */
function timedCpu(cmd: string): { wall: number; cpu: number } {
  const out = execFileSync('sh', ['-c', `/usr/bin/time -f '%e %U %S' sh -c '${cmd.replace(/'/g, "'\\''")}' 2>&1 >/dev/null | tail -1`], { encoding: 'utf8', env: { ...process.env, TARSTACK_HOME: HOME } });
  const [wall, user, sys] = out.trim().split(' ').map(Number);
  return { wall: wall!, cpu: user! + sys! };
}
const medianOf = (xs: Array<{ wall: number; cpu: number }>) => ({ wall: median(xs.map((x) => x.wall)), cpu: median(xs.map((x) => x.cpu)) });
const cli = (...args: string[]): string => execFileSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, TARSTACK_HOME: HOME }, stdio: ['ignore', 'pipe', 'pipe'] });
const mib = (n: number): string => `${(n / 1048576).toFixed(0)} MiB`;

// ---- data ---------------------------------------------------------------------------------------

/** Text-like bytes: words drawn at random (compresses about 3:1, like source code or logs). */
const WORDS = 'the of tar index seek point window member frame block gzip zstd read write file data served in place layer image mount kernel page cache offset length checksum'.split(' ');
const corpus = Buffer.from(Array.from({ length: 700_000 }, () => WORDS[Math.floor(Math.random() * WORDS.length)]).join(' '));
const text = (n: number): Buffer => {
  const at = Math.floor(Math.random() * (corpus.length - n - 1));
  return n < corpus.length - 1 ? corpus.subarray(at, at + n) : Buffer.alloc(n, corpus.toString('latin1', 0, 1 << 20));
};

function writeMixed(dir: string, total: number): void {
  let left = total;
  for (let d = 0; left > 0; d++) {
    const sub = join(dir, `d${String(d).padStart(4, '0')}`);
    fs.mkdirSync(sub, { recursive: true });
    for (let f = 0; f < 50 && left > 0; f++) {
      const size = Math.min(left, f % 25 === 0 ? (1 + Math.floor(Math.random() * 8)) << 20 : 1024 + Math.floor(Math.random() * 96 * 1024));
      fs.writeFileSync(join(sub, `f${String(f).padStart(3, '0')}`), f % 3 === 0 ? randomBytes(size) : text(size));
      left -= size;
    }
  }
}

function writeBig(file: string, total: number): void {
  const fd = fs.openSync(file, 'w');
  for (let at = 0, i = 0; at < total; at += 1 << 20, i++) fs.writeSync(fd, i % 2 ? randomBytes(1 << 20) : text(1 << 20));
  fs.closeSync(fd);
}

/** <name>.tar and its compressed copies, made once and kept. */
function prepare(name: string, write: (dir: string) => void): string {
  const base = join(DIR, name);
  const tar = join(base, `${name}.tar`);
  if (!fs.existsSync(join(base, '.complete'))) {
    console.error(`writing ${name} ...`);
    fs.rmSync(base, { recursive: true, force: true });
    fs.mkdirSync(join(base, 'tree'), { recursive: true });
    write(join(base, 'tree'));
    sh(`tar -cf ${tar} --sort=name -C ${join(base, 'tree')} . && pigz -6 -k -c ${tar} > ${tar}.gz && zstd -q -T0 -3 -c ${tar} > ${tar}.zst`);
    fs.writeFileSync(join(base, '.complete'), '');
  }
  return tar;
}

// ---- measurements -------------------------------------------------------------------------------

function mount(image: string): string {
  fs.mkdirSync(MNT, { recursive: true });
  cli('image', 'mount', image, MNT);
  return MNT;
}
function umount(): void {
  try {
    cli('umount', MNT);
  } catch {
    if (strayMounts(MNT).length) forceUnmount(MNT);
  }
}

function indexFile(name: string): string {
  const rec = JSON.parse(cli('image', 'info', name, '--json')) as { id: string };
  return join(HOME, 'images', rec.id, 'index');
}

const rows: Array<[string, string, string]> = [];
const row = (what: string, value: string, ratio = ''): void => {
  rows.push([what, value, ratio]);
  console.error(`  ${what}: ${value} ${ratio}`);
};

async function measure(set: 'mixed' | 'big', tar: string, format: string): Promise<void> {
  const archive = `${tar}.${format === 'gzip' ? 'gz' : 'zst'}`;
  const tool = format === 'gzip' ? 'gzip' : 'zstd';
  const label = `${set}.tar.${format === 'gzip' ? 'gz' : format === 'zstd' ? 'zst' : 'zst --recompress'}`;
  let asize = fs.statSync(archive).size;
  const tsize = fs.statSync(tar).size;
  console.error(`${label}: ${mib(asize)} archive, ${mib(tsize)} tar`);
  sh(`cat ${archive} > /dev/null`); // warm: both sides read the archive from the page cache
  const base = medianOf(Array.from({ length: RUNS }, () => timedCpu(`${tool} -dc ${archive} > /dev/null`)));
  const baseline = base.wall;
  const name = `${set}-${format}`;
  const extra = format === 'zstd-seekable' ? ['--recompress'] : [];
  const idx = medianOf(Array.from({ length: RUNS }, () => {
    try {
      cli('image', 'rm', name);
    } catch {
      // not there yet
    }
    return timedCpu(`${process.execPath} ${CLI} image add ${archive} --name ${name} ${extra.join(' ')}`);
  }));
  row(`${label} index time (image add${extra.length ? ' --recompress: decode, compress, index' : ''}) vs \`${tool} -dc > /dev/null\``, `${idx.wall.toFixed(2)} s vs ${base.wall.toFixed(2)} s wall; ${idx.cpu.toFixed(2)} s vs ${base.cpu.toFixed(2)} s CPU`, `${(idx.wall / base.wall).toFixed(2)}x wall, ${(idx.cpu / base.cpu).toFixed(2)}x CPU${extra.length ? '' : ' (target <= 1.3x)'}`);
  const ix = indexFile(name);
  if (extra.length) asize = fs.statSync(join(ix, '..', 'layer.tar.zst')).size;
  const d = readIndex(ix);
  const seekBytes = d.seek ? (Buffer.isBuffer(d.seek.windows) ? d.seek.windows.length : d.seek.windows.bytes) + d.seek.count * 36 + d.seek.pieceCrc.byteLength : 0;
  row(`${label} index size / archive`, `${mib(fs.statSync(ix).size)} (seek table ${(seekBytes / 1024).toFixed(0)} KiB, ${d.seek?.count} points)`, `${((100 * fs.statSync(ix).size) / asize).toFixed(2)} % (seek table ${((100 * seekBytes) / asize).toFixed(2)} %; target <= 2 %)`);

  if (set === 'mixed') {
    // The last files in tar order (created with --sort=name): the farthest from the archive's start.
    const files = sh(`cd ${join(DIR, set, 'tree')} && find . -type f | sort | tail -5`).split('\n').filter(Boolean);
    const ttfb = (cold: boolean): number[] =>
      files.map((f) => {
        if (cold) sh('sync; echo 3 > /proc/sys/vm/drop_caches');
        const dir = mount(name);
        try {
          const buf = Buffer.alloc(4096);
          return seconds(() => {
            const fd = fs.openSync(join(dir, f), 'r');
            fs.readSync(fd, buf, 0, 4096, 0);
            fs.closeSync(fd);
          });
        } finally {
          umount();
        }
      });
    sh(`cat ${archive} > /dev/null`);
    row(`${label} first byte of a member near the end, warm (median of 5)`, `${(median(ttfb(false)) * 1000).toFixed(1)} ms`, '(target <= 50 ms)');
    row(`${label} the same, cold (page cache dropped)`, `${(median(ttfb(true)) * 1000).toFixed(1)} ms`);
    return;
  }
  // big: one 1 GiB member
  const member = sh(`cd ${join(DIR, set, 'tree')} && find . -type f`).trim();
  const msize = fs.statSync(join(DIR, set, 'tree', member)).size;
  sh(`cat ${archive} > /dev/null`);
  const seq = median(Array.from({ length: RUNS }, () => {
    const dir = mount(name);
    try {
      return seconds(() => sh(`dd if=${join(dir, member)} of=/dev/null bs=1M status=none`));
    } finally {
      umount();
    }
  }));
  const toolRate = tsize / baseline / 1048576;
  const rate = msize / seq / 1048576;
  row(`${label} sequential read of the member vs \`${tool} -dc\``, `${rate.toFixed(0)} MiB/s vs ${toolRate.toFixed(0)} MiB/s`, `${((100 * rate) / toolRate).toFixed(0)} % (target >= 70 %)`);
  for (const jobs of [1, 4]) {
    const dir = mount(name);
    try {
      const out = sh(`fio --name=r --filename=${join(dir, member)} --rw=randread --bs=4k --ioengine=psync --runtime=8 --time_based --readonly --invalidate=0 --numjobs=${jobs} --group_reporting --output-format=json`);
      const iops = (JSON.parse(out) as { jobs: { read: { iops: number } }[] }).jobs[0]!.read.iops;
      row(`${label} random 4 KiB reads in the member, ${jobs} job${jobs > 1 ? 's' : ''} (fio, psync)`, `${iops.toFixed(0)} reads/s`);
    } finally {
      umount();
    }
  }
  if (format === 'gzip') await loopStall(archive, ix, msize);
}

/**
 * Random reads decoding on the threadpool (what serving does) or on Node's thread: how long each
 * read holds the loop (the synchronous part of the call), which is what delays every other FUSE
 * request. Timed per call rather than with an event-loop-delay monitor, which on a loaded machine
 * mostly measures waiting for a CPU.
 */
async function loopStall(archive: string, ix: string, size: number): Promise<void> {
  const d = readIndex(ix);
  const reads = Array.from({ length: 200 }, () => Math.floor(Math.random() * (size - 4096)));
  const run = async (sync: boolean): Promise<string> => {
    const a = new SeekableArchive(fs.openSync(archive, 'r'), d.seek!, archive);
    const buf = Buffer.alloc(4096);
    const held: number[] = [];
    const t0 = process.hrtime.bigint();
    for (const pos of reads) {
      const c0 = process.hrtime.bigint();
      const p = sync ? a.readInto(pos, buf, 0, 4096) : a.read(pos, 4096);
      held.push(Number(process.hrtime.bigint() - c0) / 1e6);
      await p;
    }
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    a.close();
    held.sort((x, y) => x - y);
    return `loop held p50 ${held[100]!.toFixed(2)} ms, p99 ${held[197]!.toFixed(1)} ms, max ${held[199]!.toFixed(1)} ms (${(reads.length / s).toFixed(0)} reads/s)`;
  };
  const threadpool = await run(false);
  const loop = await run(true);
  row('200 random 4 KiB reads in-process: decoding on the threadpool vs on the loop', `${threadpool} vs ${loop}`);
}

async function main(): Promise<void> {
  fs.mkdirSync(DIR, { recursive: true });
  const mixed = prepare('mixed', (dir) => writeMixed(dir, MIB << 20));
  const big = prepare('big', (dir) => writeBig(join(dir, 'member.bin'), MIB << 20));
  try {
    for (const format of FORMATS) {
      await measure('mixed', mixed, format);
      await measure('big', big, format);
    }
  } finally {
    umount();
  }
  await new Promise((r) => setTimeout(r, 100));
  console.log(`\ncompressed tars, medians of ${RUNS} (peers: gzip/zstd in the same run; ratarmount: not installable here, no PyPI)`);
  for (const [what, value, ratio] of rows) console.log(`| ${what} | ${value} | ${ratio} |`);
}

main().catch((err: unknown) => {
  console.error('bench compressed:', err);
  if (strayMounts(MNT).length) forceUnmount(MNT);
  process.exit(1);
});
