// A debootstrapped Debian root filesystem (scripts/debian-rootfs: built once, cached in
// /var/cache/tarstack-test) as an image, an instance of it mounted by root with the default options,
// and what people do with one: chroot with su and sudo to another user, a setuid binary run by that user,
// /dev/null and /dev/zero from the tar, apt-get check, dpkg -i of a local .deb built here, unshare,
// and systemd-nspawn where this machine allows it. Skips with the reason where no rootfs can be made
// (not root, no Debian mirror reachable through apt's sources).
import test from 'ava';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { InstanceSession, instanceSkipReason } from './helpers/instances.js';
import { makeTestRoot, mountAt, removeTestRoot } from './helpers/mounted.js';
import { exec, execOk } from './helpers/exec.js';

const SCRIPT = fileURLToPath(new URL('../../scripts/debian-rootfs', import.meta.url));

/** The cached rootfs tar, or why there is none here. */
function rootfsTar(): { tar: string } | { skip: string } {
  const r = spawnSync(SCRIPT, { encoding: 'utf8' });
  if (r.status === 0) return { tar: r.stdout.trim() };
  if (r.status === 3) return { skip: r.stderr.trim() };
  throw new Error(`scripts/debian-rootfs exited ${r.status}: ${r.stderr.trim()}`);
}

const skipReason = (await instanceSkipReason()) ?? (process.platform === 'linux' ? undefined : 'needs Linux');
const rootfs = skipReason ? { skip: skipReason } : rootfsTar();
const skip = 'skip' in rootfs ? rootfs.skip : undefined;
if (skip) test.skip(`Debian rootfs suite skipped: ${skip}`, () => undefined);
const serial = skip ? (() => undefined) as unknown as typeof test.serial : test.serial;

const root = skip ? '' : makeTestRoot('e2e-rootfs');
if (root) fs.chmodSync(root, 0o755); // other users reach the mount below it
let s: InstanceSession;
let m = '';

test.before(async () => {
  if (skip) return;
  s = new InstanceSession(root);
  await s.addImage((rootfs as { tar: string }).tar, 'debian');
  await s.create('box', 'debian');
  m = await s.mountInstance('box');
});
test.after.always(async () => {
  if (!skip) await s.cleanup();
  removeTestRoot(root);
});

