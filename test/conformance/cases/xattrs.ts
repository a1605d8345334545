// Extended attributes on every file type, made in the mount and in the lower: user.* where Linux
// allows it (regular files and directories), trusted.* for root on any type, the create/replace
// flags, missing names, and what listxattr shows.
import path from 'node:path';
import { fs, isRoot, makeSpecial, sys, TYPES, XATTR_CREATE, XATTR_REPLACE, type Case, type Trace } from '../case.js';

/** The names listxattr shows, minus security.* (the host's LSM may add its own). */
const list = (p: string): string[] => sys.listxattr(p).filter((n) => !n.startsWith('security.')).sort();
const get = (p: string, n: string): string | null => sys.getxattr(p, n)?.toString('latin1') ?? null;

function cycle(o: Trace, p: string): void {
  o.do('list', () => list(p));
  o.do('set user.a', () => sys.setxattr(p, 'user.a', Buffer.from('1'), 0));
  o.do('get user.a', () => get(p, 'user.a'));
  if (isRoot()) {
    o.do('set trusted.t', () => sys.setxattr(p, 'trusted.t', Buffer.from('t'), 0));
    o.do('get trusted.t', () => get(p, 'trusted.t'));
  }
  o.do('list', () => list(p));
  o.do('get user.missing', () => get(p, 'user.missing'));
  o.do('remove user.a', () => sys.removexattr(p, 'user.a'));
  if (isRoot()) o.do('remove trusted.t', () => sys.removexattr(p, 'trusted.t'));
  o.do('remove user.missing', () => sys.removexattr(p, 'user.missing'));
  o.do('list', () => list(p));
}

export const xattrs: Record<string, Case> = {
  'xattrs/flags': {
    lower(dir) {
      fs.writeFileSync(path.join(dir, 'low'), 'x');
      sys.setxattr(path.join(dir, 'low'), 'user.low', Buffer.from('from the lower'), 0);
    },
    run(dir, o) {
      const f = path.join(dir, 'f');
      fs.writeFileSync(f, '');
      for (const p of [f, path.join(dir, 'low')]) {
        o.do('replace missing', () => sys.setxattr(p, 'user.r', Buffer.from('1'), XATTR_REPLACE));
        o.do('create', () => sys.setxattr(p, 'user.r', Buffer.from('1'), XATTR_CREATE));
        o.do('create again', () => sys.setxattr(p, 'user.r', Buffer.from('2'), XATTR_CREATE));
        o.do('replace', () => sys.setxattr(p, 'user.r', Buffer.from('3'), XATTR_REPLACE));
        o.do('get', () => get(p, 'user.r'));
        o.do('empty value', () => (sys.setxattr(p, 'user.empty', Buffer.alloc(0), 0), get(p, 'user.empty')));
        o.do('64 KiB value', () => (sys.setxattr(p, 'user.big', Buffer.alloc(65536, 7), 0), sys.getxattr(p, 'user.big')?.length));
        o.do('long name', () => sys.setxattr(p, `user.${'n'.repeat(250)}`, Buffer.from('1'), 0));
        o.do('too long name', () => sys.setxattr(p, `user.${'n'.repeat(251)}`, Buffer.from('1'), 0));
        o.do('unknown namespace', () => sys.setxattr(p, 'bogus.x', Buffer.from('1'), 0));
        o.do('list', () => list(p));
        o.do('get user.low', () => get(p, 'user.low'));
      }
    },
  },
  'xattrs/overlay-names': {
    needs: 'root',
    run(dir, o) {
      const f = path.join(dir, 'f');
      fs.writeFileSync(f, '');
      o.do('set trusted.overlay.x', () => sys.setxattr(f, 'trusted.overlay.x', Buffer.from('1'), 0));
      o.do('get trusted.overlay.redirect', () => get(f, 'trusted.overlay.redirect'));
      o.do('list', () => list(f));
    },
  },
};

for (const type of TYPES) {
  xattrs[`xattrs/new-${type}`] = {
    ...(type === 'c' || type === 'b' ? { needs: 'root' as const } : {}),
    run(dir, o) {
      const p = path.join(dir, 'x');
      makeSpecial(p, type);
      cycle(o, p);
    },
  };
  if (type === 's') continue; // GNU tar leaves sockets out
  xattrs[`xattrs/lower-${type}`] = {
    ...(type === 'c' || type === 'b' ? { needs: 'root' as const } : {}),
    lower(dir) {
      const p = path.join(dir, 'x');
      makeSpecial(p, type);
      if (type === 'f' || type === 'd') sys.setxattr(p, 'user.low', Buffer.from('low'), 0);
      sys.setxattr(p, 'trusted.low', Buffer.from('tlow'), 0);
    },
    run(dir, o) {
      const p = path.join(dir, 'x');
      o.do('get user.low', () => get(p, 'user.low'));
      if (isRoot()) o.do('get trusted.low', () => get(p, 'trusted.low'));
      cycle(o, p);
      o.do('get user.low after changes', () => get(p, 'user.low'));
    },
  };
}
