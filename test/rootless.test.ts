// tarstack as an ordinary user (issue 6, "Without root"): the whole flow through Debian's setuid
// fusermount3 with the store under the user's XDG path; root-owned tar files changeable as after
// `tar -x` by that user while the stored owners, devices and capabilities are kept (--owners=stored
// shows them); nothing outside the user's store and mounts is ever read or written through tarstack.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { waitNoneLeft } from './helpers/children.js';
import { makeTestRoot, mountAt, removeTestRoot } from './helpers/mounted.js';
import { ordinaryUser, UserSession, USER, type UserIds } from './helpers/ordinary-user.js';
import { pack } from './helpers/pack.js';

const ids = ordinaryUser();
const skip = typeof ids === 'string' ? ids : undefined;
if (skip) test.skip(`ordinary-user suite skipped: ${skip}`, () => undefined);
const user = ids as UserIds;
const root = skip ? '' : makeTestRoot('rootless');
if (root) fs.chmodSync(root, 0o711); // the user reaches its session dirs below, nothing else
test.after.always(() => removeTestRoot(root));

const CAP = Buffer.from('0100000200200000000000000000000000000000', 'hex'); // cap_net_bind_service=ep
let seq = 0;

/** The session, its tar (with what the host refuses an ordinary user, and hostile names) and canaries outside the store. */
async function setup(t: ExecutionContext) {
  const s = new UserSession(user, path.join(root, `s${++seq}`), t);
  const outside = path.join(s.root, 'outside');
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'canary'), 'untouched\n');
  fs.chownSync(outside, user.uid, user.gid); // the user's own file outside the store: tarstack must still leave it alone
  fs.chownSync(path.join(outside, 'canary'), user.uid, user.gid);
  const tar = await pack([
    { name: 'etc/', type: 'directory', mode: 0o755 },
    { name: 'etc/passwd', body: 'root:x:0:0::/root:/bin/sh\n', mode: 0o644 },
    { name: 'ro/', type: 'directory', mode: 0o555 },
    { name: 'ro/f', body: 'read only\n', mode: 0o444 },
    { name: 'srv/owned', body: 'theirs\n', mode: 0o640, uid: 1234, gid: 1234 },
    { name: 'bin/ping', body: '#!/bin/sh\necho pong\n', mode: 0o4755, pax: { 'SCHILY.xattr.security.capability': CAP.toString('latin1'), 'SCHILY.xattr.trusted.t': 'T' } },
    { name: 'bin/ping6', body: 'pong6\n', mode: 0o755, pax: { 'SCHILY.xattr.security.capability': CAP.toString('latin1') } },
    { name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
    { name: 'dev/sda', type: 'block-device', devmajor: 8, devminor: 0, mode: 0o660, gid: 6 },
    { name: 'run/fifo', type: 'fifo', mode: 0o600 },
    { name: 'lnk', type: 'symlink', linkname: 'etc/passwd', pax: { 'SCHILY.xattr.user.s': 'kept' } },
    { name: 'out', type: 'symlink', linkname: path.join(outside, 'canary') },
    { name: 'evil', type: 'symlink', linkname: outside },
    { name: 'evil/planted', body: 'through a symlink\n' },
    { name: '../escaped', body: 'dot-dot\n' },
    { name: '/abs', body: 'absolute\n' },
  ]);
  const tarPath = path.join(s.home, 'img.tar');
  fs.writeFileSync(tarPath, tar);
  fs.chownSync(tarPath, user.uid, user.gid);
  return { s, outside, tarPath };
}

/**
 * The user's processes once the store's server has had its grace period after the last umount (it
 * leaves by itself): [] once it has, however long a busy machine takes (a server that never leaves
 * ends the test at ava's timeout).
 */
async function processesAfterGrace(s: UserSession): Promise<number[]> {
  await waitNoneLeft(() => s.processes());
  return s.processes();
}

const mountOf = (dir: string) => mountAt(dir);
const options = (dir: string) => mountAt(dir)?.options ?? '';

