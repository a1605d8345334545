// The server's life (issue 14): started by the first mount (CLIs racing to start it get one), gone
// after the last umount, even when a mount arrives as it leaves; `serve --foreground` for a service
// manager (SIGTERM unmounts, detaching what is busy; socket activation brings it up on demand);
// `serve --stop`; and what a CLI meets instead of a healthy server: stale files of a dead one, a
// stopped one, a store path too long for a socket name, a run directory that is not ours, a mount
// point inside the server's own mount. Each is one line, never a hang.
import test, { type ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { assertOneLineError, InstanceSession, instanceSkipReason, lastLine } from './helpers/instances.js';
import { CLI_MAIN, makeTestRoot, removeTestRoot, storeProcesses, strayMounts, tarstackCli } from './helpers/mount.js';
import { alive, makeTar, serverPid, serverStatus, status, waitFor, waitForNone } from './server-support.js';

const skipReason = (await instanceSkipReason()) ?? (fs.existsSync('/usr/bin/systemd-socket-activate') ? undefined : 'needs systemd-socket-activate');
if (skipReason) test.skip(`server suite skipped: ${skipReason}`, () => undefined);
const serial = (title: string, fn: (t: ExecutionContext) => Promise<void>) => skipReason || test.serial(title, fn);

const root = skipReason ? '' : makeTestRoot('server-life');
test.after.always(() => removeTestRoot(root));

let seq = 0;
async function session(t: ExecutionContext, instances: string[], dir = path.join(root, `s${++seq}`)): Promise<InstanceSession> {
  const s = new InstanceSession(dir, t);
  await s.addImage(makeTar(path.join(s.root, 'img.tar'), { 'etc/motd': 'hello\n' }), 'img');
  for (const i of instances) await s.create(i, 'img');
  return s;
}

/** A long-running CLI child (a foreground server) whose first stdout line is awaited. */
function startChild(argv: string[], env: NodeJS.ProcessEnv): { proc: ChildProcess; firstLine: Promise<string>; stderr: () => string; exit: Promise<number | null> } {
  const proc = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const firstLine = new Promise<string>((resolve) => proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d).includes('\n') && resolve(out.split('\n')[0]!)));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exit = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return { proc, firstLine, stderr: () => err, exit };
}

serial('CLIs racing to start the server get one; mounts arriving as it leaves start the next', async (t) => {
  const names = ['a', 'b', 'c', 'd', 'e', 'f'];
  const s = await session(t, names);
  const results = await Promise.all(names.map((n) => (fs.mkdirSync(path.join(s.root, `mnt-${n}`)), s.cli(['mount', n, path.join(s.root, `mnt-${n}`)]))));
  t.deepEqual(results.map((r) => [r.code, lastLine(r)]), names.map((n) => [0, path.join(s.root, `mnt-${n}`)]), results.map((r) => r.stderr).join(''));
  t.is(new Set((await status(s)).map((r) => r.pid)).size, 1, 'one server for all');
  await s.ok(['umount', '--all']);
  await waitForNone('that server to leave', () => storeProcesses(s.home));

  // With no grace period the server leaves at once after each umount; the next mount must still work.
  const env = { TARSTACK_HOME: s.home, TARSTACK_SERVER_GRACE_MS: '0' };
  const pids = new Set<number>();
  for (let i = 0; i < 8; i++) {
    const r = await tarstackCli(['mount', 'a', path.join(s.root, 'mnt-a')], { env });
    t.is(r.code, 0, r.stderr);
    pids.add(serverPid(s)!);
    t.is((await tarstackCli(['umount', 'a'], { env })).code, 0);
  }
  t.true(pids.size > 1, 'servers came and went');
  await waitForNone('the last server to leave', () => storeProcesses(s.home));
  t.deepEqual(strayMounts(s.root), []);
});

