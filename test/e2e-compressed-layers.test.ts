// Every path that reads a layer's bytes, over a compressed base image (.tar.gz, .tar.zst, .tar.xz),
// end to end through the CLI: `image verify`; an instance's copy-up (append, chmod, a write inside);
// `diff`, whose content comparison reads the lower; `commit` (freeze); `image export` of the merged
// tree; `image export --layers`, whose blobs and diff_ids must describe the decoded layer; and
// `image import` of that archive back into the same store, which must recognise the compressed layer
// as the one it already has. Each result is compared with GNU tar's extraction, changed the same way.
import test, { type ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { buildCompressibleTar, sameFiles } from './helpers/compressed-tree.js';
import { compress, type Shape } from './helpers/compressed.js';
import { instanceSkipReason } from './helpers/instances.js';
import { makeTestRoot, removeTestRoot } from './helpers/mounted.js';
import { extractReference } from './helpers/reference.js';
import { StackSession } from './helpers/stacks.js';

const skipReason = await instanceSkipReason();
if (skipReason) test.skip(`compressed layer paths skipped: ${skipReason}`, () => undefined);
const root = skipReason ? '' : makeTestRoot('e2e-compressed-layers');
test.after.always(() => removeTestRoot(root));

/** The changes, made the same way in a mount and in the expected tree; mtimes put back where diff must compare content. */
function change(dir: string): void {
  const p = (rel: string) => path.join(dir, rel);
  fs.appendFileSync(p('d/f5'), 'appended');
  fs.appendFileSync(p('big.bin'), 'appended');
  fs.chmodSync(p('sparse'), 0o600);
  const text = fs.openSync(p('d/sub/text'), 'r+');
  fs.writeSync(text, 'A', 0);
  fs.closeSync(text);
  fs.rmSync(p('d/f7'));
  fs.writeFileSync(p('added'), 'new file\n');
  for (const [rel, flip] of [['d/f9', false], ['d/f11', true]] as const) {
    // Same size, same mtime: only the bytes can tell whether it changed.
    const st = fs.statSync(p(rel), { bigint: true });
    const fd = fs.openSync(p(rel), 'r+');
    const first = Buffer.alloc(1);
    fs.readSync(fd, first, 0, 1, 0);
    if (flip) first[0] ^= 0x5a;
    fs.writeSync(fd, first, 0, 1, 0);
    fs.closeSync(fd);
    execFileSync('touch', ['-m', '-d', `@${st.mtimeNs / 1_000_000_000n}.${String(st.mtimeNs % 1_000_000_000n).padStart(9, '0')}`, p(rel)]);
  }
}

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Each layer blob of an OCI archive: its digest matches, and it decodes (per its media type) to a tar whose sha256 is its diff_id. */
function checkOciArchive(t: ExecutionContext, archive: string, dir: string): void {
  fs.mkdirSync(dir);
  execFileSync('tar', ['-xf', archive, '-C', dir]);
  const blob = (digest: string) => fs.readFileSync(path.join(dir, 'blobs/sha256', digest.slice(7)));
  const index = JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8'));
  const manifest = JSON.parse(blob(index.manifests[0].digest).toString());
  const config = JSON.parse(blob(manifest.config.digest).toString());
  t.is(manifest.layers.length, config.rootfs.diff_ids.length);
  manifest.layers.forEach((l: { mediaType: string; digest: string }, i: number) => {
    const b = blob(l.digest);
    t.is(sha256(b), l.digest, `layer ${i}: digest`);
    t.true(['application/vnd.oci.image.layer.v1.tar', 'application/vnd.oci.image.layer.v1.tar+gzip'].includes(l.mediaType), `layer ${i}: ${l.mediaType}`);
    const tar = l.mediaType.endsWith('+gzip') ? gunzipSync(b) : b;
    t.is(tar.toString('latin1', 257, 262), 'ustar', `layer ${i}: a ${l.mediaType} blob decodes to a tar`);
    t.is(sha256(tar), config.rootfs.diff_ids[i], `layer ${i}: diff_id is the decoded tar's`);
  });
}

const SHAPES: Shape[] = ['gzip', 'zstd-multi', 'xz'];

for (const shape of SHAPES) {
  (skipReason ? test.skip : test.serial)(`${shape} base image: verify, copy-up, diff, commit, export, export --layers and re-import read the decoded bytes`, async (t) => {
    const dir = path.join(root, shape);
    fs.mkdirSync(dir);
    const s = new StackSession(dir, t);
    const lower = compress(buildCompressibleTar(dir), dir, shape, 512 * 1024).path;
    const want = extractReference(lower, path.join(dir, 'want')).dir;
    await s.addImage(lower, 'base');
    const verify = await s.cli(['image', 'verify', 'base']);
    t.is(verify.code, 0, verify.stderr);

    await s.create('inst', 'base');
    await s.withInstance('inst', (m) => {
      sameFiles(t, m, want, 'the instance before any change');
      change(m);
    });
    change(want);
    await s.withInstance('inst', (m) => sameFiles(t, m, want, 'the instance after copy-up'));

    const diff = (await s.ok(['diff', 'inst', '--porcelain'])).stdout.split('\n');
    for (const line of ['M d/f5', 'M big.bin', 'M sparse', 'M d/sub/text', 'D d/f7', 'A added', 'M d/f11']) t.true(diff.includes(line), `diff lists ${line}`);
    t.false(diff.some((l) => l.endsWith(' d/f9')), 'a file rewritten with its own bytes (same size and mtime) is unchanged');

    await s.ok(['commit', 'inst', 'top']);
    t.is((await s.cli(['image', 'verify', 'top'])).code, 0);
    await s.withImage('top', (m) => sameFiles(t, m, want, 'the committed image'));

    const flat = path.join(dir, 'flat.tar');
    await s.ok(['image', 'export', 'top', '-o', flat]);
    const flatDir = extractReference(flat, path.join(dir, 'flat')).dir;
    sameFiles(t, flatDir, want, 'the merged export');

    const oci = path.join(dir, 'oci.tar');
    await s.ok(['image', 'export', 'top', '--layers', '-o', oci]);
    checkOciArchive(t, oci, path.join(dir, 'oci'));
    const again = await s.ok(['image', 'import', oci]);
    t.regex(again.stdout, /already here: base, top/, 'the same store recognises its compressed layer in the archive');
    const other = new StackSession(path.join(dir, 'other'), t);
    await other.ok(['image', 'import', oci]);
    await other.withImage('top', (m) => sameFiles(t, m, want, 'the re-imported stack'));
  });
}
