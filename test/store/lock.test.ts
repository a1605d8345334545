// The store lock (src/store/lock.ts): one holder at a time among processes racing for it, a holder's
// lock never taken over while it lives (whatever its lock file says), and a dead holder's released at
// once, even after kill -9.
import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { withLock } from '../../src/store/lock.js';

const LOCK_JS = new URL('../../src/store/lock.js', import.meta.url).href;

function tempDir(t: { teardown: (f: () => void) => void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tarstack-test-lock-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A node child running `body` (an async function body, `withLock` and `fs` in scope); resolves with its exit code and stderr. */
function child(body: string, onLine?: (line: string) => void): { pid: number; exit: Promise<{ code: number | null; stderr: string }> } {
  const src = `import { withLock } from ${JSON.stringify(LOCK_JS)}; import fs from 'node:fs'; ${body}`;
  const p = spawn(process.execPath, ['--input-type=module', '-e', src], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  p.stdout.setEncoding('utf8').on('data', (d: string) => d.split('\n').filter(Boolean).forEach((l) => onLine?.(l)));
  return { pid: p.pid!, exit: new Promise((resolve) => p.on('exit', (code) => resolve({ code, stderr }))) };
}

test('processes racing for the lock hold it one at a time', async (t) => {
  const dir = tempDir(t);
  const lock = path.join(dir, 'lock');
  const marker = path.join(dir, 'holder');
  // Each round: the holder makes the marker exclusively and removes it before it lets go; a second holder finds it.
  const body = `for (let i = 0; i < 100; i++) await withLock(${JSON.stringify(lock)}, async () => {
    fs.closeSync(fs.openSync(${JSON.stringify(marker)}, 'wx'));
    await new Promise((r) => setImmediate(r));
    fs.unlinkSync(${JSON.stringify(marker)});
  });`;
  const results = await Promise.all(Array.from({ length: 6 }, () => child(body).exit));
  t.deepEqual(
    results.map((r) => r.code),
    results.map(() => 0),
    results.map((r) => r.stderr).join(''),
  );
});

test("a live holder's lock is not taken over, even when what it wrote in it is empty or damaged", async (t) => {
  const dir = tempDir(t);
  const lock = path.join(dir, 'lock');
  let ready!: () => void;
  const held = new Promise<void>((r) => (ready = r));
  const holder = child(`await withLock(${JSON.stringify(lock)}, async () => { console.log('held'); await new Promise(() => setInterval(() => {}, 1000)); });`, () => ready());
  t.teardown(() => {
    try {
      process.kill(holder.pid, 'SIGKILL');
    } catch {
      /* ended already */
    }
  });
  const early = await Promise.race([held, holder.exit]);
  if (early) return t.fail(`the holder ended before holding the lock: ${early.stderr}`);
  for (const damage of ['', 'x y\n', '0 \n']) {
    // What the holder wrote is gone or damaged (a reader caught it half-written, or a stranger wrote it).
    const owner = fs.statSync(lock).isDirectory() ? path.join(lock, 'owner') : lock;
    fs.writeFileSync(owner, damage);
    let ran = false;
    await t.throwsAsync(withLock(lock, () => (ran = true), { waitMs: 0 }), { message: /locked by process/ }, JSON.stringify(damage));
    t.false(ran);
  }
  process.kill(holder.pid, 'SIGKILL');
  await holder.exit;
  t.is(await withLock(lock, () => 'mine', { waitMs: 0 }), 'mine', "a dead holder's lock is free at once");
});
