// The command line people touch before anything is mounted: -h and -V, the hint of a usage mistake
// said once, help laid out at the terminal's width (a pseudo-terminal of 160 columns) without a word
// cut in two, every positional described and every command with examples, shell completion of
// commands, options, choices and names, and none of it loading a command's implementation.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { CLI_MAIN, cliAvailable, makeTestRoot, removeTestRoot, tarstackCli, type CliResult } from './helpers/mount.js';

if (!cliAvailable()) test.skip(`the tarstack CLI is not built (${CLI_MAIN} is missing)`, () => undefined);
const it = cliAvailable() ? test : test.skip;

const root = cliAvailable() ? makeTestRoot('cli-help') : '';
test.after.always(() => root && removeTestRoot(root));
const env = { TARSTACK_HOME: path.join(root, 'store'), COLUMNS: '' };
const cli = (args: string[], extra: NodeJS.ProcessEnv = {}) => tarstackCli(args, { env: { ...env, ...extra } });
const version = (JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** Every command a person can run, as the words before its options (`image add`, `mount`, …). */
const LEAVES = [
  ...['create', 'list', 'info', 'mount', 'umount', 'rename', 'reset', 'rm', 'diff', 'status', 'commit', 'stack', 'unstack', 'completion'],
  ...['add', 'list', 'info', 'rename', 'rm', 'verify', 'mount', 'new', 'edit', 'close', 'export', 'import'].map((v) => `image ${v}`),
  ...['create', 'mount', 'umount', 'cutover', 'fallback', 'set', 'list', 'path', 'status', 'rm'].map((v) => `stackpoint ${v}`),
  'instance create',
  'instance diff',
];

it('-h and --help show help, -V and --version the version, for every command too', async (t) => {
  for (const flag of ['-h', '--help']) {
    const r = await cli([flag]);
    t.is(r.code, 0, `${flag}: ${r.stderr}`);
    t.regex(r.stdout, /^tarstack <command>/, flag);
    t.is(r.stderr, '', flag);
  }
  const sub = await cli(['image', 'add', '-h']);
  t.is(sub.code, 0, sub.stderr);
  t.regex(sub.stdout, /^tarstack image add <tar>/);
  for (const flag of ['-V', '--version']) {
    const r = await cli([flag]);
    t.is(r.code, 0, `${flag}: ${r.stderr}`);
    t.is(r.stdout, `${version}\n`, flag);
  }
});

it('a usage mistake is one line that names the help to read, once', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [[], /^tarstack: name a command \(see `tarstack --help`\)$/],
    [['image'], /^tarstack: name an image verb \(see `tarstack image --help`\)$/],
    [['image', 'add'], /^tarstack: missing arguments: tarstack image add <tar> \(see `tarstack image add --help`\)$/],
    [['image', 'add', 'x.tar', '--bogus'], /^tarstack: unknown argument: --bogus \(see `tarstack image add --help`\)$/],
    [['mout'], /^tarstack: did you mean mount\? \(see `tarstack --help`\)$/],
    [['mount', 'x', '--owners', 'me'], /^tarstack: owners "me": choose "mapped" or "stored" \(see `tarstack mount --help`\)$/],
  ];
  for (const [args, want] of cases) {
    const r = await cli(args);
    t.is(r.code, 2, `${args.join(' ')}: exit code`);
    t.is(r.stdout, '', `${args.join(' ')}: nothing on stdout`);
    t.regex(r.stderr.trimEnd(), want, args.join(' '));
    t.is(r.stderr.split('see `').length, 2, `${args.join(' ')}: the hint once`);
  }
});

/** Help as a terminal of `cols` columns shows it (script(1) gives the CLI a pseudo-terminal). */
function helpOnTerminal(args: string[], cols: number): string {
  const cmd = `stty cols ${cols} rows 50; exec ${[process.execPath, CLI_MAIN, ...args].map((w) => `'${w}'`).join(' ')}`;
  const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { env: { ...process.env, ...env }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`script: ${r.status} ${r.stderr}`);
  return r.stdout.replace(/\r/g, '');
}

const words = (s: string) => s.split(/\s+/).filter((w) => w !== '');

/** Help through a pipe, unwrapped (COLUMNS=1000): one CLI run per command line, shared by the tests. */
const flatHelps = new Map<string, Promise<CliResult>>();
const flatHelp = (args: string[]): Promise<CliResult> => {
  const key = args.join(' ');
  if (!flatHelps.has(key)) flatHelps.set(key, cli(args, { COLUMNS: '1000' }));
  return flatHelps.get(key)!;
};

it('help uses the width of the terminal (160 columns) and wraps only between words', async (t) => {
  if (spawnSync('script', ['--version']).status !== 0) return t.pass('script(1) is missing: no pseudo-terminal to test with');
  let topWide = '';
  for (const args of [['--help'], ['image', 'add', '--help'], ['stack', '--help'], ['mount', '--help']]) {
    const wide = helpOnTerminal(args, 160);
    if (args[0] === '--help') topWide = wide;
    const lines = wide.split('\n');
    t.true(lines.every((l) => l.length <= 160), `${args.join(' ')}: no line wider than the terminal`);
    t.true(lines.some((l) => l.length > 100), `${args.join(' ')}: the width is used, not 80 columns`);
    // The same help unwrapped (a pipe with COLUMNS=1000): the same words, so no word was cut.
    const flat = await flatHelp(args);
    t.deepEqual(words(wide), words(flat.stdout), `${args.join(' ')}: wrapped between words only`);
  }
  t.regex(topWide, /served in place through FUSE\./, 'the usage line of the issue, whole'); // the top help's run above, not a second one
});

