// Fixtures written programmatically: tar-stream for what a library producer emits (PAX records,
// the ustar prefix, duplicates, hard links, devices), rawtar.ts for what no producer emits on
// purpose (invalid UTF-8, base-256 where octal fits, hand-placed extension headers), the hostile
// member names, and the three OCI layers of the stack test.
import fs from 'node:fs';
import path from 'node:path';
import tarStream from 'tar-stream';
import * as raw from './rawtar.js';
import type { Fixture, FixtureBuilder } from './fixtures.js';

type Header = Partial<tarStream.Header> & { name: string };
type Item = [Header, string?];

const T0 = new Date('2001-02-03T04:05:06Z');
const EPOCH = new Date(0); // the ustar field when a pax mtime overrides it (negative ones do not fit)

/** Writes the members with tar-stream, in order, and resolves once the file is closed. */
export async function writeTarStream(file: string, items: Item[]): Promise<void> {
  const pack = tarStream.pack();
  const done = new Promise<void>((resolve, reject) => {
    const out = fs.createWriteStream(file);
    out.on('close', resolve).on('error', reject);
    pack.pipe(out); // pipe before adding: entries wait for the reader
  });
  for (const [header, content] of items) {
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      if (content === undefined) pack.entry({ mtime: T0, ...header }, cb);
      else pack.entry({ mtime: T0, ...header }, content, cb);
    });
  }
  pack.finalize();
  await done;
}

const streamPaxItems: Item[] = [
  [{ name: `pax/long-${'p'.repeat(200)}.txt` }, 'pax path\n'],
  [{ name: 'pax/linkpath', type: 'symlink', linkname: `target-${'t'.repeat(150)}` }],
  [{ name: 'pax/frac', pax: { mtime: '1234567890.123456789' } }, 'fractional mtime\n'],
  [{ name: 'pax/pre1970', mtime: EPOCH, pax: { mtime: '-1.25' } }, 'before the epoch, with a fraction\n'],
  [{ name: 'pax/future', pax: { mtime: '13569465600.000000001' } }, 'year 2400\n'],
  [{ name: 'pax/ids', pax: { uid: '3000000', gid: '4000000', uname: 'someone', gname: 'somegroup' } }, 'big ids\n'],
  [{ name: 'pax/xattrs', pax: { 'SCHILY.xattr.user.one': '1', 'SCHILY.xattr.trusted.two': 'two', 'SCHILY.xattr.user.utf8': 'héllo' } }, 'x\n'],
  [{ name: 'pax/size', size: 5, pax: { size: '5' } }, 'five!'],
  [{ name: 'pax/dir-with-xattr', type: 'directory', pax: { 'SCHILY.xattr.user.d': 'dir' } }],
  [{ name: `ustar/${'d'.repeat(90)}/${'f'.repeat(90)}` }, 'prefix field\n'], // split into prefix + name
  [{ name: 'dup', mode: 0o644 }, 'first\n'],
  [{ name: 'hl-mid', type: 'link', linkname: 'dup' }], // links the first "dup", which the next one replaces
  [{ name: 'dup', mode: 0o600, mtime: new Date('2002-01-01Z') }, 'second\n'],
  [{ name: 'hl-end', type: 'link', linkname: 'dup' }],
  [{ name: './dotted/', type: 'directory', mode: 0o750 }],
  [{ name: './dotted/file' }, 'dot prefix\n'],
  [{ name: 'implied/a/b/c.txt' }, 'no directory members above me\n'],
  [{ name: 'links/orig' }, 'original\n'],
  [{ name: 'links/hard', type: 'link', linkname: 'links/orig' }],
  [{ name: 'links/hard2', type: 'link', linkname: './links/orig' }],
  [{ name: 'links/sym', type: 'symlink', linkname: 'orig' }],
  [{ name: 'links/hl-to-sym', type: 'link', linkname: 'links/sym' }], // a hard link to a symlink shares its inode
  [{ name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 }],
  [{ name: 'dev/loop0', type: 'block-device', devmajor: 7, devminor: 0, mode: 0o660, gid: 6 }],
  [{ name: 'dev/fifo', type: 'fifo', mode: 0o600 }],
  [{ name: 'names/with space' }, 'space\n'],
  [{ name: 'names/new\nline' }, 'newline\n'],
  [{ name: 'names/日本語' }, 'utf-8\n'],
  [{ name: 'empty' }, ''],
  [{ name: 'empty-dir', type: 'directory', mode: 0o755 }],
  [{ name: 'modes/odd', type: 'directory', mode: 0o751 }],
  [{ name: 'modes/readonly', type: 'directory', mode: 0o500 }], // tar-stream writes mode 0 as 0755: 000 is in the GNU tar fixtures
  [{ name: 'modes/readonly/child' }, 'inside a mode-500 dir\n'],
  [{ name: 'modes/sticky', type: 'directory', mode: 0o1777 }],
  [{ name: 'modes/suid', mode: 0o4755, uid: 1000, gid: 1000 }, '#!\n'],
  [{ name: 'modes/sgid-dir', type: 'directory', mode: 0o2775 }],
  [{ name: 'modes/redefined', type: 'directory', mode: 0o700 }],
  [{ name: 'modes/redefined/f' }, 'x\n'],
  [{ name: 'modes/redefined', type: 'directory', mode: 0o755, mtime: new Date('2003-03-03Z') }], // later wins
];

