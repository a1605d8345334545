// `image pull` and `image push` against Debian's docker-registry started here on 127.0.0.1, images
// pushed into it with skopeo from `tarstack image export --layers`: a pulled stack (OCI and Docker
// schema 2 manifests, gzip layers, an OCI whiteout) equals GNU tar's layers merged by kernel
// overlayfs; with the index pushed, a second store pulls without reading a layer byte and reads
// only what is used (bytes from the registry's access log); a blob corrupted on the registry's
// disk is EIO, never its bytes; a registry gone mid-read is EIO in bounded time while cached files
// are still served; a registry with htpasswd auth behind TLS refuses in one line, and takes the
// credentials of $REGISTRY_AUTH_FILE.
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { sameBytes } from './helpers/bytes.js';
import { flipByte } from './helpers/compressed.js';
import { cliAvailable, withMount } from './helpers/mount.js';
import { CLI_MAIN, makeTestRoot, removeTestRoot } from './helpers/mounted.js';
import { BIG, exportStack, makeStack, referenceTree, RemoteSession, type Stack } from './helpers/remote-stack.js';
import { serverSkipReason, skopeoPush, startReferrersProxy, startRegistry, tlsAndUsers, type Registry } from './helpers/remote-servers.js';
import { compareTrees, snapshotTree } from './helpers/tree.js';

const skipReason = !cliAvailable() ? `the tarstack CLI is not built (${CLI_MAIN} is missing)`
  : process.getuid?.() !== 0 ? 'needs root (owners, xattrs, overlayfs)'
  : !fs.existsSync('/dev/fuse') ? 'needs /dev/fuse' : serverSkipReason();
const e2e = skipReason ? test.skip : test.serial;
if (skipReason) test.skip(`remote registry suite skipped: ${skipReason}`, () => undefined);

const root = skipReason ? '' : makeTestRoot('remote-registry');
let registry: Registry;
let archive = ''; // the stack base <- top as an OCI layout archive, made by `tarstack image export --layers`

const stack: Stack = skipReason ? { baseTar: '', topTar: '' } : makeStack(root);
const { baseTar, topTar } = stack;

test.before(async () => {
  if (skipReason) return;
  registry = await startRegistry(path.join(root, 'registry'));
  archive = await exportStack(root, stack);
  skopeoPush(archive, `${registry.host}/test/oci:v1`);
  skopeoPush(archive, `${registry.host}/test/docker:v1`, ['--format', 'v2s2']);
});
test.after.always(async () => {
  await registry?.stop();
  removeTestRoot(root);
});

let seq = 0;
const session = (t: ExecutionContext, label: string, env: NodeJS.ProcessEnv = {}) => new RemoteSession(path.join(root, `${label}-${++seq}`), t, env);

/** GNU tar's extraction of the layers, merged by kernel overlayfs; fn gets its snapshot. */
const reference = (t: ExecutionContext, dir: string) => referenceTree(t, dir, stack);

for (const kind of ['oci', 'docker']) {
  e2e(`pull (${kind === 'oci' ? 'OCI' : 'Docker schema 2'} manifest): the stack equals GNU tar's layers merged by overlayfs; each layer streamed once`, async (t) => {
    const s = session(t, kind);
    await registry.settled();
    const before = registry.blobBytes();
    const out = await s.ok(['image', 'pull', `${registry.host}/test/${kind}:v1`, '--tls-verify=false', '--name', 'img']);
    t.regex(out, /pulled image img .*img <- img-layer1/);
    await registry.settled();
    const layerBytes = fs.statSync(`${baseTar}.gz`).size + fs.statSync(topTar).size;
    t.true(registry.blobBytes() - before <= layerBytes + 2, `the pull fetched ${registry.blobBytes() - before} bytes of ${layerBytes}`);
    const ref = await reference(t, s.root);
    await withMount(s, 'img', (dir) => t.deepEqual(compareTrees(ref, snapshotTree(dir), { ignoreMtimeFor: [''], compareNlink: false }), []));
  });
}

