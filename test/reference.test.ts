// Self-tests of the reference tooling (no tarstack needed): GNU tar skips what the manifests say,
// the reference equals the tree a tar was made from, snapshots keep invalid UTF-8 names,
// compareTrees sees every kind of change, the overlayfs merge of three OCI layers, forced unmounts.
import anyTest, { type TestFn } from 'ava';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execOk } from './helpers/exec.js';
import { buildFixtures, type Fixture } from './helpers/fixtures.js';
import { buildLayerStack } from './helpers/fixtures-stream.js';
import { forceUnmount, makeTestRoot, mount, storeProcesses, strayMounts } from './helpers/mounted.js';
import { paxRecords } from './helpers/rawtar.js';
import { extractReference } from './helpers/reference.js';
import { compareTrees, snapshotTree, type TreeRecord } from './helpers/tree.js';
import { waitFor } from './helpers/children.js';

const test = anyTest as TestFn<{ root: string; fixtures: Map<string, Fixture> }>;
const needsRoot = process.getuid?.() !== 0 ? 'needs root (mount, mknod, chown, trusted.* xattrs)' : undefined;
const it = needsRoot ? test.skip : test;
if (needsRoot) test.skip(`reference self-tests skipped: ${needsRoot}`, () => undefined);

test.before(async (t) => {
  if (needsRoot) return;
  t.context.root = makeTestRoot('reference');
  const list = await buildFixtures(path.join(t.context.root, 'fixtures'));
  t.context.fixtures = new Map(list.map((f) => [f.name, f]));
});

test.after.always((t) => {
  if (!t.context.root) return;
  for (const m of strayMounts(t.context.root)) forceUnmount(m.mountpoint);
  fs.rmSync(t.context.root, { recursive: true, force: true });
});

let seq = 0;
const scratch = (t: { context: { root: string } }, label: string) => path.join(t.context.root, `${label}-${++seq}`);
const byPath = (records: TreeRecord[]) => new Map(records.map((r) => [r.path, r]));
const sha = (s: string) => crypto.createHash('sha256').update(s).digest('hex');

it('GNU tar skips exactly the members each manifest names', (t) => {
  for (const f of t.context.fixtures.values()) {
    if (f.expect === 'refuse' || !f.compare) continue;
    const ref = extractReference(f.path, scratch(t, f.name));
    t.false(ref.fatal, `${f.name}: ${ref.stderr.join(' | ')}`);
    t.deepEqual([...ref.skipped].sort(), [...(f.skipped ?? [])].sort(), f.name);
  }
});

it('GNU tar on the broken tars (what tarstack must refuse instead)', (t) => {
  const expected: Record<string, { fatal: boolean; exitCode: number }> = {
    'truncated-mid-body': { fatal: true, exitCode: 2 },
    'truncated-mid-header': { fatal: false, exitCode: 0 }, // GNU tar takes a short last record as the end
    'bad-checksum': { fatal: true, exitCode: 2 },
    'random-bytes': { fatal: true, exitCode: 2 },
    'zero-byte-file': { fatal: true, exitCode: 2 },
    'a-directory': { fatal: true, exitCode: 2 },
  };
  for (const [name, want] of Object.entries(expected)) {
    const ref = extractReference(t.context.fixtures.get(name)!.path, scratch(t, name));
    t.deepEqual({ fatal: ref.fatal, exitCode: ref.exitCode }, want, name);
  }
});

