// What commands report about the store agrees everywhere: one count of a layer's entries (names
// below the root, whiteouts apart) from image add, list, info, commit and close alike, checked
// against the tar itself; a directory image, which is never scanned, shows no counts rather than -1.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { InstanceSession, instanceSkipReason } from './helpers/instances.js';
import { makeTestRoot, removeTestRoot } from './helpers/mount.js';
import { execOk } from './helpers/exec.js';

const skipReason = await instanceSkipReason();
if (skipReason) test.skip(`CLI report suite skipped: ${skipReason}`, () => undefined);
const it = (title: string, fn: (t: ExecutionContext) => Promise<void>) => skipReason || test(title, fn);

const root = skipReason ? '' : makeTestRoot('cli-reports');
test.after.always(() => removeTestRoot(root));

let seq = 0;
/** A session with image "base": 3 directories, 5 files (two names of one hard-linked file), a symlink. */
async function session(t: ExecutionContext): Promise<InstanceSession> {
  const dir = path.join(root, `s${++seq}`);
  const src = path.join(dir, 'src');
  fs.mkdirSync(path.join(src, 'a/b'), { recursive: true });
  fs.mkdirSync(path.join(src, 'c'));
  for (const f of ['a/one', 'a/b/two', 'c/three']) fs.writeFileSync(path.join(src, f), `${f}\n`);
  fs.linkSync(path.join(src, 'a/one'), path.join(src, 'c/one-again'));
  fs.symlinkSync('a/one', path.join(src, 'link'));
  fs.writeFileSync(path.join(src, 'top'), 'top\n');
  execOk(['tar', '-cf', path.join(dir, 'base.tar'), '-C', src, '.']);
  const s = new InstanceSession(dir, t);
  await s.addImage(path.join(dir, 'base.tar'), 'base');
  return s;
}

const json = async <T>(s: InstanceSession, args: string[]): Promise<T> => JSON.parse((await s.ok([...args, '--json'])).stdout) as T;

/** Names below the root in a layer tar, and its whiteouts, as GNU tar lists them. */
function tarCounts(tar: string): { entries: number; whiteouts: number } {
  const names = execOk(['tar', '-tf', tar]).stdout.toString().split('\n').filter((n) => n !== '' && n !== './');
  const marker = (n: string) => path.basename(n.replace(/\/$/, '')).startsWith('.wh.');
  return { entries: names.filter((n) => !marker(n)).length, whiteouts: names.filter((n) => marker(n) && !n.endsWith('.wh..wh..opq')).length };
}

