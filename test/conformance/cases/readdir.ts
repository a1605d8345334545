// readdir: merged listings of lower and new names with their types, and listing while names are
// created and removed (POSIX: a name present throughout is returned once; one added or removed
// meanwhile may or may not be; none twice).
import fs from 'node:fs';
import path from 'node:path';
import { ls, type Case } from '../case.js';

function listWhile(dir: string, change: (n: number) => void): { names: string[]; twice: string[] } {
  const d = fs.opendirSync(dir, { bufferSize: 1 });
  const names: string[] = [];
  for (let n = 0; ; n++) {
    const e = d.readSync();
    if (!e) break;
    names.push(e.name);
    change(n);
  }
  d.closeSync();
  return { names, twice: names.filter((x, i) => names.indexOf(x) !== i) };
}

export const readdir: Record<string, Case> = {
  'readdir/merged': {
    lower(dir) {
      fs.mkdirSync(path.join(dir, 'd/sub'), { recursive: true });
      for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(dir, 'd', `l${i}`), '');
      fs.symlinkSync('l0', path.join(dir, 'd/link'));
    },
    run(dir, o) {
      const d = path.join(dir, 'd');
      o.see('lower listing', ls(d));
      fs.writeFileSync(path.join(d, 'new'), '');
      fs.unlinkSync(path.join(d, 'l3'));
      fs.renameSync(path.join(d, 'l4'), path.join(d, 'moved'));
      fs.rmdirSync(path.join(d, 'sub'));
      fs.mkdirSync(path.join(d, 'sub'));
      o.see('merged listing', ls(d));
      o.see('types', fs.readdirSync(d, { withFileTypes: true }).map((e) => `${e.name}:${e.isFile() ? 'f' : e.isDirectory() ? 'd' : e.isSymbolicLink() ? 'l' : '?'}`).sort());
      o.see('sub is empty', ls(path.join(d, 'sub')));
      o.do('rmdir non-empty', () => fs.rmdirSync(d));
      for (const n of ls(d)) fs.rmSync(path.join(d, n), { recursive: true });
      o.do('rmdir emptied', () => fs.rmdirSync(d));
      o.see('names', ls(dir));
    },
  },
  'readdir/during-changes': {
    lower(dir) {
      fs.mkdirSync(path.join(dir, 'd'));
      for (let i = 0; i < 100; i++) fs.writeFileSync(path.join(dir, 'd', `l${i}`), '');
    },
    run(dir, o) {
      const d = path.join(dir, 'd');
      for (let i = 0; i < 100; i++) fs.writeFileSync(path.join(d, `n${i}`), '');
      const before = new Set(ls(d));
      const removed = new Set<string>();
      const made = listWhile(d, (n) => {
        if (n % 3 === 0) fs.writeFileSync(path.join(d, `c${n}`), '');
        if (n % 5 === 0) {
          for (const victim of [`l${99 - n / 5}`, `n${99 - n / 5}`]) {
            fs.unlinkSync(path.join(d, victim));
            removed.add(victim);
          }
        }
      });
      o.see('none twice', made.twice);
      o.see('every name present throughout is listed', [...before].filter((x) => !removed.has(x) && !made.names.includes(x)));
      o.see('only names that existed', made.names.filter((x) => !before.has(x) && !/^c\d+$/.test(x)));
      const again = ls(d);
      o.see('listing afterwards', again.length === before.size - removed.size + again.filter((x) => x.startsWith('c')).length);
    },
  },
};
