// Hard links of every file type through an instance mount (issue 12, defect 2): regular files,
// fifos, symlinks, sockets and devices, made in the mount or linked in a lower tar, keep the right
// link count and one inode through link, rename, rename over a name and unlink, and after a
// remount, as root and as an ordinary user. Kernel overlayfs with index=on (which keeps lower
// hard-link sets whole on copy-up, as tarstack does) over the same tar is the reference.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { makeTestRoot, mount, removeTestRoot, type MountConfig } from '../helpers/mounted.js';
import { ordinaryUser, type UserIds } from '../helpers/ordinary-user.js';
import { pack, type PackEntry } from '../helpers/pack.js';

const skip = process.getuid?.() !== 0 || !fs.existsSync('/dev/fuse') ? 'needs root (kernel overlayfs) and /dev/fuse' : undefined;
const root = skip ? '' : makeTestRoot('links-every-type');
test.after.always(() => removeTestRoot(root));

/** Kernel overlayfs keeping lower hard-link sets whole through copy-up, as an instance does. */
const KERNEL_INDEX = ['redirect_dir=on', 'index=on', 'metacopy=off'];

/** Prints a name's link count (or its error), whether two names are one inode, and each step's outcome. */
const PRELUDE = String.raw`
nl() { stat -c %h "$@" 2>&1 | sed 's/.*: //' | tr '\n' ' '; echo; }
same() { if [ "$(stat -c %i "$1" "$2" 2>&1 | uniq | wc -l)" = 1 ]; then echo "$1 $2 same"; else echo "$1 $2 differ"; fi; }
try() { if out=$("$@" 2>&1); then echo "$*: ok"; else echo "$*: $(printf %s "$out" | sed 's/.*: //')"; fi; }
mv2() { perl -e 'rename($ARGV[0], $ARGV[1]) or die "$!\n"' "$1" "$2"; }
mk_reg() { : > "$1"; }
mk_fifo() { mkfifo "$1"; }
mk_sym() { ln -s target "$1"; }
mk_sock() { perl -MIO::Socket::UNIX -e 'IO::Socket::UNIX->new(Local => $ARGV[0], Listen => 1) or die "$!\n"' "$1"; }
mk_chr() { mknod "$1" c 1 3; }
mk_blk() { mknod "$1" b 7 0; }
`;

/** In the mount: names made there, linked, renamed (also onto another name of the same inode) and removed. */
const MADE = String.raw`
for T in $TYPES; do
  echo "== $T"; mkdir $T; cd $T
  mk_$T a
  try ln -P a b; nl a b; same a b
  try ln -P b c; try mv c d; nl a b d; same a d
  try rm a; nl b d
  try mv2 b d; nl b d
  mk_$T e; try mv2 e d; nl b d
  try ln -P b f; nl b f
  cd ..
done
`;
const MADE_AFTER = String.raw`
for T in $TYPES; do
  echo "== $T"; cd $T
  nl b f; same b f
  try rm f; nl b
  try ln -P b g; nl b g; same b g
  cd ..
done
`;

/** Lower hard-link sets (X1 = X2 in the tar): a new name, a removed one, a renamed one. */
const LOWER = String.raw`
for P in $SETS; do
  echo "== $P"
  nl "$P"1 "$P"2; same "$P"1 "$P"2
  try ln -P "$P"1 "$P"3; nl "$P"1 "$P"2 "$P"3; same "$P"2 "$P"3
  try rm "$P"1; nl "$P"2 "$P"3
  try mv "$P"2 "$P"4; nl "$P"3 "$P"4; same "$P"3 "$P"4
done
`;
const LOWER_AFTER = String.raw`
for P in $SETS; do
  echo "== $P"
  nl "$P"3 "$P"4; same "$P"3 "$P"4
  try rm "$P"3; nl "$P"4
done
`;

/** The tar: a hard-link set of each type the user may hold (devices only for root). */
async function lowerTar(dir: string, devices: boolean, owner: UserIds): Promise<{ tar: string; sets: string }> {
  const o = { uid: owner.uid, gid: owner.gid };
  const entries: PackEntry[] = [
    { name: 'r1', body: 'regular', ...o },
    { name: 'p1', type: 'fifo', ...o },
    { name: 's1', type: 'symlink', linkname: 'r1', ...o },
    ...(devices ? [{ name: 'c1', type: 'character-device' as const, devmajor: 1, devminor: 3, ...o }] : []),
  ];
  for (const e of [...entries]) entries.push({ name: e.name.replace('1', '2'), type: 'link', linkname: e.name, ...o });
  const tar = path.join(dir, 'lower.tar');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(tar, await pack(entries));
  return { tar, sets: entries.filter((e) => e.name.endsWith('1')).map((e) => e.name[0]).join(' ') };
}

/** Runs the scripts in a fresh mount of `config` over the tar, remounting between the two halves. */
async function run(t: import('ava').ExecutionContext, dir: string, config: MountConfig, types: string, sets: string): Promise<string> {
  const m = await mount(t, dir, config);
  const sh = async (script: string) => {
    const r = await m.run(['sh', '-c', `exec 2>&1; TYPES='${types}'; SETS='${sets}'\n${PRELUDE}${script}`], { cwd: m.root });
    return r.stdout;
  };
  const before = (await sh(MADE)) + (await sh(LOWER));
  await m.remount();
  const after = (await sh(MADE_AFTER)) + (await sh(LOWER_AFTER));
  await m.unmount();
  return `${before}-- remounted\n${after}`;
}

test('as root: hard links of every file type count right through link, rename and unlink, and after a remount', async (t) => {
  if (skip) return t.pass(skip);
  const dir = path.join(root, 'root');
  const { tar, sets } = await lowerTar(path.join(dir, 'layers'), true, { uid: 0, gid: 0 });
  const types = 'reg fifo sym sock chr blk';
  const [reference, instance] = await Promise.all([
    run(t, path.join(dir, 'kernel'), { kind: 'kernel', lowers: [tar], options: KERNEL_INDEX }, types, sets),
    run(t, path.join(dir, 'instance'), { kind: 'instance', lowers: [tar] }, types, sets),
  ]);
  t.notRegex(reference, /not permitted|No such/); // the reference itself is sound
  t.is(instance, reference);
});

test('as an ordinary user: hard links of fifos, symlinks, sockets and files count right, also after a remount', async (t) => {
  const user = skip ?? ordinaryUser();
  if (typeof user === 'string') return t.pass(user);
  const dir = path.join(root, 'user');
  const { tar, sets } = await lowerTar(path.join(dir, 'layers'), false, user);
  const types = 'reg fifo sym sock';
  const [reference, instance] = await Promise.all([
    run(t, path.join(dir, 'kernel'), { kind: 'kernel', lowers: [tar], options: KERNEL_INDEX }, types, sets),
    run(t, path.join(dir, 'instance'), { kind: 'instance', lowers: [tar], user }, types, sets),
  ]);
  t.notRegex(reference, /not permitted|No such/);
  t.is(instance, reference);
});