it('image add, list and info count the same entries, as the tar holds them', async (t) => {
  const s = await session(t);
  const added = await s.ok(['image', 'add', path.join(s.root, 'base.tar'), '--name', 'again']);
  t.regex(added.stdout, /^added image again: 10 members, 9 entries \(/, 'the root is a member, not an entry');
  const info = await json<{ entries: number; whiteouts: number; members: number }>(s, ['image', 'info', 'base']);
  t.like(info, { entries: 9, whiteouts: 0, members: 10 });
  t.deepEqual({ entries: info.entries, whiteouts: info.whiteouts }, tarCounts(path.join(s.root, 'base.tar')));
  t.regex((await s.ok(['image', 'list'])).stdout, /^base\s+-\s+9\s+\d+ KiB\s/m);
  t.regex((await s.ok(['image', 'info', 'base'])).stdout, /^entries\s+9$/m);
});

it('commit and image close report the entries and whiteouts that image info then shows', async (t) => {
  const s = await session(t);
  await s.ok(['create', 'w', 'base']);
  await s.withInstance('w', (dir) => {
    fs.writeFileSync(path.join(dir, 'new'), 'new\n');
    fs.rmSync(path.join(dir, 'c/three'));
    fs.rmSync(path.join(dir, 'link'));
    fs.mkdirSync(path.join(dir, 'n/m'), { recursive: true });
    fs.appendFileSync(path.join(dir, 'a/b/two'), 'more\n');
  });
  const committed = await s.ok(['commit', 'w', 'frozen']);
  const info = await json<{ entries: number; whiteouts: number; tar: string }>(s, ['image', 'info', 'frozen']);
  // new, n, n/m, a, a/b, a/b/two, c (the parent of a whiteout): 7 entries; c/three and link: 2 whiteouts.
  t.deepEqual({ entries: info.entries, whiteouts: info.whiteouts }, { entries: 7, whiteouts: 2 });
  t.deepEqual({ entries: info.entries, whiteouts: info.whiteouts }, tarCounts(info.tar), 'what the layer tar holds');
  t.regex(committed.stdout, /^committed instance w as image frozen on base: 7 entries, 2 whiteouts, 17 B of file data$/m);
  const jsonCommit = await json<{ entries: number; whiteouts: number }>(s, ['commit', 'w', 'frozen2']);
  t.like(jsonCommit, { entries: 7, whiteouts: 2 });

  await s.ok(['image', 'new', 'app', '--parent', 'base']);
  const edit = (await s.ok(['image', 'edit', 'app'])).stdout.trimEnd().split('\n').pop()!;
  fs.writeFileSync(path.join(edit, 'only'), 'one file\n');
  const closed = await s.ok(['image', 'close', 'app']);
  t.regex(closed.stdout, /^closed image app: 1 entry, 9 B of file data$/m);
  t.like(await json<object>(s, ['image', 'info', 'app']), { entries: 1, whiteouts: 0 });
});

it('a directory image lists no counts and no tar size, rather than -1 and 0 B', async (t) => {
  const s = await session(t);
  await s.ok(['image', 'add', path.join(s.root, 'src'), '--name', 'tree']);
  const list = (await s.ok(['image', 'list'])).stdout;
  t.regex(list, /^tree\s+-\s+-\s+-\s+\//m, 'PARENT, ENTRIES and SIZE are "-"');
  t.notRegex(list, /(^|\s)(-1|0 B)(\s|$)/m, 'no -1 or 0 B column (as words: the temp path may hold either)');
  t.like(await json<object>(s, ['image', 'info', 'tree']), { kind: 'dir', entries: null, whiteouts: null, members: null, tarBytes: null });
  t.regex((await s.ok(['image', 'info', 'tree'])).stdout, /^entries\s+not counted/m);
});

it('a name that is taken is refused with a free one suggested', async (t) => {
  const s = await session(t);
  execOk(['gzip', '-k', path.join(s.root, 'base.tar')]);
  const r = await s.cli(['image', 'add', path.join(s.root, 'base.tar.gz')]);
  t.is(r.code, 1);
  t.is(r.stderr, 'tarstack: an image named "base" already exists: name this one with --name, e.g. `--name base-2`\n');
  await s.ok(['image', 'add', path.join(s.root, 'base.tar.gz'), '--name', 'base-2']);
  t.regex((await s.cli(['image', 'add', path.join(s.root, 'base.tar.gz')])).stderr, /e\.g\. `--name base-3`/, 'the suggestion is free');
  t.regex((await s.cli(['image', 'new', 'base'])).stderr, /^tarstack: an image named "base" already exists: choose another name, e.g. "base-3"$/m);
  t.regex((await s.cli(['image', 'rename', 'base-2', 'base'])).stderr, /already exists: choose another name, e.g. "base-3"/);
});

it('diff of a mounted --tmp instance shows the changes of that mount, and none once it is gone', async (t) => {
  const s = await session(t);
  await s.ok(['create', 'scratch', 'base', '--tmp']);
  await s.ok(['create', 'kept', 'base']);
  await s.withInstance('kept', (dir) => fs.writeFileSync(path.join(dir, 'kept-change'), 'stays\n'));
  const porcelain = async (name: string) => (await s.ok(['diff', name, '--porcelain'])).stdout;
  await s.withInstance('scratch', async (dir) => {
    fs.writeFileSync(path.join(dir, 'hi'), 'hi\n');
    fs.rmSync(path.join(dir, 'top'));
    t.is(await porcelain('scratch'), 'A hi\nD top\n');
    t.regex((await s.ok(['diff', 'scratch'])).stdout, /\[A\] hi\n.*\[D\] top\n\n0 directories, 2 files\n$/s);
  });
  t.is(await porcelain('scratch'), '', 'vanished at unmount');
  const dir = await s.mountInstance('kept');
  const tmp = await s.cli(['mount', 'kept', '--tmp']);
  t.not(tmp.code, 0, 'one mount at a time');
  await s.umountInstance(dir, dir);
  const at = path.join(s.root, 'mnt-tmp');
  fs.mkdirSync(at);
  await s.ok(['mount', 'kept', at, '--tmp']);
  try {
    fs.writeFileSync(path.join(at, 'throwaway'), 'gone soon\n');
    t.is(await porcelain('kept'), 'A kept-change\nA throwaway\n', 'a --tmp mount of a kept instance: its changes on top of the kept ones');
  } finally {
    await s.umountInstance(at, at);
  }
  t.is(await porcelain('kept'), 'A kept-change\n');
});
