// podman with tarstack-overlay as storage.conf's mount_program (docs/mount-program.md), the way the
// issue lays it out: import, create, mount, write and delete, umount, commit, image mount, and the
// new image holds the changes (deletions too). Offline; no container runs. Skipped, with one line,
// where podman cannot be installed.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { exec, execOk } from '../helpers/exec.js';
import { MOUNTPROG_MAIN } from '../helpers/mounted.js';
import { mountProgRoot } from '../helpers/mountprog.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const FLOW = path.join(REPO, 'test/mountprog/podman-flow.sh');

/** Why podman cannot be exercised here, or undefined; installs Debian's podman when missing. */
function skipReason(): string | undefined {
  if (process.getuid?.() !== 0 || !fs.existsSync('/dev/fuse')) return 'needs root and /dev/fuse';
  if (exec(['sh', '-c', 'command -v podman']).code !== 0) {
    const r = exec([path.join(REPO, 'scripts/system-deps'), 'podman'], { timeout: 300_000 });
    if (r.code !== 0 || exec(['sh', '-c', 'command -v podman']).code !== 0) return `podman is not installed and could not be (${r.stderr.trim().split('\n').pop() ?? 'apt-get failed'})`;
  }
  return undefined;
}

test('podman: import, create, mount, change, umount, commit, image mount: the changes are in the new image', async (t) => {
  const why = skipReason();
  if (why) {
    t.log(`podman test skipped: ${why}`);
    return t.pass();
  }
  const root = mountProgRoot(t, 'podman');
  const rootfs = path.join(root, 'rootfs');
  for (const d of ['etc', 'data/sub', 'data/keepdir']) fs.mkdirSync(path.join(rootfs, d), { recursive: true });
  for (const [f, body] of [['etc/os-release', 'ID=tarstack-test\n'], ['data/keep', 'keep\n'], ['data/modify', 'old\n'], ['data/gone', 'gone\n'], ['data/sub/x', 'x\n'], ['data/keepdir/y', 'y\n']]) {
    fs.writeFileSync(path.join(rootfs, f!), body!);
  }
  const tar = path.join(root, 'rootfs.tar');
  execOk(['tar', '--numeric-owner', '-C', rootfs, '-cf', tar, '.']);
  const r = exec(['unshare', '--mount', '--propagation', 'private', 'bash', FLOW, path.join(root, 'podman'), MOUNTPROG_MAIN, tar]);
  t.is(r.code, 0, `podman-flow.sh failed:\n${r.stderr}\n${r.stdout.toString()}`);
  const out = r.stdout.toString().split('\n');
  const value = (key: string) => out.find((l) => l.startsWith(key + ' '))?.slice(key.length + 1);
  t.is(value('container-mount-type'), 'fuse.tarstack-overlay', 'podman mounted the container through tarstack-overlay');
  t.is(value('after-umount-mounted'), '0');
  t.is(value('after-umount-daemons'), '0', 'podman umount ends the daemon');
  t.is(value('image-mount-type'), 'fuse.tarstack-overlay');
  const entries = out.filter((l) => l.startsWith('entry ')).map((l) => l.slice(6));
  t.deepEqual(entries, ['./data', './data/keep', './data/modify', './data/moved', './data/moved/y', './data/new', './data/newdir', './etc', './etc/os-release']);
  t.is(value('modify'), 'old|changed|');
  t.is(out.filter(Boolean).pop(), 'done');
});
