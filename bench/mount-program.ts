// tarstack-overlay beside kernel overlayfs and fuse-overlayfs, on the same directory lowers, in one
// run: a metadata walk (find -printf, an lstat per entry), small-file creates, an untar of a source
// tree, and a sequential read of a big lower file. Prints seconds and ratios (tarstack / peer; lower
// is better). Usage: node dist/bench/mount-program.js [workdir]   (root; a few minutes at most)
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const WORK = process.argv[2] ?? '/var/tmp/tarstack-mountprog-bench';
const PROG = fileURLToPath(new URL('../src/mountprog/main.js', import.meta.url));
const DIRS = 200;
const FILES_PER_DIR = 25;
const BIG_MIB = 256;
const CREATES = 5000;

const sh = (argv: string[]) => execFileSync(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], maxBuffer: 1 << 26 });
const seconds = (fn: () => void): number => {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
};

/** Two lowers: `base` (a tree of small files and one big file) under `top` (a few overrides and whiteouts). */
function buildLowers(): { top: string; base: string; srcTar: string } {
  const base = path.join(WORK, 'lower-base');
  const top = path.join(WORK, 'lower-top');
  const srcTar = path.join(WORK, 'src.tar');
  if (fs.existsSync(srcTar)) return { top, base, srcTar };
  fs.rmSync(WORK, { recursive: true, force: true });
  for (let d = 0; d < DIRS; d++) {
    const dir = path.join(base, `d${d % 20}`, `sub${d}`);
    fs.mkdirSync(dir, { recursive: true });
    for (let f = 0; f < FILES_PER_DIR; f++) fs.writeFileSync(path.join(dir, `f${f}.txt`), Buffer.alloc(((d * 31 + f * 17) % 8) * 1024 + 100, 97 + (f % 26)));
  }
  const big = Buffer.alloc(1 << 20, 1);
  const fd = fs.openSync(path.join(base, 'big.bin'), 'w');
  for (let i = 0; i < BIG_MIB; i++) fs.writeSync(fd, big);
  fs.closeSync(fd);
  for (let d = 0; d < 20; d++) {
    fs.mkdirSync(path.join(top, `d${d}`), { recursive: true });
    fs.writeFileSync(path.join(top, `d${d}`, 'override.txt'), 'top');
    fs.writeFileSync(path.join(top, `d${d}`, `.wh.sub${d}`), ''); // a whiteout per top dir
  }
  // The "source tree" to untar: this repository's node_modules (thousands of real source files).
  const modules = fileURLToPath(new URL('../../node_modules', import.meta.url));
  sh(['tar', '-C', path.dirname(modules), '-cf', srcTar, path.basename(modules)]);
  return { top, base, srcTar };
}

interface Peer { name: string; mount(lowers: string, upper: string, work: string, mnt: string): void }

const PEERS: Peer[] = [
  { name: 'kernel', mount: (l, u, w, m) => sh(['mount', '-t', 'overlay', 'overlay', '-o', `lowerdir=${l},upperdir=${u},workdir=${w},redirect_dir=on`, m]) },
  { name: 'fuse-overlayfs', mount: (l, u, w, m) => sh(['fuse-overlayfs', '-o', `lowerdir=${l},upperdir=${u},workdir=${w}`, m]) },
  { name: 'tarstack', mount: (l, u, w, m) => sh([process.execPath, PROG, '-o', `lowerdir=${l},upperdir=${u},workdir=${w}`, m]) },
];

function measure(peer: Peer, lowers: string, srcTar: string): Record<string, number> {
  const dir = path.join(WORK, peer.name);
  fs.rmSync(dir, { recursive: true, force: true });
  const [upper, work, mnt] = ['upper', 'work', 'mnt'].map((x) => path.join(dir, x)) as [string, string, string];
  for (const d of [upper, work, mnt]) fs.mkdirSync(d, { recursive: true });
  peer.mount(lowers, upper, work, mnt);
  try {
    const out: Record<string, number> = {};
    out['metadata walk'] = seconds(() => sh(['find', mnt, '-printf', '%i %s %T@\n']));
    out['small-file create'] = seconds(() => {
      const r = spawnSync(process.execPath, ['-e', `const fs=require('fs');const d=process.argv[1];fs.mkdirSync(d);const b=Buffer.alloc(1024,120);for(let i=0;i<${CREATES};i++)fs.writeFileSync(d+'/f'+i,b)`, path.join(mnt, 'created')]);
      if (r.status !== 0) throw new Error(`creates on ${peer.name}: ${r.stderr}`);
    });
    out['untar'] = seconds(() => sh(['tar', '-C', mnt, '-xf', srcTar]));
    out['sequential read'] = seconds(() => sh(['dd', `if=${path.join(mnt, 'big.bin')}`, 'of=/dev/null', 'bs=1M']));
    return out;
  } finally {
    if (spawnSync('umount', [mnt]).status !== 0) spawnSync('umount', ['-l', mnt]);
  }
}

function main(): void {
  if (process.getuid?.() !== 0) throw new Error('run as root (kernel overlayfs mounts)');
  const { top, base, srcTar } = buildLowers();
  sh(['cat', path.join(base, 'big.bin')]); // the lower's page cache is shared: warm it once for everyone
  const lowers = `${top}:${base}`;
  const results = new Map<string, Record<string, number>>();
  for (const p of PEERS) {
    if (p.name === 'fuse-overlayfs' && spawnSync('sh', ['-c', 'command -v fuse-overlayfs']).status !== 0) continue;
    results.set(p.name, measure(p, lowers, srcTar));
  }
  const ours = results.get('tarstack')!;
  const peers = [...results.keys()].filter((k) => k !== 'tarstack');
  const rows = Object.keys(ours).map((m) => {
    const cells = [...results.values()].map((r) => r[m]!.toFixed(2).padStart(9));
    const ratios = peers.map((p) => (ours[m]! / results.get(p)![m]!).toFixed(2).padStart(9));
    return `${m.padEnd(18)}${cells.join('')}${ratios.join('')}`;
  });
  const head = `${'seconds'.padEnd(18)}${[...results.keys()].map((k) => k.slice(0, 8).padStart(9)).join('')}${peers.map((p) => `÷${p.slice(0, 7)}`.padStart(9)).join('')}`;
  process.stdout.write(`tarstack-overlay vs peers on directory lowers (${DIRS * FILES_PER_DIR} small files, ${BIG_MIB} MiB file, untar of node_modules; ${CREATES} creates)\n${head}\n${rows.join('\n')}\n`);
}

main();
