// The bench data: deterministic trees written to disk, then tarred by GNU tar from that tree so
// every peer serves the same files. Each shape lives in <data>/<name>/ and is reused while its
// manifest.json (written last, with the spec) matches; the manifest holds what verify.ts checks.
import { createCipheriv, createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, statfsSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { removeTree } from '../src/util/remove-tree.js';
import { runOk } from './sys.js';

export type ShapeKind = 'many' | 'big' | 'million';

interface SmallSpec { kind: 'small'; files: number; topDirs: number; subDirsPerTop: number; maxSize: number; sizeExponent: number; untarTops: number }
interface BigSpec { kind: 'big'; bigBytes: number; mediumCount: number; mediumBytes: number }
type Spec = SmallSpec | BigSpec;

/** A range of a file and the sha256 of its bytes. */
export interface SampleRange { path: string; offset: number; length: number; sha256: string }

export interface Manifest {
  spec: Spec;
  files: number;
  dirs: number; // below the root
  totalBytes: number;
  tarBytes: number;
  samples: SampleRange[];
  bigFile?: { path: string; bytes: number }; // the member the read cases use
  rmSubtree?: { path: string; files: number }; // the lower subtree `rm -rf` removes
  untar?: { tar: string; files: number }; // the source tree untarred into a mount
}

export interface Shape {
  kind: ShapeKind;
  name: string; // data dir name; also the tarstack image name
  tree: string; // the extracted tree (overlay lowerdir)
  tar: string;
  manifest: Manifest;
}

const MiB = 1 << 20;
const GiB = 1 << 30;
const FORMAT_VERSION = 1;

/**
 * 10 top dirs, each the root of an equal subtree, so `rm -rf t0` removes a tenth of the files.
 * Sizes are 0–8 KiB drawn as 8 KiB·u^1.65 (mean ~3.0 KiB), which gives TARGETS.md's ~389 MB tar.
 */
const small = (files: number, dirs: number, untarTops: number): SmallSpec =>
  ({ kind: 'small', files, topDirs: 10, subDirsPerTop: dirs / 10 - 1, maxSize: 8192, sizeExponent: 1.65, untarTops });

const SPECS: Record<string, Spec> = {
  many: small(100_000, 5_000, 2), // ~391 MB tar
  big: { kind: 'big', bigBytes: 2 * GiB, mediumCount: 3, mediumBytes: 100 * MiB },
  million: small(1_000_000, 50_000, 0),
  'quick-many': small(10_000, 500, 2),
  'quick-big': { kind: 'big', bigBytes: 200 * MiB, mediumCount: 3, mediumBytes: 10 * MiB },
};

/** The data dir name for a shape; --quick shrinks every shape 10× (quick `million` is `many`). */
function shapeName(kind: ShapeKind, quick: boolean): string {
  if (!quick) return kind;
  return kind === 'million' ? 'many' : `quick-${kind}`;
}

/** Bytes a shape needs on disk (tree + tar), generously. */
function needBytes(spec: Spec): number {
  if (spec.kind === 'big') return 2 * (spec.bigBytes + spec.mediumCount * spec.mediumBytes) + 64 * MiB;
  const dirs = spec.topDirs * (spec.subDirsPerTop + 1);
  const perFile = 4096 + 4096 + 1024; // ext4 block + tar data and header, rounded up
  return spec.files * perFile + dirs * 4096 * 2;
}

/** Loads a shape, generating it first if its cached copy is missing or stale. */
export async function loadShape(dataDir: string, kind: ShapeKind, quick: boolean, log: (s: string) => void): Promise<Shape> {
  const name = shapeName(kind, quick);
  const spec = SPECS[name]!;
  const dir = join(dataDir, name);
  const manifestPath = join(dir, 'manifest.json');
  let manifest: Manifest | undefined;
  if (existsSync(manifestPath)) {
    const m = JSON.parse(readFileSync(manifestPath, 'utf8')) as Manifest & { version?: number };
    if (m.version === FORMAT_VERSION && JSON.stringify(m.spec) === JSON.stringify(spec)) manifest = m;
  }
  if (!manifest) {
    removeTree(dir, { mounts: 'force' });
    mkdirSync(dir, { recursive: true });
    const fs = statfsSync(dir);
    const free = fs.bavail * fs.bsize;
    if (free < needBytes(spec) + GiB) {
      throw new Error(`not enough disk for shape ${name}: it needs ~${(needBytes(spec) / GiB).toFixed(1)} GiB ` +
        `(+1 GiB spare) in ${dataDir}, which has ${(free / GiB).toFixed(1)} GiB free; use --data DIR elsewhere`);
    }
    log(`generating shape ${name} in ${dir}`);
    manifest = spec.kind === 'big' ? await makeBig(dir, spec, name) : await makeSmall(dir, spec, name, log);
    writeFileSync(manifestPath, JSON.stringify({ version: FORMAT_VERSION, ...manifest }, null, 1));
    await runOk('sync', []);
  }
  return { kind, name, tree: join(dir, 'tree'), tar: join(dir, `${name}.tar`), manifest };
}

/** Free bytes a run needs beyond the data: the upper of a 2 GiB copy-up, an untarred tree, slack. */
export const RUN_SPACE_BYTES = 3 * GiB;

/** Deterministic incompressible bytes: AES-128-CTR over zeros, keyed by the seed. */
function byteStream(seed: string): (n: number) => Buffer {
  const key = createHash('sha256').update(seed).digest();
  const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  return (n) => cipher.update(Buffer.alloc(n));
}

/** mulberry32: a small seeded PRNG for sizes. */
function randoms(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function makeSmall(dir: string, spec: SmallSpec, name: string, log: (s: string) => void): Promise<Manifest> {
  const tree = join(dir, 'tree');
  const rand = randoms(0x7a25);
  const bytes = byteStream(`tarstack-bench small ${spec.files}`);
  const dirs: string[] = [];
  for (let t = 0; t < spec.topDirs; t++) {
    dirs.push(`t${t}`);
    for (let s = 0; s < spec.subDirsPerTop; s++) dirs.push(`t${t}/s${String(s).padStart(4, '0')}`);
  }
  const perDir = spec.files / dirs.length;
  const sampleEvery = Math.floor(spec.files / 24);
  let totalBytes = 0;
  let index = 0;
  const picked: string[] = [];
  for (const d of dirs) {
    mkdirSync(join(tree, d), { recursive: true });
    for (let j = 0; j < perDir; j++, index++) {
      const size = Math.floor((spec.maxSize + 1) * rand() ** spec.sizeExponent);
      const rel = `${d}/f${String(j).padStart(3, '0')}`;
      writeFileSync(join(tree, rel), bytes(size));
      totalBytes += size;
      if (index % sampleEvery === 0) picked.push(rel);
      if (index % (spec.files / 10) === 0) log(`  ${name}: ${index} / ${spec.files} files`);
    }
  }
  const tops = readdirSync(tree).sort();
  const tar = join(dir, `${name}.tar`);
  log(`  ${name}: tar`);
  await gnuTar(tree, tops, tar);
  const filesPerTop = spec.files / spec.topDirs;
  const manifest: Manifest = {
    spec, files: spec.files, dirs: dirs.length, totalBytes, tarBytes: statSync(tar).size,
    samples: picked.map((p) => sample(tree, p, 0, Infinity)),
    rmSubtree: { path: 't0', files: filesPerTop },
  };
  if (spec.untarTops > 0) {
    const untarTar = join(dir, 'untar-source.tar');
    await gnuTar(tree, tops.slice(0, spec.untarTops), untarTar);
    manifest.untar = { tar: untarTar, files: filesPerTop * spec.untarTops };
  }
  return manifest;
}

async function makeBig(dir: string, spec: BigSpec, name: string): Promise<Manifest> {
  const tree = join(dir, 'tree');
  mkdirSync(tree, { recursive: true });
  const bytes = byteStream(`tarstack-bench big ${spec.bigBytes}`);
  const files: [string, number][] = [['big.bin', spec.bigBytes]];
  for (let i = 1; i <= spec.mediumCount; i++) files.push([`medium${i}.bin`, spec.mediumBytes]);
  const samples: SampleRange[] = [];
  for (const [rel, size] of files) {
    const fd = openSync(join(tree, rel), 'w');
    for (let done = 0; done < size; done += 8 * MiB) writeSync(fd, bytes(Math.min(8 * MiB, size - done)));
    closeSync(fd);
    for (const off of [0, Math.floor(size / 2), size - MiB]) samples.push(sample(tree, rel, off, MiB));
  }
  const tar = join(dir, `${name}.tar`);
  await gnuTar(tree, files.map(([f]) => f).sort(), tar);
  return {
    spec, files: files.length, dirs: 0, totalBytes: files.reduce((a, [, s]) => a + s, 0),
    tarBytes: statSync(tar).size, samples, bigFile: { path: 'big.bin', bytes: spec.bigBytes },
  };
}

/** GNU tar of the named entries of tree, members without a leading "./", written atomically. */
async function gnuTar(tree: string, entries: string[], out: string): Promise<void> {
  await runOk('tar', ['--format=gnu', '--sort=name', '--numeric-owner', '-C', tree, '-cf', `${out}.tmp`, ...entries]);
  renameSync(`${out}.tmp`, out);
}

function sample(tree: string, rel: string, offset: number, length: number): SampleRange {
  const fd = openSync(join(tree, rel), 'r');
  try {
    const len = Math.min(length, statSync(join(tree, rel)).size - offset);
    const buf = Buffer.alloc(len);
    let got = 0;
    while (got < len) got += readSync(fd, buf, got, len - got, offset + got);
    return { path: rel, offset, length: len, sha256: createHash('sha256').update(buf).digest('hex') };
  } finally {
    closeSync(fd);
  }
}
