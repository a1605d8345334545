// readdir: merged listings of lower and new names with their types, and listing while names are
// created and removed (POSIX: a name present throughout is returned once; one added or removed
// meanwhile may or may not be; none twice).
import path from 'node:path';
import { fs, ls, read, type Case } from '../case.js';

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

/** One round of readdir/many-layers's changes (rotated: round r in the r-th mount before the last). */
function layerRound(dir: string, r: number): void {
  const p = (...n: string[]) => path.join(dir, ...n);
  fs.renameSync(p(`d${r - 1}`), p(`d${r}`)); // a chain of renames, one in each layer
  fs.writeFileSync(p(`d${r}`, `n${r}`), String(r));
  if (r === 2) fs.rmSync(p('gone'), { recursive: true }); // a whiteout over a lower directory
  if (r === 3) {
    fs.mkdirSync(p('gone')); // opaque over it
    fs.writeFileSync(p('gone', 'new'), 'new');
  }
  if (r === 4) fs.unlinkSync(p(`d${r}`, 'a')); // a lower file deleted below a renamed directory
  if (r === 5) fs.appendFileSync(p(`d${r}`, 'b'), '+5'); // copied up through the renames
  if (r === 6) fs.renameSync(p(`d${r}`, 'n1'), p('top-n1')); // a file made in the first layer, moved out
  if (r === 7) fs.rmSync(p(`d${r}`, 'n2')); // a file of an upper that is now a lower, deleted
  if (r === 8) fs.renameSync(p(`d${r}`, 'sub'), p('sub8')); // a lower subdirectory moved out
}

export const readdir: Record<string, Case> = {
  // Names and files spread over ten layers in the rotated configuration (each round's changes in its
  // own layer); everywhere else the same nine rounds in the one mount.
  'readdir/many-layers': {
    lower(dir) {
      fs.mkdirSync(path.join(dir, 'd0/sub'), { recursive: true });
      for (const n of ['a', 'b', 'c']) fs.writeFileSync(path.join(dir, 'd0', n), n);
      fs.writeFileSync(path.join(dir, 'd0/sub/s'), 's');
      fs.mkdirSync(path.join(dir, 'gone'));
      fs.writeFileSync(path.join(dir, 'gone/g'), 'g');
    },
    rotate(dir, round) {
      layerRound(dir, round);
      return true;
    },
    run(dir, o) {
      const p = (...n: string[]) => path.join(dir, ...n);
      if (fs.existsSync(p('d0'))) for (let r = 1; r <= 9; r++) layerRound(dir, r);
      o.see('names', ls(dir));
      o.do('ls d9', () => fs.readdirSync(p('d9'), { withFileTypes: true }).map((e) => `${e.name}:${e.isFile() ? 'f' : e.isDirectory() ? 'd' : '?'}`).sort());
      o.do('contents', () => ls(p('d9')).map((n) => `${n}=${read(p('d9', n))}`));
      o.do('ls gone', () => ls(p('gone')));
      o.do('ls sub8', () => ls(p('sub8')));
      o.do('cat top-n1', () => read(p('top-n1')));
      o.do('rename d9 e', () => fs.renameSync(p('d9'), p('e')));
      o.do('ls e', () => ls(p('e')));
      o.do('mkdir d0', () => fs.mkdirSync(p('d0')));
      o.do('ls d0', () => ls(p('d0')));
      o.do('rm -r e', () => fs.rmSync(p('e'), { recursive: true }));
      o.see('names after', ls(dir));
    },
  },
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