it('GNU tar facts the indexer must match: duplicates, links, implied dirs, hostile names', (t) => {
  const snap = (name: string) => {
    const dir = scratch(t, name);
    extractReference(t.context.fixtures.get(name)!.path, dir);
    return { dir, recs: byPath(snapshotTree(dir).records) };
  };
  const s = snap('stream-pax').recs;
  t.is(s.get('hl-mid')!.sha256, sha('first\n'), 'a hard link names the member as it stood then');
  t.deepEqual(s.get('dup')!.links, ['dup', 'hl-end']);
  t.is(s.get('dup')!.mode, 0o600);
  t.is(s.get('implied/a/b')!.mode, 0o755, 'implied directories: 0755, owner 0');
  t.is(s.get('pax/linkpath')!.mode, 0o777, 'symlinks are 0777 whatever the header says');
  t.deepEqual(s.get('links/sym')!.links, ['links/hl-to-sym', 'links/sym'], 'a hard link to a symlink shares its inode');
  t.deepEqual([s.get('modes/redefined')!.mode, s.get('modes/redefined')!.mtimeNs], [0o755, String(Date.parse('2003-03-03Z') * 1e6)]);
  t.is(s.get('pax/pre1970')!.mtimeNs, '-1250000000');

  const h = snap('hostile-names');
  t.deepEqual([...h.recs.keys()].sort(), ['', 'abs', 'abs/path', 'double', 'double/slash', 'hl-dotdot', 'ok', 'outside', 'sym-abs', 'sym-out']);
  t.deepEqual(h.recs.get('outside')!.links, ['hl-dotdot', 'outside'], '"../outside" as a hard link target is stripped to "outside"');
  for (const n of ['x', 'b', 'y']) t.false(fs.existsSync(path.join(path.dirname(h.dir), n)));

  const r = snap('replace-and-bad-links').recs;
  t.deepEqual(['f2d', 'emptyd2f', 'd2f', 'sym2f', 'f2sym'].map((n) => r.get(n)?.type), ['dir', 'file', 'dir', 'file', 'symlink']);

  const e = snap('raw-edge').recs;
  t.false(e.has('pax_global_header') || e.has('PaxHeader'));
  t.deepEqual([e.get('pax-renamed')!.mtimeNs, e.get('pax-renamed')!.uid], ['1500000000', 77], 'pax records apply to their member');
  t.deepEqual([e.get('after-pax')!.mtimeNs, e.get('after-pax')!.uid], ['1000000000000000000', 2], '...and to no other');
  t.is(e.get('pax-size')!.sha256, sha('sixsix'));
  t.is(e.get('b256-negative-mtime')!.mtimeNs, String(-86_400n * 1_000_000_000n));

  // libarchive writes -1.25 s as "mtime=-2.75" (seconds -2, fraction .75); POSIX and GNU tar read -2.75
  t.is(snap('bsdtar-pax').recs.get('times/pre1970')!.mtimeNs, '-2750000000');
});

it('the GNU tar reference equals the tree the tar was made from', (t) => {
  // formats that keep everything the source tree has (the gnu format keeps whole seconds only)
  const cases: Array<[string, string[]]> = [['gnu-posix', []], ['gnu-sparse-old', ['dense', 'huge', 'small-sparse']],
    ['pax-sparse-0.0', []], ['pax-sparse-0.1', []], ['pax-sparse-1.0', []]];
  for (const [name, wholeSeconds] of cases) {
    const f = t.context.fixtures.get(name)!;
    const src = path.join(path.dirname(f.path), 'src'); // the tree the fixture builder archived
    const ref = extractReference(f.path, scratch(t, name));
    t.deepEqual(compareTrees(snapshotTree(src), snapshotTree(ref.dir), { ignoreMtimeFor: wholeSeconds }), [], name);
  }
});

it('snapshotTree keeps invalid UTF-8 names byte for byte', (t) => {
  const dir = scratch(t, 'utf8');
  extractReference(t.context.fixtures.get('raw-edge')!.path, dir);
  const recs = byPath(snapshotTree(dir).records);
  const name = Buffer.from('bad\xff\xfename', 'latin1');
  t.is(recs.get(name.toString('latin1'))!.sha256, sha('invalid utf-8 name\n'));
  t.is(recs.get('dir\xe9/inner')!.type, 'file');
  t.true(fs.readdirSync(dir, { encoding: 'buffer' }).some((n) => n.equals(name)));
});

it('compareTrees reports mode, mtime, xattr, content, hard-link class, missing and extra entries', (t) => {
  const ref = scratch(t, 'cmp-ref');
  extractReference(t.context.fixtures.get('stream-pax')!.path, ref);
  const copy = scratch(t, 'cmp-copy');
  execOk(['cp', '-a', ref, copy]);
  t.deepEqual(compareTrees(snapshotTree(ref), snapshotTree(copy)), [], 'cp -a is faithful');
  fs.chmodSync(path.join(copy, 'empty'), 0o600);
  execOk(['touch', '-m', '-d', '@1.000000001', path.join(copy, 'dotted/file')]);
  execOk(['setfattr', '-n', 'user.one', '-v', 'changed', path.join(copy, 'pax/xattrs')]);
  fs.writeFileSync(path.join(copy, 'names/with space'), 'SPACE\n');
  fs.copyFileSync(path.join(copy, 'links/hard'), path.join(copy, 'tmp'));
  fs.renameSync(path.join(copy, 'tmp'), path.join(copy, 'links/hard'));
  fs.rmdirSync(path.join(copy, 'empty-dir'));
  fs.writeFileSync(path.join(copy, 'extra'), '');
  // writing and renaming bump these mtimes as a side effect; each change is checked once
  const diffs = compareTrees(snapshotTree(ref), snapshotTree(copy), { compareNlink: false, ignoreMtimeFor: ['', 'links', 'names', 'names/with space', 'links/hard'] });
  for (const re of [/^\/empty: mode 0600, reference 0644$/, /^\/dotted\/file: mtimeNs "1000000001"/, /^\/pax\/xattrs: xattrs /,
    /^\/names\/with space: sha256 /, /^\/links\/hard: hard-link class \[\], reference \[\/links\/hard \/links\/hard2 \/links\/orig\]$/,
    /^\/links\/orig: hard-link class \[\/links\/hard2 \/links\/orig\]/, /^\/empty-dir: missing/, /^\/extra: unexpected file$/]) {
    t.true(diffs.some((d) => re.test(d)), `${re} in:\n${diffs.join('\n')}`);
  }
  t.is(diffs.length, 9, diffs.join('\n')); // the 8 above plus /links/hard2's class
});