/** Hand-made members; each pair checks that an extension header applies to the next member only. */
function rawEdgeBytes(): Buffer {
  const longName = `L-${'n'.repeat(150)}`;
  return Buffer.concat([
    raw.pax([['comment', '0123456789abcdef0123456789abcdef01234567']], 'g', 'pax_global_header'), // as git archive writes
    raw.entry({ name: Buffer.from('bad\xff\xfename', 'latin1') }, 'invalid utf-8 name\n'),
    raw.entry({ name: Buffer.from('dir\xe9/', 'latin1'), type: '5', mode: 0o755 }),
    raw.entry({ name: Buffer.from('dir\xe9/inner', 'latin1') }, 'latin-1 dir\n'),
    raw.entry({ name: 'b256-size', base256: ['size'] }, 'size in base-256\n'),
    raw.entry({ name: 'b256-ids', uid: 1234, gid: 5678, base256: ['uid', 'gid'], magic: 'gnu' }, 'ids in base-256\n'),
    raw.entry({ name: 'b256-negative-mtime', mtime: -86_400, magic: 'gnu' }, '1969-12-31\n'),
    raw.entry({ name: 'oldstyle', type: '\0', magic: 'v7' }, 'typeflag NUL, no magic\n'),
    raw.entry({ name: 'contiguous', type: '7' }, 'typeflag 7 reads as a file\n'),
    raw.pax([['path', 'pax-renamed'], ['mtime', '1.5'], ['uid', '77']]),
    raw.entry({ name: 'ignored-ustar-name', uid: 1 }, 'pax path wins\n'),
    raw.entry({ name: 'after-pax', mtime: 1_000_000_000, uid: 2 }, 'no pax applies to me\n'),
    raw.pax([['size', '6']]),
    raw.header({ name: 'pax-size', size: 0 }), raw.body('sixsix'), // ustar says 0, pax says 6
    raw.gnuLong('L', longName),
    raw.entry({ name: 'truncated-in-ustar', magic: 'gnu' }, 'long name from L\n'),
    raw.entry({ name: 'after-L', magic: 'gnu' }, 'no L applies to me\n'),
    raw.gnuLong('K', longName),
    raw.entry({ name: 'hl-long-target', type: '1', linkname: 'truncated-in-ustar', magic: 'gnu' }),
    raw.entry({ name: 'sym-after-K', type: '2', linkname: 'short', magic: 'gnu' }),
    raw.pax([['linkpath', `far/${'l'.repeat(120)}`]]),
    raw.entry({ name: 'pax-symlink', type: '2', linkname: 'ignored' }),
    raw.END,
  ]);
}

/** Member names GNU tar refuses or rewrites. Names kept in the manifest as stored in the tar. */
const hostileItems: Item[] = [
  [{ name: 'ok' }, 'fine\n'],
  [{ name: 'outside' }, 'a member named outside\n'],
  [{ name: '../x' }, 'escape by ..\n'],
  [{ name: '/abs/path' }, 'absolute: GNU tar strips the leading /\n'],
  [{ name: '//double/slash' }, 'GNU tar strips the leading //\n'],
  [{ name: 'a/../../b' }, 'escape in the middle\n'],
  [{ name: './../y' }, 'escape after ./\n'],
  [{ name: '..', type: 'directory' }],
  [{ name: 'sym-out', type: 'symlink', linkname: '../../../../etc/passwd' }], // served as a symlink: only paths must not escape
  [{ name: 'sym-abs', type: 'symlink', linkname: '/etc/shadow' }],
  [{ name: 'hl-dotdot', type: 'link', linkname: '../outside' }], // GNU tar strips "../": links the member "outside"
  [{ name: 'hl-abs', type: 'link', linkname: '/tarstack-probe-absent' }], // stripped, absent: skipped
];
const HOSTILE_SKIPPED = ['../x', 'a/../../b', './../y', '..', 'hl-abs'];

