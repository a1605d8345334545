// Timestamps: which of atime, mtime and ctime each change moves (POSIX's "shall mark for update"),
// explicit times with nanoseconds and UTIME_OMIT/UTIME_NOW, symlink times, and lower files' times
// kept through copy-up. Each change waits first until the clock has moved past the times it looks at,
// so "advanced" is a fact, never a race with the clock's granularity.
import path from 'node:path';
import { fs, clockPast, sys, times, type Case, type Trace } from '../case.js';

const UTIME_OMIT = -1;
const UTIME_NOW = -2;

/** Runs op and records which of p's times (and its directory's) advanced. */
function moved(o: Trace, label: string, files: string[], op: () => void): void {
  const before = files.map((f) => times(f));
  clockPast(before.reduce((m, t) => [t.a, t.m, t.c].reduce((x, y) => (y > x ? y : x), m), 0n));
  o.do(label, op);
  o.see(`${label}: a m c moved`, files.map((f, i) => {
    let now: ReturnType<typeof times>;
    try {
      now = times(f);
    } catch {
      return 'gone';
    }
    const b = before[i]!;
    return `${path.basename(f)} ${now.a > b.a ? 'a' : '-'}${now.m > b.m ? 'm' : '-'}${now.c > b.c ? 'c' : '-'}`;
  }));
}

export const timesCases: Record<string, Case> = {
  'times/new-file': {
    run(dir, o) {
      const d = path.join(dir, 'd');
      fs.mkdirSync(d);
      const f = path.join(d, 'f');
      moved(o, 'create', [d], () => fs.writeFileSync(f, ''));
      const t = times(f);
      o.see('new file: a = m = c', t.a === t.m && t.m === t.c);
      moved(o, 'write', [f, d], () => fs.appendFileSync(f, 'x'));
      moved(o, 'read', [f], () => fs.readFileSync(f));
      moved(o, 'chmod', [f, d], () => fs.chmodSync(f, 0o600));
      moved(o, 'truncate', [f], () => fs.truncateSync(f, 0));
      moved(o, 'truncate to the same size', [f], () => fs.truncateSync(f, 0));
      moved(o, 'rename', [f, d], () => fs.renameSync(f, path.join(d, 'h')));
      moved(o, 'setxattr', [path.join(d, 'h')], () => sys.setxattr(path.join(d, 'h'), 'user.t', Buffer.from('v'), 0));
      moved(o, 'mkdir inside', [d], () => fs.mkdirSync(path.join(d, 'sub')));
      moved(o, 'readdir', [d], () => fs.readdirSync(d));
    },
  },
  'times/links': {
    run(dir, o) {
      const f = path.join(dir, 'f');
      fs.writeFileSync(f, 'x');
      moved(o, 'link', [f, dir], () => fs.linkSync(f, path.join(dir, 'g')));
      moved(o, 'unlink one link', [f, dir], () => fs.unlinkSync(path.join(dir, 'g')));
    },
  },
  'times/explicit': {
    run(dir, o) {
      const f = path.join(dir, 'f');
      fs.writeFileSync(f, 'x');
      fs.symlinkSync('f', path.join(dir, 'l'));
      moved(o, 'utimens a=1.000000123 m=2.000000456', [f], () => sys.utimens(f, 1, 123, 2, 456));
      o.see('times', times(f).a.toString() + ' ' + times(f).m.toString());
      sys.utimens(f, 1_000_000_000, 1, 1_000_000_000, 2);
      moved(o, 'omit a, set m', [f], () => sys.utimens(f, 0, UTIME_OMIT, 5, 5));
      o.see('times', times(f).a.toString() + ' ' + times(f).m.toString());
      moved(o, 'now a, omit m', [f], () => sys.utimens(f, 0, UTIME_NOW, 0, UTIME_OMIT));
      o.see('m kept', times(f).m.toString());
      moved(o, 'both omitted', [f], () => sys.utimens(f, 0, UTIME_OMIT, 0, UTIME_OMIT));
      const l = path.join(dir, 'l');
      moved(o, 'symlink utimens (not followed)', [l, f], () => sys.utimens(l, 7, 7, 8, 8));
      o.see('symlink times', times(l).a.toString() + ' ' + times(l).m.toString());
      o.do('negative time', () => (sys.utimens(f, -1, 0, -100, 5), `${times(f).a} ${times(f).m}`));
      o.do('far future', () => (sys.utimens(f, 4_000_000_000, 0, 4_000_000_000, 999_999_999), `${times(f).a} ${times(f).m}`));
    },
  },
  'times/lower': {
    lower(dir) {
      fs.writeFileSync(path.join(dir, 'f'), 'lower');
      fs.writeFileSync(path.join(dir, 'g'), 'lower');
      fs.mkdirSync(path.join(dir, 'd'));
      fs.writeFileSync(path.join(dir, 'd/x'), 'x');
      fs.symlinkSync('f', path.join(dir, 'l'));
      for (const n of ['f', 'g', 'd/x', 'd']) sys.utimens(path.join(dir, n), 1_500_000_000, 111, 1_600_000_000, 222);
      sys.utimens(path.join(dir, 'l'), 1_500_000_000, 0, 1_600_000_000, 0);
    },
    run(dir, o) {
      const p = (n: string) => path.join(dir, n);
      o.see('lower mtimes', ['f', 'd', 'l'].map((n) => times(p(n)).m.toString()));
      moved(o, 'chmod f (copy-up)', [p('f')], () => fs.chmodSync(p('f'), 0o600));
      o.see('f mtime kept', times(p('f')).m.toString());
      moved(o, 'append g', [p('g')], () => fs.appendFileSync(p('g'), '+'));
      moved(o, 'create in d', [p('d'), p('d/x')], () => fs.writeFileSync(p('d/new'), ''));
      moved(o, 'rename d/x', [p('d/x'), p('d')], () => fs.renameSync(p('d/x'), p('d/y')));
      moved(o, 'lchown l (copy-up of a symlink)', [p('l')], () => fs.lchownSync(p('l'), process.getuid!(), process.getgid!()));
      o.see('l mtime', times(p('l')).m.toString());
    },
  },
};
