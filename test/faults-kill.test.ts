// kill -9 of an instance's daemon (issue 6, "Faults"): during heavy writes and paused in the middle
// of a copy-up (the TARSTACK_TEST_PAUSE_COPYUP_AT hook), the mount is reported dead, `umount` clears
// it, and a new mount shows every byte acknowledged before the kill and no half-done copy-up. And
// durability, traced with strace: each fsync/fdatasync reaches the upper file; copy-up syncs its bytes
// before the rename that shows them.
import test, { type ExecutionContext } from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor, waitGone } from './helpers/children.js';
import { BLOCK, blockOf, LOWER_FILE, NEW_FILES } from './helpers/fault-writer.js';
import { InstanceSession, instanceSkipReason } from './helpers/instances.js';
import { tarstackCli } from './helpers/mount.js';
import { makeTestRoot, removeTestRoot, strayMounts } from './helpers/mounted.js';
import { execOk } from './helpers/exec.js';
import { seededBytes } from './helpers/bytes.js';

const skipReason = (await instanceSkipReason()) ?? (spawnSync('strace', ['-V']).status === 0 ? undefined : 'needs strace (apt-get install strace)');
if (skipReason) test.skip(`fault suite skipped: ${skipReason}`, () => undefined);
const serial = (title: string, fn: (t: ExecutionContext) => Promise<void>) => skipReason || test.serial(title, fn);
const WRITER = fileURLToPath(new URL('./helpers/fault-writer.js', import.meta.url));

const root = skipReason ? '' : makeTestRoot('faults-kill');
test.after.always(() => removeTestRoot(root));

const SMALL = seededBytes(1 << 20, 1); // copied up whole (EAGER_MAX)
const BIG = seededBytes(3 << 20, 2); // copied up lazily, by 1 MiB chunks

let seq = 0;
async function session(t: ExecutionContext): Promise<{ s: InstanceSession; work: string; upper: string }> {
  const s = new InstanceSession(path.join(root, `s${++seq}`), t);
  const src = path.join(s.root, 'src');
  fs.mkdirSync(src, { recursive: true });
  fs.writeFileSync(path.join(src, 'small'), SMALL);
  fs.writeFileSync(path.join(src, LOWER_FILE), BIG);
  execOk(['tar', '-cf', path.join(s.root, 'img.tar'), '-C', src, '.']);
  await s.addImage(path.join(s.root, 'img.tar'), 'img');
  await s.create('i', 'img');
  const id = (JSON.parse((await s.ok(['info', 'i', '--json'])).stdout) as { id: string }).id;
  const home = path.join(s.home, 'instances', id);
  return { s, work: path.join(home, 'work'), upper: path.join(home, 'upper') };
}

async function daemonPid(s: InstanceSession): Promise<number> {
  const st = JSON.parse((await s.ok(['status', '--json'])).stdout) as Array<{ pid: number }>;
  return st[0]!.pid;
}

/** kill -9, then: status says dead, umount clears it, nothing left mounted. */
async function killAndClear(t: ExecutionContext, s: InstanceSession, pid: number, mnt: string): Promise<void> {
  process.kill(pid, 'SIGKILL');
  await waitGone([pid]);
  const st = JSON.parse((await s.ok(['status', '--json'])).stdout) as Array<{ state: string }>;
  t.is(st[0]?.state, 'dead', 'status reports the dead mount');
  await s.ok(['umount', 'i']);
  t.deepEqual(strayMounts(mnt), [], 'umount cleared it');
}