e2e('push, then pull on a second store with the index pushed: no layer byte read until used, ls -R and a file read fetch a fraction', async (t) => {
  const maker = session(t, 'pusher');
  await maker.ok(['image', 'add', `${baseTar}.gz`, '--name', 'base']);
  await maker.ok(['image', 'add', topTar, '--name', 'top', '--parent', 'base']);
  const pushed = await maker.ok(['image', 'push', 'top', `${registry.host}/test/pushed:v1`, '--tls-verify=false']);
  t.regex(pushed, /2 of 2 layers uploaded, 2 indexes/);
  // The layers went byte for byte: the registry's blob is the file the store holds.
  const manifest = JSON.parse(execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${registry.host}/test/pushed:v1`]).toString()) as { layers: Array<{ digest: string }> };
  sameBytes(t, fs.readFileSync(registry.blobFile(manifest.layers[0].digest)), fs.readFileSync(`${baseTar}.gz`), 'the pushed blob');

  const s = session(t, 'puller');
  await registry.settled();
  const before = registry.blobBytes();
  const logged = registry.log().length;
  const layerBytes = fs.statSync(`${baseTar}.gz`).size + fs.statSync(topTar).size;
  const out = await s.ok(['image', 'pull', `${registry.host}/test/pushed:v1`, '--tls-verify=false', '--name', 'img']);
  t.regex(out, /2 of 2 layer indexes fetched as pushed/);
  await registry.settled();
  const layerGets = registry.log().slice(logged).filter((e) => manifest.layers.some((l) => e.request.includes(l.digest)));
  t.deepEqual(layerGets, [], 'the pull read no layer blob');
  const ref = await reference(t, s.root);
  const pulled = registry.blobBytes();
  await withMount(s, 'img', (dir) => {
    execFileSync('ls', ['-lR', dir], { stdio: 'ignore' });
    t.deepEqual(fs.readFileSync(path.join(dir, 'many/f150')), fs.readFileSync(path.join(root, 'src', 'many/f150')));
  });
  await registry.settled();
  const used = registry.blobBytes() - pulled;
  t.true(used < layerBytes / 3, `ls -R and one file fetched ${used} bytes of ${layerBytes}`);
  t.true(pulled - before < layerBytes / 20, `the pull fetched ${pulled - before} bytes (the indexes) of ${layerBytes}`);
  const info = JSON.parse(await s.ok(['image', 'info', 'img-layer1', '--json']));
  t.is(info.remote.ref, `${registry.host}/test/pushed:v1`);
  t.is(info.remote.digest, manifest.layers[0].digest);
  t.is(info.remote.index, 'pushed');
  t.true(info.remote.cachedBytes > 0 && info.remote.cachedBytes < layerBytes);
  await withMount(s, 'img', (dir) => t.deepEqual(compareTrees(ref, snapshotTree(dir), { ignoreMtimeFor: [''], compareNlink: false }), []), 'whole');
  // export --layers of the pulled stack (read through the cache), imported elsewhere: the same tree.
  const exported = path.join(s.root, 'pulled.oci.tar');
  await s.ok(['image', 'export', 'img', '--layers', '-o', exported]);
  const other = session(t, 'reimport');
  await other.ok(['image', 'import', exported, '--name', 'again']);
  await withMount(other, 'again', (dir) => t.deepEqual(compareTrees(ref, snapshotTree(dir), { ignoreMtimeFor: [''], compareNlink: false }), []));
});

e2e("a blob corrupted on the registry's disk: EIO for its damaged chunk, never its bytes; one log line names blob and offset", async (t) => {
  const reg = await startRegistry(path.join(root, `corrupt-${++seq}`));
  t.teardown(() => reg.stop());
  skopeoPush(archive, `${reg.host}/test/img:v1`);
  const s = session(t, 'corrupt');
  await s.ok(['image', 'pull', `${reg.host}/test/img:v1`, '--tls-verify=false', '--name', 'img']);
  const info = JSON.parse(await s.ok(['image', 'info', 'img-layer1', '--json']));
  flipByte(reg.blobFile(info.remote.digest), info.remote.size - 300_000); // inside the big member's compressed bytes
  await withMount(s, 'img', (dir) => {
    t.deepEqual(fs.readFileSync(path.join(dir, 'many/f3')), fs.readFileSync(path.join(root, 'src', 'many/f3')));
    const err = t.throws(() => fs.readFileSync(path.join(dir, BIG)));
    t.is((err as NodeJS.ErrnoException).code, 'EIO');
  });
  const log = fs.readFileSync(path.join(s.home, 'run', 'logs', 'server.log'), 'utf8');
  const lines = log.split('\n').filter((l) => l.includes('do not match the index'));
  t.is(lines.length, 1, log);
  t.regex(lines[0], new RegExp(`blob ${info.remote.digest}: the bytes at offset \\d+`));
  const verify = await s.cli(['image', 'verify', 'img']);
  t.is(verify.code, 1, verify.stderr);
  t.regex(verify.stdout, /FAILED .*img-layer1.*do not match the index/);
});

e2e("a pushed index's seek windows stay in the registry until a seek needs one; a window corrupted on the registry's disk is EIO, never wrong bytes", async (t) => {
  const maker = session(t, 'windows-pusher');
  await maker.ok(['image', 'add', `${baseTar}.gz`, '--name', 'base']);
  await maker.ok(['image', 'push', 'base', `${registry.host}/test/windows:v1`, '--tls-verify=false']);
  const s = session(t, 'windows-puller');
  await registry.settled();
  const logged = registry.log().length;
  await s.ok(['image', 'pull', `${registry.host}/test/windows:v1`, '--tls-verify=false', '--name', 'img']);
  const info = JSON.parse(await s.ok(['image', 'info', 'img', '--json']));
  const windows = info.remote.windows as { digest: string; size: number };
  t.truthy(windows, 'the windows were pushed apart');
  await registry.settled();
  t.deepEqual(registry.log().slice(logged).filter((e) => e.request.includes(windows.digest)), [], 'the pull fetched no window');
  flipByte(registry.blobFile(windows.digest), Math.floor(windows.size / 2)); // a window inside big.bin's compressed bytes
  const want = fs.readFileSync(path.join(root, 'src', BIG));
  await withMount(s, 'img', (dir) => {
    t.deepEqual(fs.readFileSync(path.join(dir, 'many/f3')), fs.readFileSync(path.join(root, 'src', 'many/f3')));
    // Reads from the end backwards: each seeks (no decoder stands before it), so each needs its window.
    const fd = fs.openSync(path.join(dir, BIG), 'r');
    const failed: number[] = [];
    try {
      for (let at = want.length - 4096; at >= 0; at -= 128 << 10) {
        const buf = Buffer.alloc(4096);
        try {
          fs.readSync(fd, buf, 0, 4096, at);
        } catch (err) {
          t.is((err as NodeJS.ErrnoException).code, 'EIO');
          failed.push(at);
          continue;
        }
        t.true(buf.equals(want.subarray(at, at + 4096)), `bytes at ${at}`);
      }
    } finally {
      fs.closeSync(fd);
    }
    t.true(failed.length > 0 && failed.length < want.length / (128 << 10) / 2, `EIO at ${failed.join(', ')}`);
  });
  const log = fs.readFileSync(path.join(s.home, 'run', 'logs', 'server.log'), 'utf8');
  t.regex(log, new RegExp(`blob ${windows.digest}: the bytes at offset \\d+ do not match the index`));
});

e2e('a registry gone mid-read: EIO in bounded time; files already read are still served, also after a remount; status says the registry is unreachable', async (t) => {
  const reg = await startRegistry(path.join(root, `killed-${++seq}`));
  t.teardown(() => reg.stop());
  skopeoPush(archive, `${reg.host}/test/img:v1`);
  const s = session(t, 'killed', { TARSTACK_REMOTE_DEADLINE_MS: '1500' });
  await s.ok(['image', 'pull', `${reg.host}/test/img:v1`, '--tls-verify=false', '--name', 'img']);
  const want = fs.readFileSync(path.join(root, 'src', 'many/f10'));
  await withMount(s, 'img', async (dir) => {
    t.deepEqual(fs.readFileSync(path.join(dir, 'many/f10')), want);
    t.notRegex(await s.ok(['status']), /unreachable/);
    await reg.stop();
    t.regex(await s.ok(['status']), new RegExp(`: its layers' registry ${reg.host} is unreachable \\(ECONNREFUSED\\)`));
    const err = t.throws(() => fs.readFileSync(path.join(dir, BIG))); // returns (EIO) once the retries give up
    t.is((err as NodeJS.ErrnoException).code, 'EIO');
    t.deepEqual(fs.readFileSync(path.join(dir, 'many/f10')), want);
  });
  await withMount(s, 'img', (dir) => t.deepEqual(fs.readFileSync(path.join(dir, 'many/f10')), want), 'again');
});

