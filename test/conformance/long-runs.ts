// Long runs (scripts/conformance-long; not part of npm test): the data-integrity exerciser (fsx.ts:
// random reads, writes, truncates and shared-mmap ops, every read checked against a model) on a new
// file and on a copied-up lower file, on an instance and through tarstack-overlay, each file checked
// again after a remount; and the deterministic stress run (stress-ops.ts) on each, whose trace and
// final tree must match kernel overlayfs's over the same lower.
//   node dist/test/conformance/long-runs.js [--fsx-ops N] [--stress-ops N] [--seed S] [--fsx-on NAMES]
// --fsx-on names the configurations fsx runs on, comma-separated (default instance,tarstack-overlay;
// empty: stress only), so the two halves can run side by side on two cores.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fsx } from '../helpers/fsx.js';
import { mount, removeTestRoot, type MountConfig, type Mounted } from '../helpers/mounted.js';
import { fingerprint, stressLower, stressRun } from '../helpers/stress-ops.js';
import { tarOf } from './suite.js';

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(name);
  if (at < 0) return fallback;
  const v = Number(process.argv[at + 1]);
  if (!Number.isSafeInteger(v) || v < 0) {
    process.stderr.write(`long-runs: ${name} takes a whole number, not ${process.argv[at + 1]}\n`);
    process.exit(2);
  }
  return v;
}

const FSX_OPS = option('--fsx-ops', 1_000_000);
const STRESS_OPS = option('--stress-ops', 100_000);
const SEED = option('--seed', 12);
const FSX_NAMES = ['instance', 'tarstack-overlay'];
const FSX_ON = ((): string[] => {
  const at = process.argv.indexOf('--fsx-on');
  if (at < 0) return FSX_NAMES;
  const names = (process.argv[at + 1] ?? '').split(',').filter((n) => n !== '');
  const unknown = names.find((n) => !FSX_NAMES.includes(n));
  if (unknown !== undefined) {
    process.stderr.write(`long-runs: --fsx-on takes names from ${FSX_NAMES.join(', ')}, not ${unknown}\n`);
    process.exit(2);
  }
  return names;
})();

async function main(): Promise<void> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tarstack-long-'));
  const lower = path.join(root, 'lower');
  fs.mkdirSync(path.join(lower, 'fsx'), { recursive: true });
  fs.writeFileSync(path.join(lower, 'fsx/data'), Buffer.from(Array.from({ length: 1 << 20 }, (_, i) => (i * 7 + (i >> 9)) & 0xff)));
  fs.mkdirSync(path.join(lower, 'stress'));
  stressLower(path.join(lower, 'stress'));
  const tar = tarOf(lower, path.join(root, 'lower.tar'));
  const configs: [string, MountConfig][] = [
    ['instance', { kind: 'instance', lowers: [tar] }],
    ['tarstack-overlay', { kind: 'overlay-program', lowers: [lower] }],
    ['kernel overlayfs', { kind: 'kernel', lowers: [lower] }],
    // index=on keeps a lower hard-link set one inode through copy-up, as an instance does (index=off breaks it)
    ['kernel overlayfs index=on', { kind: 'kernel', lowers: [lower], options: ['redirect_dir=on', 'index=on', 'metacopy=off'] }],
  ];
  const referenceOf: Record<string, string> = { instance: 'kernel overlayfs index=on', 'tarstack-overlay': 'kernel overlayfs' };
  const say = (line: string) => process.stdout.write(line + '\n'); // as it comes: a long run shows how far it got
  let failed = false;
  const stress: Record<string, { traceHash: string; tree: string; entries: string[]; trace: string[] }> = {};
  try {
    for (const [name, config] of configs) {
      const m: Mounted = await mount(undefined, path.join(root, name.replace(/ /g, '-')), config);
      try {
        if (FSX_ON.includes(name)) {
          fs.writeFileSync(path.join(m.root, 'fsx/new'), 'a new file\n');
          for (const file of ['fsx/new', 'fsx/data']) {
            const start = Date.now();
            try {
              const model = await fsx({ file: path.join(m.root, file), seed: SEED, ops: FSX_OPS, maxSize: 3 << 20 });
              await m.remount();
              const ok = fs.readFileSync(path.join(m.root, file)).equals(model);
              failed ||= !ok;
              say(`fsx ${FSX_OPS} ops on ${file} (${file === 'fsx/data' ? 'copied up from the lower' : 'new'}), ${name}: ${ok ? 'clean' : 'CONTENT DIFFERS AFTER REMOUNT'} (${((Date.now() - start) / 1000).toFixed(0)} s)`);
            } catch (err) {
              failed = true;
              say(`fsx ${FSX_OPS} ops on ${file}, ${name}: FAILED: ${(err as Error).message}`);
            }
          }
        }
        const start = Date.now();
        const r = stressRun(path.join(m.root, 'stress'), SEED, STRESS_OPS);
        await m.remount();
        const f = fingerprint(path.join(m.root, 'stress'));
        stress[name] = { traceHash: r.traceHash, tree: f.hash, entries: f.entries, trace: r.trace };
        say(`stress ${STRESS_OPS} ops, ${name}: trace ${r.traceHash.slice(0, 12)}, tree ${f.hash.slice(0, 12)} (${f.entries.length} entries) (${((Date.now() - start) / 1000).toFixed(0)} s)`);
      } finally {
        await m.unmount();
      }
    }
    for (const name of ['instance', 'tarstack-overlay']) {
      const s = stress[name];
      const ref = stress[referenceOf[name]!];
      if (!s || !ref) continue;
      const same = s.traceHash === ref.traceHash && s.tree === ref.tree;
      failed ||= !same;
      let detail = '';
      if (!same) {
        const at = s.trace.findIndex((l, i) => l !== ref.trace[i]);
        detail = at >= 0 ? `; first different op: kernel "${ref.trace[at]}", ${name} "${s.trace[at]}"` : '';
        const missing = ref.entries.filter((e) => !s.entries.includes(e)).slice(0, 5);
        const extra = s.entries.filter((e) => !ref.entries.includes(e)).slice(0, 5);
        detail += `; tree: kernel only ${JSON.stringify(missing)}, ${name} only ${JSON.stringify(extra)}`;
      }
      say(`stress: ${name} ${same ? 'matches' : 'DIFFERS FROM'} ${referenceOf[name]} (trace and final tree)${detail}`);
    }
  } finally {
    removeTestRoot(root);
  }
  process.exit(failed ? 1 : 0);
}

main().catch((err: unknown) => {
  process.stderr.write(`long-runs: ${(err as Error).message}\n`);
  process.exit(1);
});
