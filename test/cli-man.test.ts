// The man pages: tarstack(1) and tarstack-overlay(1) ship in the package (package.json "man"), man
// renders them without a warning, and they keep up with the programs: every command, verb and
// option the CLI declares is named in tarstack(1), every mount option tarstack-overlay supports in
// tarstack-overlay(1).
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { completions } from '../src/cli/impl/completion.js';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const pkg = JSON.parse(fs.readFileSync(`${repo}package.json`, 'utf8')) as { man?: string[]; files?: string[] };
const PAGES = ['docs/man/tarstack.1', 'docs/man/tarstack-overlay.1'];
const hasMan = spawnSync('man', ['--version']).status === 0;
const it = hasMan ? test : test.skip;
if (!hasMan) test.skip('man pages: man-db is not installed here', () => undefined);

/** The page as man shows it, and what it said on stderr (groff's warnings included). */
function render(page: string, width: number): { text: string; warnings: string; status: number | null } {
  const r = spawnSync('man', ['--warnings', '--no-hyphenation', '--no-justification', '-l', `${repo}${page}`], {
    env: { ...process.env, MANWIDTH: String(width), LC_ALL: 'C.UTF-8', MAN_KEEP_FORMATTING: '' },
    encoding: 'utf8',
  });
  return { text: r.stdout, warnings: r.stderr, status: r.status };
}

test('package.json ships both pages and installs them', (t) => {
  t.deepEqual(pkg.man?.map((m) => m.replace(/^\.\//, '')), PAGES);
  t.true(pkg.files?.includes('docs/man'));
  for (const page of PAGES) t.true(fs.existsSync(`${repo}${page}`), page);
});

it('man renders both pages without warnings', (t) => {
  for (const page of PAGES) {
    const warned = spawnSync('sh', ['-c', `MANWIDTH=80 man --warnings -l "$1" 2>&1 >/dev/null`, 'sh', `${repo}${page}`], { encoding: 'utf8' });
    t.is(warned.stdout, '', `${page}: man --warnings at 80 columns`);
    const r = render(page, 80);
    t.is(r.status, 0, page);
    t.regex(r.text, /^NAME\n\s+tarstack/m, page);
    t.regex(r.text, /^SYNOPSIS$/m, page);
  }
});

it('tarstack(1) names every command, verb and option of the CLI', async (t) => {
  const text = render(PAGES[0], 300).text;
  const commands = (await completions([''])).filter((c) => c !== 'instance' && c !== 'image' && c !== 'stackpoint');
  t.true(commands.length > 10);
  const paths = [...commands.map((c) => [c]), ...(await completions(['image', ''])).map((v) => ['image', v]), ...(await completions(['stackpoint', ''])).map((v) => ['stackpoint', v])];
  for (const words of paths) {
    const shown = words[0] === 'image' || words[0] === 'stackpoint' ? words.join(' ') : words[0];
    t.regex(text, new RegExp(`(^|\\s)${shown.replace(/[-]/g, '\\-')}(\\s|$)`, 'm'), `${shown} is described`);
    for (const option of await completions([...words, '--'])) t.true(text.includes(option), `${words.join(' ')} ${option} is described`);
  }
});

it('tarstack-overlay(1) names every mount option tarstack-overlay supports', (t) => {
  const help = spawnSync(process.execPath, [`${repo}dist/src/mountprog/main.js`, '--help'], { encoding: 'utf8' });
  t.is(help.status, 0, help.stderr);
  const supported = /supported: ([^;]*);/.exec(help.stdout)?.[1].split(', ') ?? [];
  t.true(supported.length > 10, help.stdout);
  const text = render(PAGES[1], 300).text;
  for (const option of supported) for (const name of option.split('|')) t.true(text.includes(name.replace(/=$/, '')), `${name} is described`);
});
