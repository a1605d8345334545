// tarstack-overlay behind mount(8): `mount -t fuse.tarstack-overlay` and an fstab line (a throwaway
// fstab given with `mount -T`, never /etc/fstab) through Debian's mount.fuse, which finds the program
// on mount's own PATH; plain umount ends the daemon. A systemd mount unit takes this same path.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { exec, execOk } from '../helpers/exec.js';
import { waitGone } from '../helpers/children.js';
import { MOUNTPROG_MAIN, overlayDaemons, strayMounts } from '../helpers/mounted.js';
import { mkdirs, mountProgRoot } from '../helpers/mountprog.js';

const HELPER_DIR = '/usr/local/sbin'; // on the PATH mount(8) gives its helpers
const skip = process.getuid?.() !== 0 || !fs.existsSync('/dev/fuse') ? 'needs root and /dev/fuse'
  : !fs.existsSync('/usr/sbin/mount.fuse3') && !fs.existsSync('/sbin/mount.fuse3') ? "needs fuse3's mount.fuse3 (apt-get install fuse3)" : undefined;

/** The program name mount.fuse runs: tarstack-overlay when free or already this build, else a private name. */
function installHelper(t: import('ava').ExecutionContext): string {
  for (const name of ['tarstack-overlay', `tarstack-overlay-test-${process.pid}`]) {
    const link = path.join(HELPER_DIR, name);
    let target: string | undefined;
    try {
      target = fs.realpathSync(link);
    } catch {
      fs.mkdirSync(HELPER_DIR, { recursive: true });
      fs.symlinkSync(MOUNTPROG_MAIN, link);
      t.teardown(() => fs.rmSync(link, { force: true }));
      return name;
    }
    if (target === fs.realpathSync(MOUNTPROG_MAIN)) return name;
    t.log(`${link} is another build (${target}); using a private name`);
  }
  throw new Error('no helper name available');
}

function lowers(root: string): { opts: string; mnt: string; upper: string } {
  const [a, colon, upper, work, mnt] = mkdirs(root, 'a', 'with:colon', 'upper', 'work', 'mnt');
  fs.writeFileSync(path.join(a!, 'from-a'), 'a');
  fs.writeFileSync(path.join(colon!, 'from-colon'), 'c');
  return { opts: `lowerdir=${a}:${colon!.replace(/:/g, '\\:')},upperdir=${upper},workdir=${work}`, mnt: mnt!, upper: upper! };
}

test.serial('mount -t fuse.tarstack-overlay SOURCE DIR -o ...: served until a plain umount, which ends the daemon', async (t) => {
  if (skip) return t.pass(skip);
  const prog = installHelper(t);
  const root = mountProgRoot(t, 'mountprog-fuse');
  const { opts, mnt, upper } = lowers(root);
  execOk(['mount', '-t', `fuse.${prog}`, 'mylayers', mnt, '-o', `${opts},nodev,noatime`]);
  const m = strayMounts(mnt)[0];
  t.is(m?.fstype, `fuse.${prog}`);
  t.deepEqual(fs.readdirSync(mnt).sort(), ['from-a', 'from-colon']);
  fs.writeFileSync(path.join(mnt, 'written'), 'w');
  const daemons = overlayDaemons(mnt);
  t.is(daemons.length, 1, 'one daemon serves it');
  execOk(['umount', mnt]);
  t.true(await waitGone(daemons));
  t.is(fs.readFileSync(path.join(upper, 'written'), 'utf8'), 'w');
});

test.serial('an fstab line (mount -T FILE DIR), with generic, x-systemd and nofail options', async (t) => {
  if (skip) return t.pass(skip);
  const prog = installHelper(t);
  const root = mountProgRoot(t, 'mountprog-fstab');
  const { opts, mnt } = lowers(root);
  const fstab = path.join(root, 'fstab');
  fs.writeFileSync(fstab, `# throwaway fstab for this test only\nlayers ${mnt} fuse.${prog} ${opts},noatime,nofail,x-systemd.requires=local-fs.target 0 0\n`);
  const r = exec(['mount', '-T', fstab, mnt]);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(fs.readdirSync(mnt).sort(), ['from-a', 'from-colon']);
  t.regex(fs.readFileSync('/proc/mounts', 'utf8'), new RegExp(`^layers ${mnt} fuse\\.${prog} rw,noatime`, 'm'));
  const daemons = overlayDaemons(mnt);
  t.is(daemons.length, 1, 'one daemon serves it');
  execOk(['umount', mnt]);
  t.true(await waitGone(daemons));
});
