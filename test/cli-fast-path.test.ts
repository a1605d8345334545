// The CLI's fast path (src/cli/fast-path.ts) runs the hottest commands without yargs. It must never
// change what a command does: each command line here runs through it and through the full parser
// (TARSTACK_FULL_PARSE=1), and both must print the same and exit the same; anything the fast path
// does not know plainly is left to the full parser.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { fastParse } from '../src/cli/fast-path.js';
import { execOk } from './helpers/exec.js';
import { InstanceSession, instanceSkipReason } from './helpers/instances.js';
import { makeTestRoot, removeTestRoot, tarstackCli, type CliResult } from './helpers/mount.js';

const skipReason = await instanceSkipReason();
if (skipReason) test.skip(`fast path against the full parser skipped: ${skipReason}`, () => undefined);
const it = (title: string, fn: (t: ExecutionContext) => Promise<void>) => skipReason || test(title, fn);

const root = skipReason ? '' : makeTestRoot('cli-fast-path');
test.after.always(() => removeTestRoot(root));

const args = (line: string) => line.split(' ').filter((w) => w !== '');
const parsed = (line: string, env: NodeJS.ProcessEnv = {}) => {
  const c = fastParse(args(line), env);
  return c && 'args' in c ? c.args : c;
};

test('plain hot commands are parsed by hand, with the keys yargs gives their handlers', (t) => {
  t.deepEqual(parsed('--version'), { version: true });
  t.deepEqual(parsed('-V'), { version: true });
  t.deepEqual(parsed('mount work'), { instance: 'work' });
  t.deepEqual(parsed('instance mount work /mnt/x --tmp --allow-other'), { instance: 'work', dir: '/mnt/x', tmp: true, 'allow-other': true, allowOther: true });
  t.deepEqual(parsed('mount --all --store /s'), { all: true, store: '/s' });
  t.deepEqual(parsed('mount work --store=/s --json'), { instance: 'work', store: '/s', json: true });
  t.deepEqual(parsed('image mount img /mnt/x --nonempty'), { image: 'img', dir: '/mnt/x', nonempty: true });
  t.deepEqual(parsed('umount /mnt/x --lazy'), { target: '/mnt/x', lazy: true });
  t.deepEqual(parsed('status --json'), { json: true });
  t.deepEqual(parsed('list'), {});
  t.deepEqual(parsed('create work img'), { instance: 'work', image: 'img' });
  t.deepEqual(parsed('instance create work img --tmp --size 1G --json'), { instance: 'work', image: 'img', tmp: true, size: '1G', json: true });
  t.deepEqual(parsed('create --size=512M work img'), { instance: 'work', image: 'img', size: '512M' });
  const tls = { 'tls-verify': true, tlsVerify: true }; // yargs's default
  t.deepEqual(parsed('image add x.tar'), { tar: 'x.tar', ...tls });
  t.deepEqual(parsed('image add x.tar --name img --parent=base --copy'), { tar: 'x.tar', name: 'img', parent: 'base', copy: true, ...tls });
  t.deepEqual(parsed('image add --name img x.tar --store /s'), { tar: 'x.tar', name: 'img', store: '/s', ...tls });
  t.deepEqual(parsed('image pull h:5000/app:1 --tls-verify=false --name app --full'), { ref: 'h:5000/app:1', 'tls-verify': false, tlsVerify: false, name: 'app', full: true });
  t.deepEqual(parsed('image pull h/app --platform=linux/arm64'), { ref: 'h/app', platform: 'linux/arm64', ...tls });
  t.deepEqual(parsed('image pull h/app --tls-verify'), { ref: 'h/app', ...tls });
  t.deepEqual(parsed('image pull h/app --cert-dir /etc/certs'), { ref: 'h/app', 'cert-dir': '/etc/certs', certDir: '/etc/certs', ...tls });
});

test('anything unusual is left to the full parser', (t) => {
  for (const line of [
    '',
    '--help',
    'mount --help',
    'mount -h',
    'mount work --owners stored',
    'mount work --owners=stored',
    'mount work --foreground',
    'mount work --tmp --tmp',
    'mount work --no-tmp',
    'mount work --tmp=false',
    'mount a b c',
    'mount work -- x',
    'mount work --store',
    'mount work --store --json',
    'image mount img',
    'image mount img /x --backend fuse-native',
    'image list',
    'list extra',
    'status a b',
    'create a',
    'create a b c',
    'create a b --dir /x',
    'create a b --dir=/x',
    'create a b --size',
    'create a b --size=',
    'create a b --size -1',
    'create a b --size 1G --size 2G',
    'create a b --tmp --tmp',
    'create a b --no-tmp',
    'create a b --help',
    '--version list',
    'umount -z /x',
    'image add',
    'image add x.tar --name',
    'image add x.tar --name --copy',
    'image add x.tar --name=',
    'image add x.tar --name a --name b',
    'image add x.tar --no-tls-verify',
    'image add x.tar --copy=false',
    'image add x.tar y.tar',
    'image pull',
    'image pull h/app --name',
    'image pull h/app --name --full',
    'image pull h/app --tls-verify=no',
    'image pull h/app --full=false',
    'image pull h/app --cache-size 4G',
  ]) t.is(parsed(line), undefined, line);
  t.is(parsed('mount work', { TARSTACK_FULL_PARSE: '1' }), undefined, 'TARSTACK_FULL_PARSE=1');
});