e2e('pull --full: every layer in the chunk cache, so the whole tree is served with the registry gone; a cache too small for it, or a bad --cache-size, is one line', async (t) => {
  const reg = await startRegistry(path.join(root, `full-${++seq}`));
  t.teardown(() => reg.stop());
  skopeoPush(archive, `${reg.host}/test/img:v1`);
  const bad = await session(t, 'full-bad').cli(['--cache-size', 'lots', 'image', 'pull', `${reg.host}/test/img:v1`, '--tls-verify=false']);
  t.is(bad.code, 1);
  t.is(bad.stderr.trim(), 'tarstack: --cache-size lots: give bytes, or a number with K, M or G (e.g. 4G)');
  const small = await session(t, 'full-small').cli(['image', 'pull', `${reg.host}/test/img:v1`, '--tls-verify=false', '--full', '--cache-size', '64K']);
  t.is(small.code, 1);
  t.regex(small.stderr.trim(), /^tarstack: --full needs [\d.]+ MiB of chunk cache and the store's cache holds 0\.1 MiB; raise it with --cache-size/);
  t.is(small.stderr.trim().split('\n').length, 1);
  const s = session(t, 'full');
  const out = await s.ok(['image', 'pull', `${reg.host}/test/img:v1`, '--tls-verify=false', '--name', 'img', '--full']);
  t.regex(out, /every layer fetched in full/);
  const info = JSON.parse(await s.ok(['image', 'info', 'img-layer1', '--json']));
  t.is(info.remote.cachedBytes, info.remote.size);
  const ref = await reference(t, s.root);
  await reg.stop();
  await withMount(s, 'img', (dir) => t.deepEqual(compareTrees(ref, snapshotTree(dir), { ignoreMtimeFor: [''], compareNlink: false }), []));
});

e2e('htpasswd auth behind TLS: refused in one line without credentials; pulled with $REGISTRY_AUTH_FILE', async (t) => {
  const dir = path.join(root, `auth-${++seq}`);
  const tls = tlsAndUsers(path.join(dir, 'tls'), 'tester', 's3cret');
  const reg = await startRegistry(dir, tls);
  t.teardown(() => reg.stop());
  execFileSync('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', '--dest-creds', 'tester:s3cret', `oci-archive:${archive}`, `docker://${reg.host}/test/img:v1`]);
  const s = session(t, 'auth', { REGISTRY_AUTH_FILE: path.join(dir, 'none.json'), HOME: dir });
  const refused = await s.cli(['image', 'pull', `${reg.host}/test/img:v1`, '--tls-verify=false']);
  t.not(refused.code, 0);
  t.is(refused.stderr.trim().split('\n').length, 1, refused.stderr);
  t.regex(refused.stderr, /^tarstack: registry 127\.0\.0\.1:\d+ wants a login and no credentials for it were found/);
  const untrusted = await s.cli(['image', 'pull', `${reg.host}/test/img:v1`]);
  t.is(untrusted.stderr.trim().split('\n').length, 1, untrusted.stderr);
  t.regex(untrusted.stderr, /--tls-verify=false/);
  const authFile = path.join(dir, 'auth.json');
  fs.writeFileSync(authFile, JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from('tester:wrong').toString('base64') } } }));
  const s2 = session(t, 'auth-wrong', { REGISTRY_AUTH_FILE: authFile, HOME: dir });
  const wrong = await s2.cli(['image', 'pull', `${reg.host}/test/img:v1`, '--tls-verify=false']);
  t.is(wrong.stderr.trim().split('\n').length, 1, wrong.stderr);
  t.regex(wrong.stderr, /refused the credentials/);
  fs.writeFileSync(authFile, JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from('tester:s3cret').toString('base64') } } }));
  const s3 = session(t, 'auth-ok', { REGISTRY_AUTH_FILE: authFile, HOME: dir });
  await s3.ok(['image', 'pull', `${reg.host}/test/img:v1`, '--tls-verify=false', '--name', 'img']);
  await withMount(s3, 'img', (m) => t.deepEqual(fs.readFileSync(path.join(m, 'many/f150')), fs.readFileSync(path.join(root, 'src', 'many/f150'))));
});

