// Drives the test children with the serving process under valgrind memcheck (run it through
// scripts/native-memcheck). Each pass exercises one path of the binding with ordinary fs calls,
// then unmounts; valgrind's exit code (99 on any error or definite leak) fails the pass.
// `--quick` runs only the first pass, which is what CI can afford; `--only NAME,...` the ones named.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from './helpers/children.js';
import { forceUnmount, abortConnection, isMounted, makeTempDir, removeDir, startChild, type ChildMount } from './helpers/mount-harness.js';
import { BIG_POS, BIG_SIZE } from './helpers/toy-tree.js';

/** Suppressions: V8's conservative stack scan (test/valgrind.supp), seen once a mark-compact runs. */
const SUPPRESSIONS = fileURLToPath(new URL('../../test/valgrind.supp', import.meta.url));
const VALGRIND = ['--error-exitcode=99', '--leak-check=full', '--show-leak-kinds=definite', '--errors-for-leak-kinds=definite', '--smc-check=all-non-file', `--suppressions=${SUPPRESSIONS}`, '--quiet'];
const isRoot = process.getuid?.() === 0;

function dropCaches(what: '1' | '2' | '3'): void {
  if (isRoot) fs.writeFileSync('/proc/sys/vm/drop_caches', what);
}

async function underValgrind(script: string, mountpoint: string, args: string[], env: Record<string, string>): Promise<ChildMount> {
  process.env.TARSTACK_CHILD_EXEC = JSON.stringify(['valgrind', ...VALGRIND, process.execPath]);
  try {
    return (await startChild(new URL(script, import.meta.url).pathname, mountpoint, args, env)).mount;
  } finally {
    delete process.env.TARSTACK_CHILD_EXEC;
  }
}

async function toyPass(base: string, session: object): Promise<void> {
  const mnt = join(base, 'mnt');
  fs.mkdirSync(mnt, { recursive: true });
  const backing = join(base, 'backing');
  fs.writeFileSync(backing, randomBytes(BIG_POS + BIG_SIZE + 4096));
  const m = await underValgrind('./helpers/toy-child.js', mnt, [backing], { TOY_SESSION: JSON.stringify(session) });
  try {
    const walk = (d: Buffer): void => {
      for (const name of fs.readdirSync(d, { encoding: 'buffer' })) {
        const path = Buffer.concat([d, Buffer.from('/'), name]); // names are bytes, not UTF-8
        if (fs.lstatSync(path).isDirectory()) walk(path);
      }
    };
    walk(Buffer.from(mnt));
    fs.readFileSync(join(mnt, 'big.bin')); // first read: the read pool (data is cold to the page cache)
    fs.readFileSync(join(mnt, 'sparse.bin'));
    dropCaches('1');
    fs.readFileSync(join(mnt, 'big.bin'));
    const fd = fs.openSync(join(mnt, 'hello.txt'), 'r');
    fs.readSync(fd, Buffer.alloc(4), 0, 4, 1); // an asynchronous answer
    fs.closeSync(fd);
    fs.readlinkSync(join(mnt, 'dir', 'link-to-hello'));
    execFileSync('getfattr', ['-d', '-m', '-', join(mnt, 'hello.txt')], { stdio: 'ignore' });
    for (const bad of ['nope', 'nope', 'hello.txt/x']) {
      try { fs.statSync(join(mnt, bad)); } catch { /* ENOENT (then a negative entry), ENOTDIR */ }
    }
    fs.statfsSync(mnt);
    await m.ask('mutate', 'mutated');
    await m.ask('invalidate', 'invalidated');
    if (isRoot) {
      dropCaches('2'); // the kernel forgets every inode: the FORGET path runs under memcheck too
      await waitFor(async () => (await m.ask('stats')).refs === 0, 50); // forgets arrive in batches
    }
    const ended = m.next('ended');
    execFileSync('fusermount3', ['-u', mnt]);
    await ended;
    const code = await m.exited;
    if (code !== 0) throw new Error(`toy pass ${JSON.stringify(session)}: valgrind/child exit ${code}`);
  } finally {
    await m.cleanup();
  }
}

