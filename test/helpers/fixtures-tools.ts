// Fixtures made by the tools that naturally produce each format: GNU tar (gnu, posix/pax, the
// sparse formats) and bsdtar (restricted pax with SCHILY/LIBARCHIVE xattrs, ustar). They archive
// a source tree built here as root: owners, devices, trusted.* xattrs and odd modes need it.
import fs from 'node:fs';
import path from 'node:path';
import { execOk } from './exec.js';
import * as raw from './rawtar.js';
import type { Fixture, FixtureBuilder } from './fixtures.js';

const GiB = 1024 ** 3;
const LONG_DIR = `long-${'d'.repeat(110)}`;
export const LONG_FILE = `${LONG_DIR}/file-${'f'.repeat(110)}.txt`; // > 100 bytes: GNU 'L' / pax path

/** Sets mtime (and atime) with nanoseconds; `touch -h` so symlinks keep their own. */
function setTime(p: string, time: string): void {
  execOk(['touch', '-h', '-d', `@${time}`, p]);
}

function file(root: string, rel: string | Buffer, content: string, mode = 0o644): void {
  const p = Buffer.isBuffer(rel) ? Buffer.concat([Buffer.from(root + '/'), rel]) : path.join(root, rel);
  fs.writeFileSync(p, content);
  fs.chmodSync(p, mode);
}

/** The tree every tool-made fixture archives. Directory times are set last, deepest first. */
export function buildSourceTree(root: string, opts: { xattrs: boolean }): void {
  const dirs: Array<[string, number, string]> = [
    ['dir', 0o755, '1300000000.5'], [LONG_DIR, 0o755, '1300000001'], ['emptydir', 0o700, '1300000002'],
    ['modes', 0o755, '1300000003'], ['modes/sticky', 0o1777, '1300000004'], ['modes/odd', 0o751, '1300000005'],
    ['modes/locked', 0o755, '1300000006'], ['times', 0o755, '1300000007'], ['ids', 0o755, '1300000008'],
    ['special', 0o755, '1300000009'], ['names', 0o755, '1300000010'], ['links', 0o755, '1300000011'],
  ];
  for (const [d, mode] of dirs) {
    fs.mkdirSync(path.join(root, d), { recursive: true });
    fs.chmodSync(path.join(root, d), mode); // mkdir's mode passes through the umask
  }
  file(root, 'dir/plain.txt', 'plain\n');
  file(root, LONG_FILE, 'in a long path\n');
  fs.linkSync(path.join(root, LONG_FILE), path.join(root, 'hardlong'));
  fs.symlinkSync(LONG_FILE, path.join(root, 'symlong')); // link name > 100 bytes: GNU 'K' / pax linkpath
  file(root, 'empty', '');
  file(root, 'modes/suid', '#!/bin/true\n', 0o4755);
  file(root, 'modes/sgid', 'sgid\n', 0o2711);
  file(root, 'modes/all', 'all bits\n', 0o7777);
  file(root, 'modes/odd/f', 'odd\n', 0o600);
  file(root, 'modes/locked/inside', 'locked\n', 0o400);
  file(root, 'times/pre1970', 'before the epoch\n');
  file(root, 'times/oldest', 'ext4 keeps times back to 1901-12-13 only\n');
  file(root, 'times/future', 'year 2400; ext4 keeps times up to 2446 only\n');
  file(root, 'times/ns', 'one nanosecond\n');
  file(root, 'ids/big', 'uid and gid above 2097151 need base-256 or pax\n');
  file(root, 'ids/user', 'owned by 1000\n');
  fs.chownSync(path.join(root, 'ids/big'), 3_000_000, 4_000_000);
  fs.chownSync(path.join(root, 'ids/user'), 1000, 1000);
  execOk(['mkfifo', path.join(root, 'special/fifo')]);
  execOk(['mknod', path.join(root, 'special/null'), 'c', '1', '3']);
  execOk(['mknod', path.join(root, 'special/loop'), 'b', '7', '0']);
  execOk(['mknod', path.join(root, 'special/bigminor'), 'c', '259', '300000']);
  file(root, 'names/with space', 'space\n');
  file(root, 'names/new\nline', 'newline\n');
  file(root, 'names/tab\there', 'tab\n');
  file(root, 'names/é', 'utf-8\n');
  file(root, Buffer.from('names/bad\xffname', 'latin1'), 'invalid utf-8\n');
  file(root, 'links/a', 'three names, one inode\n');
  fs.linkSync(path.join(root, 'links/a'), path.join(root, 'links/b'));
  fs.linkSync(path.join(root, 'links/a'), path.join(root, 'links/c'));
  fs.symlinkSync('a', path.join(root, 'links/sym-rel'));
  fs.symlinkSync('/etc/passwd', path.join(root, 'links/sym-abs'));
  fs.symlinkSync('nowhere/x', path.join(root, 'links/sym-dangling'));
  fs.symlinkSync('../dir', path.join(root, 'links/sym-dir'));
  if (opts.xattrs) {
    const set = (p: string, name: string, value: string) => execOk(['setfattr', '-h', '-n', name, '-v', value, path.join(root, p)]);
    set('dir/plain.txt', 'user.plain', 'hello');
    set('dir/plain.txt', 'user.bin', '0sAP8A/w=='); // binary value with NULs
    set('dir/plain.txt', 'trusted.t', 'tval');
    set('dir/plain.txt', 'user.empty', '');
    set('dir', 'user.dirattr', 'dv');
    set('links/sym-rel', 'trusted.onsymlink', 'sv'); // user.* is not allowed on symlinks
    set('special/fifo', 'trusted.onfifo', 'fv');
  }
  setTime(path.join(root, 'dir/plain.txt'), '1234567890.123456789');
  setTime(path.join(root, 'times/pre1970'), '-1.25');
  setTime(path.join(root, 'times/oldest'), '-2147483648');
  setTime(path.join(root, 'times/future'), '13569465600.5');
  setTime(path.join(root, 'times/ns'), '1600000000.000000001');
  setTime(path.join(root, 'links/sym-rel'), '1400000000.25');
  for (const [d, , t] of [...dirs].reverse()) setTime(path.join(root, d), t);
  fs.chmodSync(path.join(root, 'modes/locked'), 0o000); // after its child exists; tar must cope
  setTime(path.join(root, 'modes/locked'), '1300000006');
  setTime(root, '1300000100');
}

