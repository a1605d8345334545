// Link counts of every file type through link, rename and unlink, for objects made in the mount and
// for objects of the lower layer (copied up on the first change), and hard-link sets of the lower.
import path from 'node:path';
import { fs, makeSpecial, nlink, sameInode, TYPES, type Case } from '../case.js';

const DEVICES = new Set(['c', 'b']);

function linkCycle(dir: string, a: string, o: import('../case.js').Trace): void {
  const p = (n: string) => path.join(dir, n);
  o.see('nlink a', nlink(p(a)));
  o.do('link a b', () => fs.linkSync(p(a), p('b')));
  o.do('nlink a, b', () => [nlink(p(a)), nlink(p('b'))]);
  o.do('same inode', () => sameInode(p(a), p('b')));
  o.do('rename b c', () => fs.renameSync(p('b'), p('c')));
  o.do('nlink a, c', () => [nlink(p(a)), nlink(p('c'))]);
  o.do('link c d', () => fs.linkSync(p('c'), p('d')));
  o.do('nlink a, c, d', () => [nlink(p(a)), nlink(p('c')), nlink(p('d'))]);
  o.do('unlink a', () => fs.unlinkSync(p(a)));
  o.do('nlink c, d', () => [nlink(p('c')), nlink(p('d'))]);
  o.do('unlink c', () => fs.unlinkSync(p('c')));
  o.do('nlink d', () => nlink(p('d')));
  o.do('names', () => fs.readdirSync(dir).sort());
}

export const links: Record<string, Case> = {};
for (const type of TYPES) {
  links[`links/new-${type}`] = {
    ...(DEVICES.has(type) ? { needs: 'root' as const } : {}),
    run(dir, o) {
      makeSpecial(path.join(dir, 'a'), type);
      if (type === 'd') {
        o.do('link dir', () => fs.linkSync(path.join(dir, 'a'), path.join(dir, 'b')));
        return;
      }
      linkCycle(dir, 'a', o);
    },
  };
  if (type === 's' || type === 'd') continue; // GNU tar leaves sockets out of an archive
  links[`links/lower-${type}`] = {
    lower: (dir) => makeSpecial(path.join(dir, 'a'), type),
    run: (dir, o) => linkCycle(dir, 'a', o),
  };
}

links['links/dir-nlink'] = {
  run(dir, o) {
    const d = path.join(dir, 'd');
    o.do('mkdir d', () => fs.mkdirSync(d));
    o.see('nlink d', nlink(d));
    o.do('mkdir d/s, d/t', () => (fs.mkdirSync(path.join(d, 's')), fs.mkdirSync(path.join(d, 't'))));
    o.see('nlink d', nlink(d));
    o.do('rename d/t e', () => fs.renameSync(path.join(d, 't'), path.join(dir, 'e')));
    o.see('nlink d', nlink(d));
    o.do('rmdir d/s', () => fs.rmdirSync(path.join(d, 's')));
    o.see('nlink d', nlink(d));
  },
};

links['links/lower-set'] = {
  lower(dir) {
    fs.writeFileSync(path.join(dir, 'f'), 'lower');
    fs.linkSync(path.join(dir, 'f'), path.join(dir, 'g'));
  },
  run(dir, o) {
    const p = (n: string) => path.join(dir, n);
    o.see('nlink f, g', [nlink(p('f')), nlink(p('g'))]);
    o.see('same inode', sameInode(p('f'), p('g')));
    o.do('append through f', () => fs.appendFileSync(p('f'), '+f'));
    o.do('read g', () => fs.readFileSync(p('g'), 'utf8'));
    o.see('nlink f, g', [nlink(p('f')), nlink(p('g'))]);
    o.see('same inode', sameInode(p('f'), p('g')));
    o.do('link g h', () => fs.linkSync(p('g'), p('h')));
    o.do('nlink f, g, h', () => [nlink(p('f')), nlink(p('g')), nlink(p('h'))]);
    o.do('unlink f', () => fs.unlinkSync(p('f')));
    o.do('nlink g, h', () => [nlink(p('g')), nlink(p('h'))]);
    o.do('read h', () => fs.readFileSync(p('h'), 'utf8'));
  },
};
