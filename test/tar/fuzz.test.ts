// The tar reader under mutated input (helpers/tar-fuzz.ts), bounded for CI: a fixed seed and 1000
// cases (a few seconds of CPU), in a child process so a hang is caught (and its tar kept) instead of
// hanging the suite. No crash, no hang, bounded memory; each rejected tar is one short TarFormatError
// line. A hang is judged by the CPU time the child burns, never by the wall clock of a busy machine.
// The long run (scripts/fuzz-long) also bounds the run by TARSTACK_FUZZ_SECONDS.
import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FuzzSummary } from '../helpers/tar-fuzz.js';

const FUZZER = fileURLToPath(new URL('../helpers/tar-fuzz.js', import.meta.url));
const SEED = Number(process.env.TARSTACK_FUZZ_SEED ?? 20261121);
const CASES = Number(process.env.TARSTACK_FUZZ_CASES ?? 1000);
const SECONDS = process.env.TARSTACK_FUZZ_SECONDS; // unset in CI: the case count bounds the run
/** CPU seconds past which the fuzzer counts as hung: CI's 1000 cases need about 3. */
const CPU_LIMIT_S = (SECONDS ? Number(SECONDS) : 60) + 30;

/** user + system CPU seconds of a running process, from /proc/PID/stat. */
function cpuSeconds(pid: number): number {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
  } catch {
    return 0;
  }
}

test('mutated tars: every one indexes and serves or is refused in one line; no crash, hang or unbounded memory', async (t) => {
  const shm = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
  const dir = fs.mkdtempSync(path.join(shm, 'tarstack-fuzz-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const child = spawn(process.execPath, ['--max-old-space-size=512', FUZZER, String(SEED), String(CASES), SECONDS ?? '', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  child.stderr.on('data', (d: Buffer) => (err += d));
  const watchdog = setInterval(() => cpuSeconds(child.pid!) > CPU_LIMIT_S && child.kill('SIGKILL'), 1000);
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  clearInterval(watchdog);
  const current = path.join(dir, 'current.tar');
  if (code !== 0) {
    const kept = path.join(os.tmpdir(), `tarstack-fuzz-hang-${SEED}.tar`);
    if (fs.existsSync(current)) fs.copyFileSync(current, kept);
    t.fail(`the fuzzer (seed ${SEED}) exited ${code}${code === null ? ` after ${CPU_LIMIT_S} s of CPU: a hang` : ''}; the case it was on is ${kept}\n${err.slice(-2000)}`);
    return;
  }
  const s = JSON.parse(out) as FuzzSummary;
  for (const f of s.failures) fs.copyFileSync(f.file, path.join(os.tmpdir(), path.basename(f.file)));
  t.deepEqual(s.failures.map((f) => `case ${f.case}: ${f.error}`), [], 'crashes (tars kept in the temp dir)');
  t.true(s.cases >= Math.min(CASES, 150), `only ${s.cases} cases ran`);
  t.true(s.rssMiB < 400, `rss ${s.rssMiB} MiB`);
  t.true(s.slowestCpuMs < 5000, `slowest case ${s.slowestCpuMs} ms of CPU`);
  t.log(`seed ${SEED}: ${s.cases} cases, ${s.accepted} accepted and served, ${s.rejected} refused (${Object.keys(s.reasons).length} kinds of reason), slowest ${s.slowestCpuMs.toFixed(0)} ms of CPU, rss ${s.rssMiB} MiB`);
});
