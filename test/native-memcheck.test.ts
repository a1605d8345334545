// CI's bounded valgrind pass over the native binding: a test child serves a real mount under
// memcheck while ordinary fs calls use it; any invalid access or definite leak fails (valgrind exits
// 99). The full set of passes runs from scripts/native-memcheck.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { runChild } from './helpers/children.js';
import { fileURLToPath } from 'node:url';

const hasValgrind = spawnSync('valgrind', ['--version']).status === 0;
const driver = fileURLToPath(new URL('./memcheck-driver.js', import.meta.url));

(hasValgrind ? test : test.skip)('the native binding serves a mount under valgrind memcheck with no errors or leaks', async (t) => {
  // No time limit: valgrind on a loaded machine is slow, never wrong (the driver ends its own children).
  const r = await runChild([process.execPath, driver, '--quick']);
  t.is(r.code, 0, `memcheck driver failed:\n${r.stdout}\n${r.stderr}`);
  t.regex(r.stdout + r.stderr, /clean/);
});