e2e("--cert-dir: a registry whose certificate a CA made here signed is trusted through that CA, by push, pull and the store's server reading later; without it, one line", async (t) => {
  const dir = path.join(root, `certdir-${++seq}`);
  const tls = tlsAndUsers(path.join(dir, 'tls'), 'tester', 's3cret');
  const reg = await startRegistry(dir, tls);
  t.teardown(() => reg.stop());
  const certs = path.join(dir, 'certs.d');
  fs.mkdirSync(certs);
  fs.copyFileSync(tls.ca, path.join(certs, 'ca.crt'));
  fs.mkdirSync(path.join(dir, 'empty'));
  const authFile = path.join(dir, 'auth.json');
  fs.writeFileSync(authFile, JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from('tester:s3cret').toString('base64') } } }));
  const env = { REGISTRY_AUTH_FILE: authFile, HOME: dir };
  const ref = `${reg.host}/test/img:v1`;
  const maker = session(t, 'certdir-pusher', env);
  await maker.ok(['image', 'add', `${baseTar}.gz`, '--name', 'base']);
  await maker.ok(['image', 'add', topTar, '--name', 'top', '--parent', 'base']);
  const unpushed = await maker.cli(['image', 'push', 'top', ref]);
  t.is(unpushed.code, 1);
  t.regex(unpushed.stderr.trim(), /^tarstack: registry 127\.0\.0\.1:\d+: .*\(use --cert-dir with its CA, or --tls-verify=false/);
  t.regex(await maker.ok(['image', 'push', 'top', ref, '--cert-dir', certs]), /2 of 2 layers uploaded, 2 indexes/);
  const s = session(t, 'certdir', env);
  for (const extra of [[], ['--cert-dir', path.join(dir, 'empty')]]) {
    const refused = await s.cli(['image', 'pull', ref, ...extra]);
    t.is(refused.code, 1);
    t.is(refused.stderr.trim().split('\n').length, 1, refused.stderr);
    t.regex(refused.stderr, /--cert-dir with its CA/);
  }
  const missing = await s.cli(['image', 'pull', ref, '--cert-dir', path.join(dir, 'nope')]);
  t.is(missing.stderr.trim(), `tarstack: --cert-dir ${path.join(dir, 'nope')}: not a directory`);
  t.regex(await s.ok(['image', 'pull', ref, '--cert-dir', certs, '--name', 'img']), /2 of 2 layer indexes fetched as pushed/);
  t.is(JSON.parse(await s.ok(['image', 'info', 'img-layer1', '--json'])).remote.certDir, certs);
  await withMount(s, 'img', (m) => t.true(fs.readFileSync(path.join(m, BIG)).equals(fs.readFileSync(path.join(root, 'src', BIG)))));
});