test.serial('the whole flow as an ordinary user: store under XDG, nosuid,nodev, tar -x semantics, kept owners, reset', async (t) => {
  const { s, outside, tarPath } = await setup(t);
  await s.ok(['image', 'add', tarPath, '--name', 'img']);
  t.true(fs.existsSync(path.join(s.store, 'images')), 'the store is under ~/.local/share/tarstack');
  await s.ok(['create', 'one', 'img']);
  const mnt = path.join(s.home, 'mnt');
  await s.sh(`mkdir ${mnt}`);
  const printed = (await s.ok(['mount', 'one', mnt])).stdout.trim().split('\n').pop();
  t.is(printed, mnt);
  t.is(mountOf(mnt)?.fstype, 'fuse.tarstack');
  const opts = options(mnt).split(',');
  t.true(opts.includes('nosuid') && opts.includes('nodev'), `mount options ${opts.join(',')}`);
  t.false(`${mountOf(mnt)!.options} ${mountOf(mnt)!.superOptions}`.includes('allow_other'));

  // As after `tar -x` by this user: everything is theirs; modes still hold (ro/ and ro/f are read-only).
  const r = await s.sh(
    [
      `cd ${mnt}`,
      'stat -c "%u:%g %a %n" etc/passwd srv/owned ro ro/f',
      'echo "user:x:1001:1001::/home/user:/bin/sh" >> etc/passwd',
      'echo mine > srv/owned && cat srv/owned',
      '(echo no > ro/f) 2>/dev/null && echo "ro/f WRITTEN" || echo "ro/f refused"',
      '(touch ro/new) 2>/dev/null && echo "ro/new MADE" || echo "ro/new refused"',
      'chmod u+w ro/f && echo changed > ro/f && cat ro/f',
      '(chown 0 etc/passwd) 2>/dev/null && echo "chown DONE" || echo "chown refused"',
      'echo appended >> bin/ping && touch bin/ping6 dev/null dev/sda run/fifo && touch -h lnk',
      'stat -c "%F %t:%T %n" dev/null dev/sda run/fifo',
      'mkdir d && echo new > d/file && mv etc etc2 && mv etc2 etc && rm -rf srv',
    ].join(' && '),
  );
  t.is(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n');
  const me = `${user.uid}:${user.gid}`;
  t.deepEqual(lines.slice(0, 4), [`${me} 644 etc/passwd`, `${me} 640 srv/owned`, `${me} 555 ro`, `${me} 444 ro/f`]);
  t.deepEqual(lines.slice(4, 9), ['mine', 'ro/f refused', 'ro/new refused', 'changed', 'chown refused']);
  t.deepEqual(lines.slice(9, 12), ['character special file 1:3 dev/null', 'block special file 8:0 dev/sda', 'fifo 0:0 run/fifo']);
  await s.ok(['umount', 'one']);

  // The stored owners, modes, devices and xattrs are all there, as --owners=stored shows them.
  await s.ok(['mount', 'one', mnt, '--owners', 'stored']);
  const stored = await s.sh(
    [
      `cd ${mnt}`,
      'stat -c "%u:%g %a %n" etc/passwd ro ro/f bin/ping dev/sda',
      'stat -c "%F %t:%T" dev/null',
      '(getfattr --absolute-names -n security.capability --only-values bin/ping 2>/dev/null || echo none)',
      'getfattr --absolute-names -n security.capability --only-values bin/ping6 | od -An -tx1 | tr -d " \\n"; echo',
      'touch newfile && chown 1234:1234 newfile && stat -c "%u:%g" newfile',
    ].join(' && '),
  );
  t.is(stored.code, 0, stored.stderr);
  t.deepEqual(stored.stdout.split('\n').slice(0, 10), [
    '0:0 644 etc/passwd',
    '0:0 555 ro',
    '0:0 644 ro/f',
    '0:0 755 bin/ping', // writing cleared the set-uid bit, as the kernel does
    '0:6 660 dev/sda',
    'character special file 1:3',
    'none', // a write drops file capabilities, as the kernel does
    CAP.toString('hex'), // kept through copy-up though the host refuses it to this user
    '1234:1234',
    '',
  ]);
  await s.ok(['umount', mnt]);

  const diff = await s.ok(['diff', 'one', '--porcelain']);
  t.deepEqual(diff.stdout.split('\n').filter(Boolean).sort(), [
    'A d', 'A d/file', 'A newfile', 'D srv', 'D srv/owned', 'M bin/ping', 'M bin/ping6', 'M dev/null', 'M dev/sda', 'M etc/passwd', 'M lnk', 'M ro/f', 'M run/fifo',
  ]);
  await s.ok(['reset', 'one']);
  t.is((await s.ok(['diff', 'one', '--porcelain'])).stdout, '');
  await s.ok(['mount', 'one', mnt]);
  t.is((await s.sh(`cat ${mnt}/etc/passwd ${mnt}/srv/owned`)).stdout, 'root:x:0:0::/root:/bin/sh\ntheirs\n');
  // Hostile members never got in: '..' skipped, '/abs' stripped, nothing planted through a symlink.
  t.is((await s.sh(`cd ${mnt} && ls -A | tr "\\n" " "`)).stdout, 'abs bin dev etc evil lnk out ro run srv ');
  await s.ok(['umount', mnt]);
  // The read-only image mount too, as the user.
  const img = path.join(s.home, 'img');
  await s.sh(`mkdir ${img}`);
  await s.ok(['image', 'mount', 'img', img]);
  t.true(options(img).split(',').includes('nosuid') && options(img).split(',').includes('nodev'));
  t.is((await s.sh(`cat ${img}/etc/passwd && stat -c %F ${img}/dev/null`)).stdout, 'root:x:0:0::/root:/bin/sh\ncharacter special file\n');
  await s.ok(['umount', img]);
  await s.ok(['rm', 'one']);

  t.is(fs.readFileSync(path.join(outside, 'canary'), 'utf8'), 'untouched\n');
  t.deepEqual(fs.readdirSync(outside), ['canary']);
  const notTheirs = (await s.sh(`find ${s.home} ! -user ${USER} -print`)).stdout;
  t.is(notTheirs, '', 'nothing root-owned in the user\'s home');
  t.deepEqual(await processesAfterGrace(s), [], 'no daemon of the user left');
});

test.serial('writes through symlinks and names on the command line never reach outside the store', async (t) => {
  const { s, outside, tarPath } = await setup(t);
  await s.ok(['image', 'add', tarPath, '--name', 'img']);
  await s.ok(['create', 'two', 'img']);
  const mnt = path.join(s.home, 'mnt');
  await s.sh(`mkdir ${mnt}`);
  await s.ok(['mount', 'two', mnt]);
  // Metadata changes of symlinks act on the links (copied up), never on their targets.
  const r = await s.sh(`cd ${mnt} && touch -h -d @1000 out evil && mv out out2 && rm out2 evil && ls -A`);
  t.is(r.code, 0, r.stderr);
  await s.ok(['umount', mnt]);
  t.is(fs.readFileSync(path.join(outside, 'canary'), 'utf8'), 'untouched\n');
  t.not(fs.statSync(path.join(outside, 'canary')).mtimeMs, 1_000_000);
  t.deepEqual(fs.readdirSync(outside), ['canary']);

  const one = async (args: string[], pattern: RegExp) => {
    const x = await s.cli(args);
    t.not(x.code, 0, args.join(' '));
    t.regex(x.stderr, pattern, args.join(' '));
    t.is(x.stderr.trim().split('\n').length, 1, `one line: ${x.stderr}`);
  };
  await one(['create', '../evil', 'img'], /^tarstack: invalid instance name/);
  await one(['image', 'add', '/etc/shadow', '--name', 'shadow'], /^tarstack: .*(EACCES|permission)/i);
  await one(['mount', 'two', '/root'], /^tarstack: mount point \/root: EACCES$/m);
  await one(['--store', '/var/lib/tarstack-not-yours', 'list'], /^tarstack: .*EACCES/);
  const conf = fs.existsSync('/etc/fuse.conf') ? fs.readFileSync('/etc/fuse.conf', 'utf8') : '';
  if (!/^\s*user_allow_other\s*$/m.test(conf)) await one(['mount', 'two', mnt, '--allow-other'], /^tarstack: --allow-other needs a line "user_allow_other" in \/etc\/fuse.conf/);
  t.is(mountOf(mnt), undefined);
  t.deepEqual(await processesAfterGrace(s), []);
});

test.serial('stackpoints, throwaway and size-limited instances, and commit, as an ordinary user', async (t) => {
  const { s, outside, tarPath } = await setup(t);
  await s.ok(['image', 'add', tarPath, '--name', 'v1']);
  await s.ok(['image', 'add', tarPath, '--name', 'v2']);
  const sp = path.join(s.home, 'sp');
  await s.ok(['stackpoint', 'create', 'sp', 'v1', '--path', sp]);
  t.is((await s.ok(['stackpoint', 'mount', 'sp'])).stdout.trim().split('\n').pop(), sp);
  t.true(options(sp).split(',').includes('nosuid'), 'the stackpoint mount is nosuid');
  await s.ok(['stackpoint', 'cutover', 'sp', 'v2']);
  t.is((await s.sh(`echo two > ${sp}/on-v2 && ls ${sp}/on-v2`)).code, 0);
  await s.ok(['stackpoint', 'fallback', 'sp']);
  await s.sh(`echo one > ${sp}/on-v1`);
  await s.ok(['stackpoint', 'cutover', 'sp', 'v2']);
  t.is((await s.sh(`cat ${sp}/on-v2; test -e ${sp}/on-v1 || echo "no on-v1"`)).stdout, 'two\nno on-v1\n', 'each side keeps its own change');
  await s.ok(['stackpoint', 'umount', 'sp']);
  t.is(mountOf(sp), undefined);

  // A throwaway instance: its changes vanish at unmount.
  const mnt = path.join(s.home, 'mnt');
  await s.sh(`mkdir ${mnt}`);
  await s.ok(['create', 'scratch', 'v1', '--tmp']);
  await s.ok(['mount', 'scratch', mnt]);
  t.is((await s.sh(`echo gone > ${mnt}/new && rm ${mnt}/etc/passwd && ls ${mnt}/etc | wc -l`)).stdout.trim(), '0');
  await s.ok(['umount', mnt]);
  await s.ok(['mount', 'scratch', mnt]);
  t.is((await s.sh(`cat ${mnt}/etc/passwd; test -e ${mnt}/new || echo "no new"`)).stdout, 'root:x:0:0::/root:/bin/sh\nno new\n');
  await s.ok(['umount', mnt]);

  // A size-limited instance: ENOSPC past its limit, what fitted intact; then commit it as an image.
  await s.ok(['create', 'small', 'v1', '--size', '1M']);
  await s.ok(['mount', 'small', mnt]);
  const full = await s.sh(`cd ${mnt} && head -c 700000 /dev/zero > a && (head -c 700000 /dev/zero > b) 2>&1; stat -c %s a`);
  t.regex(full.stdout, /No space left on device/);
  t.regex(full.stdout, /^700000$/m);
  await s.ok(['umount', mnt]);
  await s.ok(['commit', 'small', 'v3']);
  await s.ok(['create', 'three', 'v3']);
  await s.ok(['mount', 'three', mnt]);
  t.is((await s.sh(`stat -c %s ${mnt}/a && cat ${mnt}/etc/passwd`)).stdout, '700000\nroot:x:0:0::/root:/bin/sh\n');
  await s.ok(['umount', mnt]);

  t.deepEqual(fs.readdirSync(outside), ['canary']);
  t.is((await s.sh(`find ${s.home} ! -user ${USER} -print`)).stdout, '', "nothing root-owned in the user's home");
  t.deepEqual(await processesAfterGrace(s), [], 'no daemon of the user left');
});
