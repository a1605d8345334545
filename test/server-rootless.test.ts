// Two ordinary users' servers (issue 14): each user's store gets its own server, running as that
// user, its socket in a run directory only that user may enter; neither user can reach, query,
// start or mount through the other's server or store, and each server serves only its own mounts.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { makeTestRoot, removeTestRoot } from './helpers/mount.js';
import { mountAt } from '../src/util/mounts.js';
import { ordinaryUser, UserSession, type UserIds } from './helpers/ordinary-user.js';
import { exec } from './helpers/exec.js';
import { makeTar, waitForNone } from './server-support.js';

const SECOND = 'tarstack-ci2';

/** A second ordinary user beside helpers/ordinary-user's, made once (idempotent). */
function secondUser(): UserIds | string {
  let id = exec(['id', '-u', SECOND]);
  if (id.code !== 0) {
    const made = exec(['useradd', '--system', '--no-create-home', '--shell', '/usr/sbin/nologin', SECOND]);
    if (made.code !== 0 && made.code !== 9) return `useradd ${SECOND}: ${made.stderr.trim()}`;
    id = exec(['id', '-u', SECOND]);
  }
  return { uid: Number(id.stdout.toString().trim()), gid: Number(exec(['id', '-g', SECOND]).stdout.toString().trim()) };
}

const first = ordinaryUser();
const second = typeof first === 'string' ? first : secondUser();
const skip = typeof first === 'string' ? first : typeof second === 'string' ? second : undefined;
if (skip) test.skip(`two-user server suite skipped: ${skip}`, () => undefined);
const root = skip ? '' : makeTestRoot('server-rootless');
if (root) fs.chmodSync(root, 0o711);
test.after.always(() => removeTestRoot(root));

interface Served {
  s: UserSession;
  mnt: string;
  pid: number;
}

async function mountAs(ids: UserIds, name: string, t: ExecutionContext): Promise<Served> {
  const s = new UserSession(ids, path.join(root, name), t);
  const tar = makeTar(path.join(s.home, 'img.tar'), { [`${name}/file`]: `${name}'s\n` });
  fs.chownSync(tar, ids.uid, ids.gid);
  await s.ok(['image', 'add', tar, '--name', 'img']);
  await s.ok(['create', 'i', 'img']);
  const mnt = path.join(s.home, 'mnt');
  await s.sh(`mkdir ${mnt}`);
  await s.ok(['mount', 'i', mnt]);
  const pid = (JSON.parse(fs.readFileSync(path.join(s.store, 'run', 'server.json'), 'utf8')) as { pid: number }).pid;
  return { s, mnt, pid };
}

const oneLine = (r: { code: number; stderr: string }) => r.code !== 0 && /^tarstack: [^\n]+\n$/.test(r.stderr);

test.serial("two users' servers never see each other's stores or sockets", async (t) => {
  const a = await mountAs(first as UserIds, 'alice', t);
  const b = await mountAs(second as UserIds, 'bob', t);
  t.not(a.pid, b.pid, 'a server per user');
  t.is(fs.statSync(`/proc/${a.pid}`).uid, (first as UserIds).uid, "alice's server runs as alice");
  t.is(fs.statSync(`/proc/${b.pid}`).uid, (second as UserIds).uid, "bob's as bob");

  for (const x of [a, b]) {
    const run = path.join(x.s.store, 'run');
    t.is(fs.statSync(run).mode & 0o777, 0o700, 'the run directory is its owner\'s alone');
    t.is(fs.statSync(path.join(run, 'server.sock')).mode & 0o777, 0o600);
  }

  // bob against alice's server and store: refused, one line each, nothing changed there.
  const sockA = path.join(a.s.store, 'run', 'server.sock');
  const probe = await b.s.run([process.execPath, '-e', `require('net').connect(${JSON.stringify(sockA)}).on('connect', () => { console.log('connected'); process.exit(0) }).on('error', (e) => console.log(e.code))`]);
  t.is(probe.stdout.trim(), 'EACCES', "bob cannot connect to alice's socket");
  for (const args of [['status'], ['serve'], ['serve', '--stop'], ['mount', 'i', b.mnt], ['umount', a.mnt], ['list']]) {
    const r = await b.s.cli(['--store', a.s.store, ...args]);
    t.true(oneLine(r), `bob: tarstack --store <alice's> ${args.join(' ')}: ${JSON.stringify(r)}`);
  }
  t.is(mountAt(a.mnt)?.fstype, 'fuse.tarstack', "alice's mount stays");

  // Each server serves its own mounts only.
  for (const [x, name] of [[a, 'alice'], [b, 'bob']] as const) {
    const st = JSON.parse((await x.s.ok(['serve', '--json'])).stdout) as { pid: number; mounts: Array<{ mountpoint: string }> };
    t.is(st.pid, x.pid);
    t.deepEqual(st.mounts.map((m) => m.mountpoint), [x.mnt]);
    t.is((await x.s.sh(`cat ${x.mnt}/${name}/file`)).stdout, `${name}'s\n`);
  }
  t.not((await b.s.sh(`cat ${a.mnt}/alice/file`)).code, 0, "bob cannot read through alice's mount");

  for (const x of [a, b]) {
    await x.s.ok(['umount', x.mnt]);
    await waitForNone('the server to leave after its last mount', () => x.s.processes());
  }
});
