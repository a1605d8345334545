// `image export` and `image import` end to end: an exported stack re-imported elsewhere is the same
// stack (names, parents, byte-identical layer tars, the same tree), a merged export is the same
// tree as one layer, `docker save` and gzip OCI archives import in the right order, and a corrupt,
// partial or foreign archive is refused with one line and leaves the store as it was.
import test, { type ExecutionContext } from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { assertOneLineError } from './helpers/instances.js';
import { exec, execOk } from './helpers/exec.js';
import { memberBody, writeDockerSave, writeOciGzip } from './helpers/image-archives.js';
import { instanceSkipReason, StackSession, suiteRoot } from './helpers/stacks.js';
import { compareTrees, snapshotTree, type Snapshot } from './helpers/tree.js';

const skipReason = await instanceSkipReason();
if (skipReason) test.skip(`image transfer suite skipped: ${skipReason}`, () => undefined);
const serial = (title: string, fn: (t: ExecutionContext) => Promise<void>) => skipReason || test.serial(title, fn);
const suite = suiteRoot('image-transfer', test, skipReason);

const sha = (f: string) => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');
let seq = 0;

/** A layer tar made by GNU tar: an OCI whiteout, a new file with a name that is not UTF-8, a binary xattr. */
function topLayer(dir: string): string {
  const src = path.join(dir, 'top-src');
  fs.mkdirSync(path.join(src, 'd1'), { recursive: true });
  fs.writeFileSync(path.join(src, '.wh.f1'), '');
  fs.writeFileSync(Buffer.from(`${src}/d1/caf\xe9`, 'latin1'), 'latin-1 name\n');
  fs.writeFileSync(path.join(src, 'd1/added'), 'top layer\n');
  execOk(['setfattr', '-n', 'user.bin', '-v', '0x00ff10', path.join(src, 'd1/added')]);
  execOk(['touch', '-d', '@1262304014.9', path.join(src, 'd1'), src]);
  const tar = path.join(dir, 'top.tar');
  execOk(['tar', '--format=posix', '--xattrs', '--xattrs-include=*', '--numeric-owner', '-cf', tar, '-C', src, '.']);
  return tar;
}

/** A session with images img <- top. */
async function session(t: ExecutionContext): Promise<{ s: StackSession; top: string }> {
  const s = new StackSession(path.join(suite.root, `s${++seq}`), t);
  await s.addImage(suite.image.tar, 'img');
  const top = topLayer(s.root);
  await s.addImage(top, 'top', 'img');
  return { s, top };
}

type Listed = Array<{ name: string; parent: string | null; tar: string }>;
const shape = (l: Listed) => l.map((i) => [i.name, i.parent]);

serial('export --layers then import: the same named stack, byte-identical layers, the same tree', async (t) => {
  const { s } = await session(t);
  const tree: Snapshot = await s.withImage('top', (m) => snapshotTree(m));
  const oci = path.join(s.root, 'top.oci.tar');
  await s.ok(['image', 'export', 'top', '--layers', '-o', oci]);
  const other = new StackSession(path.join(s.root, 'other'), t);
  await other.ok(['image', 'import', oci]);
  const [a, b] = [await s.json<Listed>(['image', 'list']), await other.json<Listed>(['image', 'list'])];
  t.deepEqual(shape(b), shape(a), 'names and parents');
  for (const x of a) t.is(sha(b.find((y) => y.name === x.name)!.tar), sha(x.tar), `layer ${x.name} is byte-identical`);
  await other.withImage('top', (m) => t.deepEqual(compareTrees(tree, snapshotTree(m)), [], 'the same tree'));
  const again = await other.ok(['image', 'import', oci]);
  t.regex(again.stdout, /already here: img, top/, 'a second import reuses what is there');
  assertOneLineError(t, await other.cli(['image', 'import', oci, '--name', 'img']), 'import under a name taken by other content');
  // The merged tree as one layer.
  const flat = path.join(s.root, 'flat.tar');
  await s.ok(['image', 'export', 'top', '-o', flat]);
  await other.ok(['image', 'import', flat, '--name', 'flat']);
  await other.withImage('flat', (m) => t.deepEqual(compareTrees(tree, snapshotTree(m)), [], 'the merged export imports as the same tree'));
  const piped = await s.cli(['image', 'export', 'top']);
  t.is(piped.code, 0);
  t.true(piped.stdout.length >= 1024, 'export without -o writes the tar to stdout');
});

serial('docker save and gzip OCI archives import as stacks in the right order, digests checked', async (t) => {
  const { s, top } = await session(t);
  const tree = await s.withImage('top', (m) => snapshotTree(m));
  const docker = path.join(s.root, 'docker.tar');
  await writeDockerSave(docker, [suite.image.tar, top], 'myrepo/app:1.0');
  const r = await s.ok(['image', 'import', docker]);
  t.regex(r.stdout, /myrepo_app_1\.0 <- myrepo_app_1\.0-layer1/);
  await s.withImage('myrepo_app_1.0', (m) => t.deepEqual(compareTrees(tree, snapshotTree(m)), [], 'docker save: the same tree'));
  const oci = path.join(s.root, 'gz.oci.tar');
  await writeOciGzip(oci, [suite.image.tar, top], 'gz');
  await s.ok(['image', 'import', oci, '--prefix', 'o-']);
  const listed = await s.json<Listed>(['image', 'list']);
  t.is(listed.find((x) => x.name === 'o-gz')?.parent, 'o-gz-layer1');
  t.is(sha(listed.find((x) => x.name === 'o-gz')!.tar), sha(top), 'a gzip blob is stored as its plain tar');
  await s.withImage('o-gz', (m) => t.deepEqual(compareTrees(tree, snapshotTree(m)), [], 'gzip OCI: the same tree'));
});