e2e('the index found through the referrers API where the registry has it, else through the tag-schema fallback: both pulls read no layer byte', async (t) => {
  const reg = await startRegistry(path.join(root, `referrers-${++seq}`));
  t.teardown(() => reg.stop());
  const proxy = await startReferrersProxy(path.join(root, `referrers-proxy-${seq}`), reg);
  t.teardown(() => proxy.stop());
  const maker = session(t, 'referrers-pusher');
  await maker.ok(['image', 'add', `${baseTar}.gz`, '--name', 'base']);
  await maker.ok(['image', 'add', topTar, '--name', 'top', '--parent', 'base']);
  const fallbackTags = () => reg.log().filter((e) => /^PUT \/v2\/test\/\w+\/manifests\/sha256-[0-9a-f]{64} /.test(e.request)).map((e) => e.request.split(' ')[1]);
  // Without the API (the registry as it is): the tag-schema fallback, an index tagged sha256-HEX.
  t.regex(await maker.ok(['image', 'push', 'top', `${reg.host}/test/plain:v1`, '--tls-verify=false']), /2 indexes \(tag-schema fallback\)/);
  await reg.settled();
  t.is(fallbackTags().length, 1);
  // With it (the proxy answers the referrers API): no fallback tag is written.
  t.regex(await maker.ok(['image', 'push', 'top', `${proxy.host}/test/api:v1`, '--tls-verify=false']), /2 indexes \(referrers API\)/);
  t.is(proxy.recorded().length, 2);
  await reg.settled();
  t.is(fallbackTags().length, 1, 'no tag-schema index for the push through the referrers API');
  for (const [host, repo] of [[reg.host, 'plain'], [proxy.host, 'api']]) {
    const s = session(t, `referrers-${repo}`);
    await reg.settled();
    const logged = reg.log().length;
    const served = proxy.served().length;
    t.regex(await s.ok(['image', 'pull', `${host}/test/${repo}:v1`, '--tls-verify=false', '--name', 'img']), /2 of 2 layer indexes fetched as pushed/);
    await reg.settled();
    const requests = reg.log().slice(logged).map((e) => `${e.request.split(' ')[0]} ${e.request.split(' ')[1]} ${e.status}`);
    if (repo === 'api') {
      t.is(proxy.served().length, served + 1, 'the referrers list came from the API');
      t.false(requests.some((r) => /manifests\/sha256-/.test(r)), requests.join('\n'));
    } else t.true(requests.some((r) => /^GET \/v2\/test\/plain\/manifests\/sha256-[0-9a-f]{64} 200$/.test(r)), requests.join('\n'));
    t.false(requests.some((r) => /^GET \S+\/blobs\/\S+ 206/.test(r)), 'no layer byte read by the pull');
    await withMount(s, 'img', (dir) => t.deepEqual(fs.readFileSync(path.join(dir, 'many/f150')), fs.readFileSync(path.join(root, 'src', 'many/f150'))));
  }
});
