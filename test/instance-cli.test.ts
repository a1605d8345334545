// Instance commands end to end: two instances of one image stay apart, `reset` restores the image,
// `diff` names exactly the changed paths (the definition is in helpers/changes.ts), and the life
// cycle (default mount dir, umount by name, rename, list/info/status --json, rm) holds together.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { expectedChanges, jsonAsPorcelain, jsonTypeErrors, parsePorcelain, porcelainLines } from './helpers/changes.js';
import { assertOneLineError, InstanceSession, instanceSkipReason } from './helpers/instances.js';
import { buildModelImage, type ModelImage } from './helpers/model-image.js';
import { applyOp, closeAll, type Op } from './helpers/model-ops.js';
import { kernelOverlay, normalizeNow } from './helpers/model-run.js';
import { makeTestRoot, removeTestRoot } from './helpers/mounted.js';
import { compareTrees, snapshotTree } from './helpers/tree.js';

const skipReason = await instanceSkipReason();
if (skipReason) test.skip(`instance CLI suite skipped: ${skipReason}`, () => undefined);
const serial = (title: string, fn: (t: ExecutionContext) => Promise<void>) => skipReason || test.serial(title, fn);

const root = skipReason ? '' : makeTestRoot('instance-cli');
let image: ModelImage;
test.before(() => {
  if (!skipReason) image = buildModelImage(path.join(root, 'image'));
});
test.after.always(() => removeTestRoot(root));

let seq = 0;
async function session(t: ExecutionContext): Promise<InstanceSession> {
  const s = new InstanceSession(path.join(root, `s${++seq}`), t);
  await s.addImage(image.tar, 'img');
  return s;
}

/** Applies ops to a root; every one must succeed (these are scripted changes, not a model run). */
function apply(dir: string, ops: Op[]): void {
  const state = { root: dir, fds: new Map<number, number>(), sinceNs: 0n };
  for (const op of ops) {
    const r = applyOp(state, op);
    if (!r.startsWith('ok')) throw new Error(`${JSON.stringify(op)} on ${dir}: ${r}`);
  }
  closeAll(state);
}

/** The tree kernel overlayfs shows after the same ops over the image: what an instance must show. */
async function kernelAfter(t: ExecutionContext, ops: Op[], rmrf: string[] = []) {
  const k = kernelOverlay(image.lower, path.join(root, `kernel-${++seq}`));
  t.teardown(() => k.dispose());
  apply(k.root, ops);
  for (const p of rmrf) fs.rmSync(path.join(k.root, p), { recursive: true });
  return snapshotTree(k.root);
}

const since = () => BigInt(Date.now() - 2000) * 1_000_000n;

const CHANGES_A: Op[] = [
  { op: 'mkdir', path: 'n', mode: 0o755 },
  { op: 'create', path: 'n/new.txt', flags: 'excl', mode: 0o644, data: { len: 10, seed: 1 } },
  { op: 'write', path: 'd1/a', offset: 0, data: { len: 4, seed: 2 } },
  { op: 'write', path: 'd1/big', offset: 1_048_576, data: { len: 4096, seed: 3 } },
  { op: 'chmod', path: 'd2/b', mode: 0o600 },
  { op: 'unlink', path: 'f1' },
  { op: 'rename', from: 'd1/sub', to: 'd1/moved' },
];
const RMRF_A = ['d2/deep'];
const CHANGES_B: Op[] = [
  { op: 'write', path: 'd1/a', offset: 0, data: { len: 100, seed: 9 } },
  { op: 'mkdir', path: 'e/only-b', mode: 0o700 },
  { op: 'setxattr', path: 'd1/hl', name: 'user.b', value: 'v1' },
];

/** What `diff` shows for CHANGES_A + RMRF_A, written out: the suites' reading of "names exactly the changed paths". */
const DIFF_A = [
  'M d1', 'M d1/a', 'M d1/big', 'A d1/moved', 'A d1/moved/a', 'A d1/moved/s', 'A d1/moved/up', 'D d1/sub', 'D d1/sub/a', 'D d1/sub/s',
  'D d1/sub/up', 'M d2', 'M d2/b', 'D d2/deep', 'D d2/deep/x', 'D d2/deep/x/y', 'D d2/deep/x/z', 'D f1', 'A n', 'A n/new.txt',
];

async function diffOf(t: ExecutionContext, s: InstanceSession, name: string) {
  const porcelain = parsePorcelain((await s.ok(['diff', name, '--porcelain'])).stdout);
  const json = (await s.ok(['diff', name, '--json'])).stdout;
  const asJson = jsonAsPorcelain(json);
  t.deepEqual(asJson.errors, [], `diff ${name} --json shape`);
  t.deepEqual(asJson.lines, porcelain, `diff ${name}: --json and --porcelain agree`);
  return { porcelain, json };
}

