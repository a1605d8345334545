// NAME_MAX (255 bytes) names and PATH_MAX (4096 bytes, NUL included) paths: what fits works, one
// byte more is ENAMETOOLONG, for names in the mount and in the lower. Issue 12's defect 1 (paths near
// PATH_MAX relative to the current directory) is defects.ts's `defect/1-path-max`.
import path from 'node:path';
import { fs, ls, sys, RENAME_EXCHANGE, type Case } from '../case.js';

const n255 = 'n'.repeat(255);
const n256 = 'n'.repeat(256);

export const names: Record<string, Case> = {
  'names/name-max': {
    lower: (dir) => fs.writeFileSync(path.join(dir, 'l'.repeat(255)), 'lower'),
    run(dir, o) {
      const p = (n: string) => path.join(dir, n);
      o.do('create 255', () => fs.writeFileSync(p(n255), '255'));
      o.do('create 256', () => fs.writeFileSync(p(n256), '256'));
      o.do('mkdir 256', () => fs.mkdirSync(p('d' + n255)));
      o.do('mkdir 255', () => fs.mkdirSync(p('d' + n255.slice(1))));
      o.do('symlink 256', () => fs.symlinkSync('x', p('s' + n255)));
      o.do('symlink to a 255 name', () => fs.symlinkSync(n255, p('s')));
      o.do('readlink', () => fs.readlinkSync(p('s')).length);
      o.do('link to 256', () => fs.linkSync(p(n255), p('k' + n255)));
      o.do('rename to 256', () => fs.renameSync(p(n255), p('r' + n255)));
      o.do('stat 256', () => fs.statSync(p('r' + n255)).size);
      o.do('read lower 255', () => fs.readFileSync(p('l'.repeat(255)), 'utf8'));
      o.do('rename lower 255 to another 255', () => fs.renameSync(p('l'.repeat(255)), p('m'.repeat(255))));
      o.do('exchange two 255s', () => sys.rename2(p('m'.repeat(255)), p(n255), RENAME_EXCHANGE));
      o.do('setxattr on a 255', () => sys.setxattr(p(n255), 'user.x', Buffer.from('1'), 0));
      o.see('names', ls(dir).map((n) => `${n[0]}${n.length}`));
    },
  },
  'names/path-max': {
    run(dir, o) {
      // Absolute paths: the caller's path is what counts, whatever the mount adds underneath.
      const seg = 'p'.repeat(200);
      let d = dir;
      while (d.length + seg.length + 1 < 4000) {
        d = path.join(d, seg);
        fs.mkdirSync(d);
      }
      const room = 4095 - d.length - 1; // PATH_MAX counts the NUL
      o.see('room is a name', room > 0 && room <= 255);
      const fits = path.join(d, 'f'.repeat(room));
      o.do('create at 4095 bytes', () => fs.writeFileSync(fits, 'x'));
      o.do('stat it', () => fs.statSync(fits).size);
      o.do('create at 4096 bytes', () => fs.writeFileSync(fits + 'g', 'x'));
      o.do('rename to 4095', () => fs.renameSync(fits, path.join(d, 'h'.repeat(room))));
      o.do('symlink at 4095, target of 4095', () => fs.symlinkSync(path.join(d, 'h'.repeat(room)), fits));
      o.do('read through it', () => fs.readFileSync(fits, 'utf8'));
      o.do('rm -r', () => fs.rmSync(path.join(dir, seg), { recursive: true }));
      o.see('names', ls(dir));
    },
  },
};
