// What root's mounts are made with: by default what mount(8) gives root (dev, suid, allow_other with
// default_permissions), so another user inside runs a root-owned setuid binary as root, opens a
// device node from the tar, and is refused what the modes refuse (the kernel checks, the overlay
// records owners as the caller); --nodev, --nosuid, --no-allow-other and -o restrict, for
// instances and read-only images alike. An ordinary user's side is in rootless.test.ts.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { assertOneLineError, InstanceSession, instanceSkipReason } from './helpers/instances.js';
import { makeTestRoot, mountAt, removeTestRoot } from './helpers/mounted.js';
import { exec, execOk } from './helpers/exec.js';
import { alive, serverPid, waitFor } from './server-support.js';

const skipReason = await instanceSkipReason();
if (skipReason) test.skip(`root mount suite skipped: ${skipReason}`, () => undefined);
const it = (title: string, fn: (t: ExecutionContext) => Promise<void>) => skipReason || test(title, fn);

const root = skipReason ? '' : makeTestRoot('root-mounts');
if (root) fs.chmodSync(root, 0o755); // other users reach the mounts below it
test.after.always(() => removeTestRoot(root));

let seq = 0;
/** Image "r": a root-owned setuid copy of id(1), /dev/null and /dev/zero, a root file 0644, /tmp 1777. */
async function session(t: ExecutionContext): Promise<InstanceSession> {
  const dir = path.join(root, `s${++seq}`);
  const src = path.join(dir, 'src');
  for (const d of ['bin', 'dev', 'tmp']) fs.mkdirSync(path.join(src, d), { recursive: true });
  fs.copyFileSync('/usr/bin/id', path.join(src, 'bin/suid-id'));
  fs.chmodSync(path.join(src, 'bin/suid-id'), 0o4755);
  execOk(['mknod', '-m', '666', path.join(src, 'dev/null'), 'c', '1', '3']);
  execOk(['mknod', '-m', '666', path.join(src, 'dev/zero'), 'c', '1', '5']);
  fs.chmodSync(path.join(src, 'tmp'), 0o1777);
  fs.writeFileSync(path.join(src, 'rootfile'), 'root\n', { mode: 0o644 });
  execOk(['tar', '--numeric-owner', '--owner=0', '--group=0', '-cf', path.join(dir, 'r.tar'), '-C', src, '.']);
  fs.chmodSync(dir, 0o755);
  const s = new InstanceSession(dir, t);
  await s.addImage(path.join(dir, 'r.tar'), 'r');
  return s;
}

/** A shell command as nobody. */
const asNobody = (script: string) => exec(['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', '/bin/sh', '-c', script]);
const optionsAt = (dir: string) => {
  const m = mountAt(dir)!;
  return new Set(`${m.options},${m.superOptions}`.split(','));
};

it("root's instance mount: dev, suid and other users in, with the kernel's checks", async (t) => {
  const s = await session(t);
  await s.create('w', 'r');
  await s.withInstance('w', (m) => {
    const o = optionsAt(m);
    for (const want of ['allow_other', 'default_permissions']) t.true(o.has(want), `${want} in ${[...o]}`);
    for (const not of ['nosuid', 'nodev']) t.false(o.has(not), `${not} in ${[...o]}`);
    const id = asNobody(`${m}/bin/suid-id -u; ${m}/bin/suid-id -ru`);
    t.is(id.stdout.toString(), '0\n65534\n', `a root-owned 4755 binary runs setuid for nobody: ${id.stderr.toString()}`);
    const dev = asNobody(`echo x > ${m}/dev/null && head -c 5 ${m}/dev/zero | od -An -tx1`);
    t.is(dev.code, 0, dev.stderr.toString());
    t.is(dev.stdout.toString().trim(), '00 00 00 00 00', '/dev/zero from the tar reads zeros');
    for (const refused of [`echo x >> ${m}/rootfile`, `touch ${m}/new`, `chown nobody ${m}/rootfile`]) t.not(asNobody(refused).code, 0, `refused by the modes: ${refused}`);
    t.is(fs.readFileSync(path.join(m, 'rootfile'), 'utf8'), 'root\n');
    // Made by nobody in /tmp: owned by nobody; its own write clears its set-user-ID bit.
    const own = asNobody(`cp ${m}/bin/suid-id ${m}/tmp/mine && chmod 4755 ${m}/tmp/mine && stat -c '%u %a' ${m}/tmp/mine && echo >> ${m}/tmp/mine && stat -c '%a' ${m}/tmp/mine`);
    t.is(own.stdout.toString(), '65534 4755\n755\n', own.stderr.toString());
    t.is(asNobody(`chown root ${m}/tmp/mine`).code, 1, 'nobody gives nothing away');
  });
  t.is(execOk(['stat', '-c', '%u', path.join(s.root, 'store/instances', fs.readdirSync(path.join(s.root, 'store/instances'))[0]!, 'upper/tmp/mine')]).stdout.toString(), '65534\n', "the upper holds nobody's file as nobody's");
});

