// The `mount-program` suite: tarstack-overlay beside kernel overlayfs and fuse-overlayfs on the same
// directory lowers, each run on a fresh upper: a metadata walk (find -printf, an lstat per entry),
// small-file creates, an untar of a source tree, and a sequential read of a big lower file (the
// lower's page cache warm for all: it is shared). Lowers: `base` (5,000 small files in 200 dirs and
// a 256 MiB file) under `top` (an override and a whiteout per top directory).
import { closeSync, existsSync, mkdirSync, openSync, realpathSync, writeFileSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { removeTree } from '../src/util/remove-tree.js';
import { ok, secs, type Case, type Suite } from './cases.js';
import { fuseOverlayfs, KernelOverlay, tarstackOverlay, type Source } from './peers.js';
import { run, runOk, sh } from './sys.js';

const DIRS = 200;
const FILES_PER_DIR = 25;
const CREATES = 5000;
const bigMiB = (quick: boolean): number => (quick ? 32 : 256);

/** The two lowers and the source tarball to untar, made once under <data>/mount-program. */
async function prepare(root: string, quick: boolean, tarstackRepo: string, log: (s: string) => void): Promise<{ top: string; base: string; srcTar: string }> {
  const dir = join(root, quick ? 'quick' : 'full');
  const [base, top, srcTar] = [join(dir, 'lower-base'), join(dir, 'lower-top'), join(dir, 'src.tar')];
  if (!existsSync(join(dir, '.complete'))) {
    log('mount-program: writing the lowers');
    removeTree(dir, { mounts: 'force' });
    for (let d = 0; d < DIRS; d++) {
      const sub = join(base, `d${d % 20}`, `sub${d}`);
      mkdirSync(sub, { recursive: true });
      for (let f = 0; f < FILES_PER_DIR; f++) writeFileSync(join(sub, `f${f}.txt`), Buffer.alloc(((d * 31 + f * 17) % 8) * 1024 + 100, 97 + (f % 26)));
    }
    const big = Buffer.alloc(1 << 20, 1);
    const fd = openSync(join(base, 'big.bin'), 'w');
    for (let i = 0; i < bigMiB(quick); i++) writeSync(fd, big);
    closeSync(fd);
    for (let d = 0; d < 20; d++) {
      mkdirSync(join(top, `d${d}`), { recursive: true });
      writeFileSync(join(top, `d${d}`, 'override.txt'), 'top');
      writeFileSync(join(top, `d${d}`, `.wh.sub${d}`), ''); // a whiteout per top dir
    }
    // The "source tree" to untar: the measured checkout's node_modules (thousands of real source files).
    const modules = realpathSync(join(tarstackRepo, 'node_modules'));
    await runOk('tar', ['-C', dirname(modules), '-cf', srcTar, basename(modules)], { timeoutS: 600 });
    writeFileSync(join(dir, '.complete'), '');
  }
  return { top, base, srcTar };
}

/** The lowers, and the tarball the untar case extracts. */
interface DirLowers extends Source {
  srcTar: string;
}

const CASES: Case[] = [
  {
    name: 'overlay-walk', source: 'dir-lowers', figures: [secs('overlay-walk', 'metadata walk (`find -printf`, an lstat per entry)')],
    async run(peer, s, ctx) {
      const m = await peer.mount(s, 'writable');
      return { 'overlay-walk': { value: ok(await run('find', [m.dir, '-printf', '%i %s %T@\n'], { timeoutS: ctx.timeoutS }), 'find') } };
    },
  },
  {
    name: 'overlay-create', source: 'dir-lowers', figures: [secs('overlay-create', `${CREATES.toLocaleString('en-US')} creates of 1 KiB files`)],
    async run(peer, s, ctx) {
      const m = await peer.mount(s, 'writable');
      const loop = `const fs=require('fs');const d=process.argv[1];fs.mkdirSync(d);const b=Buffer.alloc(1024,120);for(let i=0;i<${CREATES};i++)fs.writeFileSync(d+'/f'+i,b)`;
      return { 'overlay-create': { value: ok(await run(process.execPath, ['-e', loop, join(m.dir, 'created')], { timeoutS: ctx.timeoutS }), 'creates') } };
    },
  },
  {
    name: 'overlay-untar', source: 'dir-lowers', figures: [secs('overlay-untar', 'untar a source tree (node_modules)')],
    async run(peer, s, ctx) {
      const m = await peer.mount(s, 'writable');
      return { 'overlay-untar': { value: ok(await run('tar', ['-C', m.dir, '-xf', (s as DirLowers).srcTar], { timeoutS: ctx.timeoutS }), 'untar') } };
    },
  },
  {
    name: 'overlay-seq-read', source: 'dir-lowers', figures: [secs('overlay-seq-read', 'sequential read of the big lower file (dd bs=1M), lower cached')],
    async run(peer, s, ctx) {
      const m = await peer.mount(s, 'writable');
      return { 'overlay-seq-read': { value: ok(await sh('dd if="$1/big.bin" of=/dev/null bs=1M status=none', { args: [m.dir], timeoutS: ctx.timeoutS }), 'dd') } };
    },
  },
];

export const mountProgramSuite: Suite = {
  section: { id: 'mount-program', title: 'tarstack-overlay (the mount program) on directory lowers', subject: 'tarstack-overlay', reference: 'kernel overlayfs' },
  peers: (workDir, o) => [new KernelOverlay(workDir), fuseOverlayfs(workDir), tarstackOverlay(workDir, o.tarstack)],
  async source(name, o, log) {
    const { top, base, srcTar } = await prepare(join(o.data, 'mount-program'), o.quick, o.tarstack, log);
    await sh('cat "$1" > /dev/null', { args: [join(base, 'big.bin')] }); // the lower's page cache is shared: warm it once for everyone
    const source: DirLowers = { name, lowers: [top, base], srcTar };
    return { source, describe: `dir-lowers = ${DIRS * FILES_PER_DIR} small files and a ${bigMiB(o.quick)} MiB file under a layer of overrides and whiteouts` };
  },
  cases: () => CASES,
};
