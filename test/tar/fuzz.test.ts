// The tar reader under mutated input (helpers/tar-fuzz.ts), bounded for CI: a fixed seed, at most
// 1000 cases or 25 s, in a child process so a hang is caught (and its tar kept) instead of hanging
// the suite. No crash, no hang, bounded memory; each rejected tar is one short TarFormatError line.
// The long run: scripts/fuzz-long.
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
const SECONDS = Number(process.env.TARSTACK_FUZZ_SECONDS ?? 25);

test('mutated tars: every one indexes and serves or is refused in one line; no crash, hang or unbounded memory', async (t) => {
  const shm = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
  const dir = fs.mkdtempSync(path.join(shm, 'tarstack-fuzz-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const child = spawn(process.execPath, ['--max-old-space-size=512', FUZZER, String(SEED), String(CASES), String(SECONDS), dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  child.stderr.on('data', (d: Buffer) => (err += d));
  const limit = (SECONDS + 30) * 1000;
  const timer = setTimeout(() => child.kill('SIGKILL'), limit);
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  clearTimeout(timer);
  const current = path.join(dir, 'current.tar');
  if (code !== 0) {
    const kept = path.join(os.tmpdir(), `tarstack-fuzz-hang-${SEED}.tar`);
    if (fs.existsSync(current)) fs.copyFileSync(current, kept);
    t.fail(`the fuzzer (seed ${SEED}) exited ${code}${code === null ? ` after ${limit} ms: a hang` : ''}; the case it was on is ${kept}\n${err.slice(-2000)}`);
    return;
  }
  const s = JSON.parse(out) as FuzzSummary;
  for (const f of s.failures) fs.copyFileSync(f.file, path.join(os.tmpdir(), path.basename(f.file)));
  t.deepEqual(s.failures.map((f) => `case ${f.case}: ${f.error}`), [], 'crashes (tars kept in the temp dir)');
  t.true(s.cases >= Math.min(CASES, 150), `only ${s.cases} cases ran`);
  t.true(s.rssMiB < 400, `rss ${s.rssMiB} MiB`);
  t.true(s.slowestMs < 5000, `slowest case ${s.slowestMs} ms`);
  t.log(`seed ${SEED}: ${s.cases} cases, ${s.accepted} accepted and served, ${s.rejected} refused (${Object.keys(s.reasons).length} kinds of reason), slowest ${s.slowestMs.toFixed(0)} ms, rss ${s.rssMiB} MiB`);
});
