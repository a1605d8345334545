// Permission checks as another user (CONFORMANCE_OTHER), modes of files in the mount and in the
// lower, and sticky directories: who may read, write, remove and rename what. The other user's
// operations go in batches (one child each), between the owner's changes.
import path from 'node:path';
import { fs, asOther, ls, type Case } from '../case.js';

const other = (): [number, number] => (process.env.CONFORMANCE_OTHER ?? '').split(':').map(Number) as [number, number];

/** Records each op of a batch with its outcome. */
function batch(o: import('../case.js').Trace, ops: string[][], label: (op: string[]) => string): void {
  const got = asOther(...ops);
  ops.forEach((op, i) => o.see(label(op), got[i]));
}

/** Owner and mode of each name in dir, as uid:gid:mode (the other user's uid shown as "other"). */
function owners(dir: string): string[] {
  const [ou] = other();
  return ls(dir).map((n) => {
    const st = fs.lstatSync(path.join(dir, n));
    return `${n} ${st.uid === ou ? 'other' : st.uid}:${st.gid}:${(st.mode & 0o7777).toString(8)}`;
  });
}

export const perms: Record<string, Case> = {
  // New entries in a set-gid directory take its group (and a new directory its set-gid bit), made by
  // root or another user, in a new directory and in a lower one over a whiteout.
  'perms/setgid-dir': {
    needs: 'root',
    lower(dir) {
      fs.mkdirSync(path.join(dir, 'ld'));
      fs.writeFileSync(path.join(dir, 'ld/f'), 'x');
    },
    run(dir, o) {
      const dirs = [path.join(dir, 'd'), path.join(dir, 'ld')];
      for (const d of dirs) {
        if (!fs.existsSync(d)) fs.mkdirSync(d);
        fs.chownSync(d, 0, 4242);
        fs.chmodSync(d, 0o2777);
        fs.rmSync(path.join(d, 'f'), { force: true });
        fs.writeFileSync(path.join(d, 'f'), '');
        fs.mkdirSync(path.join(d, 'sub'));
        fs.symlinkSync('f', path.join(d, 'l'));
      }
      o.see('other creates', asOther(...dirs.map((d) => ['create', path.join(d, 'o')])));
      for (const d of dirs) o.see(`${path.basename(d)}: owners`, owners(d));
    },
  },
  'perms/modes': {
    needs: 'root',
    lower(dir) {
      fs.writeFileSync(path.join(dir, 'l600'), 'x');
      fs.chmodSync(path.join(dir, 'l600'), 0o600);
      fs.writeFileSync(path.join(dir, 'l644'), 'x');
      fs.chmodSync(path.join(dir, 'l644'), 0o644);
      fs.mkdirSync(path.join(dir, 'ld700'));
      fs.chmodSync(path.join(dir, 'ld700'), 0o700);
      fs.writeFileSync(path.join(dir, 'ld700/f'), 'x');
    },
    run(dir, o) {
      const p = (n: string) => path.join(dir, n);
      const rel = (op: string[]) => `other ${op[0]} ${op.slice(1).map((x) => path.relative(dir, x)).join(' ')}`;
      fs.chmodSync(dir, 0o755);
      for (const [n, mode] of [['n600', 0o600], ['n644', 0o644], ['n666', 0o666]] as const) {
        fs.writeFileSync(p(n), 'x');
        fs.chmodSync(p(n), mode);
      }
      batch(o, [
        ...['l600', 'l644', 'n600', 'n644', 'n666'].flatMap((n) => [['read', p(n)], ['write', p(n)]]),
        ['stat', p('ld700/f')], ['readdir', p('ld700')], ['create', p('theirs')], ['unlink', p('n666')],
        ['chmod', p('n666')], ['chown', p('n666')], ['utimes-now', p('n666')], ['utimes', p('n666')], ['utimes-now', p('n644')],
      ], rel);
      fs.chmodSync(p('l644'), 0o604);
      fs.chownSync(p('n600'), ...other());
      batch(o, [['read', p('l644')], ['read', p('n600')], ['chmod', p('n600')], ['utimes', p('n600')], ['setxattr', p('n600')], ['setxattr', p('n666')]], (op) => `after chmod 604 and chown: ${rel(op)}`);
    },
  },
  'perms/sticky': {
    needs: 'root',
    lower(dir) {
      fs.mkdirSync(path.join(dir, 't'));
      fs.chmodSync(path.join(dir, 't'), 0o1777);
      fs.writeFileSync(path.join(dir, 't/roots'), 'x');
    },
    run(dir, o) {
      fs.mkdirSync(path.join(dir, 'u'));
      fs.chmodSync(path.join(dir, 'u'), 0o1777);
      fs.writeFileSync(path.join(dir, 'u/roots'), 'x');
      o.see('mode t', fs.statSync(path.join(dir, 't')).mode.toString(8));
      for (const d of ['t', 'u']) {
        const at = (n: string) => path.join(dir, d, n);
        batch(o, [['unlink', at('roots')], ['rename', at('roots'), at('moved')], ['create', at('theirs')], ['rename', at('theirs'), at('theirs2')], ['rename', at('theirs2'), at('roots')]],
          (op) => `${d}: other ${op[0]} ${op.slice(1).map((x) => path.basename(x)).join(' ')}`);
        o.do(`${d}: root unlinks other's`, () => (fs.writeFileSync(at('t3'), ''), fs.chownSync(at('t3'), ...other()), fs.unlinkSync(at('t3'))));
        o.see(`${d}: names`, ls(path.join(dir, d)));
      }
    },
  },
};