serial('kill -9 during heavy writes: every acknowledged byte is there after a remount', async (t) => {
  const { s } = await session(t);
  const mnt = await s.mountInstance('i');
  const pid = await daemonPid(s);
  const log = path.join(s.root, 'writer.log');
  fs.writeFileSync(log, '');
  const writer = spawn(process.execPath, [WRITER, mnt, log], { stdio: 'ignore' }); // writes until the kill
  t.teardown(() => void (writer.exitCode === null && writer.kill('SIGKILL')));
  const exited = new Promise<void>((r) => writer.on('exit', () => r()));
  await waitFor(() => fs.readFileSync(log, 'utf8').split('\n').length > 64); // 4 MiB written
  await killAndClear(t, s, pid, mnt);
  await exited;
  const acked = new Map<string, number>();
  for (const line of fs.readFileSync(log, 'utf8').split('\n')) {
    const [name, end] = line.split(' ');
    if (name && name !== 'error') acked.set(name, Number(end));
  }
  t.true(fs.readFileSync(log, 'utf8').includes('error '), 'the writer saw the mount die');
  const at = await s.mountInstance('i');
  let checked = 0;
  for (const name of [...NEW_FILES, LOWER_FILE]) {
    const data = fs.readFileSync(path.join(at, name));
    const end = acked.get(name) ?? 0;
    for (let i = 0; i * BLOCK < end; i++) {
      t.true(data.subarray(i * BLOCK, (i + 1) * BLOCK).equals(blockOf(name, i)), `${name} block ${i}`);
      checked += BLOCK;
    }
    if (name === LOWER_FILE) {
      t.is(data.length, BIG.length);
      // The block in flight may be old or new byte by byte; everything past it is the image's.
      const flight = blockOf(name, end / BLOCK);
      for (let k = end; k < Math.min(end + BLOCK, BIG.length); k++) if (data[k] !== BIG[k] && data[k] !== flight[k - end]) t.fail(`${name} byte ${k} is neither old nor new`);
      t.true(data.subarray(end + BLOCK).equals(BIG.subarray(end + BLOCK)), `${name} past the writes is the image's`);
    }
  }
  t.true(fs.readFileSync(path.join(at, 'small')).equals(SMALL));
  t.log(`${(checked / 1048576).toFixed(1)} MiB acknowledged before the kill, all there after it`);
  await s.umountInstance('i', at);
});

for (const c of [
  { what: 'copying a file up whole', pauseAt: 512 << 10, file: 'small', act: `fs.openSync(f, 'r+')` },
  { what: 'filling a chunk of a lazy copy-up', pauseAt: 1536 << 10, file: LOWER_FILE, act: `fs.writeSync(fs.openSync(f, 'r+'), 'X', 1600000)` },
]) {
  serial(`kill -9 while ${c.what}: no half-done copy-up shows, earlier writes stay`, async (t) => {
    const { s, work, upper } = await session(t);
    const mnt = path.join(s.root, 'mnt-i');
    fs.mkdirSync(mnt);
    const r = await tarstackCli(['mount', 'i', mnt], { env: { TARSTACK_HOME: s.home, TARSTACK_TEST_PAUSE_COPYUP_AT: String(c.pauseAt) } });
    t.is(r.code, 0, r.stderr);
    fs.writeFileSync(path.join(mnt, 'before'), 'written before the kill\n');
    const pid = await daemonPid(s);
    const logFile = fs.readdirSync(path.join(s.home, 'run', 'logs')).map((f) => path.join(s.home, 'run', 'logs', f))[0]!;
    const f = path.join(mnt, c.file);
    const app = spawn(process.execPath, ['-e', `const fs = require('fs'); const f = ${JSON.stringify(f)}; try { ${c.act} } catch (e) { process.exit(3) }`], { stdio: 'ignore' });
    const appExit = new Promise<number | null>((res) => app.on('exit', (code) => res(code)));
    await waitFor(() => fs.readFileSync(logFile, 'utf8').includes(`copy-up paused at byte ${c.pauseAt}`));
    if (c.file === 'small') {
      const tmps = fs.readdirSync(path.join(work, 'tmp')).map((n) => fs.statSync(path.join(work, 'tmp', n)).size);
      t.deepEqual(tmps, [c.pauseAt], 'half the file is in the temp copy');
    }
    await killAndClear(t, s, pid, mnt);
    t.is(await appExit, 3, 'the application saw its call fail');
    const at = await s.mountInstance('i', mnt);
    t.true(fs.readFileSync(path.join(at, c.file)).equals(c.file === 'small' ? SMALL : BIG), `${c.file} shows the image's bytes`);
    t.is(fs.readFileSync(path.join(at, 'before'), 'utf8'), 'written before the kill\n');
    t.deepEqual(fs.readdirSync(path.join(work, 'tmp')), [], 'the half copy is gone');
    t.is(fs.existsSync(path.join(upper, 'small')), false, 'no half file under its name');
    await s.umountInstance('i', at);
  });
}

