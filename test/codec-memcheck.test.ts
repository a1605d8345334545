// The gzip/zstd/xz decoders of the native binding under valgrind memcheck, through the JS that
// drives them (test/helpers/codec-child.ts): any invalid access or definite leak fails.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const child = fileURLToPath(new URL('./helpers/codec-child.js', import.meta.url));
const hasValgrind = spawnSync('valgrind', ['--version']).status === 0;
const VALGRIND = ['--error-exitcode=99', '--leak-check=full', '--show-leak-kinds=definite', '--errors-for-leak-kinds=definite', '--quiet'];

(hasValgrind ? test : test.skip)('the codecs decode, seek, fail and close under valgrind memcheck with no errors or leaks', (t) => {
  const r = spawnSync('valgrind', [...VALGRIND, process.execPath, child], { encoding: 'utf8' });
  t.is(r.status, 0, `codec child under valgrind failed:\n${r.stdout}\n${r.stderr}`);
});