/** The CLI's answer to `line` by both routes: the same stdout, stderr and exit code. */
async function same(t: ExecutionContext, s: InstanceSession, line: string[]): Promise<CliResult> {
  const fast = await tarstackCli(line, { env: { TARSTACK_HOME: s.home } });
  const full = await tarstackCli(line, { env: { TARSTACK_HOME: s.home, TARSTACK_FULL_PARSE: '1' } });
  const show = (r: CliResult) => ({ code: r.code, stdout: r.stdout.replace(/"started": "[^"]*"/g, ''), stderr: r.stderr });
  t.deepEqual(show(fast), show(full), line.join(' '));
  return fast;
}

/** `create NAME img EXTRA…` by both routes, under two names: the same answer and the same instance. */
async function sameCreate(t: ExecutionContext, s: InstanceSession, extra: string[]): Promise<void> {
  const made: Array<{ code: number | null; stdout: string; stderr: string; info: unknown }> = [];
  for (const [name, env] of [['fast', {}], ['full', { TARSTACK_FULL_PARSE: '1' }]] as const) {
    const n = `made-${name}-${extra.join('').replace(/[^a-z0-9]/gi, '')}`;
    const r = await tarstackCli(['create', n, 'img', ...extra], { env: { TARSTACK_HOME: s.home, ...env } });
    t.is(r.code, 0, r.stderr);
    const info = JSON.parse((await s.ok(['info', n, '--json'])).stdout) as Record<string, unknown>;
    const id = String(info.id);
    const plain = (x: string) => x.replaceAll(n, 'NAME').replaceAll(id, 'ID').replace(/"created": "[^"]*"/g, '');
    made.push({ code: r.code, stdout: plain(r.stdout), stderr: r.stderr, info: JSON.parse(plain(JSON.stringify({ ...info, created: '' }))) });
  }
  t.deepEqual(made[0], made[1], `create ${extra.join(' ')}`);
}

it('both routes print the same and exit the same, for answers and for mistakes', async (t) => {
  const dir = path.join(root, 'answers');
  const src = path.join(dir, 'src');
  fs.mkdirSync(src, { recursive: true });
  fs.writeFileSync(path.join(src, 'f'), 'f\n');
  execOk(['tar', '-cf', path.join(dir, 'img.tar'), '-C', src, '.']);
  const s = new InstanceSession(dir, t);
  for (const line of [['--version'], ['list'], ['status']]) await same(t, s, line); // an empty store
  await s.addImage(path.join(dir, 'img.tar'), 'img');
  for (const name of ['b', 'A', 'a-1', 'a']) await s.create(name, 'img');
  const at = await s.mountInstance('a');
  const missing = path.join(dir, 'missing');
  const full = path.join(dir, 'src');
  for (const line of [
    ['list'],
    ['list', '--json'],
    ['instance', 'list'],
    ['status'],
    ['status', '--json'],
    ['status', 'a'],
    ['status', 'b'],
    ['status', 'nosuch'],
    ['mount', 'nosuch'],
    ['mount'],
    ['mount', 'a'],
    ['mount', 'b', missing],
    ['mount', 'b', full],
    ['mount', 'b', at],
    ['image', 'mount', 'nosuch', missing],
    ['image', 'mount', 'img', missing],
    ['umount', 'b'],
    ['umount', missing],
    ['umount'],
    ['image', 'add', missing],
    ['image', 'add', path.join(dir, 'img.tar')], // "img" exists
    ['image', 'add', path.join(dir, 'img.tar'), '--name', 'img', '--parent', 'nosuch'],
    ['image', 'add', full, '--copy'],
  ]) await same(t, s, line);
  for (const line of [
    ['create', 'a', 'img'], // "a" exists
    ['create', 'new', 'nosuch'],
    ['create', 'new', 'img', '--size', 'lots'],
    ['instance', 'create', 'A', 'img', '--tmp'], // "A" exists too
  ]) await same(t, s, line);
  for (const extra of [[], ['--tmp', '--size', '1G'], ['--json'], ['--tmp', '--size=512M', '--json']]) await sameCreate(t, s, extra);
  const list = (await same(t, s, ['list'])).stdout.split('\n').slice(1, -1).map((l) => l.split(/\s+/)[0]);
  t.deepEqual(list.filter((n) => !n.startsWith('made-')), ['a', 'A', 'a-1', 'b'], 'names listed case-insensitively');
  await s.umountInstance(at, at);
});

it('a fast mount serves and unmounts as a fully parsed one does', async (t) => {
  const dir = path.join(root, 'mounts');
  const src = path.join(dir, 'src');
  fs.mkdirSync(src, { recursive: true });
  fs.writeFileSync(path.join(src, 'f'), 'f\n');
  execOk(['tar', '-cf', path.join(dir, 'img.tar'), '-C', src, '.']);
  const s = new InstanceSession(dir, t);
  await s.addImage(path.join(dir, 'img.tar'), 'img');
  await s.create('w', 'img');
  for (const env of [{}, { TARSTACK_FULL_PARSE: '1' }]) {
    const mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt, { recursive: true });
    const m = await tarstackCli(['mount', 'w', mnt], { env: { TARSTACK_HOME: s.home, ...env } });
    t.is(m.code, 0, m.stderr);
    t.is(m.stdout, `${mnt}\n`);
    t.is(fs.readFileSync(path.join(mnt, 'f'), 'utf8'), 'f\n');
    const u = await tarstackCli(['umount', 'w'], { env: { TARSTACK_HOME: s.home, ...env } });
    t.is(u.code, 0, u.stderr);
    t.is(u.stdout, `unmounted ${mnt}\n`);
  }
});
