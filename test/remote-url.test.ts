// `image add URL` against Debian's nginx-light started here on 127.0.0.1: plain, gzip, zstd and xz
// tars mount equal to GNU tar's extraction; the add fetches the tar once, and a mount fetches only
// what is read (bytes counted from nginx's access log); a tar changed on the server after the add
// is EIO for what changed, with the rest still served; a blob's chunks are shared by two images.
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { sameBytes, seededBytes } from './helpers/bytes.js';
import { compress, flipByte, type Shape } from './helpers/compressed.js';
import { cliAvailable, tarstackCli, TarstackSession, withMount } from './helpers/mount.js';
import { CLI_MAIN, makeTestRoot, removeTestRoot } from './helpers/mounted.js';
import { gnuReference } from './helpers/reference.js';
import { serverSkipReason, startNginx, type Nginx } from './helpers/remote-servers.js';
import { compareTrees, snapshotTree } from './helpers/tree.js';

const skipReason = !cliAvailable() ? `the tarstack CLI is not built (${CLI_MAIN} is missing)`
  : process.getuid?.() !== 0 ? 'needs root (owners, xattrs)'
  : !fs.existsSync('/dev/fuse') ? 'needs /dev/fuse' : serverSkipReason();
const e2e = skipReason ? test.skip : test.serial;
if (skipReason) test.skip(`remote url suite skipped: ${skipReason}`, () => undefined);

const root = skipReason ? '' : makeTestRoot('remote-url');
const www = path.join(root, 'www');
const BIG = 'data/big.bin';
let nginx: Nginx;

if (!skipReason) {
  // A 9 MiB member between small files, links, an xattr: a read of a small file must not fetch it.
  const src = path.join(root, 'src');
  fs.mkdirSync(path.join(src, 'data'), { recursive: true });
  fs.mkdirSync(path.join(src, 'many'));
  fs.writeFileSync(path.join(src, BIG), seededBytes(9 << 20, 1));
  for (let i = 0; i < 200; i++) fs.writeFileSync(path.join(src, 'many', `f${i}`), seededBytes(i * 37, 1000 + i).toString('base64'));
  fs.symlinkSync('../data/big.bin', path.join(src, 'many', 'link'));
  fs.linkSync(path.join(src, 'many', 'f7'), path.join(src, 'many', 'hard'));
  execFileSync('setfattr', ['-n', 'user.kind', '-v', 'remote', path.join(src, 'many', 'f1')]);
  fs.mkdirSync(www);
  execFileSync('tar', ['-cf', path.join(www, 'tree.tar'), '--xattrs', '--format=posix', '-C', src, 'many', 'data']);
  for (const shape of ['gzip', 'zstd-multi', 'xz-blocks'] as Shape[]) compress(path.join(www, 'tree.tar'), www, shape, 1 << 20);
}

test.before(async () => {
  if (!skipReason) nginx = await startNginx(path.join(root, 'nginx'), www);
});
test.after.always(async () => {
  await nginx?.stop();
  removeTestRoot(root);
});

let seq = 0;
const session = (t: ExecutionContext, label: string) => new TarstackSession(path.join(root, `${label}-${++seq}`), t);
const FILES: Array<[string, string]> = [['plain', 'tree.tar'], ['gzip', 'gzip.tar.gz'], ['zstd', 'zstd-multi.tar.zst'], ['xz', 'xz-blocks.tar.xz']];

for (const [label, file] of FILES) {
  e2e(`${label}: image add URL fetches the tar once; a mount equals GNU tar's extraction and reads only what it uses`, async (t) => {
    const s = session(t, label);
    const size = fs.statSync(path.join(www, file)).size;
    let before = nginx.bytesSent();
    const add = await s.cli(['image', 'add', `${nginx.url}/${file}`, '--name', 'img']);
    t.is(add.code, 0, add.stderr);
    const addBytes = nginx.bytesSent() - before;
    t.true(addBytes <= size + 1, `the add fetched ${addBytes} bytes of a ${size}-byte tar`);
    const ref = gnuReference(path.join(www, file), path.join(s.root, 'ref'));
    before = nginx.bytesSent();
    await withMount(s, 'img', (dir) => {
      // A small file: far less than the 9 MiB member is fetched.
      t.deepEqual(fs.readFileSync(path.join(dir, 'many/f150')), fs.readFileSync(path.join(s.root, 'ref', 'many/f150')));
      const small = nginx.bytesSent() - before;
      t.true(small < size / 2, `reading one small file fetched ${small} bytes of ${size}`);
      t.deepEqual(compareTrees(ref.snap, snapshotTree(dir), { ignoreMtimeFor: ref.implicit }), []);
    });
    // Every byte read crossed the wire once: the whole tree read is at most the tar and the codec's overlap.
    const all = nginx.bytesSent() - before;
    t.true(all <= size * 1.1 + (1 << 20), `the whole tree read fetched ${all} bytes of ${size}`);
    const info = JSON.parse((await s.cli(['image', 'info', 'img', '--json'])).stdout);
    t.is(info.remote.kind, 'url');
    t.true(info.remote.cachedBytes > 0 && info.remote.cachedBytes <= size);
    // Mounted again, it is served from the cache: nothing more is fetched.
    before = nginx.bytesSent();
    await withMount(s, 'img', (dir) => t.deepEqual(compareTrees(ref.snap, snapshotTree(dir), { ignoreMtimeFor: ref.implicit }), []), 'again');
    t.is(nginx.bytesSent() - before, 0);
  });
}