/** Same-name members changing type, and hard links GNU tar cannot make. */
const replaceItems: Item[] = [
  [{ name: 'f2d' }, 'a file, then a directory\n'],
  [{ name: 'f2d', type: 'directory', mode: 0o755 }],
  [{ name: 'emptyd2f', type: 'directory', mode: 0o755 }],
  [{ name: 'emptyd2f' }, 'an empty directory, then a file\n'],
  [{ name: 'd2f', type: 'directory', mode: 0o755 }],
  [{ name: 'd2f/inner' }, 'kept: GNU tar cannot replace a non-empty dir\n'],
  [{ name: 'd2f' }, 'skipped'],
  [{ name: 'sym2f', type: 'symlink', linkname: 'nowhere' }],
  [{ name: 'sym2f' }, 'a symlink, then a file\n'],
  [{ name: 'f2sym' }, 'a file, then a symlink\n'],
  [{ name: 'f2sym', type: 'symlink', linkname: 'f2d' }],
  [{ name: 'hl-forward', type: 'link', linkname: 'later' }],
  [{ name: 'later' }, 'named by a hard link before it exists\n'],
  [{ name: 'hl-dir', type: 'link', linkname: 'f2d' }],
  [{ name: 'hl-self', type: 'link', linkname: 'hl-self' }],
];

function manifest(name: string, file: string, maker: Fixture['maker'], covers: string[], extra: Partial<Fixture> = {}): Fixture {
  return { name, path: file, maker, expect: 'serve', compare: true, covers, ...extra };
}

export const streamFixtures: Record<string, FixtureBuilder> = {
  'stream-pax': async (dir) => {
    const file = path.join(dir, 'stream-pax.tar');
    await writeTarStream(file, streamPaxItems);
    return manifest('stream-pax', file, 'tar-stream', ['PAX path/linkpath/size/mtime fraction/uid/gid/uname/gname/SCHILY.xattr',
      'ustar prefix field', 'duplicates: later wins, a hard link between them keeps the first', './ prefixes',
      'implied directories', 'hard links (also via ./ and to a symlink)', 'devices, fifo', 'names with space, newline, UTF-8',
      'empty file and dir', 'odd dir modes (500 with a child, sticky, setgid), setuid', 'a dir member repeated: later mode/mtime win',
      'mtimes before 1970 (-1.25) and in 2400']);
  },
  'raw-edge': async (dir) => {
    const file = path.join(dir, 'raw-edge.tar');
    fs.writeFileSync(file, rawEdgeBytes());
    return manifest('raw-edge', file, 'raw', ['pax global header (git archive comment): no file', 'invalid UTF-8 names (file and dir)',
      'base-256 size/uid/gid where octal fits', 'negative base-256 mtime', 'v7 header, typeflag NUL', 'typeflag 7',
      'pax path/mtime/uid then a plain member', 'pax size overriding ustar size 0', 'GNU L then a plain member',
      'GNU K on a hard link then a plain symlink', 'pax linkpath on a symlink']);
  },
  'hostile-names': async (dir) => {
    const file = path.join(dir, 'hostile-names.tar');
    await writeTarStream(file, hostileItems);
    return manifest('hostile-names', file, 'tar-stream', ['../x', '/abs/path', '//double/slash', 'a/../../b', './../y', '.. as a dir',
      'symlinks pointing outside (served as symlinks)', 'hard link to ../outside', 'hard link to an absent absolute path'], {
      expect: 'serve-with-warnings', skipped: HOSTILE_SKIPPED,
      note: 'Like GNU tar: members whose names contain a ".." component are skipped; leading "/" (any number) is ' +
        'stripped and the member served; in hard link targets leading "/" and any prefix up to the last "../" are ' +
        'stripped, so "../outside" links the member "outside" and "/tarstack-probe-absent" names nothing and is skipped.',
    });
  },
  'replace-and-bad-links': async (dir) => {
    const file = path.join(dir, 'replace-and-bad-links.tar');
    await writeTarStream(file, replaceItems);
    return manifest('replace-and-bad-links', file, 'tar-stream', ['file → dir', 'empty dir → file', 'non-empty dir → file (skipped)',
      'symlink → file', 'file → symlink', 'hard link to a later member, to a dir, to itself (skipped)'], {
      expect: 'serve-with-warnings', skipped: ['d2f', 'hl-forward', 'hl-dir', 'hl-self'],
      note: 'A later member replaces an earlier one of any type, except that a non-directory never replaces a ' +
        'directory that has children (GNU tar: "Cannot open: File exists"). A hard link names the member as it ' +
        'stands at that point of the archive; to a directory, itself, or a later member it is skipped.',
    });
  },
  'symlink-traversal': async (dir) => {
    const outside = path.join(dir, 'outside-dir');
    fs.mkdirSync(outside);
    const file = path.join(dir, 'symlink-traversal.tar');
    await writeTarStream(file, [
      [{ name: 'esc', type: 'symlink', linkname: outside }],
      [{ name: 'esc/pwned' }, 'must never land in outside-dir\n'],
      [{ name: 'd', type: 'directory' }],
      [{ name: 'rel', type: 'symlink', linkname: 'd' }],
      [{ name: 'rel/through' }, 'GNU tar writes this as d/through\n'],
    ]);
    return manifest('symlink-traversal', file, 'tar-stream', ['a member path through a symlink to outside', 'a member path through a symlink inside'], {
      expect: 'serve-with-warnings', compare: false, skipped: ['esc/pwned', 'rel/through'],
      note: `GNU tar follows the in-archive symlink ("rel/through" lands as d/through) and fails on the absolute one; ` +
        `tarstack never follows symlinks in member paths: it skips both with a warning. ${outside} must stay empty.`,
    });
  },
};