it('kernel overlayfs merges the three OCI layers as the spec says', async (t) => {
  const dir = scratch(t, 'stack');
  fs.mkdirSync(dir);
  const tars = await buildLayerStack(dir);
  const extracted = tars.map((tar) => extractReference(tar, tar.replace(/\.tar$/, '.d')).dir);
  const merged = await mount(t, path.join(dir, 'merged'), { kind: 'kernel', lowers: [...extracted].reverse(), upper: null, convertOci: true });
  try {
    const recs = byPath(snapshotTree(merged.root).records);
    t.deepEqual([...recs.keys()], ['', 'etc', 'etc/b', 'etc/sub', 'gone', 'gone/fresh', 'hl2', 'hl3', 'hl4', 'keep', 'keep/k1', 'keep/k2',
      'newdir', 'newdir/again', 'opq', 'opq/new2', 'usr', 'usr/tool']);
    t.deepEqual([recs.get('etc/b')!.sha256, recs.get('etc/b')!.mode], [sha('top b\n'), 0o600]);
    t.deepEqual([recs.get('usr/tool')!.sha256, recs.get('usr/tool')!.mode], [sha('mid tool\n'), 0o700]);
    t.deepEqual(recs.get('hl3')!.links, ['hl3', 'hl4']);
    t.deepEqual([recs.get('gone')!.mode, recs.get('etc')!.mode], [0o700, 0o755], 'the topmost layer\'s directory metadata');
    t.is(recs.get('etc')!.mtimeNs, String(Date.parse('2001-02-03T04:05:06Z') * 1e6), 'removing the markers kept the dir mtime');
  } finally {
    await merged.unmount();
  }
  t.deepEqual(strayMounts(dir), []);
});

it('forceUnmount clears a FUSE mount whose daemon is stopped; storeProcesses finds only its store', async (t) => {
  const dir = scratch(t, 'fuse');
  for (const d of ['lower', 'upper', 'work', 'mnt']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  const daemon = spawn('fuse-overlayfs', ['-f', '-o', `lowerdir=${dir}/lower,upperdir=${dir}/upper,workdir=${dir}/work`, `${dir}/mnt`], { stdio: 'ignore' });
  try {
    await waitFor(() => strayMounts(`${dir}/mnt`).length > 0 || daemon.exitCode !== null); // mounted, or gave up
    t.is(strayMounts(`${dir}/mnt`).length, 1, 'fuse-overlayfs mounted');
    daemon.kill('SIGSTOP'); // a hung daemon: a plain umount or stat could block on it
    forceUnmount(`${dir}/mnt`);
    t.deepEqual(strayMounts(dir), []);
  } finally {
    daemon.kill('SIGKILL');
  }
  const home = path.join(dir, 'store');
  const sleeper = spawn('sleep', ['600'], { env: { ...process.env, TARSTACK_HOME: home }, stdio: 'ignore' });
  try {
    await waitFor(() => storeProcesses(home).length > 0); // its environment is sleep's once it has exec'd
    t.deepEqual(storeProcesses(home), [sleeper.pid]);
    t.deepEqual(storeProcesses(`${home}-other`), []);
  } finally {
    sleeper.kill('SIGKILL');
  }
});

it('pax records count their own length', (t) => {
  for (const value of ['', 'x'.repeat(85), 'x'.repeat(86), 'x'.repeat(990), 'é'.repeat(40)]) {
    const rec = paxRecords([['comment', value]]);
    t.is(Number(rec.toString('latin1').split(' ')[0]), rec.length);
  }
});
