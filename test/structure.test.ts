// The structure issue 16 asked for, kept from drifting back silently: no source file in src/ over
// 450 lines; the core (src/vfs, src/tar, src/layer, src/overlay) imports nothing from its FUSE
// adapter; only src/fuse loads fuse-native; one reader of the mount table across src, test and bench;
// file type bits, byte-string conversions and the OCI whiteout names written once. Reads the sources
// as text; runs nothing.
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAX_LINES = 450;

/** Repo-relative paths of the TypeScript and JavaScript sources below `dir`. */
function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) out.push(...sources(rel));
    else if (/\.(ts|js|mjs)$/.test(e.name) && !e.name.endsWith('.d.ts')) out.push(rel);
  }
  return out;
}

const text = (rel: string): string => readFileSync(join(ROOT, rel), 'utf8');
const lineCount = (s: string): number => s.split('\n').length - (s.endsWith('\n') ? 1 : 0);

/** Every module a file imports or re-exports (static and dynamic), as written. */
function specifiers(src: string): string[] {
  const out: string[] = [];
  for (const m of src.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s*['"]([^'"]+)['"]|^\s*import\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/gm)) {
    out.push((m[1] ?? m[2] ?? m[3])!);
  }
  return out;
}

/** A relative specifier as a repo-relative path (its .js ending as written); a package name as is. */
const target = (from: string, spec: string): string => (spec.startsWith('.') ? relative(ROOT, resolve(ROOT, dirname(from), spec)) : spec);

test(`no source file in src/ is over ${MAX_LINES} lines`, (t) => {
  const over = sources('src').map((f) => `${f}: ${lineCount(text(f))}`).filter((l) => Number(l.split(': ')[1]) > MAX_LINES);
  t.deepEqual(over, [], 'split along a seam (one concept per file), not at an arbitrary line');
});

test('src/vfs, src/tar, src/layer and src/overlay import nothing from src/fuse', (t) => {
  const bad: string[] = [];
  for (const dir of ['src/vfs', 'src/tar', 'src/layer', 'src/overlay']) {
    for (const f of sources(dir)) for (const s of specifiers(text(f))) if (target(f, s).startsWith('src/fuse/')) bad.push(`${f} imports ${s}`);
  }
  t.deepEqual(bad, []);
});

test('only src/fuse loads fuse-native', (t) => {
  const bad = ['src', 'test', 'bench'].flatMap((d) => sources(d)).filter((f) => !f.startsWith('src/fuse/') && specifiers(text(f)).includes('fuse-native'));
  t.deepEqual(bad, []);
});

test('the mount table is read in one file across src, test and bench: src/util/mounts.ts', (t) => {
  // A path that ends a string is a read (or a path handed to one); comments that name the file are not.
  const reads = ['src', 'test', 'bench'].flatMap((d) => sources(d)).filter((f) => /\/mountinfo['"`]/.test(text(f)));
  t.deepEqual(reads, ['src/util/mounts.ts']);
});

test('the file type bits (S_IF*) are defined in one file: src/vfs/mode.ts', (t) => {
  const defs = ['src', 'test', 'bench'].flatMap((d) => sources(d)).filter((f) => /\bS_IF[A-Z]+\s*=\s*0o/.test(text(f)));
  t.deepEqual(defs, ['src/vfs/mode.ts']);
});

test('byte strings are converted in one file: src/util/latin1.ts', (t) => {
  const conv = /'utf8'\)\.toString\('latin1'\)|'latin1'\)\.toString\('utf8'\)/;
  const defs = ['src', 'test', 'bench'].flatMap((d) => sources(d)).filter((f) => conv.test(text(f)));
  t.deepEqual(defs, ['src/util/latin1.ts']);
});

test('the OCI whiteout names are spelled in one file of src: src/tar/names.ts', (t) => {
  // A quoted '.wh.' is the name itself; comments speak of `.wh.NAME` in backquotes.
  const spelled = sources('src').filter((f) => /['"]\.wh\./.test(text(f)));
  t.deepEqual(spelled, ['src/tar/names.ts']);
});