/** A tree of sparse files: 9 GiB with 10 data regions (more than an old GNU header's 4, so it needs
 *  extension blocks) placed where tree.ts's sampled hash reads, plus a small sparse and a dense file. */
export function buildSparseTree(root: string): void {
  fs.mkdirSync(root, { recursive: true });
  const fd = fs.openSync(path.join(root, 'huge'), 'w');
  fs.writeSync(fd, 'DATA-AT-0');
  for (let k = 1; k <= 8; k++) fs.writeSync(fd, `DATA-AT-${k}GiB`, k * GiB + 12345);
  fs.writeSync(fd, 'END', 9 * GiB - 3);
  fs.closeSync(fd);
  const small = fs.openSync(path.join(root, 'small-sparse'), 'w');
  fs.writeSync(small, 'head');
  fs.writeSync(small, 'middle', 1024 * 1024 + 7);
  fs.ftruncateSync(small, 3 * 1024 * 1024);
  fs.closeSync(small);
  file(root, 'dense', 'no holes here\n'.repeat(1000));
  for (const f of ['huge', 'small-sparse', 'dense']) setTime(path.join(root, f), '1500000000.75');
  setTime(root, '1500000001');
}

function gnuTar(out: string, src: string, format: string[]): void {
  execOk(['tar', ...format, '--sort=name', '-cf', out, '-C', src, '.']);
}

function treeFixture(name: string, maker: 'gnu-tar' | 'bsdtar', covers: string[], make: (out: string, src: string) => void, xattrs: boolean): FixtureBuilder {
  return async (dir) => {
    const src = path.join(dir, 'src');
    buildSourceTree(src, { xattrs });
    const out = path.join(dir, `${name}.tar`);
    make(out, src);
    return { name, path: out, maker, expect: 'serve', compare: true, covers } satisfies Fixture;
  };
}

const TREE_COVERS = ['names > 100 bytes', 'link names > 100 bytes', 'hard links (3 names)', 'hard link to a long name',
  'symlinks (relative, absolute, dangling, to a dir)', 'setuid/setgid/sticky, mode 07777, a mode-000 dir with a child',
  'mtimes before 1970 and in 2400', 'uid/gid 3000000/4000000', 'fifo, char and block devices (minor 300000)',
  'names with space, newline, tab, UTF-8 and invalid UTF-8', 'empty file and empty dir', './ prefixes, a ./ member'];

function sparseFixture(name: string, format: string[], covers: string[]): FixtureBuilder {
  return async (dir) => {
    const src = path.join(dir, 'src');
    buildSparseTree(src);
    const out = path.join(dir, `${name}.tar`);
    execOk(['tar', ...format, '--sparse', '--sort=name', '-cf', out, '-C', src, '.']);
    return { name, path: out, maker: 'gnu-tar', expect: 'serve', compare: true, covers: ['a 9 GiB sparse file with 10 data regions', 'a 3 MiB sparse file', ...covers] };
  };
}

