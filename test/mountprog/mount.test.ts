// tarstack-overlay through real mounts: directory and tar lowers with every whiteout and opaque
// marking, a standard upper written (no tarstack-private metadata), remount keeping the upper,
// plain umount / fusermount -u ending the daemon, one mount per workdir, and clear errors.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { loadSys } from '../../src/native/sys.js';
import { execOk } from '../helpers/exec.js';
import { waitGone } from '../helpers/children.js';
import { mount, overlayDaemons, runMountProg, strayMounts } from '../helpers/mounted.js';
import { mkdirs, mountProgRoot, xattrNamesUnder } from '../helpers/mountprog.js';
import { pack } from '../helpers/pack.js';

const skip = process.getuid?.() !== 0 || !fs.existsSync('/dev/fuse') ? 'needs root and /dev/fuse' : undefined;
const sys = loadSys();

/** top: a directory; middle: a tar; bottom: a directory. */
async function buildLowers(root: string): Promise<{ top: string; tar: string; bottom: string }> {
  const [top, bottom] = mkdirs(root, 'top', 'bottom');
  const put = (dir: string, rel: string, body = rel) => {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), body);
  };
  for (const f of ['base/a', 'base/b', 'base/c', 'keep/x', 'opq/old', 'gone', 'big/sub/deep']) put(bottom, f);
  fs.writeFileSync(path.join(bottom, 'base/big'), Buffer.alloc(3 << 20, 7)); // over lazy copy-up's threshold
  const tar = path.join(root, 'middle.tar');
  fs.writeFileSync(tar, await pack([
    { name: 't/', type: 'directory' },
    { name: 't/one', body: 'from tar' },
    { name: 't/two', body: 'two' },
    { name: '.wh.gone', body: '' },
    { name: 'opq/', type: 'directory' },
    { name: 'opq/.wh..wh..opq', body: '' },
    { name: 'opq/tnew', body: 'tnew' },
  ]));
  put(top, 'base/.wh.c', '');
  sys.mknod(path.join(top, 'base/a'), 0o020000, 0, 0);
  put(top, 'keep/new');
  sys.setxattr(path.join(top, 'keep'), 'trusted.overlay.opaque', Buffer.from('y'), 0);
  put(top, 't/one', 'from top');
  return { top, tar, bottom };
}

