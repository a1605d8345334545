// The server killed with -9 (issue 14, crash recovery): every mount it served shows `dead` in
// `status`, `umount` clears one, and one `mount --all` brings every mount back where and as it was
// (instances with every fsynced byte, a --tmp mount fresh, the read-only image mount), served by a
// new server.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { instanceSkipReason } from './helpers/instances.js';
import { makeTestRoot, removeTestRoot, strayMounts } from './helpers/mount.js';
import { seededBytes } from './helpers/bytes.js';
import { alive, serverPid, sessionWithImage, status, waitFor } from './server-support.js';

const skipReason = await instanceSkipReason();
if (skipReason) test.skip(`server suite skipped: ${skipReason}`, () => undefined);
const serial = (title: string, fn: (t: ExecutionContext) => Promise<void>) => skipReason || test.serial(title, fn);

const root = skipReason ? '' : makeTestRoot('server-crash');
test.after.always(() => removeTestRoot(root));

const BIG = seededBytes(3 << 20, 7);

/** Write and fsync: the bytes are acknowledged as durable before the kill. */
function writeSynced(file: string, data: string): void {
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

serial('kill -9 of the server: all mounts dead, umount clears one, mount --all brings every mount back with its fsynced data', async (t) => {
  const s = await sessionWithImage(t, path.join(root, 'crash'), { 'etc/motd': 'hello\n', 'big': BIG });
  for (const name of ['a', 'b', 'c', 'scratch']) await s.create(name, 'img');
  const a = await s.mountInstance('a');
  const b = await s.mountInstance('b');
  const c = await s.mountInstance('c');
  const scratch = path.join(s.root, 'mnt-scratch');
  fs.mkdirSync(scratch);
  await s.ok(['mount', 'scratch', scratch, '--tmp']);
  const ro = await s.mount('img', 'ro');

  writeSynced(path.join(a, 'new'), 'fsynced in a\n');
  const fd = fs.openSync(path.join(b, 'big'), 'r+'); // a lazily copied-up lower file, changed in place
  fs.writeSync(fd, 'CHANGED', 2 << 20);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.mkdirSync(path.join(c, 'dir'));
  writeSynced(path.join(c, 'dir', 'f'), 'fsynced in c\n');
  writeSynced(path.join(scratch, 'gone'), 'thrown away\n');

  const pid = serverPid(s)!;
  const rows = await status(s);
  t.is(rows.length, 5);
  t.true(rows.every((r) => r.pid === pid && r.state === 'serving'));
  process.kill(pid, 'SIGKILL');
  await waitFor('the server to die', () => !alive(pid));

  const dead = await status(s);
  t.deepEqual(dead.map((r) => r.state), Array(5).fill('dead'), 'every mount of the server is dead');
  t.is(strayMounts(s.root).length, 5, 'and still in the mount table');

  await s.umountInstance('c', c);
  t.deepEqual((await status(s)).map((r) => r.mountpoint).sort(), [a, b, scratch, ro].sort(), 'umount cleared c only');

  const back = await s.ok(['mount', '--all']);
  const printed = back.stdout.trimEnd().split('\n');
  const cDefault = printed.find((p) => ![a, b, scratch, ro].includes(p));
  t.deepEqual(printed.filter((p) => p !== cDefault).sort(), [a, b, scratch, ro].sort(), 'the dead mounts came back where they were');
  t.truthy(cDefault, 'and the cleared instance at its default mount point');
  const rows2 = await status(s);
  t.is(rows2.length, 5);
  const pid2 = serverPid(s)!;
  t.not(pid2, pid);
  t.true(rows2.every((r) => r.state === 'serving' && r.pid === pid2), 'all served by the new server');

  t.is(fs.readFileSync(path.join(a, 'new'), 'utf8'), 'fsynced in a\n');
  const big = fs.readFileSync(path.join(b, 'big'));
  t.is(big.subarray(2 << 20, (2 << 20) + 7).toString(), 'CHANGED');
  t.true(big.subarray(0, 2 << 20).equals(BIG.subarray(0, 2 << 20)) && big.subarray((2 << 20) + 7).equals(BIG.subarray((2 << 20) + 7)), 'the rest of the copied-up file is the image\'s');
  t.is(fs.readFileSync(path.join(cDefault!, 'dir', 'f'), 'utf8'), 'fsynced in c\n');
  t.deepEqual(fs.readdirSync(scratch).sort(), ['big', 'etc'], 'the --tmp mount came back fresh');
  t.is(fs.readFileSync(path.join(ro, 'etc/motd'), 'utf8'), 'hello\n');
  fs.writeFileSync(path.join(scratch, 'again'), 'still throwaway\n');

  await s.ok(['umount', '--all']);
  t.deepEqual(strayMounts(s.root), []);
  await s.withInstance('scratch', (dir) => t.false(fs.existsSync(path.join(dir, 'again')), 'the revived --tmp mount stayed throwaway'));
});
