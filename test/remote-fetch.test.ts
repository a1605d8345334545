// fetch-thread.ts (native-bindings/src/fetch.c) against small HTTP servers started here: redirects
// (Authorization only to the first host), a 401 renewed once, a chunk that does not match its digest
// (never retried, never written), a 200 for a range not at 0, 5xx retried, a refused connection
// given up at the deadline and named by the host it failed at (after a redirect too), TLS through a
// cert dir (its CA, its client pair) or not verified, and progress told to a read that waits. Serial: one test changes the
// deadline through the environment.
import test from 'ava';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { seededBytes, sameBytes } from './helpers/bytes.js';
import { signedCert, tlsAndUsers } from './helpers/remote-servers.js';
import { CHUNK_SIZE, chunkDigestsOfBuffer } from '../src/remote/chunk-digests.js';
import { ChunkJob, ChunkMismatch, getRange } from '../src/remote/fetch-thread.js';
import { HttpError, type Remote } from '../src/remote/http.js';

const SIZE = 20 * CHUNK_SIZE + 77;
const data = seededBytes(SIZE, 3);
const digests = chunkDigestsOfBuffer(data, CHUNK_SIZE);

interface Asked {
  url: string;
  range?: string;
  authorization?: string;
}

/** A server answering ranges of `body` unless `answer` handles the request (returns true). */
async function serve(answer: (req: http.IncomingMessage, res: http.ServerResponse, n: number) => boolean = () => false, body = data) {
  const asked: Asked[] = [];
  const server = http.createServer((req, res) => {
    asked.push({ url: req.url!, range: req.headers.range, authorization: req.headers.authorization });
    if (answer(req, res, asked.length)) return;
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '')!;
    const [from, to] = [Number(m[1]), Number(m[2])];
    res.writeHead(206, { 'content-length': to - from + 1, 'content-range': `bytes ${from}-${to}/${body.length}` });
    res.end(body.subarray(from, to + 1));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { asked, base, close: () => new Promise((resolve) => server.close(resolve)) };
}

/** A cache file for a whole blob, and a ChunkJob of all its chunks into it. */
function job(remote: Remote, progress: (next: number) => void = () => undefined, withDigests = digests) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tarstack-fetch-'));
  const fd = fs.openSync(path.join(dir, 'blob'), 'w+');
  const j = new ChunkJob(remote, { fd, size: SIZE, chunkSize: CHUNK_SIZE, first: 0, last: Math.ceil(SIZE / CHUNK_SIZE) - 1, digests: withDigests }, progress);
  const file = (): Buffer => fs.readFileSync(path.join(dir, 'blob'));
  const done = j.done.finally(() => {
    fs.closeSync(fd);
  });
  return { j, done, file, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

test.serial('a redirect to another host is followed without Authorization; one to the same host keeps it', async (t) => {
  const other = await serve();
  const first = await serve((req, res) => {
    if (req.url === '/blob') return void res.writeHead(307, { location: '/moved' }).end(), true;
    if (req.url === '/moved') return void res.writeHead(302, { location: `${other.base}/stored` }).end(), true;
    return false;
  });
  const remote: Remote = { url: `${first.base}/blob`, tlsVerify: true, headers: () => ({ authorization: 'Bearer secret' }) };
  const f = job(remote);
  try {
    await f.done;
    sameBytes(t, f.file(), data, 'the cache file');
    t.deepEqual(first.asked.map((a) => a.authorization), ['Bearer secret', 'Bearer secret']);
    t.deepEqual(other.asked, [{ url: '/stored', range: `bytes=0-${SIZE - 1}`, authorization: undefined }]);
    sameBytes(t, await getRange(remote, 5, 100), data.subarray(5, 100), 'getRange through the same redirects');
    t.is(other.asked.at(-1)!.authorization, undefined);
  } finally {
    f.cleanup();
    await first.close();
    await other.close();
  }
});

test.serial('a 401 renews the headers once with its challenge and asks again for what is left', async (t) => {
  const s = await serve((req, res) => {
    if (req.headers.authorization === 'Bearer new') return false;
    res.writeHead(401, { 'www-authenticate': 'Bearer realm="x",scope="pull"' }).end();
    return true;
  });
  let token = 'old';
  const challenges: Array<string | undefined> = [];
  const remote: Remote = { url: `${s.base}/b`, tlsVerify: true, headers: () => ({ authorization: `Bearer ${token}` }), renew: async (c) => (challenges.push(c), (token = 'new'), true) };
  const f = job(remote);
  try {
    await f.done;
    sameBytes(t, f.file(), data, 'the cache file');
    t.deepEqual(challenges, ['Bearer realm="x",scope="pull"']);
    t.is(s.asked.length, 2);
  } finally {
    f.cleanup();
    await s.close();
  }
});

test.serial('a chunk that does not match its digest ends the job (ChunkMismatch), never retried; the chunks before it are written', async (t) => {
  const bad = Buffer.from(data);
  bad[7 * CHUNK_SIZE + 5] ^= 1;
  const s = await serve(undefined, bad);
  let told = 0;
  const f = job({ url: `${s.base}/b`, tlsVerify: true, headers: () => ({}) }, (n) => (told = n));
  try {
    const err = await t.throwsAsync(f.done, { instanceOf: ChunkMismatch });
    t.is(err!.chunk, 7);
    t.is(told, 7, 'chunks 0-6 told stored');
    sameBytes(t, f.file().subarray(0, 7 * CHUNK_SIZE), data.subarray(0, 7 * CHUNK_SIZE), 'chunks before the bad one');
    t.true(f.file().length <= 7 * CHUNK_SIZE, 'nothing of the bad chunk or after it written');
    t.is(s.asked.length, 1);
  } finally {
    f.cleanup();
    await s.close();
  }
});

test.serial('a 200 to a range not at 0 is "ignores Range requests", not retried; 503s are retried', async (t) => {
  const s = await serve((req, res, n) => {
    if (req.url === '/whole') return void res.writeHead(200, { 'content-length': SIZE }).end(data), true;
    if (n <= 3) return void res.writeHead(503).end(), true;
    return false;
  });
  const remote = (p: string): Remote => ({ url: `${s.base}${p}`, tlsVerify: true, headers: () => ({}) });
  try {
    sameBytes(t, await getRange(remote('/b'), 100, 200), data.subarray(100, 200), 'after three 503s');
    t.is(s.asked.length, 4, 'three 503s, then the range');
    const before = s.asked.length;
    const err = await t.throwsAsync(getRange(remote('/whole'), 100, 200), { instanceOf: HttpError });
    t.regex(err!.message, /^127\.0\.0\.1:\d+ ignores Range requests; tarstack reads remote layers by range$/);
    t.is(s.asked.length, before + 1);
    sameBytes(t, await getRange(remote('/whole'), 0, SIZE), data, 'a 200 for a range from 0: the whole blob');
  } finally {
    await s.close();
  }
});

test.serial('a redirect to a host that refuses: the one line names that host, not the first', async (t) => {
  const gone = await serve();
  await gone.close(); // its port now refuses
  const s = await serve((_req, res) => (res.writeHead(307, { location: `${gone.base}/elsewhere` }).end(), true));
  try {
    const err = await t.throwsAsync(getRange({ url: `${s.base}/b`, tlsVerify: true, headers: () => ({}) }, 0, 10, Date.now() + 300), { instanceOf: HttpError });
    t.is(err!.message, `${gone.base.replace('http://', '')}: ECONNREFUSED`);
  } finally {
    await s.close();
  }
});

test.serial('a refused connection is retried until the deadline, then one line naming the host', async (t) => {
  const s = await serve();
  await s.close(); // its port now refuses
  const before = process.env.TARSTACK_REMOTE_DEADLINE_MS;
  process.env.TARSTACK_REMOTE_DEADLINE_MS = '400';
  try {
    const t0 = Date.now();
    const err = await t.throwsAsync(getRange({ url: `${s.base}/b`, tlsVerify: true, headers: () => ({}) }, 0, 10), { instanceOf: HttpError });
    t.regex(err!.message, /^127\.0\.0\.1:\d+: ECONNREFUSED$/);
    t.true(Date.now() - t0 >= 150, 'retried with backoff first');
  } finally {
    if (before === undefined) delete process.env.TARSTACK_REMOTE_DEADLINE_MS;
    else process.env.TARSTACK_REMOTE_DEADLINE_MS = before;
  }
});

test.serial('a read that waits for a chunk is told once it is stored, before the fetch ends', async (t) => {
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => (release = resolve));
  const s = await serve((_req, res) => {
    res.writeHead(206, { 'content-length': SIZE, 'content-range': `bytes 0-${SIZE - 1}/${SIZE}` });
    res.write(data.subarray(0, 3 * CHUNK_SIZE), () => void held.then(() => res.end(data.subarray(3 * CHUNK_SIZE))));
    return true;
  });
  const told: number[] = [];
  let waiting: () => void = () => undefined;
  const reached = new Promise<void>((resolve) => (waiting = resolve));
  const f = job({ url: `${s.base}/b`, tlsVerify: true, headers: () => ({}) }, (n) => {
    told.push(n);
    if (n > 2) waiting();
  });
  try {
    f.j.want(2);
    await reached;
    t.deepEqual(told, [3], 'told chunks 0-2 while the rest is held back');
    release();
    await f.done;
    t.is(told.at(-1), Math.ceil(SIZE / CHUNK_SIZE));
    sameBytes(t, f.file(), data, 'the cache file');
  } finally {
    release();
    f.cleanup();
    await s.close();
  }
});

test.serial('TLS: a certificate no CA vouches for is one line, not retried; a cert dir\'s CA and client pair are used; --tls-verify=false verifies nothing', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tarstack-fetch-tls-'));
  const tls = tlsAndUsers(path.join(dir, 'made'), 'u', 'p');
  const certs = path.join(dir, 'certs');
  fs.mkdirSync(certs);
  fs.copyFileSync(tls.ca, path.join(certs, 'ca.crt'));
  fs.copyFileSync(tls.cert, path.join(certs, 'client.cert')); // a pair the CA signed: the client's
  fs.copyFileSync(tls.key, path.join(certs, 'client.key'));
  let handshakes = 0;
  const clients: string[] = [];
  const server = https.createServer({ cert: fs.readFileSync(tls.cert), key: fs.readFileSync(tls.key), ca: fs.readFileSync(tls.ca), requestCert: true, rejectUnauthorized: false }, (req, res) => {
    clients.push(String((req.socket as import('node:tls').TLSSocket).authorized));
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '')!;
    res.writeHead(206, { 'content-length': Number(m[2]) - Number(m[1]) + 1 });
    res.end(data.subarray(Number(m[1]), Number(m[2]) + 1));
  });
  server.on('tlsClientError', () => handshakes++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/b`;
  try {
    const err = await t.throwsAsync(getRange({ url, tlsVerify: true, headers: () => ({}) }, 0, 10), { instanceOf: HttpError });
    t.is(handshakes, 1, 'not retried');
    const nodeSays = await new Promise<string>((resolve) => https.get(url, () => resolve('answered')).on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message)));
    t.is(err!.message, `${new URL(url).host}: ${nodeSays}`, 'worded as node:https words it');
    sameBytes(t, await getRange({ url, tlsVerify: true, certDir: certs, headers: () => ({}) }, 0, 1000), data.subarray(0, 1000), 'through the cert dir');
    t.deepEqual(clients, ['true'], 'the client pair presented and accepted');
    sameBytes(t, await getRange({ url, tlsVerify: false, headers: () => ({}) }, 5, 10), data.subarray(5, 10), 'not verified');
    t.deepEqual(clients, ['true', 'false'], 'no client pair without verification');
  } finally {
    server.close();
    server.closeAllConnections();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.serial('TLS: a certificate for another host and an expired one are refused in one line each, named as node:https names them', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tarstack-fetch-tls-'));
  const tls = tlsAndUsers(path.join(dir, 'made'), 'u', 'p');
  const certs = path.join(dir, 'certs');
  fs.mkdirSync(certs);
  fs.copyFileSync(tls.ca, path.join(certs, 'ca.crt')); // the CA is trusted: only the name or the dates are wrong
  const ca = fs.readFileSync(tls.ca);
  const cases = [
    { what: 'another host', pair: signedCert(path.join(dir, 'made'), 'other', 'DNS:other.example, IP:127.0.0.2'), code: 'ERR_TLS_CERT_ALTNAME_INVALID' },
    { what: 'expired', pair: signedCert(path.join(dir, 'made'), 'old', 'IP:127.0.0.1', true), code: 'CERT_HAS_EXPIRED' },
  ];
  try {
    for (const c of cases) {
      let served = 0;
      const server = https.createServer({ cert: fs.readFileSync(c.pair.cert), key: fs.readFileSync(c.pair.key) }, (_req, res) => (served++, res.end('x')));
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/b`;
      try {
        const err = await t.throwsAsync(getRange({ url, tlsVerify: true, certDir: certs, headers: () => ({}) }, 0, 10), { instanceOf: HttpError }, c.what);
        const nodeSays = await new Promise<string>((resolve) => https.get(url, { ca }, () => resolve('answered')).on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message)));
        t.is(nodeSays, c.code, `${c.what}: node:https refuses it too`);
        t.is(err!.message, `${new URL(url).host}: ${c.code}`, `${c.what}: worded as node:https words it`);
        t.is(served, 0, `${c.what}: no request got through`);
      } finally {
        server.close();
        server.closeAllConnections();
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
