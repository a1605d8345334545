// Under load (issue 6): fio with verify (sequential, random and O_DIRECT writers, several jobs) inside
// an instance finds zero verify errors; eight processes doing mixed metadata and data operations for a
// bounded time see no errors and no deadlock, the daemon's memory stays bounded, and after a remount
// every file holds what its writer last wrote. Bounded here; scripts/load-long runs longer.
import test, { type ExecutionContext } from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { InstanceSession, instanceSkipReason } from './helpers/instances.js';
import { makeTestRoot, removeTestRoot } from './helpers/mounted.js';
import { execOk } from './helpers/exec.js';

const skipReason = (await instanceSkipReason()) ?? (spawnSync('fio', ['--version']).status === 0 ? undefined : 'needs fio (apt-get install fio)');
if (skipReason) test.skip(`load suite skipped: ${skipReason}`, () => undefined);
const serial = (title: string, fn: (t: ExecutionContext) => Promise<void>) => skipReason || test.serial(title, fn);
const WORKER = fileURLToPath(new URL('./helpers/stress-worker.js', import.meta.url));
const SECONDS = Number(process.env.TARSTACK_LOAD_SECONDS ?? 10);
const FIO_MB = Number(process.env.TARSTACK_FIO_MB ?? 24);
const WORKERS = 8;

const root = skipReason ? '' : makeTestRoot('load');
test.after.always(() => removeTestRoot(root));

let seq = 0;
async function instance(t: ExecutionContext): Promise<{ s: InstanceSession; mnt: string; rss: () => number }> {
  const s = new InstanceSession(path.join(root, `s${++seq}`), t);
  const src = path.join(s.root, 'src', 'lower');
  fs.mkdirSync(src, { recursive: true });
  for (let i = 0; i < WORKERS; i++) fs.writeFileSync(path.join(src, `f${i}`), Buffer.alloc(3 << 20, `lower ${i} `));
  execOk(['tar', '-cf', path.join(s.root, 'img.tar'), '-C', path.join(s.root, 'src'), '.']);
  await s.addImage(path.join(s.root, 'img.tar'), 'img');
  await s.create('i', 'img');
  const mnt = await s.mountInstance('i');
  const pid = (JSON.parse((await s.ok(['status', '--json'])).stdout) as Array<{ pid: number }>)[0]!.pid;
  const rss = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
  return { s, mnt, rss };
}

interface FioJob {
  jobname: string;
  error: number;
  read: { io_bytes: number };
  write: { io_bytes: number };
}

serial('fio with verify: sequential, random and O_DIRECT writers, zero verify errors', async (t) => {
  const { s, mnt } = await instance(t);
  const common = ['--ioengine=psync', '--verify=crc32c', '--verify_fatal=1', '--do_verify=1', `--size=${FIO_MB}m`, '--output-format=json', `--directory=${mnt}`];
  const jobs = [
    ['--name=seq', '--rw=write', '--bs=128k', '--numjobs=2'],
    ['--name=rand', '--rw=randwrite', '--bs=4k', '--numjobs=2', '--fsync=64'],
    ['--name=direct', '--rw=randwrite', '--bs=64k', '--direct=1'],
    ['--name=mixed', '--rw=randwrite', '--bsrange=512-256k', '--verify=md5'],
  ];
  const r = spawnSync('fio', [...common, ...jobs.flat()], { cwd: s.root, encoding: 'utf8', maxBuffer: 64 << 20 });
  t.is(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { jobs: FioJob[] };
  t.is(report.jobs.length, 6);
  for (const j of report.jobs) t.is(j.error, 0, `${j.jobname}: error ${j.error}`);
  const written = report.jobs.reduce((n, j) => n + j.write.io_bytes, 0);
  const verified = report.jobs.reduce((n, j) => n + j.read.io_bytes, 0);
  t.true(verified >= written, `verified ${verified} of ${written} bytes`);
  t.log(`fio: ${(written / 1048576).toFixed(0)} MiB written, ${(verified / 1048576).toFixed(0)} MiB read back and verified, 0 errors`);
  await s.umountInstance('i', mnt);
});

serial(`eight processes of mixed operations for ${SECONDS} s: no errors, no deadlock, bounded memory, nothing lost`, async (t) => {
  const { s, mnt, rss } = await instance(t);
  const start = rss();
  const samples: number[] = [];
  const sampler = setInterval(() => samples.push(rss()), 250);
  const outs = Array.from({ length: WORKERS }, (_, i) => path.join(s.root, `worker${i}.json`));
  const children = outs.map((out, i) => spawn(process.execPath, [WORKER, mnt, String(i), String(SECONDS), String(1000 + i), out], { stdio: ['ignore', 'ignore', 'pipe'] }));
  const stderr: string[] = children.map(() => '');
  children.forEach((c, i) => c.stderr!.on('data', (d: Buffer) => (stderr[i] += d)));
  // A deadlock keeps them from ever exiting: ava's timeout reports it (and the teardown, killing the
  // workers' mount, releases them); no guess here at how long a busy machine needs.
  t.teardown(() => children.forEach((c) => c.exitCode === null && c.kill('SIGKILL')));
  const outcome = await Promise.all(children.map((c) => new Promise<number | null>((r) => c.on('exit', (code) => r(code)))));
  clearInterval(sampler);
  t.deepEqual(outcome, children.map(() => 0), stderr.join('\n'));
  const results = outs.map((o) => JSON.parse(fs.readFileSync(o, 'utf8')) as { ops: number; errors: string[]; files: Record<string, string> });
  t.deepEqual(results.flatMap((r) => r.errors), [], 'no errors');
  const ops = results.reduce((n, r) => n + r.ops, 0);
  const peak = Math.max(start, ...samples);
  const half = samples.slice(0, samples.length >> 1);
  t.true(peak < 400 << 20, `daemon rss peaked at ${peak >> 20} MiB`);
  t.log(`${ops} operations by ${WORKERS} processes in ${SECONDS} s; daemon rss ${start >> 20} MiB at start, ${Math.max(...half, start) >> 20} MiB in the first half, ${peak >> 20} MiB peak`);
  await s.umountInstance('i', mnt);
  const again = await s.mountInstance('i');
  let checked = 0;
  for (const r of results) {
    for (const [name, sum] of Object.entries(r.files)) {
      t.is(createHash('sha256').update(fs.readFileSync(path.join(again, name))).digest('hex'), sum, `${name} after the remount`);
      checked++;
    }
  }
  t.log(`${checked} files checked after a remount`);
  await s.umountInstance('i', again);
});