e2e('a tar changed on the server after the add: EIO for the changed chunk, never its bytes; the rest still served', async (t) => {
  const s = session(t, 'changed');
  const file = path.join(www, 'changed.tar');
  fs.copyFileSync(path.join(www, 'tree.tar'), file);
  await s.addImage(`${nginx.url}/changed.tar`, 'img');
  const ref = gnuReference(file, path.join(s.root, 'ref'));
  // A byte in the middle of the big member changes on the server's disk (same size, same name).
  const body = fs.readFileSync(path.join(s.root, 'ref', BIG));
  const dataOff = fs.readFileSync(file).indexOf(body.subarray(0, 64));
  t.true(dataOff > 0);
  flipByte(file, dataOff + (5 << 20) + 100);
  await withMount(s, 'img', (dir) => {
    t.deepEqual(fs.readFileSync(path.join(dir, 'many/f3')), fs.readFileSync(path.join(s.root, 'ref', 'many/f3')));
    const fd = fs.openSync(path.join(dir, BIG), 'r');
    try {
      const head = Buffer.alloc(4096);
      fs.readSync(fd, head, 0, head.length, 0);
      t.deepEqual(head, fs.readFileSync(path.join(s.root, 'ref', BIG)).subarray(0, 4096), 'bytes before the change are served');
      const err = t.throws(() => fs.readSync(fd, Buffer.alloc(4096), 0, 4096, 5 << 20));
      t.is((err as NodeJS.ErrnoException).code, 'EIO');
    } finally {
      fs.closeSync(fd);
    }
  });
  const log = fs.readFileSync(path.join(s.home, 'run', 'logs', 'server.log'), 'utf8');
  t.regex(log, /blob sha256:[0-9a-f]{64}: the bytes at offset \d+ do not match the index/);
  t.truthy(ref);
});

e2e('image add URL: a server without the tar, or not a tar, is one line', async (t) => {
  const s = session(t, 'errors');
  const missing = await s.cli(['image', 'add', `${nginx.url}/nope.tar`]);
  t.not(missing.code, 0);
  t.regex(missing.stderr, /^tarstack: .*HTTP 404/);
  t.is(missing.stderr.trim().split('\n').length, 1, missing.stderr);
  fs.writeFileSync(path.join(www, 'notar.tar'), 'not a tar at all\n'.repeat(100));
  const notar = await s.cli(['image', 'add', `${nginx.url}/notar.tar`]);
  t.not(notar.code, 0);
  t.is(notar.stderr.trim().split('\n').length, 1, notar.stderr);
  t.deepEqual(fs.readdirSync(path.join(s.home, 'images')).filter((n) => !n.startsWith('.')), []);
});

e2e('image add URL: a server that ignores Range (and does not say it takes ranges) is one line, and nothing is added', async (t) => {
  const s = session(t, 'norange');
  const body = fs.readFileSync(path.join(www, 'tree.tar'));
  const server = http.createServer((_req, res) => res.writeHead(200, { 'content-length': body.length }).end(body));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const r = await s.cli(['image', 'add', `http://127.0.0.1:${(server.address() as AddressInfo).port}/tree.tar`, '--name', 'img']);
    t.not(r.code, 0);
    t.regex(r.stderr, /^tarstack: .*ignores Range requests/);
    t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
    t.deepEqual(fs.readdirSync(path.join(s.home, 'images')).filter((n) => !n.startsWith('.')), []);
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
});

