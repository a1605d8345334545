// DirFds (src/util/dir-fds.ts): paths at any depth below a root, with a bounded set of descriptors
// that never points a path at the wrong directory after a rename or removal.
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DirFds } from '../../src/util/dir-fds.js';
import { b } from '../../src/util/latin1.js';
import { removeTree } from '../../src/util/remove-tree.js';

const NAME = 'n'.repeat(200);
const openFds = (): number => fs.readdirSync('/proc/self/fd').length;

/** A temp root holding `depth` directories of 200-byte names under `top` (made by path(), as the daemon would). */
function deepTree(t: { teardown: (f: () => void) => void }, depth: number): { root: string; paths: DirFds; rels: string[] } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dir-fds-'));
  const paths = new DirFds(root, 4);
  t.teardown(() => {
    paths.close();
    removeTree(root); // rm -rf past PATH_MAX
  });
  const rels: string[] = [];
  for (let i = 0, rel = 'top'; i <= depth; i++, rel += `/${NAME}`) {
    fs.mkdirSync(b(paths.path(rel)));
    rels.push(rel);
  }
  return { root, paths, rels };
}

test('files 20 KB below the root: made, read, renamed, linked and removed; descriptors stay bounded', (t) => {
  const before = openFds();
  const { paths, rels } = deepTree(t, 100);
  const deepest = rels[rels.length - 1]!;
  t.true(deepest.length > 20_000);
  fs.writeFileSync(b(paths.path(`${deepest}/f`)), 'bottom');
  t.is(fs.readFileSync(b(paths.path(`${deepest}/f`)), 'utf8'), 'bottom');
  // Back and forth between far-apart directories, past the capacity of 4.
  for (const rel of [...rels].reverse()) fs.writeFileSync(b(paths.path(`${rel}/g`)), rel.length.toString());
  for (const rel of rels) t.is(fs.readFileSync(b(paths.path(`${rel}/g`)), 'utf8'), rel.length.toString());
  fs.renameSync(b(paths.path(`${deepest}/f`)), b(paths.path(`${rels[50]}/f2`)));
  fs.linkSync(b(paths.path(`${rels[50]}/f2`)), b(paths.path(`${deepest}/f3`)));
  t.is(fs.lstatSync(b(paths.path(`${deepest}/f3`))).nlink, 2);
  fs.unlinkSync(b(paths.path(`${rels[50]}/f2`)));
  t.is(fs.readFileSync(b(paths.path(`${deepest}/f3`)), 'utf8'), 'bottom');
  t.true(openFds() <= before + 5, 'at most the capacity and the root are held');
  paths.close();
  t.is(openFds(), before);
});

test('a renamed directory: its old path names what is there now, not the directory the descriptor followed', (t) => {
  const { paths, rels } = deepTree(t, 30);
  const deep = rels[30]!;
  fs.writeFileSync(b(paths.path(`${deep}/f`)), 'old');
  const top20 = rels[20]!;
  fs.renameSync(b(paths.path(top20)), b(paths.path(`${rels[19]}/moved`)));
  paths.forget(paths.path(top20)); // what UpperStore does after each rename of a directory
  t.is(fs.lstatSync(b(paths.path(`${deep}/f`)), { throwIfNoEntry: false }), undefined, 'the old path is gone');
  for (let i = 20; i <= 30; i++) fs.mkdirSync(b(paths.path(rels[i]!)));
  fs.writeFileSync(b(paths.path(`${deep}/f`)), 'new');
  const movedDeep = `${rels[19]}/moved${deep.slice(top20.length)}`;
  t.is(fs.readFileSync(b(paths.path(`${movedDeep}/f`)), 'utf8'), 'old');
  t.is(fs.readFileSync(b(paths.path(`${deep}/f`)), 'utf8'), 'new');
});

test('a missing or non-directory ancestor: the operation fails as at a short path, and creates nothing above', (t) => {
  const { paths, rels } = deepTree(t, 30);
  const missing = `${rels[25]}/absent/${NAME}/${NAME}`;
  t.is(fs.lstatSync(b(paths.path(`${missing}/x`)), { throwIfNoEntry: false }), undefined);
  t.throws(() => fs.mkdirSync(b(paths.path(missing))), { code: 'ENOENT' });
  t.false(fs.existsSync(b(paths.path(`${rels[25]}/absent`))));
  fs.writeFileSync(b(paths.path(`${rels[25]}/file`)), '');
  t.throws(() => fs.mkdirSync(b(paths.path(`${rels[25]}/file/${NAME}/${NAME}/${NAME}/d`))), { code: 'ENOTDIR' });
});

test('a path taken while its directories are missing names the right place once they exist', (t) => {
  const { paths, rels } = deepTree(t, 5);
  const missing = `${rels[5]}/${Array(25).fill(NAME).join('/')}`; // 5 KB below the deepest that exists
  const early = paths.path(`${missing}/f`);
  t.is(fs.lstatSync(b(early), { throwIfNoEntry: false }), undefined);
  for (let at = missing.indexOf('/', rels[5]!.length + 1); at > 0; at = missing.indexOf('/', at + 1)) fs.mkdirSync(b(paths.path(missing.slice(0, at))));
  fs.mkdirSync(b(paths.path(missing)));
  // Used now, the early path is the right file or fails: never a file somewhere above.
  try {
    fs.writeFileSync(b(early), 'x');
    t.is(fs.readFileSync(b(paths.path(`${missing}/f`)), 'utf8'), 'x');
  } catch (err) {
    t.is((err as NodeJS.ErrnoException).code, 'ENOENT');
  }
  for (let at = missing.indexOf('/', rels[5]!.length + 1); at > 0; at = missing.indexOf('/', at + 1)) {
    t.false(fs.existsSync(b(paths.path(`${missing.slice(0, at)}/f`))), `no f ${at} bytes down`);
  }
});