it('--nodev, --nosuid, --no-allow-other and -o restrict; unknown options are one line', async (t) => {
  const s = await session(t);
  await s.create('w', 'r');
  const m = path.join(s.root, 'm');
  fs.mkdirSync(m);
  const mounted = async (args: string[], check: (o: Set<string>) => void) => {
    await s.ok(['mount', 'w', m, ...args]);
    try {
      check(optionsAt(m));
    } finally {
      await s.umountInstance('w', m);
    }
  };
  await mounted(['--nodev', '--nosuid'], (o) => {
    t.true(o.has('nodev') && o.has('nosuid'));
    t.not(asNobody(`${m}/bin/suid-id -u`).stdout.toString(), '0\n', 'nosuid: runs as nobody');
    t.not(asNobody(`echo x > ${m}/dev/null`).code, 0, 'nodev: the device cannot be opened');
  });
  await mounted(['--no-allow-other'], (o) => {
    t.false(o.has('allow_other'));
    t.not(asNobody(`ls ${m}`).code, 0, 'other users are kept out');
  });
  await mounted(['-o', 'noexec,nodev', '-o', 'ro'], (o) => t.true(o.has('noexec') && o.has('nodev') && o.has('ro') && o.has('allow_other'), [...o].join(',')));
  await mounted(['-o', 'nosuid', '--allow-other=false'], (o) => t.true(o.has('nosuid') && !o.has('allow_other'), [...o].join(',')));
  // Every -o flag taken mounts (libfuse refused some it was handed: nodiratime, lazytime, ...); those it cannot pass are refused in one line.
  for (const f of ['exec', 'rw', 'async', 'atime', 'noatime', 'dirsync', 'sync', 'relatime', 'diratime', 'symfollow', 'nolazytime', 'nostrictatime']) {
    await mounted(['-o', f], (o) => t.true(o.has('allow_other'), `${f}: ${[...o].join(',')}`));
  }
  for (const f of ['nodiratime', 'lazytime', 'strictatime', 'nosymfollow', 'norelatime']) assertOneLineError(t, await s.cli(['mount', 'w', m, '-o', f]), `-o ${f}`);
  assertOneLineError(t, await s.cli(['mount', 'w', m, '-o', 'bogus']), 'an unknown -o option');
  assertOneLineError(t, await s.cli(['mount', 'w', m, '-o', 'fsname=x']), 'an -o option tarstack sets itself');
  t.false(!!mountAt(m), 'nothing mounted after a refusal');
});

it('read-only image mounts follow the same rules', async (t) => {
  const s = await session(t);
  const m = await s.mount('r');
  const o = optionsAt(m);
  t.true(o.has('ro') && o.has('allow_other') && !o.has('nosuid') && !o.has('nodev'), [...o].join(','));
  t.is(asNobody(`${m}/bin/suid-id -u`).stdout.toString(), '0\n');
  t.is((await s.umount(m)).code, 0);
  const again = await s.cli(['image', 'mount', 'r', m, '--nosuid', '-o', 'nodev']);
  t.is(again.code, 0, again.stderr);
  t.true(optionsAt(m).has('nosuid') && optionsAt(m).has('nodev'));
  t.is((await s.umount(m)).code, 0);
  assertOneLineError(t, await s.cli(['image', 'mount', 'r', m, '-o', 'rw']), 'a writable image mount');
});

it('mount --all makes a dead mount again with the options it had', async (t) => {
  const s = await session(t);
  await s.create('w', 'r');
  const m = path.join(s.root, 'm');
  fs.mkdirSync(m);
  await s.ok(['mount', 'w', m, '--nosuid', '-o', 'noexec']);
  const pid = serverPid(s)!;
  process.kill(pid, 'SIGKILL');
  await waitFor('the server to die', () => !alive(pid));
  await s.ok(['mount', '--all']);
  const o = optionsAt(m);
  t.true(o.has('nosuid') && o.has('noexec') && !o.has('nodev') && o.has('allow_other'), [...o].join(','));
  await s.umountInstance('w', m);
});
