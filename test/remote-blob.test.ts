// RemoteBlob against Debian's nginx-light started here on 127.0.0.1, without a mount: what its
// synchronous path (copy-up, checks) leaves in the chunk cache while an async read of the same
// chunks is still on the wire.
import test from 'ava';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { seededBytes, sameBytes } from './helpers/bytes.js';
import { makeTestRoot, removeTestRoot } from './helpers/mounted.js';
import { serverSkipReason, startNginx, type Nginx } from './helpers/remote-servers.js';
import { ChunkCache } from '../src/remote/chunk-cache.js';
import { CHUNK_SIZE, chunkDigestsOf } from '../src/remote/chunk-digests.js';
import { RemoteBlob } from '../src/remote/remote-blob.js';
import { FsError } from '../src/util/errors.js';

const skipReason = serverSkipReason();
const it = skipReason ? test.skip : test.serial;
if (skipReason) test.skip(`remote blob suite skipped: ${skipReason}`, () => undefined);

const root = skipReason ? '' : makeTestRoot('remote-blob');
const www = path.join(root, 'www');
const SIZE = 40 * CHUNK_SIZE + 123;
const data = seededBytes(SIZE, 7);
let nginx: Nginx;

test.before(async () => {
  if (skipReason) return;
  fs.mkdirSync(www);
  fs.writeFileSync(path.join(www, 'blob'), data);
  nginx = await startNginx(path.join(root, 'nginx'), www);
});
test.after.always(async () => {
  await nginx?.stop();
  if (root) removeTestRoot(root);
});

function readAll(fd: number, size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let got = 0; got < size; ) {
    const n = fs.readSync(fd, out, got, size - got, got);
    if (n === 0) break;
    got += n;
  }
  return out;
}

it('a synchronous read of chunks an async read is still fetching gets their bytes, not holes', async (t) => {
  const cache = new ChunkCache(path.join(root, 'cache'), 1 << 30);
  const digests = chunkDigestsOf(path.join(www, 'blob'), SIZE, CHUNK_SIZE);
  const blob = new RemoteBlob(cache, { digest: `sha256:${'ab'.repeat(32)}`, size: SIZE, chunkSize: CHUNK_SIZE }, digests, { url: `${nginx.url}/blob`, tlsVerify: false, headers: () => ({}) });
  try {
    // The async read's range request is out, its chunks in flight; its answer can only be handled
    // once this thread returns to the event loop, which ensureSync does not.
    const pending = blob.ensure(0, SIZE);
    const unpin = blob.ensureSync(0, SIZE);
    try {
      sameBytes(t, readAll(blob.fd, SIZE), data, 'the cache file once ensureSync returns');
    } finally {
      unpin();
    }
    (await pending)();
    sameBytes(t, readAll(blob.fd, SIZE), data, 'the cache file after the async read wrote the same bytes');
  } finally {
    blob.close();
  }
});

it('chunks a synchronous read fetched while an async fetch of them was on the wire, then evicted, are fetched again, not served as holes', async (t) => {
  // A cache of two chunks: what ensureSync stores is punched out as soon as it unpins. The async
  // fetch of the same chunks reports them stored afterwards; they must not count as present unless
  // their bytes are there.
  const cache = new ChunkCache(path.join(root, 'cache-small'), 2 * CHUNK_SIZE);
  const digests = chunkDigestsOf(path.join(www, 'blob'), SIZE, CHUNK_SIZE);
  const blob = new RemoteBlob(cache, { digest: `sha256:${'ef'.repeat(32)}`, size: SIZE, chunkSize: CHUNK_SIZE }, digests, { url: `${nginx.url}/blob`, tlsVerify: false, headers: () => ({}) });
  try {
    const pending = blob.ensure(0, SIZE);
    blob.ensureSync(0, SIZE)();
    (await pending)();
    sameBytes(t, await blob.read(0, SIZE), data, 'read after both fetches and the evictions');
  } finally {
    blob.close();
  }
});

it('a synchronous read of chunks one of which does not match: EIO naming its offset; the chunks before it are kept, none after', (t) => {
  const cache = new ChunkCache(path.join(root, 'cache-bad'), 1 << 30);
  const digests = Buffer.from(chunkDigestsOf(path.join(www, 'blob'), SIZE, CHUNK_SIZE));
  digests[7 * 32] ^= 1; // chunk 7's digest: its bytes on the server no longer match
  const blob = new RemoteBlob(cache, { digest: `sha256:${'cd'.repeat(32)}`, size: SIZE, chunkSize: CHUNK_SIZE }, digests, { url: `${nginx.url}/blob`, tlsVerify: false, headers: () => ({}) });
  try {
    const err = t.throws(() => blob.ensureSync(0, SIZE), { instanceOf: FsError });
    t.is(err?.code, 'EIO');
    t.regex(err?.message ?? '', new RegExp(`offset ${7 * CHUNK_SIZE} do not match`));
    t.is(blob.cachedBytes(), 7 * CHUNK_SIZE, 'chunks 0-6 stored, 7 and after not');
    sameBytes(t, readAll(blob.fd, 7 * CHUNK_SIZE), data.subarray(0, 7 * CHUNK_SIZE), 'the kept chunks\' bytes');
  } finally {
    blob.close();
  }
});

it('a range response cut short is resumed from the byte where it stopped, not fetched again from its start', async (t) => {
  // A server that sends the first answer's headers and CUT bytes, then closes the connection; later
  // answers are whole. The retry must ask for what is left (its Range starts after those bytes).
  const CUT = 5 * CHUNK_SIZE + 1000;
  const ranges: string[] = [];
  const server = http.createServer((req, res) => {
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (!m) return void res.writeHead(416).end();
    ranges.push(req.headers.range!);
    const [from, to] = [Number(m[1]), Number(m[2])];
    res.writeHead(206, { 'content-length': to - from + 1, 'content-range': `bytes ${from}-${to}/${SIZE}`, 'accept-ranges': 'bytes' });
    if (ranges.length > 1) return void res.end(data.subarray(from, to + 1));
    res.write(data.subarray(from, from + CUT), () => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const cache = new ChunkCache(path.join(root, 'cache-cut'), 1 << 30);
  const digests = chunkDigestsOf(path.join(www, 'blob'), SIZE, CHUNK_SIZE);
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/blob`;
  const blob = new RemoteBlob(cache, { digest: `sha256:${'cd'.repeat(32)}`, size: SIZE, chunkSize: CHUNK_SIZE }, digests, { url, tlsVerify: false, headers: () => ({}) });
  try {
    (await blob.ensure(0, SIZE))();
    sameBytes(t, readAll(blob.fd, SIZE), data, 'the cache file after the resumed fetch');
    t.is(ranges.length, 2, ranges.join(', '));
    t.is(ranges[0], `bytes=0-${SIZE - 1}`);
    const resumedAt = Number(/^bytes=(\d+)-/.exec(ranges[1]!)![1]);
    t.true(resumedAt > 0 && resumedAt <= CUT, `the retry asked for ${ranges[1]}`);
    t.is(blob.fetched, SIZE);
  } finally {
    blob.close();
    await new Promise((resolve) => server.close(resolve));
  }
});
