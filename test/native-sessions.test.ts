// Many mounts served by one process (the mount server's shape): the native binding shares its
// threads and buffers between sessions, and one session's end, or its stuck reads, never reaches
// another. Children serve (test/helpers/toy-sessions.ts); this process reads the mounts.
import test from 'ava';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { ChildMount, forceUnmount, abortConnection, isMounted, makeTempDir, removeDir, startChild, type Message } from './helpers/mount-harness.js';
import { HANG_SIZE, SMALL } from './helpers/toy-sessions.js';
import type { PoolStats } from '../src/fuse/lowlevel.js';

const CHILD = new URL('./helpers/toy-sessions.js', import.meta.url).pathname;
const isRoot = process.getuid?.() === 0;
const MIB = 1 << 20;

let base = '';
let backing: Buffer;
const children: ChildMount[] = [];
const mountpoints: string[] = [];
const ddPids: ChildProcess[] = [];

test.before(() => {
  base = makeTempDir('tarstack-sessions-');
  backing = randomBytes(8 * MIB);
  fs.writeFileSync(join(base, 'backing'), backing);
});

test.after.always(async () => {
  for (const mp of mountpoints) forceUnmount(mp); // fails whatever read still hangs on them
  for (const dd of ddPids) if (dd.exitCode === null && dd.signalCode === null) dd.kill('SIGKILL');
  for (const c of children) await c.cleanup();
  for (const mp of mountpoints) forceUnmount(mp);
  removeDir(base);
});

interface Stats extends Message {
  threads: number;
  pools: { reads: PoolStats; notes: PoolStats };
  live: number[];
  hungReads: number;
}

async function serve(): Promise<ChildMount> {
  const c = (await startChild(CHILD, base, [])).mount;
  children.push(c);
  return c;
}

/** Mounts `n` more sessions in child `c` over `backingPath`; their mountpoints. */
async function mount(c: ChildMount, n: number, prefix: string, backingPath = join(base, 'backing')): Promise<string[]> {
  const mps = Array.from({ length: n }, (_, i) => join(base, `${prefix}${i}`));
  for (const mp of mps) fs.mkdirSync(mp);
  mountpoints.push(...mps);
  const reply = c.next('mounted');
  c.child.send({ type: 'mount', mountpoints: mps, backing: backingPath });
  const r = await reply;
  if (r.error) throw new Error(String(r.error));
  return mps;
}

const stats = async (c: ChildMount): Promise<Stats> => (await c.ask('stats')) as Stats;

