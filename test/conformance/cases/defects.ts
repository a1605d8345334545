// One case per defect issue 12 found, each its reproduction (the shell lines as calls).
import { createHash } from 'node:crypto';
import path from 'node:path';
import { fs, kind, ls, makeSpecial, nlink, read, S_IFCHR, sys, type Case } from '../case.js';

const bytes = (n: number): Buffer => {
  const b = Buffer.alloc(n);
  let x = 12345;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
};
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex').slice(0, 16);

export const defects: Record<string, Case> = {
  // 1: a 4,050-byte path relative to the current directory (the daemon's own prefix must not count).
  'defect/1-path-max': {
    run(dir, o) {
      const cwd = process.cwd();
      process.chdir(dir);
      try {
        const long = Array.from({ length: 16 }, () => 'd'.repeat(250)).join('/');
        o.do('mkdir -p 4015 bytes', () => void fs.mkdirSync(long, { recursive: true }));
        o.do('touch 4046 bytes', () => fs.writeFileSync(`${long}/${'f'.repeat(30)}`, 'deep'));
        o.do('read it', () => read(`${long}/${'f'.repeat(30)}`));
        o.do('rename it within', () => fs.renameSync(`${long}/${'f'.repeat(30)}`, `${long}/${'g'.repeat(30)}`));
        o.do('link it', () => fs.linkSync(`${long}/${'g'.repeat(30)}`, `${long}/${'h'.repeat(30)}`));
        o.do('nlink', () => nlink(`${long}/${'h'.repeat(30)}`));
        o.do('xattr', () => (sys.setxattr(`${long}/${'g'.repeat(30)}`, 'user.x', Buffer.from('1'), 0), sys.getxattr(`${long}/${'g'.repeat(30)}`, 'user.x')?.toString()));
        o.do('rm -r', () => fs.rmSync('d'.repeat(250), { recursive: true }));
      } finally {
        process.chdir(cwd);
      }
    },
  },
  // 2: hard links to fifos, sockets, symlinks and devices (the link count lived in a user.* xattr).
  'defect/2-hard-links-to-special-files': {
    run(dir, o) {
      for (const t of ['p', 's', 'l', ...(process.getuid?.() === 0 ? ['c', 'b'] : [])] as const) {
        const a = path.join(dir, t);
        makeSpecial(a, t as 'p');
        o.do(`ln ${t} ${t}2`, () => fs.linkSync(a, `${a}2`));
        o.do(`nlink ${t}`, () => nlink(a));
        o.do(`rm ${t}; nlink ${t}2`, () => (fs.unlinkSync(a), nlink(`${a}2`)));
      }
    },
  },
  // 3: every live name of a hard-link set, through unlink and rename (tarstack-overlay kept one).
  'defect/3-stale-names': {
    lower: (dir) => fs.writeFileSync(path.join(dir, 'f'), 'lower f'),
    run(dir, o) {
      const p = (n: string) => path.join(dir, n);
      fs.writeFileSync(p('A'), 'a');
      fs.linkSync(p('A'), p('B'));
      fs.unlinkSync(p('A'));
      o.do('touch A; ln A B; rm A; ln B A', () => fs.linkSync(p('B'), p('A')));
      fs.writeFileSync(p('X'), 'x');
      fs.linkSync(p('X'), p('Y'));
      fs.renameSync(p('X'), p('Z'));
      fs.unlinkSync(p('Z'));
      o.do('touch X; ln X Y; mv X Z; rm Z; cat Y', () => read(p('Y')));
      o.do('ln f L', () => fs.linkSync(p('f'), p('L')));
      o.do('rm f', () => fs.unlinkSync(p('f')));
      o.do('cat L', () => read(p('L')));
      o.do('ln L f', () => fs.linkSync(p('L'), p('f')));
      o.do('cat f', () => read(p('f')));
      o.do('nlink', () => [nlink(p('f')), nlink(p('L'))]);
    },
  },
  // 4: a directory renamed in an upper that is then a lower (the redirect must be followed there).
  // Outside the rotated configuration the rename happens in the same mount.
  'defect/4-redirect-in-lower': {
    lower(dir) {
      fs.mkdirSync(path.join(dir, 'd/sub'), { recursive: true });
      fs.writeFileSync(path.join(dir, 'd/a'), 'a');
      fs.writeFileSync(path.join(dir, 'd/sub/b'), 'b');
    },
    rotate(dir, round) {
      if (round !== 1) return false;
      fs.renameSync(path.join(dir, 'd'), path.join(dir, 'e'));
      fs.mkdirSync(path.join(dir, 'x'));
      fs.renameSync(path.join(dir, 'e/sub'), path.join(dir, 'x/moved'));
      return true;
    },
    run(dir, o) {
      if (fs.existsSync(path.join(dir, 'd'))) {
        fs.renameSync(path.join(dir, 'd'), path.join(dir, 'e'));
        fs.mkdirSync(path.join(dir, 'x'));
        fs.renameSync(path.join(dir, 'e/sub'), path.join(dir, 'x/moved'));
      }
      o.see('names', ls(dir));
      o.do('ls e', () => ls(path.join(dir, 'e')));
      o.do('ls x/moved', () => ls(path.join(dir, 'x/moved')));
      o.do('cat e/a', () => read(path.join(dir, 'e/a')));
      o.do('rename e f', () => fs.renameSync(path.join(dir, 'e'), path.join(dir, 'f')));
      o.do('ls f', () => ls(path.join(dir, 'f')));
    },
  },
  // 5: a char 0:0 node is how overlayfs writes a whiteout: refused (EPERM), as the kernel does.
  'defect/5-mknod-char-0-0': {
    needs: 'root',
    run(dir, o) {
      const w = path.join(dir, 'w');
      fs.mkdirSync(w);
      o.do('mknod w/c c 0 0', () => sys.mknod(path.join(w, 'c'), S_IFCHR | 0o644, 0, 0));
      o.do('ls w', () => ls(w));
      o.do('kind w/c', () => kind(path.join(w, 'c')));
      o.do('rmdir w', () => fs.rmdirSync(w));
    },
  },
  // 6: file bytes from a compressed lower, read and appended to (the append copies them up).
  'defect/6-compressed-lower': {
    lower(dir) {
      fs.writeFileSync(path.join(dir, 'big'), bytes(700_000));
      fs.writeFileSync(path.join(dir, 'small'), 'small file\n');
    },
    run(dir, o) {
      const big = path.join(dir, 'big');
      o.do('sha big', () => sha(fs.readFileSync(big)));
      o.do('read small', () => read(path.join(dir, 'small')));
      o.do('append to big', () => fs.appendFileSync(big, 'tail'));
      o.do('sha big', () => sha(fs.readFileSync(big)));
    },
  },
};