e2e('a writable instance of a remote image: copy-up of a file never read fetches it (synchronously) and keeps its bytes', async (t) => {
  const s = session(t, 'instance');
  await s.addImage(`${nginx.url}/tree.tar`, 'img');
  const created = await s.cli(['instance', 'create', 'inst', 'img']);
  t.is(created.code, 0, created.stderr);
  const dir = path.join(s.root, 'mnt');
  fs.mkdirSync(dir);
  const mounted = await s.cli(['mount', 'inst', dir]);
  t.is(mounted.code, 0, mounted.stderr);
  try {
    const want = fs.readFileSync(path.join(root, 'src', 'many/f120'));
    fs.appendFileSync(path.join(dir, 'many/f120'), 'appended\n');
    t.deepEqual(fs.readFileSync(path.join(dir, 'many/f120')), Buffer.concat([want, Buffer.from('appended\n')]));
    fs.chmodSync(path.join(dir, BIG), 0o600);
    sameBytes(t, fs.readFileSync(path.join(dir, BIG)), fs.readFileSync(path.join(root, 'src', BIG)), BIG);
  } finally {
    await s.cli(['umount', dir]);
  }
  const changes = await s.cli(['diff', 'inst']);
  t.regex(changes.stdout, /\[M\] f120/);
});

/** tree.tar added and mounted in a store whose chunk cache is bounded at `cacheSize`, for `use`. */
async function withBoundedMount(t: ExecutionContext, label: string, cacheSize: string, use: (dir: string, s: TarstackSession, env: NodeJS.ProcessEnv) => Promise<void>): Promise<void> {
  const s = session(t, label);
  const env = { TARSTACK_HOME: s.home, TARSTACK_CACHE_SIZE: cacheSize };
  t.is((await tarstackCli(['image', 'add', `${nginx.url}/tree.tar`, '--name', 'img'], { env })).code, 0);
  const dir = path.join(s.root, 'mnt');
  fs.mkdirSync(dir);
  t.is((await tarstackCli(['image', 'mount', 'img', dir], { env })).code, 0);
  try {
    await use(dir, s, env);
  } finally {
    await tarstackCli(['umount', dir], { env });
  }
}

e2e('the chunk cache stays within TARSTACK_CACHE_SIZE: the least recently used chunks are punched out, and re-fetched when read again', (t) => withBoundedMount(t, 'bounded', '2M', async (dir, s, env) => {
  sameBytes(t, fs.readFileSync(path.join(dir, BIG)), fs.readFileSync(path.join(root, 'src', BIG)), BIG); // 9 MiB through a 2 MiB cache
  const info = JSON.parse((await tarstackCli(['image', 'info', 'img', '--json'], { env })).stdout);
  t.true(info.remote.cachedBytes <= 2 << 20, `${info.remote.cachedBytes} bytes cached`);
  const blob = path.join(s.home, 'cache', 'blobs', 'sha256', info.remote.digest.slice(7));
  t.true(fs.statSync(blob).blocks * 512 <= (2 << 20) + (1 << 20), `the cache file holds ${fs.statSync(blob).blocks * 512} bytes`);
  t.deepEqual(fs.readFileSync(path.join(dir, 'many/f199')), fs.readFileSync(path.join(root, 'src', 'many/f199')));
}));

e2e('reads through a cache of two chunks, evicting all the time, get the right bytes: a read\'s chunks stay pinned until the kernel has them', async (t) => {
  // Each 1 MiB read pins 64 chunks of a cache bounded at 2: let go before they are read, they are
  // punched out at once and read as zeros.
  await withBoundedMount(t, 'tiny', '32K', async (dir) => {
    const want = fs.readFileSync(path.join(root, 'src', BIG));
    const half = want.length / 2;
    const readFrom = async (from: number, to: number): Promise<Buffer> => {
      const f = await fs.promises.open(path.join(dir, BIG));
      try {
        const out = Buffer.alloc(to - from);
        for (let at = 0; at < out.length; ) at += (await f.read(out, at, Math.min(1 << 20, out.length - at), from + at)).bytesRead || out.length;
        return out;
      } finally {
        await f.close();
      }
    };
    const [a, b] = await Promise.all([readFrom(0, half), readFrom(half, want.length)]); // two readers at once
    sameBytes(t, Buffer.concat([a, b]), want, BIG);
  });
});

e2e('image export of a remote image through a 2 MiB cache lets go of every chunk it read: the cache stays within its bound', (t) => withBoundedMount(t, 'export', '2M', async (_dir, s, env) => {
  const out = path.join(s.root, 'export.tar');
  t.is((await tarstackCli(['image', 'export', 'img', '-o', out], { env })).code, 0);
  const info = JSON.parse((await tarstackCli(['image', 'info', 'img', '--json'], { env })).stdout);
  t.true(info.remote.cachedBytes <= 2 << 20, `${info.remote.cachedBytes} bytes cached after the export (chunks kept pinned are never evicted)`);
}));