/** Waits (without a deadline of its own) until the child's stats satisfy `ok`. */
async function until(c: ChildMount, ok: (s: Stats) => boolean): Promise<Stats> {
  for (;;) {
    const s = await stats(c);
    if (ok(s)) return s;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Reads `len` bytes at `pos` of a file; the page cache never has them (a fresh range each call). */
async function readAt(path: string, pos: number, len: number): Promise<Buffer> {
  const fh = await fs.promises.open(path, 'r');
  try {
    const buf = Buffer.alloc(len);
    const { bytesRead } = await fh.read(buf, 0, len, pos);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** dd's exit code reading 4 KiB of `path` at `pos` (a multiple of 4096). */
function readInChild(path: string, pos: number): Promise<number | null> {
  const dd = spawn('dd', [`if=${path}`, 'of=/dev/null', 'bs=4096', 'count=1', `skip=${pos / 4096}`, 'status=none'], { stdio: 'ignore' });
  ddPids.push(dd);
  return new Promise((resolve) => dd.on('exit', (code) => resolve(code)));
}

/** Every mount answers: a listing, a file from memory, and a range read through the read pool. */
async function allAnswer(t: import('ava').ExecutionContext, mps: string[], round: number): Promise<void> {
  for (const [i, mp] of mps.entries()) {
    t.deepEqual(fs.readdirSync(mp).sort(), ['hang', 'ranged', 'small'], mp);
    t.is(fs.readFileSync(join(mp, 'small'), 'utf8'), SMALL, mp);
    const pos = ((round * 64 + i) % 128) * 64 * 1024; // a range this mount has not read before
    if (!(await readAt(join(mp, 'ranged'), pos, 4096)).equals(backing.subarray(pos, pos + 4096))) t.fail(`${mp}: wrong bytes at ${pos}`);
  }
}

let many: ChildMount;
let mps: string[] = [];

test.serial('50 sessions in one process all answer, on a bounded number of threads', async (t) => {
  many = await serve();
  mps = await mount(many, 1, 'm');
  await allAnswer(t, mps, 0);
  const one = await stats(many);
  mps.push(...(await mount(many, 49, 'n')));
  await allAnswer(t, mps, 1);
  const fifty = await stats(many);
  t.deepEqual(fifty.live, [...Array(50).keys()]);
  // Threads are the process's, not the sessions': 49 more sessions add fewer than one each (each
  // brought four read threads of its own before). The pool only grows with reads in flight.
  t.true(fifty.threads - one.threads < 49, `threads: ${one.threads} with one session, ${fifty.threads} with 50`);
  t.true(fifty.pools.reads.threads >= 1, 'the range reads went through the shared read pool');
});

test.serial('a session that ends (unmounted, closed, aborted) leaves the others answering', async (t) => {
  const ended = many.next('ended-0');
  execFileSync('fusermount3', ['-u', mps[0]!]); // by someone else
  await ended;
  await allAnswer(t, mps.slice(1), 2);

  const closed = many.next('ended-1');
  many.child.send({ type: 'close', index: 1 }); // its own unmount
  await closed;
  await allAnswer(t, mps.slice(2), 3);

  if (isRoot) {
    const aborted = many.next('ended-2');
    abortConnection(mps[2]!); // the session reads ENODEV
    await aborted;
    forceUnmount(mps[2]!);
    await allAnswer(t, mps.slice(3), 4);
  }
  const s = await stats(many);
  t.deepEqual(s.live, [...Array(50).keys()].slice(isRoot ? 3 : 2));
  for (const mp of mps.slice(0, isRoot ? 3 : 2)) t.false(isMounted(mp));
});

test.serial('a process that exits while serving many mounts leaves none behind', async (t) => {
  many.child.send({ type: 'exit' });
  t.is(await many.exited, 0);
  for (const mp of mps) t.false(isMounted(mp), mp);
});

test.serial('stuck reads of one session (a hung disk) delay no other, not even when it ends', async (t) => {
  if (!isRoot) return t.pass('ending a session whose reads are stuck needs fusectl (root)');
  // The hung disk: a mount of its own child whose JS never answers a read of `hang`.
  const disk = await serve();
  const [hungDisk] = await mount(disk, 1, 'disk');
  // Session A reads its file ranges from that disk, so its reads block in the read pool's threads;
  // session B reads a healthy file through the same pool.
  const c = await serve();
  const [a] = await mount(c, 1, 'a', join(hungDisk!, 'hang'));
  const [b] = await mount(c, 1, 'b');
  // Reads that will hang run in processes of their own (this one's libuv threads stay free).
  const stuck = [0, 1, 2, 3, 4, 5].map((k) => readInChild(join(a!, 'ranged'), (k * HANG_SIZE) / 8));
  const jsHung = readInChild(join(a!, 'hang'), 0);
  // A holds as many threads as it may (readThreads, 4) and has more reads waiting behind them.
  await until(c, (s) => s.pools.reads.running >= 4 && s.hungReads >= 1);
  t.true((await until(disk, (s) => s.hungReads >= 4)).hungReads >= 4);
  t.true((await readAt(join(b!, 'ranged'), 5 * MIB, 4096)).equals(backing.subarray(5 * MIB, 5 * MIB + 4096)), 'B is answered meanwhile');
  t.is(fs.readFileSync(join(b!, 'small'), 'utf8'), SMALL);

  // A ends while its reads are stuck in the pool: the end waits for none of them.
  const aEnded = c.next('ended-0');
  abortConnection(a!);
  await aEnded;
  forceUnmount(a!);
  t.true((await readAt(join(b!, 'ranged'), 6 * MIB, 4096)).equals(backing.subarray(6 * MIB, 6 * MIB + 4096)), 'B is answered after A ended');
  for (const code of [...(await Promise.all(stuck)), await jsHung]) t.not(code, 0, 'the reads A never answered fail');

  // The disk comes back (its mount goes): A's stuck reads return and the pool lets go of A.
  forceUnmount(hungDisk!);
  const idle = await until(c, (s) => s.pools.reads.running === 0 && s.pools.reads.queued === 0);
  t.deepEqual(idle.live, [1]);
  t.true((await readAt(join(b!, 'ranged'), 7 * MIB, 4096)).equals(backing.subarray(7 * MIB, 7 * MIB + 4096)));
  const bEnded = c.next('ended-1');
  c.child.send({ type: 'close', index: 1 });
  await bEnded;
  c.child.send({ type: 'exit' });
  t.is(await c.exited, 0);
  t.false(isMounted(b!));
  disk.child.send({ type: 'exit' });
  t.is(await disk.exited, 0);
});

