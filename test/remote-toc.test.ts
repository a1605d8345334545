// Layers that carry their own table of contents, pulled from Debian's docker-registry started here on
// 127.0.0.1: zstd:chunked layers made by skopeo (`--dest-compress-format zstd:chunked`) and eStargz
// layers made by the tests' own writer (helpers/estargz.ts: no tool here makes eStargz). Each is
// indexed from its TOC (fetched by range, its digest checked against the manifest's annotation), not
// by a streaming pass: the pull reads a few KiB of each layer, the stack equals GNU tar's layers
// merged by overlayfs, a corrupted chunk is EIO (never its bytes), and a TOC that does not match its
// annotation is not used (the layer is streamed, its digest checked). Bytes are counted from the
// registry's access log; the ratios against a streaming pull of the same files are logged.
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { flipByte } from './helpers/compressed.js';
import { estargz, ociLayout } from './helpers/estargz.js';
import { cliAvailable, withMount } from './helpers/mount.js';
import { CLI_MAIN, makeTestRoot, removeTestRoot } from './helpers/mounted.js';
import { BIG, exportStack, makeStack, referenceTree, RemoteSession, type Stack } from './helpers/remote-stack.js';
import { serverSkipReason, skopeoPush, startRegistry, type Registry } from './helpers/remote-servers.js';
import { compareTrees, snapshotTree } from './helpers/tree.js';
import { execOk } from './helpers/exec.js';

const skipReason = !cliAvailable() ? `the tarstack CLI is not built (${CLI_MAIN} is missing)`
  : process.getuid?.() !== 0 ? 'needs root (owners, xattrs, overlayfs)'
  : !fs.existsSync('/dev/fuse') ? 'needs /dev/fuse' : serverSkipReason();
const e2e = skipReason ? test.skip : test.serial;
if (skipReason) test.skip(`remote TOC suite skipped: ${skipReason}`, () => undefined);

const root = skipReason ? '' : makeTestRoot('remote-toc');
let registry: Registry;
/** The zstd:chunked image's own registry: skopeo would reuse the gzip blob of a layer another push left in the same one. */
let chunkedReg: Registry;
let archive = '';
const ARCH = ({ x64: 'amd64', arm64: 'arm64' } as Record<string, string>)[process.arch] ?? process.arch;
const ESTARGZ_MT = 'application/vnd.oci.image.layer.v1.tar+gzip';

const stack: Stack = skipReason ? { baseTar: '', topTar: '' } : makeStack(root, (src) => {
  fs.writeFileSync(path.join(src, 'data', 'empty'), '');
  fs.linkSync(path.join(src, 'many', 'f7'), path.join(src, 'many', 'hard'));
});
const { baseTar, topTar } = stack;

/** The stack as eStargz layers (the writer's chunks 64 KiB), into `reg` as REPO:v1; its manifest's layers. */
function pushEstargz(reg: Registry, repo: string, annotate: (i: number, digest: string) => string = (_, d) => d): void {
  const layers = [baseTar, topTar].map((tar, i) => {
    const l = estargz(tar);
    return { blob: l.blob, diffId: l.diffId, mediaType: ESTARGZ_MT, annotations: { 'containerd.io/snapshot/stargz/toc.digest': annotate(i, l.tocDigest) } };
  });
  const dir = path.join(root, `layout-${repo.replace(/\W/g, '_')}`);
  ociLayout(dir, 'v1', layers, ARCH);
  execOk(['skopeo', 'copy', '--quiet', '--dest-tls-verify=false', `oci:${dir}:v1`, `docker://${reg.host}/${repo}:v1`]);
}