serial('each fsync and fdatasync reaches the upper file; copy-up syncs before its rename (strace)', async (t) => {
  const { s, upper } = await session(t);
  const mnt = await s.mountInstance('i');
  const pid = await daemonPid(s);
  const out = path.join(s.root, 'strace.out');
  const tracer = spawn('strace', ['-f', '-y', '-qq', '-e', 'trace=fsync,fdatasync,rename,renameat,renameat2', '-o', out, '-p', String(pid)], { stdio: 'ignore' });
  t.teardown(() => void tracer.kill('SIGKILL'));
  // -f attaches the daemon's threads one by one: wait until every one of them is traced
  const traced = (task: string) => {
    try {
      return /TracerPid:\s+[1-9]/.test(fs.readFileSync(`/proc/${pid}/task/${task}/status`, 'utf8'));
    } catch {
      return true; // the thread ended meanwhile
    }
  };
  await waitFor(() => fs.readdirSync(`/proc/${pid}/task`).every(traced));
  const script = [
    'import os',
    `d = ${JSON.stringify(mnt)}`,
    'fd = os.open(d + "/synced", os.O_CREAT | os.O_WRONLY); os.write(fd, b"a" * 4096); os.fsync(fd); os.close(fd)',
    'fd = os.open(d + "/datasynced", os.O_CREAT | os.O_WRONLY); os.write(fd, b"b" * 4096); os.fdatasync(fd); os.close(fd)',
    'fd = os.open(d + "/small", os.O_WRONLY); os.write(fd, b"c"); os.fsync(fd); os.close(fd)',
  ].join('\n');
  execOk(['python3', '-c', script]);
  // Each traced call stopped its thread until strace had recorded it, and the daemon answers the
  // fsync only after its own returned: the trace holds everything once python is done. SIGINT makes
  // strace detach and write out what it buffered.
  tracer.kill('SIGINT');
  await new Promise((r) => tracer.on('exit', r));
  const trace = fs.readFileSync(out, 'utf8');
  const up = (name: string) => `${upper}/${name}>`;
  t.regex(trace, new RegExp(`\\bfsync\\(\\d+<${escape(up('synced'))}\\)`), 'fsync of "synced" reached its upper file');
  t.regex(trace, new RegExp(`\\bfdatasync\\(\\d+<${escape(up('datasynced'))}\\)`), 'fdatasync of "datasynced" reached its upper file');
  t.regex(trace, new RegExp(`\\bfsync\\(\\d+<${escape(up('small'))}\\)`), 'fsync of the copied-up "small" reached its upper file');
  // The copy-up of "small": its temp file was fdatasync'ed, then renamed to upper/small.
  const lines = trace.split('\n');
  const renamed = lines.findIndex((l) => /rename/.test(l) && l.includes(`"${upper}/small"`));
  t.true(renamed > 0, 'the copy-up renamed its temp file into place');
  const tmp = /rename\w*\((?:AT_FDCWD<[^>]*>, )?"([^"]+)"/.exec(lines[renamed]!)?.[1];
  const synced = lines.findIndex((l) => /fdatasync\(\d+</.test(l) && tmp !== undefined && l.includes(`<${tmp}>`));
  t.true(synced >= 0 && synced < renamed, `the temp copy ${tmp} was synced before the rename`);
  await s.umountInstance('i', mnt);
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
