// removeTree: C first (by directory descriptors, tree.c), fs.rmSync and rm(1) behind it. What it
// must never do is follow a symlink out of the tree; what it must always do is remove the tree
// whole, whatever its names' bytes and however deep it goes.
import test from 'ava';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSys } from '../../src/native/sys.js';
import { removeTree } from '../../src/util/remove-tree.js';

function scratch(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'tarstack-rmtree-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('a tree with symlinks out of it, a fifo and non-UTF-8 names goes; what the links point at stays', (t) => {
  const dir = scratch(t);
  const outside = join(dir, 'outside');
  mkdirSync(outside);
  writeFileSync(join(outside, 'keep'), 'kept');
  const tree = join(dir, 'tree');
  mkdirSync(join(tree, 'a', 'b'), { recursive: true });
  symlinkSync(outside, join(tree, 'a', 'to-dir'));
  symlinkSync(join(outside, 'keep'), join(tree, 'a', 'b', 'to-file'));
  loadSys().mknod(join(tree, 'a', 'pipe'), 0o10644, 0, 0);
  const odd = Buffer.concat([Buffer.from(`${tree}/a/b/`), Buffer.from([0xff, 0xfe, 0x41])]);
  writeFileSync(odd, 'latin1 bytes');
  removeTree(tree);
  t.false(existsSync(tree));
  t.is(readFileSync(join(outside, 'keep'), 'utf8'), 'kept');
});

test('deeper than the C walk goes, the tree still goes whole (the general path takes over)', (t) => {
  const dir = scratch(t);
  const tree = join(dir, 'deep');
  let at = tree;
  for (let i = 0; i < 300; i++) at = join(at, 'd');
  mkdirSync(at, { recursive: true });
  writeFileSync(join(at, 'f'), 'bottom');
  t.throws(() => loadSys().removeTree(Buffer.from(tree)), { code: 'ELOOP' });
  t.true(existsSync(join(tree, 'd')), 'the C walk stopped without removing the directories above its bound');
  removeTree(tree);
  t.false(existsSync(tree));
});

test('a missing tree is no error; a file is removed like a tree', (t) => {
  const dir = scratch(t);
  t.notThrows(() => removeTree(join(dir, 'nothing-here')));
  writeFileSync(join(dir, 'file'), 'x');
  removeTree(Buffer.from(join(dir, 'file')));
  t.false(existsSync(join(dir, 'file')));
});