serial('archives podman saves (docker-archive and oci-archive) import as the same tree', async (t) => {
  if (exec(['sh', '-c', 'command -v podman']).code !== 0) {
    t.pass('podman is not installed');
    return;
  }
  const { s } = await session(t);
  const tree = await s.withImage('top', (m) => snapshotTree(m));
  const oci = path.join(s.root, 'top.oci.tar');
  await s.ok(['image', 'export', 'top', '--layers', '-o', oci]);
  const store = fs.mkdtempSync('/tmp/tsp-'); // podman wants a short runroot
  const podman = (...args: string[]) => execOk(['podman', '--root', `${store}/root`, '--runroot', `${store}/run`, '--storage-driver', 'vfs', ...args]);
  try {
    podman('load', '-q', '-i', oci);
    podman('save', '-q', '--format', 'docker-archive', '-o', path.join(s.root, 'p-docker.tar'), 'localhost/top:latest');
    podman('save', '-q', '--format', 'oci-archive', '-o', path.join(s.root, 'p-oci.tar'), 'localhost/top:latest');
  } finally {
    exec(['podman', '--root', `${store}/root`, '--runroot', `${store}/run`, '--storage-driver', 'vfs', 'system', 'reset', '-f']);
    fs.rmSync(store, { recursive: true, force: true });
  }
  for (const f of ['p-docker', 'p-oci']) {
    await s.ok(['image', 'import', path.join(s.root, `${f}.tar`), '--prefix', `${f}-`]);
    const top = (await s.json<Listed>(['image', 'list'])).find((x) => x.name.startsWith(`${f}-`) && x.parent?.startsWith(`${f}-`))!;
    await s.withImage(top.name, (m) => t.deepEqual(compareTrees(tree, snapshotTree(m)), [], `${f}: the same tree`));
  }
});

serial('corrupt, partial or foreign archives: one line each, nothing made', async (t) => {
  const { s } = await session(t);
  const oci = path.join(s.root, 'good.oci.tar');
  await s.ok(['image', 'export', 'top', '--layers', '-o', oci]);
  const good = fs.readFileSync(oci);
  const index = JSON.parse(good.subarray(memberBody(oci, 'index.json').offset).subarray(0, memberBody(oci, 'index.json').size).toString()) as { manifests: Array<{ digest: string }> };
  const manifest = memberBody(oci, `blobs/sha256/${index.manifests[0]!.digest.slice(7)}`);
  const layers = (JSON.parse(good.subarray(manifest.offset, manifest.offset + manifest.size).toString()) as { layers: Array<{ digest: string }> }).layers;
  const blob = memberBody(oci, `blobs/sha256/${layers[1]!.digest.slice(7)}`);
  const variants: Array<[string, Buffer]> = [];
  const flipped = Buffer.from(good);
  flipped[blob.offset + 600] ^= 0xff;
  variants.push(['a layer blob that does not match its digest', flipped]);
  variants.push(['an archive cut in the middle', good.subarray(0, blob.offset + 100)]);
  variants.push(['an archive cut at a member boundary', good.subarray(0, blob.offset + Math.ceil(blob.size / 512) * 512)]);
  const badJson = Buffer.from(good);
  const idx = memberBody(oci, 'index.json');
  badJson.fill(0x20, idx.offset, idx.offset + 5);
  variants.push(['index.json that is not JSON', badJson]);
  variants.push(['not a tar at all', Buffer.from('this is not an archive\n'.repeat(100))]);
  variants.push(['an empty file', Buffer.alloc(0)]);
  const docker = path.join(s.root, 'docker.tar');
  await writeDockerSave(docker, [suite.image.tar], 'x');
  const dockerBuf = fs.readFileSync(docker);
  const layerTar = memberBody(docker, `${dockerBuf.subarray(0, 64).toString('latin1')}/layer.tar`);
  const noLayer = Buffer.from(dockerBuf);
  noLayer.write('renamed/', layerTar.offset - 512, 'latin1'); // the layer's member renamed: manifest.json points at nothing
  for (let i = layerTar.offset - 512 + 148; i < layerTar.offset - 512 + 156; i++) noLayer[i] = 0x20;
  let sum = 0;
  for (const x of noLayer.subarray(layerTar.offset - 512, layerTar.offset)) sum += x;
  noLayer.write(sum.toString(8).padStart(6, '0') + '\0 ', layerTar.offset - 512 + 148, 'latin1');
  variants.push(['a docker archive missing its layer', noLayer]);
  const before = await s.json<Listed>(['image', 'list']);
  for (const [what, bytes] of variants) {
    const f = path.join(s.root, 'bad.tar');
    fs.writeFileSync(f, bytes);
    assertOneLineError(t, await s.cli(['image', 'import', f, '--prefix', 'bad-']), what);
  }
  t.deepEqual(await s.json<Listed>(['image', 'list']), before, 'no image made');
  t.deepEqual(fs.readdirSync(path.join(s.home, 'images')).filter((n) => n.startsWith('.')), [], 'no staging left behind');
  assertOneLineError(t, await s.cli(['image', 'import', oci, '--parent', 'img']), '--parent with an image archive');
  assertOneLineError(t, await s.cli(['image', 'import', path.join(s.root, 'nosuch.tar')]), 'a missing file');
  assertOneLineError(t, await s.cli(['image', 'export', 'nosuch', '-o', path.join(s.root, 'x.tar')]), 'export of an unknown image');
});