const list = (dir: string): string[] => {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const n of fs.readdirSync(path.join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${n}` : n;
      out.push(r);
      if (fs.lstatSync(path.join(dir, r)).isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
};

test('dir and tar lowers merge with whiteouts and opaque dirs; the upper written is standard; remount keeps it', async (t) => {
  if (skip) return t.pass(skip);
  const root = mountProgRoot(t, 'mountprog');
  const { top, tar, bottom } = await buildLowers(root);
  const m = await mount(t, root, { kind: 'overlay-program', lowers: [top, tar, bottom] }); // root/mnt over root/upper, root/work
  const [upper, work, mnt] = [m.upper!, path.join(root, 'work'), m.root];
  const opts = `lowerdir=${top}:${tar}:${bottom},upperdir=${upper},workdir=${work}`;
  const r = m.result!;
  t.is(r.code, 0, r.stderr);
  t.false(r.pipesHeld, 'the daemon must not hold the caller\'s stdout/stderr (podman and mount wait on them)');
  t.is(strayMounts(mnt)[0]?.fstype, 'fuse.tarstack-overlay');
  const line = fs.readFileSync('/proc/mounts', 'utf8').split('\n').find((l) => l.split(' ')[1] === mnt) ?? '';
  t.regex(line, /default_permissions,allow_other/, 'the kernel checks permissions; other uids (containers) may enter');
  const merged = ['base', 'base/b', 'base/big', 'big', 'big/sub', 'big/sub/deep', 'keep', 'keep/new', 'opq', 'opq/tnew', 't', 't/one', 't/two'];
  t.deepEqual(list(mnt), merged);
  t.is(fs.readFileSync(path.join(mnt, 't/one'), 'utf8'), 'from top');

  // A second mount of the same upper is refused while this one serves.
  const again = await runMountProg(['-o', opts, mkdirs(root, 'mnt2')[0]!]);
  t.not(again.code, 0);
  t.regex(again.stderr, /workdir .* is in use/);

  // Changes of every kind.
  fs.writeFileSync(path.join(mnt, 'added'), 'new');
  fs.appendFileSync(path.join(mnt, 'base/b'), '+');
  fs.appendFileSync(path.join(mnt, 'base/big'), 'x');
  fs.unlinkSync(path.join(mnt, 't/one'));
  fs.rmSync(path.join(mnt, 'keep'), { recursive: true });
  fs.mkdirSync(path.join(mnt, 'keep'));
  fs.linkSync(path.join(mnt, 'added'), path.join(mnt, 'added2'));
  fs.renameSync(path.join(mnt, 'big'), path.join(mnt, 'big2'));
  const after = list(mnt);
  const ino = (p: string) => fs.statSync(path.join(mnt, p)).ino;
  t.is(ino('added'), ino('added2'));
  const inoBig = ino('big2/sub/deep');

  // The upper is what kernel overlayfs and containers/storage read: whole files, char 0/0
  // whiteouts, trusted.overlay.* markers, nothing tarstack-private.
  t.true(fs.lstatSync(path.join(upper, 't/one')).isCharacterDevice());
  t.is(fs.lstatSync(path.join(upper, 't/one')).rdev, 0);
  t.is(sys.getxattr(path.join(upper, 'keep'), 'trusted.overlay.opaque')?.toString(), 'y');
  t.is(sys.getxattr(path.join(upper, 'big2'), 'trusted.overlay.redirect')?.toString(), '/big');
  t.is(fs.statSync(path.join(upper, 'base/big')).size, (3 << 20) + 1, 'a big file is copied whole');
  t.is(fs.statSync(path.join(upper, 'base/big')).blocks * 512 >= 3 << 20, true, 'and not as a sparse placeholder');
  t.deepEqual(xattrNamesUnder(upper).filter((n) => !n.startsWith('trusted.overlay.')), []);
  t.false(fs.existsSync(path.join(work, 'index')), 'no hard-link index');

  // Plain umount ends the daemon; a remount shows the same tree from the same upper.
  const daemons = overlayDaemons(mnt);
  t.is(daemons.length, 1);
  t.is(fs.readlinkSync(`/proc/${daemons[0]}/cwd`), '/', 'the daemon keeps no directory of its caller busy');
  execOk(['umount', mnt]);
  t.true(await waitGone(daemons), 'the daemon exits once unmounted');
  t.is(strayMounts(mnt).length, 0);
  await m.remount();
  const r2 = m.result!;
  t.is(r2.code, 0, r2.stderr);
  t.deepEqual(list(mnt), after);
  t.is(fs.readFileSync(path.join(mnt, 'base/b'), 'utf8'), 'base/b+');
  t.is(ino('added'), ino('added2'));
  t.truthy(inoBig);
  const daemons2 = overlayDaemons(mnt);
  execOk(['fusermount3', '-u', mnt]);
  t.true(await waitGone(daemons2), 'fusermount -u ends it too');
});

test('names of a lower hard-link set: lookup and readdir agree on st_ino; a copied-up name gets its own; a reused upper inode never inherits one', async (t) => {
  if (skip) return t.pass(skip);
  const root = mountProgRoot(t, 'mountprog-links');
  const [low] = mkdirs(root, 'low') as [string];
  fs.writeFileSync(path.join(low, 'a'), 'set\n');
  fs.linkSync(path.join(low, 'a'), path.join(low, 'a2'));
  fs.writeFileSync(path.join(low, 'p'), 'plain\n');
  const m = await mount(t, root, { kind: 'overlay-program', lowers: [low] });
  const [mnt, r] = [m.root, m.result!];
  t.is(r.code, 0, r.stderr);
  const daemons = overlayDaemons(mnt);
  const ino = (n: string) => fs.statSync(path.join(mnt, n)).ino;
  const listed = () => new Map(fs.readdirSync(mnt, { withFileTypes: true }).map((d) => [d.name, fs.statSync(path.join(mnt, d.name)).ino]));
  const set = ino('a');
  t.is(ino('a2'), set, 'both names show the set\'s number while lower');
  // ls -i: readdir's d_ino is what tools compare against stat's
  const lsI = execOk(['ls', '-i', mnt]).stdout.toString().trim().split('\n').map((l) => l.trim().split(/\s+/));
  t.deepEqual(lsI.map(([i, n]) => [n, Number(i)]), [['a', set], ['a2', set], ['p', ino('p')]]);
  fs.chmodSync(path.join(mnt, 'a'), 0o600); // copies this one name up (kernel overlayfs with index=off splits the set)
  const own = ino('a');
  t.not(own, set);
  t.is(ino('a2'), set, 'the other name keeps the set\'s number');
  const plain = ino('p');
  fs.chmodSync(path.join(mnt, 'p'), 0o600); // copied up, keeping its number (remembered by upper inode)
  t.is(ino('p'), plain);
  fs.unlinkSync(path.join(mnt, 'a')); // their upper inodes are freed; ext4 hands the numbers to the next new files
  fs.unlinkSync(path.join(mnt, 'p'));
  const made = ['n1', 'n2', 'n3', 'n4'].map((n) => (fs.writeFileSync(path.join(mnt, n), n), n));
  const before = listed();
  fs.writeFileSync('/proc/sys/vm/drop_caches', '2'); // the kernel forgets the names: lookups come back to the daemon
  const after = listed();
  t.deepEqual(after, before, 'numbers are stable across the kernel forgetting them');
  t.is(new Set(made.map((n) => after.get(n))).size, made.length, 'new files have numbers of their own');
  t.false(made.some((n) => after.get(n) === set || after.get(n) === plain), 'no new file takes a deleted copy\'s number');
  execOk(['umount', mnt]);
  t.true(await waitGone(daemons));
});

test('bad options and paths: a clear error naming the option and what is supported; nothing mounted, no daemon', async (t) => {
  if (skip) return t.pass(skip);
  const root = mountProgRoot(t, 'mountprog-bad');
  const [low, upper, work, mnt] = mkdirs(root, 'low', 'upper', 'work', 'mnt');
  const cases: Array<[string[], RegExp]> = [
    [['-o', `lowerdir=${low},upperdir=${upper},workdir=${work},uidmapping=0:1000:65536`, mnt], /^tarstack-overlay: option uidmapping=0:1000:65536 is not supported: .*\nsupported: lowerdir=/],
    [['-o', `lowerdir=${low},upperdir=${upper},workdir=${work},bogus`, mnt], /^tarstack-overlay: unknown option bogus\nsupported: /],
    [['-o', `lowerdir=${root}/nope,upperdir=${upper},workdir=${work}`, mnt], /^tarstack-overlay: lowerdir .*nope: no such file or directory/],
    [['-o', `lowerdir=${low},upperdir=${upper},workdir=${work}`, `${root}/nomnt`], /mount point .*nomnt: no such file/],
    [['-o', `lowerdir=${low},upperdir=${upper},workdir=/dev/shm`, mnt], /same filesystem|workdir/],
  ];
  for (const [args, re] of cases) {
    const r = await runMountProg(args);
    t.not(r.code, 0, args.join(' '));
    t.regex(r.stderr, re);
    t.notRegex(r.stderr, /^\s+at /m, 'no stack trace');
  }
  t.is(strayMounts(root).length, 0);
  t.deepEqual(overlayDaemons(root), []);
  const help = await runMountProg(['--help']);
  t.is(help.code, 0);
  t.regex(help.stdout, /refused: uidmapping, gidmapping/);
});

test('read-only without an upper, owners squashed; SIGTERM unmounts and ends the daemon', async (t) => {
  if (skip) return t.pass(skip);
  const root = mountProgRoot(t, 'mountprog-ro');
  const { top, tar, bottom } = await buildLowers(root);
  const m = await mount(t, root, { kind: 'overlay-program', lowers: [top, tar, bottom], upper: null, options: ['squash_to_uid=1234', 'squash_to_gid=4321'] });
  const [mnt, r] = [m.root, m.result!];
  t.is(r.code, 0, r.stderr);
  t.is(fs.readFileSync(path.join(mnt, 'opq/tnew'), 'utf8'), 'tnew');
  for (const p of ['', 'opq', 'opq/tnew', 'base/b']) t.deepEqual([fs.statSync(path.join(mnt, p)).uid, fs.statSync(path.join(mnt, p)).gid], [1234, 4321], p);
  t.throws(() => fs.writeFileSync(path.join(mnt, 'x'), ''), { code: 'EROFS' });
  const [pid] = overlayDaemons(mnt);
  process.kill(pid!, 'SIGTERM');
  t.true(await waitGone([pid!]));
  t.is(strayMounts(mnt).length, 0);
});