/** `chroot M argv...` (as root, or as `user` through --userspec); its output and exit. */
const chroot = (argv: string[], user?: string) => {
  const r = exec(['chroot', ...(user ? [`--userspec=${user}`] : []), m, ...argv], { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C', DEBIAN_FRONTEND: 'noninteractive' } });
  return { code: r.code, out: r.stdout.toString(), err: r.stderr.toString() };
};

serial('mounted by root with dev, suid and other users let in', (t) => {
  const at = mountAt(m)!;
  const opts = new Set(`${at.options},${at.superOptions}`.split(','));
  t.false(opts.has('nosuid') || opts.has('nodev'), [...opts].join(','));
  t.true(opts.has('allow_other') && opts.has('default_permissions'), [...opts].join(','));
});

serial('chroot M su nobody -s /bin/sh -c id', (t) => {
  const r = chroot(['su', 'nobody', '-s', '/bin/sh', '-c', 'id']);
  t.is(r.code, 0, r.err);
  t.regex(r.out, /^uid=65534\(nobody\) gid=65534\(nogroup\)/);
});

serial('chroot M sudo: root becomes another user; another user meets setuid sudo asking for a password', (t) => {
  const r = chroot(['sudo', '-u', 'nobody', 'id', '-u']);
  t.is(r.code, 0, r.err);
  t.is(r.out, '65534\n');
  // sudo runs setuid root for nobody, reads /etc/sudoers, and wants a password it cannot ask for; on
  // a nosuid mount it would say "effective uid is not 0" instead.
  const n = chroot(['sudo', '-n', 'true'], 'nobody:nogroup');
  t.not(n.code, 0);
  t.regex(n.err, /a password is required/, n.err);
});

serial('a setuid binary run by another user runs as its owner', (t) => {
  fs.copyFileSync(path.join(m, 'usr/bin/id'), path.join(m, 'usr/local/bin/suid-id'));
  fs.chmodSync(path.join(m, 'usr/local/bin/suid-id'), 0o4755);
  const r = chroot(['/usr/local/bin/suid-id', '-u'], 'nobody:nogroup');
  t.is(r.out, '0\n', r.err);
  t.is(chroot(['id', '-u'], 'nobody:nogroup').out, '65534\n', 'the plain one runs as nobody');
  // The tar's own setuid passwd reads /etc/shadow (root's, 0640) for nobody's status: "L" and a
  // date; without setuid it cannot, and says "P" alone.
  t.regex(chroot(['passwd', '-S'], 'nobody:nogroup').out, /^nobody L \d{4}-\d\d-\d\d /, 'the tar\'s setuid passwd read /etc/shadow');
});

serial('/dev/null and /dev/zero from the tar work for another user', (t) => {
  const r = chroot(['sh', '-c', 'echo gone > /dev/null && head -c 8 /dev/zero | od -An -tx1'], 'nobody:nogroup');
  t.is(r.code, 0, r.err);
  t.is(r.out.trim(), '00 00 00 00 00 00 00 00');
});

serial('apt-get check and dpkg -i of a local package', (t) => {
  const check = chroot(['apt-get', 'check']);
  t.is(check.code, 0, check.err);
  const pkg = path.join(root, 'pkg');
  fs.mkdirSync(path.join(pkg, 'DEBIAN'), { recursive: true });
  fs.mkdirSync(path.join(pkg, 'usr/share/tarstack-hello'), { recursive: true });
  fs.writeFileSync(path.join(pkg, 'usr/share/tarstack-hello/hello'), 'hello\n');
  fs.writeFileSync(path.join(pkg, 'DEBIAN/control'), 'Package: tarstack-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: tarstack tests <tests@invalid>\nDescription: a package the root filesystem test installs\n');
  fs.writeFileSync(path.join(pkg, 'DEBIAN/postinst'), '#!/bin/sh\nset -e\nid -u > /usr/share/tarstack-hello/configured-by\n', { mode: 0o755 });
  execOk(['dpkg-deb', '--root-owner-group', '-b', pkg, path.join(m, 'tmp/hello.deb')]);
  const inst = chroot(['dpkg', '-i', '/tmp/hello.deb']);
  t.is(inst.code, 0, inst.err);
  t.regex(chroot(['dpkg', '-s', 'tarstack-hello']).out, /^Status: install ok installed$/m);
  t.is(fs.readFileSync(path.join(m, 'usr/share/tarstack-hello/configured-by'), 'utf8'), '0\n', 'its postinst ran');
  t.is(chroot(['apt-get', 'check']).code, 0, 'the package database is consistent after it');
});

serial('unshare: new mount, UTS, IPC and PID namespaces inside the chroot', (t) => {
  const r = chroot(['unshare', '--mount', '--uts', '--ipc', '--pid', '--fork', 'sh', '-c', 'hostname box && hostname && echo $$']);
  if (r.code !== 0 && /Operation not permitted/.test(r.err)) return t.log(`unshare not allowed here: ${r.err.trim()}`) ?? t.pass();
  t.is(r.code, 0, r.err);
  t.is(r.out, 'box\n1\n');
});

serial('systemd-nspawn --pipe -D M true, where this machine allows it', (t) => {
  const nspawn = exec(['sh', '-c', 'command -v systemd-nspawn']).stdout.toString().trim();
  if (!nspawn) {
    t.log('skipped: systemd-nspawn is not installed (Debian package systemd-container; not installed by the tests, it would upgrade systemd here)');
    return t.pass();
  }
  const r = exec([nspawn, '--pipe', '-q', '--register=no', '-D', m, 'true']);
  if (r.code !== 0 && /(not permitted|cgroup|Failed to (allocate|create|mount))/i.test(r.stderr.toString())) {
    t.log(`skipped: this machine does not let systemd-nspawn run (${r.stderr.toString().trim().split('\n')[0]})`);
    return t.pass();
  }
  t.is(r.code, 0, r.stderr.toString());
});

serial("the instance's changes are what was done", async (t) => {
  const changes = (await s.ok(['diff', 'box', '--porcelain'])).stdout;
  t.regex(changes, /^A usr\/share\/tarstack-hello\/hello$/m);
  t.regex(changes, /^A usr\/local\/bin\/suid-id$/m);
  t.regex(changes, /^M var\/lib\/dpkg\/status$/m);
});
