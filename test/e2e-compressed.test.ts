// End-to-end: compressed tars through real mounts made by the CLI. Every shape (gzip one member or
// many, pigz, zstd one frame or many, xz one block or many) is compared with GNU tar's extraction
// of the tar it was made from, and random reads inside a large member with the extracted file; a
// stack mixes plain, zstd and gzip layers; damage is one line at `image add` and EIO once mounted.
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { seededBytes } from './helpers/bytes.js';
import { buildLayerStack } from './helpers/fixtures-stream.js';
import { compress, flipByte, SHAPES } from './helpers/compressed.js';
import { cliAvailable, TarstackSession, withMount, type CliResult } from './helpers/mount.js';
import { CLI_MAIN, makeTestRoot, mount, removeTestRoot } from './helpers/mounted.js';
import { extractReference, gnuReference } from './helpers/reference.js';
import { compareTrees, snapshotTree } from './helpers/tree.js';

const skipReason = !cliAvailable() ? `the tarstack CLI is not built (${CLI_MAIN} is missing)`
  : process.getuid?.() !== 0 ? 'needs root (owners, xattrs, overlayfs)'
  : !fs.existsSync('/dev/fuse') ? 'needs /dev/fuse' : undefined;
const e2e = skipReason ? test.skip : test.serial;
if (skipReason) test.skip(`e2e compressed suite skipped: ${skipReason}`, () => undefined);

const root = skipReason ? '' : makeTestRoot('e2e-compressed');
const BIG = 'data/big.bin';
let tarPath = '';
let smallTar = ''; // the small files only: quick to compress in many shapes

if (!skipReason) {
  // A tree of many kinds: a 14 MiB member (several gzip seek points), small files, links, xattrs, a hole.
  const src = path.join(root, 'src');
  fs.mkdirSync(path.join(src, 'data'), { recursive: true });
  fs.mkdirSync(path.join(src, 'many'));
  const text = Buffer.from('all work and no play makes a tar served in place\n'.repeat(100_000));
  fs.writeFileSync(path.join(src, BIG), Buffer.concat([seededBytes(5 << 20, 1), text, seededBytes(4 << 20, 2)]));
  for (let i = 0; i < 300; i++) fs.writeFileSync(path.join(src, 'many', `f${i}`), seededBytes(i * 37, 1000 + i).toString('base64'));
  fs.symlinkSync('../data/big.bin', path.join(src, 'many', 'link'));
  fs.linkSync(path.join(src, 'many', 'f7'), path.join(src, 'many', 'hard'));
  execFileSync('setfattr', ['-n', 'user.kind', '-v', 'compressed', path.join(src, 'many', 'f1')]);
  execFileSync('truncate', ['-s', '5M', path.join(src, 'data', 'sparse')]);
  tarPath = path.join(root, 'tree.tar');
  execFileSync('tar', ['-cSf', tarPath, '--xattrs', '--format=posix', '-C', src, '.']);
  smallTar = path.join(root, 'small.tar');
  execFileSync('tar', ['-cf', smallTar, '-C', src, 'many']);
}

test.after.always(() => removeTestRoot(root));

let seq = 0;
const session = (t: ExecutionContext, label: string) => new TarstackSession(path.join(root, `${label}-${++seq}`), t);
const lines = (s: string) => s.split('\n').filter((l) => l !== '');

function assertOneLineError(t: ExecutionContext, r: CliResult, what: string, re?: RegExp): void {
  t.not(r.code, 0, `${what}: exit code`);
  t.is(lines(r.stderr).length, 1, `${what}: one stderr line, got:\n${r.stderr}`);
  t.regex(r.stderr, /^tarstack: \S/, what);
  if (re) t.regex(r.stderr, re, what);
}

/** Random reads of the mounted big member against the extracted one. */
function randomReads(t: ExecutionContext, mounted: string, reference: string, count: number): void {
  const want = fs.readFileSync(reference);
  const fd = fs.openSync(mounted, 'r');
  try {
    for (let i = 0; i < count; i++) {
      const pos = Math.floor(Math.random() * want.length);
      const len = 1 + Math.floor(Math.random() * (i % 2 ? 4096 : 300_000));
      const got = Buffer.alloc(len);
      const n = fs.readSync(fd, got, 0, len, pos);
      if (!got.subarray(0, n).equals(want.subarray(pos, pos + len))) return t.fail(`read of ${len} at ${pos} differs`);
    }
    t.pass();
  } finally {
    fs.closeSync(fd);
  }
}

// GNU tar's extraction of the uncompressed tar, made once: every shape is that tar through a lossless
// tool, so its tree is the reference for all of them (an extraction per shape cost ~2.5 s each).
let treeRef: ReturnType<typeof gnuReference> | undefined;
const sharedReference = () => (treeRef ??= gnuReference(tarPath, path.join(root, 'ref')));

for (const shape of SHAPES) {
  e2e(`${shape}: the mount equals GNU tar's extraction; random reads inside a 14 MiB member match`, async (t) => {
    const s = session(t, shape);
    const v = compress(tarPath, s.root, shape, 3 << 20);
    const add = await s.addImage(v.path, 'img');
    t.regex(add.stdout, new RegExp(`${v.format} tar`));
    const ref = sharedReference();
    await withMount(s, 'img', (dir) => {
      randomReads(t, path.join(dir, BIG), path.join(root, 'ref', BIG), v.format === 'xz' ? 60 : 300); // xz decodes at ~50 MB/s
      t.deepEqual(compareTrees(ref.snap, snapshotTree(dir), { ignoreMtimeFor: ref.implicit }), []);
    });
  });
}