serial('serve --foreground: mounts go to it, it stays when idle, SIGTERM unmounts and detaches the busy mount, and it ends when its user leaves', async (t) => {
  const s = await session(t, ['a', 'b']);
  const server = startChild([process.execPath, CLI_MAIN, 'serve', '--foreground'], { TARSTACK_HOME: s.home, TARSTACK_SERVER_GRACE_MS: '0' });
  t.teardown(() => void server.proc.kill('SIGKILL'));
  t.regex(await server.firstLine, new RegExp(`^tarstack server ${server.proc.pid} serves store `));
  const a = await s.mountInstance('a');
  t.is((await status(s))[0]!.pid, server.proc.pid!, 'the mount is served by the foreground server');
  await s.umountInstance('a', a);
  t.is((await serverStatus(s)).pid, server.proc.pid!, 'it stayed after its last mount');

  await s.mountInstance('a');
  const b = await s.mountInstance('b');
  const user = spawn('sleep', ['600'], { cwd: b, stdio: 'ignore' });
  t.teardown(() => void user.kill('SIGKILL'));
  server.proc.kill('SIGTERM');
  await waitFor('a to be unmounted and b detached', async () => strayMounts(s.root).length === 0);
  t.true(alive(server.proc.pid!), 'it serves the detached mount on');
  t.deepEqual((await status(s)).map((r) => [r.name, r.detached]), [['b', true]]);
  assertOneLineError(t, await s.cli(['mount', 'a', path.join(s.root, 'mnt-a')]), 'a mount while it is stopping');
  t.deepEqual(fs.readdirSync(`/proc/${user.pid}/cwd`), ['etc'], 'the detached user still reads its tree');
  user.kill('SIGKILL');
  t.is(await server.exit, 0, 'and it ends once that user left');
  t.deepEqual(await status(s), []);
});

serial('mount --foreground still serves its one mount in its own process, beside the server: umount ends it', async (t) => {
  const s = await session(t, ['a', 'b']);
  const b = await s.mountInstance('b'); // the server's
  const mnt = path.join(s.root, 'mnt-a');
  fs.mkdirSync(mnt);
  const fg = startChild([process.execPath, CLI_MAIN, 'mount', 'a', mnt, '--foreground'], { TARSTACK_HOME: s.home });
  t.teardown(() => void fg.proc.kill('SIGKILL'));
  t.is(await fg.firstLine, mnt, 'it prints the mount path once serving');
  const rows = await status(s);
  t.deepEqual(rows.map((r) => [r.name, r.pid]).sort(), [['a', fg.proc.pid!], ['b', serverPid(s)!]].sort() as Array<[string, number]>, 'its own pid, not the server\'s');
  fs.writeFileSync(path.join(mnt, 'fg'), 'served in the foreground\n');
  await s.umountInstance('a', mnt);
  t.is(await fg.exit, 0, 'umount ended the foreground process');
  t.deepEqual((await status(s)).map((r) => r.name), ['b'], 'and the server\'s mount goes on');
  t.is(fs.readFileSync(path.join(b, 'etc/motd'), 'utf8'), 'hello\n');
  t.is(fs.readFileSync(path.join(await s.mountInstance('a'), 'fg'), 'utf8'), 'served in the foreground\n');
  await s.ok(['umount', '--all']);
});

serial('systemd socket activation: the first mount starts the server on the handed socket; idle, it leaves', async (t) => {
  const s = await session(t, ['a']);
  const run = path.join(s.home, 'run');
  fs.mkdirSync(run, { mode: 0o700 });
  const sock = path.join(run, 'server.sock');
  const activator = startChild(['/usr/bin/systemd-socket-activate', '-l', sock, '-E', `TARSTACK_HOME=${s.home}`, '-E', 'TARSTACK_SERVER_GRACE_MS=0', process.execPath, CLI_MAIN, 'serve', '--foreground'], {});
  t.teardown(() => void activator.proc.kill('SIGKILL'));
  await waitFor('the activator to listen', () => activator.stderr().includes('Listening on'));
  t.deepEqual(storeProcesses(s.home), [], 'nothing runs before the first request');
  const a = await s.mountInstance('a');
  t.is((await status(s))[0]!.pid, activator.proc.pid!, 'the server the activator exec\'d (on its socket) serves it');
  await s.umountInstance('a', a);
  t.is(await activator.exit, 0, 'idle, the activated server leaves');
  t.true(fs.existsSync(sock), 'leaving the activator\'s socket in place');
});