serial('two instances of one image never see each other\'s changes, across remounts', async (t) => {
  const s = await session(t);
  await s.create('a', 'img');
  await s.create('b', 'img');
  const a = await s.mountInstance('a');
  const b = await s.mountInstance('b');
  const t0 = since();
  apply(a, CHANGES_A);
  fs.rmSync(path.join(a, RMRF_A[0]!), { recursive: true });
  t.deepEqual(compareTrees(image.pristine, snapshotTree(b)), [], 'b still shows the image after a changed');
  apply(b, CHANGES_B);
  const wantA = normalizeNow(await kernelAfter(t, CHANGES_A, RMRF_A), t0);
  const wantB = normalizeNow(await kernelAfter(t, CHANGES_B), t0);
  const check = (when: string) => {
    t.deepEqual(compareTrees(wantA, normalizeNow(snapshotTree(a), t0)), [], `a ${when}`);
    t.deepEqual(compareTrees(wantB, normalizeNow(snapshotTree(b), t0)), [], `b ${when}`);
  };
  check('after both changed');
  await s.umountInstance('b', b);
  await s.umountInstance(a, a);
  await s.mountInstance('b', b);
  await s.mountInstance('a', a);
  check('after remounting both');
  await s.umountInstance('a', a);
  await s.umountInstance('b', b);
  t.deepEqual((await diffOf(t, s, 'a')).porcelain, DIFF_A, 'diff a names a\'s changes only');
  t.deepEqual((await diffOf(t, s, 'b')).porcelain, ['M d1/a', 'M d1/hl', 'M d2/hl', 'M e', 'A e/only-b'],
    'diff b names b\'s changes only (the xattr shows on both names of the hard link)');
});

serial('diff names exactly the changed paths; a renamed dir is D old + A new; tree view and --json agree', async (t) => {
  const s = await session(t);
  await s.create('a', 'img');
  t.deepEqual((await diffOf(t, s, 'a')).porcelain, [], 'a fresh instance has no changes');
  const dir = await s.mountInstance('a');
  const pristine = snapshotTree(dir);
  apply(dir, CHANGES_A);
  fs.rmSync(path.join(dir, RMRF_A[0]!), { recursive: true });
  const after = snapshotTree(dir);
  await s.umountInstance('a', dir);
  const expected = expectedChanges(pristine, after);
  t.deepEqual(porcelainLines(expected), DIFF_A, 'the written-out expectation matches the definition in helpers/changes.ts');
  const { porcelain, json } = await diffOf(t, s, 'a');
  t.deepEqual(porcelain, DIFF_A);
  t.deepEqual(jsonTypeErrors(json, expected), [], '--json types');
  const tree = await s.ok(['diff', 'a']);
  for (const name of ['moved', 'sub', 'deep', 'new.txt', 'f1', 'b']) t.true(tree.stdout.includes(name), `the tree view mentions ${name}`);
  t.is((await s.ok(['show-changes', 'a', '--porcelain'])).stdout, (await s.ok(['diff', 'a', '--porcelain'])).stdout, 'show-changes is diff');
});

serial('reset restores the image; refused while mounted, losing nothing', async (t) => {
  const s = await session(t);
  await s.create('a', 'img');
  const dir = await s.mountInstance('a');
  apply(dir, CHANGES_A);
  fs.rmSync(path.join(dir, RMRF_A[0]!), { recursive: true });
  const changed = snapshotTree(dir);
  assertOneLineError(t, await s.cli(['reset', 'a']), 'reset of a mounted instance');
  t.deepEqual(compareTrees(changed, snapshotTree(dir)), [], 'a refused reset changes nothing');
  await s.umountInstance('a', dir);
  await s.ok(['reset', 'a']);
  t.deepEqual((await diffOf(t, s, 'a')).porcelain, [], 'no changes after reset');
  await s.withInstance('a', (d) => t.deepEqual(compareTrees(image.pristine, snapshotTree(d)), [], 'the pristine tree'), dir);
});

serial('life cycle: default mount dir, umount by name, rename, list/info/status --json, rm', async (t) => {
  const s = await session(t);
  await s.ok(['create', 'first', 'img']); // the top-level alias
  const dir = await s.mountInstance('first', null);
  t.true(dir.startsWith(s.home + '/'), `the default mount dir ${dir} is under the store`);
  apply(dir, [{ op: 'create', path: 'kept', flags: 'excl', mode: 0o644, data: { len: 5, seed: 4 } }]);
  const status = JSON.parse((await s.ok(['status', '--json'])).stdout) as unknown;
  t.true(JSON.stringify(status).includes(JSON.stringify(dir).slice(1, -1)), 'status --json names the mount');
  await s.umountInstance('first', dir);
  await s.ok(['rename', 'first', 'second']);
  const names = () => s.ok(['list', '--json']).then((r) => (JSON.parse(r.stdout) as Array<{ name: string }>).map((i) => i.name));
  t.deepEqual(await names(), ['second'], 'list --json: an array of {name, ...}');
  const info = JSON.parse((await s.ok(['info', 'second', '--json'])).stdout) as { name?: string; image?: string };
  t.is(info.name, 'second');
  t.is(info.image, 'img');
  await s.withInstance('second', (d) => t.true(fs.existsSync(path.join(d, 'kept')), 'the renamed instance keeps its changes'));
  await s.ok(['rm', 'second']);
  t.deepEqual(await names(), []);
  await s.ok(['image', 'rm', 'img']); // nothing uses it any more
});