export const toolFixtures: Record<string, FixtureBuilder> = {
  'gnu-format': treeFixture('gnu-format', 'gnu-tar', [...TREE_COVERS, 'GNU L/K long names', 'base-256 uid/gid/mtime (negative and > 8^11)'],
    (out, src) => gnuTar(out, src, ['--format=gnu']), false),
  'gnu-posix': treeFixture('gnu-posix', 'gnu-tar', [...TREE_COVERS, 'pax path/linkpath/uid/gid', 'pax mtime with ns (and negative fractions)',
    'SCHILY.xattr.* (user, trusted, binary and empty values, on a dir, a symlink and a fifo)', 'invalid UTF-8 in a pax path'],
    (out, src) => gnuTar(out, src, ['--format=posix', '--xattrs', '--xattrs-include=*']), true),
  'bsdtar-pax': treeFixture('bsdtar-pax', 'bsdtar', [...TREE_COVERS, 'restricted pax', 'SCHILY.xattr.* beside LIBARCHIVE.xattr.* (base64)'],
    (out, src) => execOk(['bsdtar', '-cf', out, '-C', src, '.']), true),
  'bsdtar-ustar': async (dir) => {
    // ustar cannot hold names > 255, uid > 2097151 or negative times: a tree that fits, with names
    // that must go through the 155-byte prefix field.
    const src = path.join(dir, 'src');
    const deep = `p${'x'.repeat(90)}/q${'y'.repeat(60)}`;
    fs.mkdirSync(path.join(src, deep), { recursive: true });
    file(src, `${deep}/${'z'.repeat(90)}`, 'prefix + name\n');
    file(src, 'plain', 'plain\n', 0o640);
    fs.linkSync(path.join(src, 'plain'), path.join(src, 'plain-link'));
    fs.symlinkSync('plain', path.join(src, 'sym'));
    execOk(['mknod', path.join(src, 'cdev'), 'c', '4', '64']);
    const out = path.join(dir, 'bsdtar-ustar.tar');
    execOk(['bsdtar', '--format=ustar', '-cf', out, '-C', src, '.']);
    return { name: 'bsdtar-ustar', path: out, maker: 'bsdtar', expect: 'serve', compare: true, covers: ['ustar prefix field', 'hard link', 'symlink', 'char device'] };
  },
  'bsdtar-xattr-encoded-name': async (dir) => {
    const src = path.join(dir, 'src');
    fs.mkdirSync(src);
    file(src, 'f', 'x\n');
    execOk(['setfattr', '-n', 'user.sp ace=eq%', '-v', 'v', path.join(src, 'f')]);
    const out = path.join(dir, 'bsdtar-xattr-encoded-name.tar');
    execOk(['bsdtar', '-cf', out, '-C', src, '.']);
    return {
      name: 'bsdtar-xattr-encoded-name', path: out, maker: 'bsdtar', expect: 'serve', compare: false,
      covers: ['an xattr name with space, = and %: bsdtar URL-encodes it in both SCHILY.xattr and LIBARCHIVE.xattr'],
      note: 'GNU tar decodes only %3D and %25 in SCHILY names and ignores LIBARCHIVE.xattr, so it restores ' +
        '"user.sp%20ace=eq%"; bsdtar itself restores both spellings. The true name is "user.sp ace=eq%": ' +
        'tarstack must show exactly that one (LIBARCHIVE.xattr is unambiguous). Checked by name, not by the GNU tar reference.',
    };
  },
  'gnu-sparse-old': sparseFixture('gnu-sparse-old', ['--format=gnu'], ['old GNU sparse (type S) with extension blocks', 'realsize > 8 GiB in base-256']),
  'pax-sparse-0.0': sparseFixture('pax-sparse-0.0', ['--format=posix', '--sparse-version=0.0'], ['GNU.sparse.offset/numbytes repeated in one pax header']),
  'pax-sparse-0.1': sparseFixture('pax-sparse-0.1', ['--format=posix', '--sparse-version=0.1'], ['GNU.sparse.map', 'GNUSparseFile.PID/ name replaced by GNU.sparse.name']),
  'pax-sparse-1.0': sparseFixture('pax-sparse-1.0', ['--format=posix', '--sparse-version=1.0'], ['sparse map in the member data', 'GNU.sparse.realsize/name']),
  'huge-dense': async (dir) => {
    // A real > 8 GiB size field in base-256 needs a body that big. The tar is sparse on disk (the
    // body is a hole), so only extracting it costs: opt-in with TARSTACK_TEST_HUGE=1.
    const out = path.join(dir, 'huge-dense.tar');
    const size = 8 * GiB + 4096;
    fs.writeFileSync(out, raw.header({ name: 'huge-dense', size, magic: 'gnu', mtime: 1_500_000_000 }));
    const fd = fs.openSync(out, 'r+');
    fs.writeSync(fd, 'END', 512 + size - 3);
    fs.writeSync(fd, raw.END, 0, raw.END.length, 512 + size);
    fs.closeSync(fd);
    return { name: 'huge-dense', path: out, maker: 'raw', expect: 'serve', compare: true, covers: ['a dense 8 GiB + 4 KiB member: size field in base-256'] };
  },
};

export const hugeFixtureNames = new Set(['huge-dense']);