serial('serve --stop unmounts everything and ends the server; serve reports it', async (t) => {
  const s = await session(t, ['a', 'b']);
  await s.mountInstance('a');
  await s.mountInstance('b');
  const st = await serverStatus(s);
  t.deepEqual([st.mounts.length, st.layers, st.leases], [2, 1, 2]);
  const r = await s.ok(['serve', '--stop']);
  t.is(lastLine(r), `stopped tarstack server ${st.pid}`);
  t.deepEqual(strayMounts(s.root), []);
  t.deepEqual(await status(s), []);
  t.is(lastLine(await s.ok(['serve', '--stop'])), `no tarstack server serves store ${s.home}`);
});

serial('what a CLI meets instead of a healthy server: one line each, never a hang', async (t) => {
  const s = await session(t, ['a', 'b']);
  const run = path.join(s.home, 'run');
  // A dead server's leftovers: server.json naming a gone pid, a socket nobody listens on.
  fs.mkdirSync(run, { recursive: true });
  fs.writeFileSync(path.join(run, 'server.json'), JSON.stringify({ version: 1, pid: 999999, socket: path.join(run, 'server.sock'), started: '', log: '' }));
  fs.writeFileSync(path.join(run, 'server.sock'), '');
  const a = await s.mountInstance('a');
  t.true(alive(serverPid(s)!), 'a new server replaced the dead one');
  await s.umountInstance('a', a);
  await waitForNone('the server to leave', () => storeProcesses(s.home));
  fs.writeFileSync(path.join(run, 'server.json'), '{ damaged');
  await s.mountInstance('a');

  // A stopped server: named at once; the request it finds queued when it resumes is not carried out.
  const pid = serverPid(s)!;
  process.kill(pid, 'SIGSTOP');
  try {
    fs.mkdirSync(path.join(s.root, 'mnt-b'));
    const r = await s.cli(['mount', 'b', path.join(s.root, 'mnt-b')]);
    assertOneLineError(t, r, 'mount with the server stopped');
    t.regex(r.stderr, new RegExp(`kill -CONT ${pid}`));
  } finally {
    process.kill(pid, 'SIGCONT');
  }
  t.is((await serverStatus(s)).mounts.length, 1, 'the abandoned request was dropped');
  t.deepEqual((await status(s)).map((r) => r.name), ['a']);

  // A mount point inside one of the server's own mounts would deadlock it: refused.
  fs.mkdirSync(path.join(s.root, 'mnt-a', 'sub'));
  const nested = await s.cli(['mount', 'b', path.join(s.root, 'mnt-a', 'sub')]);
  assertOneLineError(t, nested, 'mount inside a mount of the same server');
  t.regex(nested.stderr, /inside .*mnt-a/);
  await s.ok(['umount', '--all']);
  await waitForNone('the server to leave', () => storeProcesses(s.home));

  // A run directory that is not ours.
  fs.chownSync(run, 12345, 12345);
  assertOneLineError(t, await s.cli(['mount', 'a', path.join(s.root, 'mnt-a')]), 'a run directory owned by someone else');
  fs.chownSync(run, 0, 0);
});

serial('a store path too long for a socket name still gets its server', async (t) => {
  let dir = path.join(root, 'long');
  while (dir.length < 120) dir = path.join(dir, 'a-rather-long-directory-name');
  const s = await session(t, ['a'], dir);
  t.true(path.join(s.home, 'run', 'server.sock').length > 108);
  const a = await s.mountInstance('a');
  t.is(fs.readFileSync(path.join(a, 'etc/motd'), 'utf8'), 'hello\n');
  t.is((await serverStatus(s)).mounts.length, 1);
  await s.umountInstance('a', a);
});
