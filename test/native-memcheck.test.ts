// CI's bounded valgrind pass over the native binding: a test child serves a real mount under
// memcheck while ordinary fs calls use it; any invalid access or definite leak fails (valgrind exits
// 99). The full set of passes runs from scripts/native-memcheck.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const hasValgrind = spawnSync('valgrind', ['--version']).status === 0;
const driver = fileURLToPath(new URL('./memcheck-driver.js', import.meta.url));

(hasValgrind ? test : test.skip)('the native binding serves a mount under valgrind memcheck with no errors or leaks', (t) => {
  const r = spawnSync(process.execPath, [driver, '--quick'], { encoding: 'utf8', timeout: 110_000 });
  t.is(r.status, 0, `memcheck driver failed:\n${r.stdout}\n${r.stderr}`);
  t.regex(r.stdout + r.stderr, /clean/);
});