test.before(async () => {
  if (skipReason) return;
  registry = await startRegistry(path.join(root, 'registry'));
  archive = await exportStack(root, stack);
  skopeoPush(archive, `${registry.host}/test/gzip:v1`);
  // skopeo recompresses only uncompressed layers: the stack as plain tars, made zstd:chunked on the way.
  const plain = path.join(root, 'layout-plain');
  ociLayout(plain, 'v1', [baseTar, topTar].map((tar) => {
    const blob = fs.readFileSync(tar);
    return { blob, diffId: `sha256:${createHash('sha256').update(blob).digest('hex')}`, mediaType: 'application/vnd.oci.image.layer.v1.tar' };
  }), ARCH);
  chunkedReg = await startRegistry(path.join(root, 'registry-chunked'));
  execOk(['skopeo', 'copy', '--quiet', '--dest-tls-verify=false', '--dest-compress-format', 'zstd:chunked', `oci:${plain}:v1`, `docker://${chunkedReg.host}/test/chunked:v1`]);
  pushEstargz(registry, 'test/estargz');
});
test.after.always(async () => {
  await registry?.stop();
  await chunkedReg?.stop();
  removeTestRoot(root);
});

let seq = 0;
const session = (t: ExecutionContext, label: string, env: NodeJS.ProcessEnv = {}) => new RemoteSession(path.join(root, `${label}-${++seq}`), t, env);

/** GNU tar's extraction of the layers, merged by kernel overlayfs. */
const reference = (t: ExecutionContext, dir: string) => referenceTree(t, dir, stack);

const regOf = (repo: string): Registry => (repo === 'test/chunked' ? chunkedReg : registry);