async function lowlevelPass(base: string): Promise<void> {
  const mnt = join(base, 'llmnt');
  fs.mkdirSync(mnt, { recursive: true });
  const m = await underValgrind('./helpers/ll-child.js', mnt, [], {});
  try {
    fs.writeFileSync(join(mnt, 'a'), Buffer.alloc(200_000, 1));
    fs.readFileSync(join(mnt, 'a'));
    fs.mkdirSync(join(mnt, 'd'));
    fs.renameSync(join(mnt, 'a'), join(mnt, 'd', 'b'));
    execFileSync('touch', ['-d', '2001-01-01 00:00:00.5', join(mnt, 'd', 'b')]);
    execFileSync('setfattr', ['-n', 'user.k', '-v', 'v', join(mnt, 'd', 'b')]);
    fs.readdirSync(join(mnt, 'd'));
    fs.statSync(join(mnt, 'twice'));
    try { fs.statSync(join(mnt, 'throws')); } catch { /* EIO */ }
    const hanging = fs.promises.stat(join(mnt, 'hang')).catch(() => undefined);
    await waitFor(async () => (await m.ask('log')).pending !== 0, 50);
    const ended = m.next('ended');
    m.child.send({ type: 'unmount' }); // the session ends with a request still unanswered
    await hanging;
    await ended;
    const code = await m.exited;
    if (code !== 0) throw new Error(`lowlevel pass: valgrind/child exit ${code}`);
  } finally {
    await m.cleanup();
  }
}

/**
 * One process serving several mounts (the mount server's shape): a session ends (fusectl abort)
 * while its reads are stuck in the shared read pool on a hung disk, so its last holder is a pool
 * worker; another is unmounted from outside; the rest answer throughout and the process exits
 * while still mounted (the atexit unmount).
 */
async function sessionsPass(base: string): Promise<void> {
  if (!isRoot) return; // the abort needs fusectl
  const dir = join(base, 'sessions');
  fs.mkdirSync(dir);
  const backing = join(dir, 'backing');
  fs.writeFileSync(backing, randomBytes(1 << 20));
  const child = new URL('./helpers/toy-sessions.js', import.meta.url).pathname;
  const disk = (await startChild(child, dir, [])).mount; // not under valgrind: the hung disk
  const mps = ['disk', 'a', 'b', 'c'].map((n) => join(dir, n));
  for (const mp of mps) fs.mkdirSync(mp);
  const [hung, a, b, c] = mps as [string, string, string, string];
  const m = await underValgrind('./helpers/toy-sessions.js', dir, [], {});
  const dds: ReturnType<typeof spawn>[] = [];
  const mount = async (who: ChildMount, mountpoints: string[], from: string): Promise<void> => {
    const done = who.next('mounted');
    who.child.send({ type: 'mount', mountpoints, backing: from });
    if ((await done).error) throw new Error(String((await done).error));
  };
  const stats = async (): Promise<{ pools: { reads: { running: number } } }> => (await m.ask('stats')) as never;
  try {
    await mount(disk, [hung], backing);
    await mount(m, [a], join(hung, 'hang'));
    await mount(m, [b, c], backing);
    for (const mp of [b, c]) {
      fs.readFileSync(join(mp, 'small'));
      fs.readFileSync(join(mp, 'ranged'));
    }
    for (let k = 0; k < 6; k++) dds.push(spawn('dd', [`if=${join(a, 'ranged')}`, 'of=/dev/null', 'bs=4096', 'count=1', `skip=${k * 2048}`, 'status=none'], { stdio: 'ignore' }));
    await waitFor(async () => (await stats()).pools.reads.running >= 4, 100);
    const aEnded = m.next('ended-0');
    abortConnection(a);
    await aEnded;
    forceUnmount(a);
    fs.readFileSync(join(b, 'small'));
    const cEnded = m.next('ended-2');
    execFileSync('fusermount3', ['-u', c]);
    await cEnded;
    forceUnmount(hung); // the disk answers again (EIO): a pool worker lets go of session a last
    await waitFor(async () => (await stats()).pools.reads.running === 0, 100);
    fs.readFileSync(join(b, 'ranged'));
    m.child.send({ type: 'exit' }); // still serving b
    const code = await m.exited;
    if (code !== 0) throw new Error(`sessions pass: valgrind/child exit ${code}`);
    if (isMounted(b)) throw new Error('sessions pass: the exit left a mount behind');
  } finally {
    for (const dd of dds) if (dd.exitCode === null) dd.kill('SIGKILL');
    for (const mp of mps) forceUnmount(mp);
    await m.cleanup();
    await disk.cleanup();
  }
}

/**
 * Streamed reads (stream.c): a .tar.zst image whose member is read sequentially (answered from a
 * native stream's slabs), partly (a stream left idle), at random beside it, after the inode was
 * forgotten (root), and the session ended (fusectl abort, as root) under a reader.
 */