it('every positional has a description and every command has examples', async (t) => {
  await Promise.all(
    LEAVES.map(async (leaf) => {
      const r = await flatHelp([...leaf.split(' '), '--help']);
      t.is(r.code, 0, `${leaf}: ${r.stderr}`);
      const section = (name: string) => (r.stdout.split(`\n${name}:\n`)[1] ?? '').split('\n\n')[0].split('\n').filter((l) => l.trim());
      for (const line of section('Positionals')) t.regex(line, /^\s+\S+\s{2,}\S.*\S/, `${leaf}: positional described: ${line}`);
      const usage = r.stdout.split('\n')[0];
      t.is(section('Positionals').length, (usage.match(/[<[]/g) ?? []).length, `${leaf}: each positional of "${usage}" listed`);
      const examples = section('Examples');
      t.true(examples.length >= 1 && examples.length <= 2, `${leaf}: one or two examples, got ${examples.length}`);
    }),
  );
});

/** Runs the bash completion script (`tarstack completion bash`'s output, saved in `script`) for the
 *  words of a command line (the last one being completed). */
function bashCompleteWith(words: string[], binDir: string, completion: string): string[] {
  const script = `source '${completion}'
COMP_WORDS=(tarstack ${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length}
_tarstack_complete; printf '%s\\n' "\${COMPREPLY[@]}"`;
  const r = spawnSync('bash', ['-c', script], { env: { ...process.env, ...env, PATH: `${binDir}:${process.env.PATH}` }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`bash: ${r.status} ${r.stderr}`);
  return r.stdout.split('\n').filter((l) => l !== '');
}

it('completion: the bash script completes commands, verbs, options, choices and names', async (t) => {
  const bin = path.join(root, 'bin');
  fs.mkdirSync(bin, { recursive: true });
  fs.symlinkSync(CLI_MAIN, path.join(bin, 'tarstack'));
  const src = path.join(root, 'src');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'f'), 'x');
  t.is(spawnSync('tar', ['-cf', path.join(root, 'base.tar'), '-C', src, '.']).status, 0);
  for (const args of [['image', 'add', path.join(root, 'base.tar')], ['image', 'add', src, '--name', 'dirs'], ['create', 'work', 'base'], ['stackpoint', 'create', 'web', 'base']]) {
    const r = await cli(args);
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  }
  const bash = await cli(['completion', 'bash']);
  t.regex(bash.stdout, /complete .*-F _tarstack_complete tarstack/);
  // Sourced from a file, not `source <(tarstack completion bash)` each time: the same script, without
  // a CLI process per completion.
  const script = path.join(root, 'completion.bash');
  fs.writeFileSync(script, bash.stdout);
  const bashComplete = (words: string[], binDir: string) => bashCompleteWith(words, binDir, script);
  t.deepEqual(bashComplete(['im'], bin), ['image']);
  const imageVerbs = bashComplete(['image', ''], bin); // once, not once per verb
  t.true(['add', 'close', 'edit', 'export', 'import', 'info', 'list', 'mount', 'new', 'rename', 'rm', 'verify'].every((v) => imageVerbs.includes(v)));
  t.deepEqual(bashComplete(['mount', 'work', '--t'], bin), ['--tmp']);
  t.deepEqual(bashComplete(['mount', 'work', '--owners', ''], bin), ['mapped', 'stored']);
  t.deepEqual(bashComplete(['mount', ''], bin), ['web.base', 'work'], 'instances (the stackpoint made one)');
  t.deepEqual(bashComplete(['create', 'new', ''], bin), ['base', 'dirs'], 'images where create takes one');
  t.deepEqual(bashComplete(['create', ''], bin), [], 'a new name: nothing offered');
  t.deepEqual(bashComplete(['image', 'add', 'x', '--parent', 'b'], bin), ['base']);
  t.deepEqual(bashComplete(['stackpoint', 'cutover', ''], bin), ['web']);
  t.deepEqual(bashComplete(['image', 'export', 'base', '-o', ''], bin), [], 'a file: left to the shell');
  const zsh = await cli(['completion', 'zsh']);
  t.regex(zsh.stdout, /^#compdef tarstack\n/);
  t.regex(zsh.stdout, /compdef _tarstack tarstack/);
  if (spawnSync('zsh', ['--version']).status === 0) t.is(spawnSync('zsh', ['-n'], { input: zsh.stdout }).status, 0, 'zsh parses it');
});

/** The modules of tarstack a run loads (an ESM resolve hook reports them on stderr). */
function loaded(args: string[]): string[] {
  const hook = `export async function resolve(s, c, n) { const r = await n(s, c); if (r.url.includes('/dist/src/')) process.stderr.write('loaded ' + r.url.replace(/^.*\\/dist\\/src\\//, '') + '\\n'); return r; }`;
  const register = `import { register } from 'node:module'; register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hook)}));`;
  const r = spawnSync(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(register)}`, CLI_MAIN, ...args], { env: { ...process.env, ...env }, encoding: 'utf8' });
  return [...new Set(r.stderr.split('\n').filter((l) => l.startsWith('loaded ')).map((l) => l.slice(7)))];
}

it('help, version and completion load no command implementation and no store', (t) => {
  for (const args of [['--help'], ['--version'], ['image', 'add', '--help'], ['__complete', 'image', '']]) {
    const mods = loaded(args);
    t.true(mods.includes('cli/main.js'), `${args.join(' ')}: the hook saw the CLI load`);
    const beyond = mods.filter((m) => !/^cli\/[^/]+\.js$/.test(m) && m !== 'cli/impl/completion.js' && !/^util\/(errors|error-funnel)\.js$/.test(m));
    t.deepEqual(beyond, [], args.join(' '));
  }
});