function manifestOf(repo: string): { layers: Array<{ digest: string; size: number; mediaType: string; annotations?: Record<string, string> }> } {
  return JSON.parse(execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${regOf(repo).host}/${repo}:v1`]).toString());
}

/** Pull REPO:v1 into a new store: bytes of layer blobs on the wire (the access log) and the pull's time. */
async function timedPull(t: ExecutionContext, label: string, repo: string): Promise<{ s: RemoteSession; bytes: number; ms: number; out: string }> {
  const s = session(t, label);
  const reg = regOf(repo);
  await reg.settled();
  const before = reg.blobBytes();
  const t0 = process.hrtime.bigint();
  const out = await s.ok(['image', 'pull', `${reg.host}/${repo}:v1`, '--tls-verify=false', '--name', 'img']);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  await reg.settled();
  return { s, bytes: reg.blobBytes() - before, ms, out };
}

const layerTotal = (repo: string) => manifestOf(repo).layers.reduce((a, l) => a + l.size, 0);

for (const [kind, repo, what, word] of [['zstd:chunked', 'test/chunked', 'zstd:chunked manifests', 'zstd-chunked'], ['estargz', 'test/estargz', 'eStargz TOCs', 'estargz']] as const) {
  e2e(`${kind}: indexed from the layer's own TOC, not streamed; the stack equals GNU tar's layers merged by overlayfs; reads fetch what they use`, async (t) => {
    const m = manifestOf(repo);
    t.true(m.layers.every((l) => Object.keys(l.annotations ?? {}).some((k) => /zstd-chunked\.manifest-checksum|stargz\/toc\.digest/.test(k))), JSON.stringify(m.layers));
    const streamed = await timedPull(t, `${word}-streamed`, 'test/gzip');
    const pulled = await timedPull(t, word, repo);
    t.regex(pulled.out, new RegExp(`0 of 2 layer indexes fetched as pushed, 2 from ${what}`));
    const total = layerTotal(repo);
    t.true(pulled.bytes < total / 10, `the pull fetched ${pulled.bytes} of ${total} bytes`);
    const info = JSON.parse(await pulled.s.ok(['image', 'info', 'img-layer1', '--json']));
    t.is(info.remote.index, kind);
    const human = await pulled.s.ok(['image', 'info', 'img-layer1']);
    t.regex(human, kind === 'estargz' ? /index +the layer's eStargz TOC/ : /index +the layer's zstd:chunked manifest/);
    t.regex(await streamed.s.ok(['image', 'info', 'img-layer1']), /index +made by a streaming pass/);
    const ref = await reference(t, pulled.s.root);
    const reg = regOf(repo);
    const beforeReads = reg.blobBytes();
    await withMount(pulled.s, 'img', (dir) => {
      t.deepEqual(fs.readFileSync(path.join(dir, 'many/f150')), fs.readFileSync(path.join(root, 'src', 'many/f150')));
      t.deepEqual(fs.readFileSync(path.join(dir, 'many/hard')), fs.readFileSync(path.join(root, 'src', 'many/f7')));
    });
    await reg.settled();
    const smallRead = reg.blobBytes() - beforeReads;
    t.true(smallRead < total / 10, `two small files fetched ${smallRead} bytes of ${total}`);
    await withMount(pulled.s, 'img', (dir) => t.deepEqual(compareTrees(ref, snapshotTree(dir), { ignoreMtimeFor: [''], compareNlink: false }), []), 'whole');
    t.log(`${kind}: pull fetched ${pulled.bytes} B of ${total} B of layers (${((100 * pulled.bytes) / total).toFixed(2)} %) in ${pulled.ms.toFixed(0)} ms; the streaming pull of the same files as gzip fetched ${streamed.bytes} B in ${streamed.ms.toFixed(0)} ms: wire ${(pulled.bytes / streamed.bytes).toFixed(4)}x, time ${(pulled.ms / streamed.ms).toFixed(2)}x; two small files then fetched ${smallRead} B`);
  });
}

e2e('zstd:chunked: export --layers of the pulled stack (the blobs fetched whole, checked, decoded) imports elsewhere as the same tree', async (t) => {
  const s = session(t, 'chunked-export');
  await s.ok(['image', 'pull', `${chunkedReg.host}/test/chunked:v1`, '--tls-verify=false', '--name', 'img']);
  const exported = path.join(s.root, 'pulled.oci.tar');
  await s.ok(['image', 'export', 'img', '--layers', '-o', exported]);
  const other = session(t, 'chunked-reimport');
  await other.ok(['image', 'import', exported, '--name', 'again']);
  const ref = await reference(t, other.root);
  await withMount(other, 'again', (dir) => t.deepEqual(compareTrees(ref, snapshotTree(dir), { ignoreMtimeFor: [''], compareNlink: false }), []));
});

e2e("eStargz: a chunk corrupted on the registry's disk is EIO, never its bytes, one log line naming the blob and its offset; other files still read", async (t) => {
  const reg = await startRegistry(path.join(root, `corrupt-${++seq}`));
  t.teardown(() => reg.stop());
  pushEstargz(reg, 'test/img');
  const s = session(t, 'estargz-corrupt');
  await s.ok(['image', 'pull', `${reg.host}/test/img:v1`, '--tls-verify=false', '--name', 'img']);
  const info = JSON.parse(await s.ok(['image', 'info', 'img-layer1', '--json']));
  t.is(info.remote.index, 'estargz');
  // big.bin is the last file of the base layer: a byte 200 KiB before the TOC is inside its chunks.
  const blob = fs.readFileSync(reg.blobFile(info.remote.digest));
  const tocAt = parseInt(/([0-9a-f]{16})STARGZ/.exec(blob.subarray(blob.length - 51).toString('latin1'))![1], 16);
  flipByte(reg.blobFile(info.remote.digest), tocAt - 200_000);
  await withMount(s, 'img', (dir) => {
    t.deepEqual(fs.readFileSync(path.join(dir, 'many/f3')), fs.readFileSync(path.join(root, 'src', 'many/f3')));
    const err = t.throws(() => fs.readFileSync(path.join(dir, BIG)));
    t.is((err as NodeJS.ErrnoException).code, 'EIO');
    t.throws(() => fs.readFileSync(path.join(dir, BIG)), undefined, 'again: the bad bytes are not served from the cache either');
  });
  const log = fs.readFileSync(path.join(s.home, 'run', 'logs', 'server.log'), 'utf8');
  const lines = log.split('\n').filter((l) => l.includes(': TOC chunk '));
  t.is(lines.length, 1, log);
  t.regex(lines[0], new RegExp(`blobs/${info.remote.digest}: TOC chunk \\d+ at blob offset \\d+: (its decoded bytes do not match the TOC's digest|it does not decode \\(.*\\)); not served$`));
  t.log(lines[0]);
});

e2e("a TOC whose digest is not the manifest's annotation is not used: one line says so and the layer is streamed (its digest checked)", async (t) => {
  const reg = await startRegistry(path.join(root, `badtoc-${++seq}`));
  t.teardown(() => reg.stop());
  pushEstargz(reg, 'test/img', (i, d) => (i === 0 ? `sha256:${'0'.repeat(64)}` : d));
  const s = session(t, 'estargz-badtoc');
  const r = await s.cli(['image', 'pull', `${reg.host}/test/img:v1`, '--tls-verify=false', '--name', 'img']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /0 of 2 layer indexes fetched as pushed, 1 from eStargz TOCs, the rest made by a streaming pass/);
  t.regex(r.stderr.trim(), /^tarstack: layer 1 \(sha256:[0-9a-f]{64}\): its estargz TOC was not used: the TOC's digest is sha256:[0-9a-f]{64}, not sha256:0{64} as the manifest says; streamed instead$/);
  t.is(JSON.parse(await s.ok(['image', 'info', 'img-layer1', '--json'])).remote.index, 'stream');
  await withMount(s, 'img', (dir) => t.true(fs.readFileSync(path.join(dir, BIG)).equals(fs.readFileSync(path.join(root, 'src', BIG)))));
});

e2e("two stores pulling the same image share nothing but the registry; within a store, one chunk cache serves every image and instance of a blob", async (t) => {
  const a = session(t, 'store-a');
  const b = session(t, 'store-b');
  const ref = `${registry.host}/test/estargz:v1`;
  await a.ok(['image', 'pull', ref, '--tls-verify=false', '--name', 'one']);
  await a.ok(['image', 'pull', ref, '--tls-verify=false', '--name', 'two']);
  await a.ok(['instance', 'create', 'w', 'one']);
  await b.ok(['image', 'pull', ref, '--tls-verify=false', '--name', 'three']);
  const want = fs.readFileSync(path.join(root, 'src', BIG));
  const digest = JSON.parse(await a.ok(['image', 'info', 'one-layer1', '--json'])).remote.digest as string;
  /** Blob bytes the registry sent while `fn` read big.bin. */
  const fetchedBy = async (fn: () => Promise<unknown>): Promise<number> => {
    await registry.settled();
    const before = registry.blobBytes();
    await fn();
    await registry.settled();
    return registry.blobBytes() - before;
  };
  // Buffer.equals: t.deepEqual of 6 MiB buffers takes minutes
  const readBig = (s: RemoteSession, image: string) => () => withMount(s, image, (dir) => t.true(fs.readFileSync(path.join(dir, BIG)).equals(want)), `m-${image}`);
  const first = await fetchedBy(readBig(a, 'one'));
  t.true(first >= want.length * 0.9, `the first read of big.bin fetched ${first} bytes`);
  t.is(await fetchedBy(readBig(a, 'two')), 0, 'another image of the same blob in the store: served from its cache');
  const viaInstance = await fetchedBy(async () => {
    const dir = path.join(a.root, 'inst');
    fs.mkdirSync(dir);
    const r = await a.cli(['instance', 'mount', 'w', dir]);
    t.is(r.code, 0, r.stderr);
    try {
      t.true(fs.readFileSync(path.join(dir, BIG)).equals(want));
    } finally {
      t.is((await a.cli(['umount', dir])).code, 0);
    }
  });
  t.is(viaInstance, 0, 'an instance of the image: served from the same cache');
  const cached = (s: RemoteSession) => {
    const out: string[] = [];
    const walk = (d: string) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(path.join(d, e.name));
        else if (e.name === digest.slice(7)) out.push(path.join(d, e.name));
      }
    };
    walk(s.home);
    return out;
  };
  t.is(cached(a).length, 1, 'one cache file for the blob in store A');
  t.is(cached(b).length, 0, 'store B has read nothing yet');
  const second = await fetchedBy(readBig(b, 'three'));
  t.true(second >= want.length * 0.9, `store B fetched big.bin again (${second} bytes): it shares no cache with store A`);
  t.is(cached(b).length, 1);
  t.log(`big.bin (${want.length} B): store A's first read fetched ${first} B, its second image and its instance 0 B; store B fetched ${second} B`);
});