async function streamsPass(base: string): Promise<void> {
  const dir = join(base, 'streams');
  const mnt = join(dir, 'mnt');
  fs.mkdirSync(mnt, { recursive: true });
  fs.mkdirSync(join(dir, 'tree'));
  const body = Buffer.concat([randomBytes(3 << 20), Buffer.alloc(5 << 20, 'text of a member '), randomBytes(4321)]);
  fs.writeFileSync(join(dir, 'tree', 'member'), body);
  execFileSync('sh', ['-c', 'tar -cf - -C "$1" member | zstd -q -3 > "$2"', 'sh', join(dir, 'tree'), join(dir, 'image.tar.zst')]);
  const m = await underValgrind('./helpers/instance-child.js', mnt, [join(dir, 'image.tar.zst'), '-', '-'], {});
  const file = join(mnt, 'member');
  try {
    if (!fs.readFileSync(file).equals(body)) throw new Error('streams pass: wrong bytes');
    dropCaches('1');
    execFileSync('dd', [`if=${file}`, 'of=/dev/null', 'bs=1M', 'count=3', 'status=none']);
    const fd = fs.openSync(file, 'r');
    for (const pos of [7 << 20, 12345, 5 << 20]) fs.readSync(fd, Buffer.alloc(65536), 0, 65536, pos);
    fs.closeSync(fd);
    if (isRoot) dropCaches('3'); // FORGET drops the registration
    execFileSync('dd', [`if=${file}`, 'of=/dev/null', 'bs=1M', 'count=5', 'status=none']);
    if (!((await m.ask('stats')).streamedReads as number > 0)) throw new Error('streams pass: no READ was answered from a stream');
    // the session ends under a reader whose READs wait for the decoder (root: fusectl's abort)
    dropCaches('1');
    const served = async (): Promise<number> => (await m.ask('stats')).streamedReads as number;
    const before = await served();
    const dd = spawn('dd', [`if=${file}`, 'of=/dev/null', 'bs=1M', 'status=none'], { stdio: 'ignore' });
    await waitFor(async () => (await served()) > before || dd.exitCode !== null, 20);
    const ended = m.next('ended');
    if (isRoot) abortConnection(mnt);
    else execFileSync('fusermount3', ['-u', '-z', mnt]);
    await ended;
    if (dd.exitCode === null) dd.kill('SIGKILL');
    forceUnmount(mnt);
    const code = await m.exited;
    if (code !== 0) throw new Error(`streams pass: valgrind/child exit ${code}`);
  } finally {
    await m.cleanup();
  }
}

/** The codecs (no mount): decodes, seeks, damage, closing while busy, zstd frames. */
function codecPass(): void {
  const child = new URL('./helpers/codec-child.js', import.meta.url).pathname;
  const r = spawnSync('valgrind', [...VALGRIND, process.execPath, child], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`codec pass: valgrind/child exit ${r.status}: ${r.stderr}`);
}

/** The passes in order; `--quick` runs the first only, `--only NAME,...` the ones named. */
const PASSES: [name: string, what: string, run: (base: string) => Promise<void> | void][] = [
  ['toy', 'toy tree, default session', (base) => toyPass(base, {})],
  ['lowlevel', 'write ops and teardown with an unanswered request', lowlevelPass],
  ['pool', 'toy tree, every read through the pool + plain readdir', (base) => toyPass(base, { readdirplus: 0, nowait: 0 })],
  ['sessions', 'many sessions in one process, one ending with reads stuck in the pool', sessionsPass],
  ['codecs', 'gzip/zstd/xz codecs', () => codecPass()],
  ['streams', 'a .tar.zst member read through a native stream, left idle, unmounted', streamsPass],
];

async function main(): Promise<void> {
  const at = process.argv.indexOf('--only');
  const only = process.argv.includes('--quick') ? ['toy'] : at > 0 ? process.argv[at + 1]?.split(',') : undefined;
  const base = makeTempDir('tarstack-memcheck-');
  const t0 = Date.now();
  try {
    for (const [name, what, run] of PASSES) {
      if (only && !only.includes(name)) continue;
      await run(base);
      console.log(`memcheck: ${what}: clean (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
    }
  } finally {
    removeDir(base);
  }
}

main().catch((err: unknown) => {
  console.error('memcheck:', err instanceof Error ? err.message : err);
  process.exit(1);
});
