// `npm test -- AREA` (scripts/test, README): what each way of naming an area hands ava
// (scripts/test-files): a file by its source, a directory, part of a name, ava's own options passed
// on with their values; a name no test file matches is one line and exit 2, never a run of nothing.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('../../scripts/test-files', import.meta.url));
const files = (...args: string[]) => spawnSync(SCRIPT, args, { encoding: 'utf8' });

test('names become the compiled test files; ava options pass on', (t) => {
  const r = files('instance-cli', 'test/tar/scan.test.ts', './test/tar/', 'dist/test/cli-help.test.js', '--match', '*tmp*', '-v');
  t.is(r.status, 0, r.stderr);
  t.deepEqual(r.stdout.split('\n').filter(Boolean), [
    'dist/test/instance-cli-errors.test.js',
    'dist/test/instance-cli.test.js',
    'dist/test/tar/scan.test.js',
    'dist/test/tar/**/*.test.js',
    'dist/test/cli-help.test.js',
    '--match',
    '*tmp*',
    '-v',
  ]);
  t.is(files().stdout, '', 'no names: every test (test/ava.config.js)');
  // What is there now (the suite grows), listed apart from scripts/test-files: every compiled file below test/conformance.
  const dir = fileURLToPath(new URL('./conformance/', import.meta.url));
  const suite = readdirSync(dir).filter((f) => f.endsWith('.test.js')).sort().map((f) => `dist/test/conformance/${f}`);
  t.true(suite.length >= 4, suite.join(' '));
  t.deepEqual(files('conformance').stdout.split('\n').filter(Boolean), suite, 'part of a directory name: the files below it');
});

test('a name no test file matches: one line, exit 2', (t) => {
  const r = files('cli-help', 'no-such-area');
  t.is(r.status, 2);
  t.is(r.stdout, '');
  t.is(r.stderr, 'tarstack: no test file under test/ matches "no-such-area" (give a file, a directory or part of a name)\n');
});
