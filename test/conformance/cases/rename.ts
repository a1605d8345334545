// rename(2) and renameat2(2) in their forms: over files, directories, hard links and special files,
// onto itself, into itself, and with RENAME_NOREPLACE, RENAME_EXCHANGE and RENAME_WHITEOUT, for
// names made in the mount and names of the lower layer.
import path from 'node:path';
import { fs, kind, ls, makeSpecial, nlink, read, RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT, sameInode, sys, TYPES, type Case, type Trace } from '../case.js';

const at = (dir: string) => (n: string) => path.join(dir, n);

/** What dir holds: each name with its type, and a regular file's bytes. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const n of fs.readdirSync(path.join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${n}` : n;
      const k = kind(path.join(dir, r));
      out.push(`${r} ${k}${k === 'f' ? ` ${read(path.join(dir, r))}` : ''}`);
      if (k === 'd') walk(r);
    }
  };
  walk('');
  return out;
}

function both(o: Trace, dir: string): void {
  o.see('tree', tree(dir));
}

export const rename: Record<string, Case> = {
  'rename/file-over-file': {
    run(dir, o) {
      const p = at(dir);
      fs.writeFileSync(p('a'), 'a');
      fs.writeFileSync(p('b'), 'b');
      o.do('rename a b', () => fs.renameSync(p('a'), p('b')));
      both(o, dir);
    },
  },
  'rename/errors': {
    run(dir, o) {
      const p = at(dir);
      fs.writeFileSync(p('f'), 'f');
      fs.mkdirSync(p('d'));
      fs.mkdirSync(p('e'));
      fs.mkdirSync(p('full'));
      fs.writeFileSync(p('full/x'), 'x');
      o.do('file over dir', () => fs.renameSync(p('f'), p('d')));
      o.do('dir over file', () => fs.renameSync(p('d'), p('f')));
      o.do('dir over non-empty dir', () => fs.renameSync(p('d'), p('full')));
      o.do('dir into itself', () => fs.renameSync(p('d'), p('d/sub')));
      o.do('missing source', () => fs.renameSync(p('nothing'), p('x')));
      o.do('through a file', () => fs.renameSync(p('f'), p('f/x')));
      o.do('to a missing dir', () => fs.renameSync(p('f'), p('no/x')));
      o.do('dot', () => fs.renameSync(p('d/.'), p('x')));
      o.do('dir over empty dir', () => fs.renameSync(p('d'), p('e')));
      o.do('onto itself', () => fs.renameSync(p('f'), p('f')));
      both(o, dir);
    },
  },
  'rename/hard-links': {
    run(dir, o) {
      const p = at(dir);
      fs.writeFileSync(p('a'), 'a');
      fs.linkSync(p('a'), p('b'));
      fs.writeFileSync(p('c'), 'c');
      o.do('rename a b (one inode: nothing happens)', () => fs.renameSync(p('a'), p('b')));
      o.see('names', ls(dir));
      o.do('rename c over b', () => fs.renameSync(p('c'), p('b')));
      o.do('nlink a', () => nlink(p('a')));
      o.do('link a d; rename d over a', () => (fs.linkSync(p('a'), p('d')), fs.renameSync(p('d'), p('a'))));
      o.do('nlink a', () => nlink(p('a')));
      both(o, dir);
    },
  },
  'rename/lower-dir': {
    lower(dir) {
      fs.mkdirSync(path.join(dir, 'd/sub'), { recursive: true });
      fs.writeFileSync(path.join(dir, 'd/a'), 'a');
      fs.writeFileSync(path.join(dir, 'd/sub/b'), 'b');
      fs.mkdirSync(path.join(dir, 'e'));
    },
    run(dir, o) {
      const p = at(dir);
      const ino = fs.statSync(p('d/a')).ino;
      o.do('rename d over empty e', () => fs.renameSync(p('d'), p('e')));
      o.see('e/a keeps its inode', fs.statSync(p('e/a')).ino === ino);
      o.do('rename e/sub f', () => fs.renameSync(p('e/sub'), p('f')));
      o.do('mkdir d', () => fs.mkdirSync(p('d')));
      o.do('rename f d/sub', () => fs.renameSync(p('f'), p('d/sub')));
      both(o, dir);
    },
  },
  'rename/lower-files': {
    lower(dir) {
      fs.writeFileSync(path.join(dir, 'a'), 'a');
      fs.writeFileSync(path.join(dir, 'b'), 'b');
      fs.mkdirSync(path.join(dir, 'd'));
      fs.writeFileSync(path.join(dir, 'd/c'), 'c');
    },
    run(dir, o) {
      const p = at(dir);
      o.do('rename a over b', () => fs.renameSync(p('a'), p('b')));
      o.do('rename d/c a', () => fs.renameSync(p('d/c'), p('a')));
      o.do('rmdir d', () => fs.rmdirSync(p('d')));
      o.do('rename a d', () => fs.renameSync(p('a'), p('d')));
      both(o, dir);
    },
  },
  'rename/noreplace': {
    lower: (dir) => fs.writeFileSync(path.join(dir, 'low'), 'low'),
    run(dir, o) {
      const p = at(dir);
      fs.writeFileSync(p('a'), 'a');
      fs.writeFileSync(p('b'), 'b');
      o.do('a onto b', () => sys.rename2(p('a'), p('b'), RENAME_NOREPLACE));
      o.do('a onto lower', () => sys.rename2(p('a'), p('low'), RENAME_NOREPLACE));
      o.do('a onto c', () => sys.rename2(p('a'), p('c'), RENAME_NOREPLACE));
      o.do('unlink low; b onto low', () => (fs.unlinkSync(p('low')), sys.rename2(p('b'), p('low'), RENAME_NOREPLACE)));
      both(o, dir);
    },
  },
  'rename/exchange': {
    lower(dir) {
      fs.writeFileSync(path.join(dir, 'low'), 'low');
      fs.mkdirSync(path.join(dir, 'ld'));
      fs.writeFileSync(path.join(dir, 'ld/x'), 'x');
    },
    run(dir, o) {
      const p = at(dir);
      fs.writeFileSync(p('a'), 'a');
      fs.mkdirSync(p('d'));
      fs.writeFileSync(p('d/in'), 'in');
      o.do('a with low', () => sys.rename2(p('a'), p('low'), RENAME_EXCHANGE));
      o.do('a with d', () => sys.rename2(p('a'), p('d'), RENAME_EXCHANGE));
      o.do('a with ld', () => sys.rename2(p('a'), p('ld'), RENAME_EXCHANGE));
      o.do('a with missing', () => sys.rename2(p('a'), p('none'), RENAME_EXCHANGE));
      o.do('exchange and noreplace', () => sys.rename2(p('a'), p('low'), RENAME_EXCHANGE | RENAME_NOREPLACE));
      o.do('into itself', () => sys.rename2(p('d'), p('d/in'), RENAME_EXCHANGE));
      both(o, dir);
    },
  },
  'rename/whiteout': {
    needs: 'root',
    lower: (dir) => fs.writeFileSync(path.join(dir, 'low'), 'low'),
    run(dir, o) {
      const p = at(dir);
      fs.writeFileSync(p('a'), 'a');
      o.do('a to b', () => sys.rename2(p('a'), p('b'), RENAME_WHITEOUT));
      o.do('low to c', () => sys.rename2(p('low'), p('c'), RENAME_WHITEOUT));
      both(o, dir);
    },
  },
};

for (const type of TYPES) {
  rename[`rename/over-${type}`] = {
    ...(type === 'c' || type === 'b' ? { needs: 'root' as const } : {}),
    run(dir, o) {
      const p = at(dir);
      makeSpecial(p('x'), type);
      makeSpecial(p('y'), type);
      fs.writeFileSync(p('f'), 'f');
      o.do('rename x to z', () => fs.renameSync(p('x'), p('z')));
      o.do('rename z over y', () => fs.renameSync(p('z'), p('y')));
      o.do('kind y', () => kind(p('y')));
      o.do('rename f over y', () => fs.renameSync(p('f'), p('y')));
      makeSpecial(p('x'), type);
      o.do('rename y over x', () => fs.renameSync(p('y'), p('x')));
      o.do('exchange x and a new file', () => (fs.writeFileSync(p('g'), 'g'), sys.rename2(p('x'), p('g'), RENAME_EXCHANGE)));
      o.see('kinds', ['x', 'g'].map((n) => kind(p(n))));
    },
  };
}

rename['rename/lower-special'] = {
  needs: 'root',
  lower(dir) {
    for (const t of ['l', 'p', 'c', 'b'] as const) makeSpecial(path.join(dir, t), t);
  },
  run(dir, o) {
    const p = at(dir);
    for (const t of ['l', 'p', 'c', 'b']) {
      o.do(`rename ${t} ${t}2`, () => fs.renameSync(p(t), p(`${t}2`)));
      o.see(`${t}2`, [kind(p(`${t}2`)), fs.lstatSync(p(`${t}2`)).rdev, kind(p(t))]);
    }
    o.do('rename p2 over c2', () => fs.renameSync(p('p2'), p('c2')));
    o.see('same inode l2 l2', sameInode(p('l2'), p('l2')));
    o.see('names', ls(dir));
  },
};
