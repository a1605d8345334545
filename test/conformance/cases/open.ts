// open(2) flags (O_EXCL, O_TRUNC, O_APPEND, O_CREAT on odd targets) and files unlinked or renamed
// while open: the open file keeps its data and takes writes; its link count says it is gone.
import path from 'node:path';
import { fs, ls, read, type Case } from '../case.js';

const { O_CREAT, O_EXCL, O_TRUNC, O_APPEND, O_RDONLY, O_WRONLY, O_RDWR, O_DIRECTORY, O_NOFOLLOW } = fs.constants;
const at = (dir: string) => (n: string) => path.join(dir, n);

function readFd(fd: number): string {
  const b = Buffer.alloc(4096);
  return b.subarray(0, fs.readSync(fd, b, 0, 4096, 0)).toString('latin1');
}

export const open: Record<string, Case> = {
  'open/excl': {
    lower: (dir) => fs.writeFileSync(path.join(dir, 'low'), 'low'),
    run(dir, o) {
      const p = at(dir);
      fs.writeFileSync(p('f'), 'f');
      fs.symlinkSync('nowhere', p('dangling'));
      fs.symlinkSync('f', p('link'));
      fs.mkdirSync(p('d'));
      for (const n of ['f', 'low', 'dangling', 'link', 'd', 'new']) {
        o.do(`O_CREAT|O_EXCL ${n}`, () => fs.closeSync(fs.openSync(p(n), O_CREAT | O_EXCL | O_WRONLY, 0o644)));
      }
      o.do('O_CREAT dangling (creates its target)', () => fs.closeSync(fs.openSync(p('dangling'), O_CREAT | O_WRONLY, 0o644)));
      o.see('names', ls(dir));
      o.see('nowhere', fs.existsSync(p('nowhere')));
    },
  },
  'open/trunc': {
    lower: (dir) => fs.writeFileSync(path.join(dir, 'low'), 'lower bytes'),
    run(dir, o) {
      const p = at(dir);
      fs.writeFileSync(p('f'), 'new bytes');
      o.do('O_TRUNC f', () => fs.closeSync(fs.openSync(p('f'), O_WRONLY | O_TRUNC)));
      o.do('size f', () => fs.statSync(p('f')).size);
      o.do('O_TRUNC low', () => fs.closeSync(fs.openSync(p('low'), O_RDWR | O_TRUNC)));
      o.do('read low', () => read(p('low')));
      fs.writeFileSync(p('g'), 'g bytes');
      o.do('O_RDONLY|O_TRUNC g', () => fs.closeSync(fs.openSync(p('g'), O_RDONLY | O_TRUNC)));
      o.do('size g', () => fs.statSync(p('g')).size);
      o.do('O_TRUNC dir', () => fs.openSync(dir, O_RDONLY | O_TRUNC | O_DIRECTORY));
    },
  },
  'open/append': {
    lower: (dir) => fs.writeFileSync(path.join(dir, 'low'), 'lower'),
    run(dir, o) {
      const p = at(dir);
      for (const n of ['low', 'f']) {
        if (n === 'f') fs.writeFileSync(p('f'), 'mine');
        const fd = fs.openSync(p(n), O_WRONLY | O_APPEND);
        o.do(`write at 0 through O_APPEND ${n}`, () => fs.writeSync(fd, Buffer.from('+1'), 0, 2, 0));
        const other = fs.openSync(p(n), O_WRONLY);
        o.do(`write at 0 through a plain fd`, () => fs.writeSync(other, Buffer.from('X'), 0, 1, 0));
        o.do(`append again`, () => fs.writeSync(fd, Buffer.from('+2')));
        fs.closeSync(other);
        fs.closeSync(fd);
        o.do(`read ${n}`, () => read(p(n)));
      }
    },
  },
  'open/odd-targets': {
    run(dir, o) {
      const p = at(dir);
      fs.writeFileSync(p('f'), 'f');
      fs.mkdirSync(p('d'));
      fs.symlinkSync('f', p('l'));
      o.do('O_CREAT on a dir', () => fs.openSync(p('d'), O_CREAT | O_WRONLY));
      o.do('O_WRONLY on a dir', () => fs.openSync(p('d'), O_WRONLY));
      o.do('O_DIRECTORY on a file', () => fs.openSync(p('f'), O_RDONLY | O_DIRECTORY));
      o.do('O_NOFOLLOW on a symlink', () => fs.openSync(p('l'), O_RDONLY | O_NOFOLLOW));
      o.do('through a file', () => fs.openSync(p('f/x'), O_RDONLY));
      o.do('O_CREAT in a missing dir', () => fs.openSync(p('no/x'), O_CREAT | O_WRONLY));
      o.do('O_CREAT trailing slash', () => fs.openSync(p('new/'), O_CREAT | O_WRONLY));
    },
  },
  'open/unlink-while-open': {
    lower: (dir) => fs.writeFileSync(path.join(dir, 'low'), 'lower'),
    run(dir, o) {
      const p = at(dir);
      fs.writeFileSync(p('f'), 'mine');
      for (const n of ['f', 'low']) {
        const fd = fs.openSync(p(n), O_RDWR);
        o.do(`unlink ${n}`, () => fs.unlinkSync(p(n)));
        o.do('fstat nlink', () => fs.fstatSync(fd).nlink);
        o.do('write', () => fs.writeSync(fd, Buffer.from('W'), 0, 1, 1));
        o.do('read', () => readFd(fd));
        o.do('ftruncate 2', () => fs.ftruncateSync(fd, 2));
        o.do('fstat size', () => fs.fstatSync(fd).size);
        fs.closeSync(fd);
        o.do(`stat ${n}`, () => fs.statSync(p(n)).size);
        o.do(`create ${n} again`, () => (fs.writeFileSync(p(n), 'again'), read(p(n))));
      }
      fs.mkdirSync(p('d'));
      const dfd = fs.openSync(p('d'), O_RDONLY | O_DIRECTORY);
      o.do('rmdir open dir', () => fs.rmdirSync(p('d')));
      o.do('fstat dir nlink', () => fs.fstatSync(dfd).nlink);
      fs.closeSync(dfd);
      o.see('names', ls(dir));
    },
  },
  'open/rename-while-open': {
    lower: (dir) => fs.writeFileSync(path.join(dir, 'low'), 'lower'),
    run(dir, o) {
      const p = at(dir);
      fs.writeFileSync(p('f'), 'mine');
      fs.writeFileSync(p('target'), 'target');
      const over = fs.openSync(p('target'), O_RDONLY);
      for (const n of ['f', 'low']) {
        const fd = fs.openSync(p(n), O_RDWR);
        o.do(`rename ${n} ${n}2`, () => fs.renameSync(p(n), p(`${n}2`)));
        o.do('write', () => fs.writeSync(fd, Buffer.from('W'), 0, 1, 0));
        fs.closeSync(fd);
        o.do(`read ${n}2`, () => read(p(`${n}2`)));
      }
      o.do('rename f2 over open target', () => fs.renameSync(p('f2'), p('target')));
      o.do('old target still reads', () => readFd(over));
      o.do('its nlink', () => fs.fstatSync(over).nlink);
      fs.closeSync(over);
      o.see('names', ls(dir));
    },
  },
};