/** The three OCI layers of the stack test, bottom first, with whiteouts and opaque directories. */
export const layerItems: Item[][] = [
  [ // base
    [{ name: 'etc/', type: 'directory', mode: 0o755 }], [{ name: 'etc/a' }, 'base a\n'], [{ name: 'etc/b' }, 'base b\n'],
    [{ name: 'etc/sub/', type: 'directory', mode: 0o755 }], [{ name: 'etc/sub/x' }, 'base x\n'],
    [{ name: 'usr/', type: 'directory', mode: 0o755 }], [{ name: 'usr/tool', mode: 0o755 }, 'base tool\n'],
    [{ name: 'opq/', type: 'directory', mode: 0o755 }], [{ name: 'opq/old1' }, 'hidden by opaque\n'],
    [{ name: 'opq/deeper/', type: 'directory', mode: 0o755 }], [{ name: 'opq/deeper/z' }, 'hidden by opaque\n'],
    [{ name: 'gone/', type: 'directory', mode: 0o755 }], [{ name: 'gone/g1' }, 'whited out with its dir\n'],
    [{ name: 'keep/', type: 'directory', mode: 0o755 }], [{ name: 'keep/k1' }, 'stays\n'],
    [{ name: 'hl1' }, 'two names\n'], [{ name: 'hl2', type: 'link', linkname: 'hl1' }],
    [{ name: 'hl3' }, 'two names, both kept\n'], [{ name: 'hl4', type: 'link', linkname: 'hl3' }],
  ],
  [ // mid
    [{ name: '.wh.gone' }, ''],
    [{ name: 'etc/', type: 'directory', mode: 0o750 }], [{ name: 'etc/.wh.a' }, ''], [{ name: 'etc/c' }, 'mid c\n'],
    [{ name: 'opq/', type: 'directory', mode: 0o755 }], [{ name: 'opq/.wh..wh..opq' }, ''], [{ name: 'opq/new1' }, 'mid new1\n'],
    [{ name: 'opq/new2' }, 'mid new2\n'],
    [{ name: 'usr/', type: 'directory', mode: 0o755 }], [{ name: 'usr/tool', mode: 0o700 }, 'mid tool\n'],
    [{ name: 'newdir/', type: 'directory', mode: 0o711 }], [{ name: 'newdir/n' }, 'mid n\n'],
  ],
  [ // top
    [{ name: '.wh.hl1' }, ''], [{ name: '.wh.never-existed' }, ''],
    [{ name: 'etc/', type: 'directory', mode: 0o755 }], [{ name: 'etc/.wh.c' }, ''], [{ name: 'etc/b', mode: 0o600 }, 'top b\n'],
    [{ name: 'etc/sub/', type: 'directory', mode: 0o755 }], [{ name: 'etc/sub/.wh..wh..opq' }, ''], // opaque and empty
    [{ name: 'gone/', type: 'directory', mode: 0o700 }], [{ name: 'gone/fresh' }, 'over a whiteout\n'],
    [{ name: 'opq/', type: 'directory', mode: 0o755 }], [{ name: 'opq/.wh.new1' }, ''],
    [{ name: 'keep/', type: 'directory', mode: 0o755 }], [{ name: 'keep/k2' }, 'top k2\n'],
    [{ name: '.wh.newdir' }, ''], [{ name: 'newdir/', type: 'directory', mode: 0o755 }], [{ name: 'newdir/again' }, 'recreated in the same layer\n'],
  ],
];

/** Writes base.tar, mid.tar, top.tar; returns their paths bottom first. */
export async function buildLayerStack(dir: string): Promise<string[]> {
  const names = ['base', 'mid', 'top'];
  const files: string[] = [];
  for (const [i, items] of layerItems.entries()) {
    const file = path.join(dir, `${names[i]}.tar`);
    await writeTarStream(file, items);
    files.push(file);
  }
  return files;
}
