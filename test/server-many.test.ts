// One server serves many mounts (issue 14): 50 instances of one image and a read-only mount of it,
// all served by one process that opened the image's layer once; each instance sees only its own
// changes; unmounting them all ends the server by itself.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { instanceSkipReason } from './helpers/instances.js';
import { makeTestRoot, removeTestRoot, storeProcesses, strayMounts } from './helpers/mount.js';
import { rssOf, serverStatus, sessionWithImage, status, waitForNone } from './server-support.js';

const skipReason = await instanceSkipReason();
if (skipReason) test.skip(`server suite skipped: ${skipReason}`, () => undefined);
const serial = (title: string, fn: (t: ExecutionContext) => Promise<void>) => skipReason || test.serial(title, fn);

const root = skipReason ? '' : makeTestRoot('server-many');
test.after.always(() => removeTestRoot(root));

const N = 50;

serial(`${N} instances and an image mount served by one server, sharing one open layer`, async (t) => {
  const files: Record<string, string> = { 'etc/motd': 'hello\n' };
  for (let i = 0; i < 200; i++) files[`data/f${i}`] = `file ${i}\n`.repeat(i + 1);
  const s = await sessionWithImage(t, path.join(root, 'fifty'), files);
  for (let i = 0; i < N; i++) await s.create(`i${i}`, 'img');

  const all = await s.ok(['mount', '--all']);
  const printed = all.stdout.trimEnd().split('\n');
  t.is(printed.length, N, 'mount --all printed one mount path per instance');
  const ro = await s.mount('img', 'ro');
  const rows = await status(s);
  t.is(rows.length, N + 1);
  t.true(rows.every((r) => r.state === 'serving'));
  const pids = new Set(rows.map((r) => r.pid));
  t.is(pids.size, 1, 'one process serves every mount');
  const [pid] = [...pids] as [number];
  t.deepEqual(storeProcesses(s.home), [pid], 'and it is the only process of the store');
  const before = rssOf(pid);

  const server = await serverStatus(s);
  t.is(server.pid, pid);
  t.is(server.mounts.length, N + 1);
  t.deepEqual([server.layers, server.leases], [1, N + 1], 'the image layer is open once, leased by every mount');

  // Every instance reads the image and writes its own file; none sees another's.
  for (const [i, dir] of printed.entries()) {
    t.is(fs.readFileSync(path.join(dir, 'data/f7'), 'utf8'), files['data/f7']);
    fs.writeFileSync(path.join(dir, 'mine'), `written in ${i}\n`);
    fs.appendFileSync(path.join(dir, 'etc/motd'), `${i}\n`);
  }
  for (const [i, dir] of printed.entries()) {
    t.is(fs.readFileSync(path.join(dir, 'mine'), 'utf8'), `written in ${i}\n`);
    t.is(fs.readFileSync(path.join(dir, 'etc/motd'), 'utf8'), `hello\n${i}\n`);
  }
  t.is(fs.readFileSync(path.join(ro, 'etc/motd'), 'utf8'), 'hello\n', 'the image itself is unchanged');
  for (const dir of printed) for (const f of Object.keys(files)) fs.readFileSync(path.join(dir, f));
  t.log(`server RSS ${(before / 1048576).toFixed(1)} MiB with ${N + 1} mounts, ${(rssOf(pid) / 1048576).toFixed(1)} MiB after reading every file in every mount`);

  t.is((await s.ok(['umount', '--all'])).code, 0);
  t.deepEqual(strayMounts(s.root), []);
  await waitForNone('the server to leave after its last mount', () => storeProcesses(s.home));
  t.false(fs.existsSync(path.join(s.home, 'run', 'server.json')), 'server.json goes with it');
  t.false(fs.existsSync(path.join(s.home, 'run', 'server.sock')), 'and its socket');
});