e2e('a single-frame .tar.zst says it needs --recompress; the seekable copy serves the same tree', async (t) => {
  const s = session(t, 'recompress');
  // > 32 MiB in one frame: more than a random read should have to decode.
  const src = path.join(s.root, 'src');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'a'), seededBytes(20 << 20, 3));
  fs.writeFileSync(path.join(src, 'b'), Buffer.alloc(20 << 20, 'b'));
  const big = path.join(s.root, 'big.tar');
  execFileSync('tar', ['-cf', big, '-C', src, '.']);
  const v = compress(big, s.root, 'zstd');
  const plain = await s.addImage(v.path, 'one-frame');
  t.regex(plain.stdout, /note: one zstd frame .*--recompress/);
  const info = await s.cli(['image', 'info', 'one-frame', '--json']);
  t.false(JSON.parse(info.stdout).compression.randomAccess);
  const r = await s.cli(['image', 'add', v.path, '--name', 'seekable', '--recompress']);
  t.is(r.code, 0, r.stderr);
  const seekable = JSON.parse((await s.cli(['image', 'info', 'seekable', '--json'])).stdout);
  t.true(seekable.compression.randomAccess);
  t.true(seekable.compression.seekPoints > 5);
  t.true(seekable.copied);
  execFileSync('zstd', ['-t', '-q', seekable.tar]); // a valid zstd file for any reader
  const ref = gnuReference(v.path, path.join(s.root, 'ref'));
  await withMount(s, 'seekable', (dir) => t.deepEqual(compareTrees(ref.snap, snapshotTree(dir), { ignoreMtimeFor: ref.implicit }), []));
});

e2e('a stack may mix plain, zstd and gzip layers', async (t) => {
  const s = session(t, 'mixed');
  const [base, mid, top] = await buildLayerStack(s.root);
  const midZst = compress(mid!, s.root, 'zstd-multi', 4096).path;
  const topGz = compress(top!, s.root, 'gzip').path;
  await s.addImage(base!, 'base');
  await s.addImage(midZst, 'mid', 'base');
  await s.addImage(topGz, 'top', 'mid');
  const extracted = [topGz, midZst, base!].map((tar, i) => extractReference(tar, path.join(s.root, `ref${i}`)).dir);
  const merged = await mount(t, path.join(s.root, 'merged'), { kind: 'kernel', lowers: extracted, upper: null, convertOci: true });
  try {
    const ref = snapshotTree(merged.root);
    await withMount(s, 'top', (dir) => {
      t.deepEqual(compareTrees(ref, snapshotTree(dir), { ignoreMtimeFor: [''], compareNlink: false }), []);
    });
  } finally {
    await merged.unmount();
  }
});

e2e('damaged compressed data: one line at image add', async (t) => {
  const s = session(t, 'damaged');
  const cases: Array<[string, 'gzip' | 'zstd-multi' | 'xz-blocks', (p: string) => void, RegExp]> = [
    ['flipped', 'gzip', (p) => flipByte(p, Math.floor(fs.statSync(p).size / 2)), /corrupt gzip data/],
    ['truncated', 'gzip', (p) => fs.truncateSync(p, fs.statSync(p).size - 5000), /truncated gzip data/],
    ['flipped', 'zstd-multi', (p) => flipByte(p, Math.floor(fs.statSync(p).size / 2)), /zstd/],
    ['truncated', 'zstd-multi', (p) => fs.truncateSync(p, Math.floor(fs.statSync(p).size / 2) + 7), /truncated zstd data/],
    ['flipped', 'xz-blocks', (p) => flipByte(p, Math.floor(fs.statSync(p).size / 2)), /corrupt xz data/],
    ['truncated', 'xz-blocks', (p) => fs.truncateSync(p, fs.statSync(p).size - 100), /xz data is truncated or damaged/],
  ];
  for (const [what, shape, damage, re] of cases) {
    const dir = path.join(s.root, `${what}-${shape}`);
    fs.mkdirSync(dir);
    const v = compress(smallTar, dir, shape, 256 << 10); // ~10 frames / members / blocks
    damage(v.path);
    assertOneLineError(t, await s.cli(['image', 'add', v.path, '--name', 'bad']), `${what} ${shape}`, re);
  }
  t.deepEqual(JSON.parse((await s.cli(['image', 'list', '--json'])).stdout), []);
});

e2e('an archive rewritten in place while mounted: EIO, never wrong bytes; then mount and verify refuse it', async (t) => {
  const s = session(t, 'rewritten');
  const v = compress(tarPath, s.root, 'gzip');
  await s.addImage(v.path, 'img');
  t.is((await s.cli(['image', 'verify', 'img'])).code, 0);
  const want = fs.readFileSync(path.join(path.dirname(tarPath), 'src', BIG));
  await withMount(s, 'img', (dir) => {
    const size = fs.statSync(v.path).size;
    for (let k = 1; k < 40; k++) flipByte(v.path, Math.floor((size * k) / 40));
    let eio = 0;
    const fd = fs.openSync(path.join(dir, BIG), 'r');
    try {
      for (let pos = 0; pos < want.length; pos += 1 << 20) {
        const got = Buffer.alloc(65536);
        try {
          const n = fs.readSync(fd, got, 0, got.length, pos);
          t.true(got.subarray(0, n).equals(want.subarray(pos, pos + n)), `bytes at ${pos}`);
        } catch (err) {
          t.is((err as NodeJS.ErrnoException).code, 'EIO');
          eio++;
        }
      }
    } finally {
      fs.closeSync(fd);
    }
    t.true(eio > 0, 'reads of the rewritten data fail');
  });
  fs.mkdirSync(path.join(s.root, 'again'));
  assertOneLineError(t, await s.cli(['image', 'mount', 'img', path.join(s.root, 'again')]), 'remount', /changed since it was indexed/);
  t.not((await s.cli(['image', 'verify', 'img'])).code, 0);
});
