// One mount's fault stays that mount's (issue 14, isolation inside one server): its tar truncated
// and deleted, its compressed tar corrupted, its upper full or gone, its lower hung, its clients
// killed mid-request, and the server's own socket fed garbage; meanwhile another mount of the same
// server keeps answering, and the faulty one answers whatever it still can. (A mount whose every
// read-pool thread waits on a hung lower stops taking requests at all: that is the binding's
// backpressure, within the one mount; this suite only asks that the others go on.)
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { assertOneLineError, type InstanceSession } from './helpers/instances.js';
import { instanceSkipReason } from './helpers/instances.js';
import { forceUnmount, makeTestRoot, removeTestRoot, strayMounts } from './helpers/mount.js';
import { exec, execOk } from './helpers/exec.js';
import { seededBytes } from './helpers/bytes.js';
import { alive, child, makeTar, serverPid, sessionWithImage, status, waitFor } from './server-support.js';

const skipReason = await instanceSkipReason();
if (skipReason) test.skip(`server suite skipped: ${skipReason}`, () => undefined);
const serial = (title: string, fn: (t: ExecutionContext) => Promise<void>) => skipReason || test.serial(title, fn);

const root = skipReason ? '' : makeTestRoot('server-faults');
test.after.always(() => removeTestRoot(root));

const BIG = seededBytes(8 << 20, 11);
const GOOD = { 'etc/motd': 'good\n', 'big': seededBytes(4 << 20, 12) };
let seq = 0;

/** A session with image `good` and its mounted instance `ok`: the bystander every case checks. */
async function withBystander(t: ExecutionContext): Promise<{ s: InstanceSession; ok: string }> {
  const s = await sessionWithImage(t, path.join(root, `s${++seq}`), GOOD, 'good');
  await s.create('ok', 'good');
  return { s, ok: await s.mountInstance('ok') };
}

let round = 0;
/** The bystander answers: stat, a read of the image, a write and its read-back. */
function bystanderAnswers(t: ExecutionContext, ok: string): void {
  const n = ++round;
  t.is(fs.statSync(path.join(ok, 'etc/motd')).size, 5);
  t.true(fs.readFileSync(path.join(ok, 'big')).equals(GOOD.big));
  fs.writeFileSync(path.join(ok, `w${n}`), `round ${n}\n`);
  t.is(fs.readFileSync(path.join(ok, `w${n}`), 'utf8'), `round ${n}\n`);
}

/**
 * bystanderAnswers() from a child process, given `ms` to do it: where a failure would be a hang,
 * the test fails (and cleans up) instead of hanging on a blocked call of its own.
 */
async function bystanderAnswersSoon(t: ExecutionContext, ok: string, ms = 30_000): Promise<void> {
  const n = ++round;
  const c = child(`const fs = require('fs'), p = require('path'), d = ${JSON.stringify(ok)};
    const big = fs.readFileSync(p.join(d, 'big'));
    fs.writeFileSync(p.join(d, 'w${n}'), 'round ${n}\\n');
    process.stdout.write([fs.statSync(p.join(d, 'etc/motd')).size, require('crypto').createHash('sha1').update(big).digest('hex'), fs.readFileSync(p.join(d, 'w${n}'), 'utf8')].join(' '));`);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const r = await Promise.race([c.done, new Promise<undefined>((res) => (timer = setTimeout(() => res(undefined), ms)))]);
  clearTimeout(timer);
  if (!r) c.kill();
  t.is(r?.stdout, `5 ${createHash('sha1').update(GOOD.big).digest('hex')} round ${n}\n`, `the other mount answers${r ? r.stderr : ' (nothing within the time given)'}`);
}

/** Drop the page cache of one file (GNU dd: nocache with count=0 covers the whole file). */
const dropCache = (file: string) => execOk(['dd', `if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);

serial('its tar truncated and deleted: reads past the cut fail with EIO there, a new mount of it is refused, the other mount answers', async (t) => {
  const { s, ok } = await withBystander(t);
  const tar = makeTar(path.join(s.root, 'bad.tar'), { 'small': 'before the cut\n', 'big': BIG });
  await s.addImage(tar, 'bad');
  await s.create('victim', 'bad');
  await s.create('later', 'bad');
  const victim = await s.mountInstance('victim');
  fs.truncateSync(tar, 1 << 20);
  fs.unlinkSync(tar);
  const r = await child(`try { require('fs').readFileSync(${JSON.stringify(path.join(victim, 'big'))}); } catch (e) { process.stdout.write(e.code); }`).done;
  t.is(r.stdout, 'EIO', 'a read past the cut is an EIO');
  t.is(fs.readFileSync(path.join(victim, 'small'), 'utf8'), 'before the cut\n', 'what is before the cut still reads');
  bystanderAnswers(t, ok);
  const later = path.join(s.root, 'mnt-later');
  fs.mkdirSync(later);
  assertOneLineError(t, await s.cli(['mount', 'later', later]), 'mounting an image whose tar is gone');
  bystanderAnswers(t, ok);
  await s.umountInstance('victim', victim);
  bystanderAnswers(t, ok);
  t.deepEqual((await status(s)).map((m) => m.name), ['ok']);
});

serial('its compressed tar corrupted after mounting: its reads fail with EIO, the other mount answers', async (t) => {
  const { s, ok } = await withBystander(t);
  const plain = makeTar(path.join(s.root, 'gz.tar'), { 'big': BIG });
  execOk(['gzip', '-1', plain]);
  await s.addImage(`${plain}.gz`, 'gz');
  await s.create('victim', 'gz');
  const victim = await s.mountInstance('victim');
  const fd = fs.openSync(`${plain}.gz`, 'r+');
  fs.writeSync(fd, Buffer.alloc(4096, 0x55), 0, 4096, fs.fstatSync(fd).size >> 1);
  fs.closeSync(fd);
  const r = await child(`try { require('fs').readFileSync(${JSON.stringify(path.join(victim, 'big'))}); process.stdout.write('read'); } catch (e) { process.stdout.write(e.code); }`).done;
  t.is(r.stdout, 'EIO', 'corrupt bytes are an EIO, never served');
  bystanderAnswers(t, ok);
  t.deepEqual((await status(s)).map((m) => m.state), ['serving', 'serving']);
});

serial('its upper on a full tmpfs, then removed: ENOSPC and errors there only, the other mount answers', async (t) => {
  const { s, ok } = await withBystander(t);
  await s.addImage(makeTar(path.join(s.root, 'v.tar'), { 'etc/motd': 'victim\n' }), 'v');
  await s.create('victim', 'v');
  const id = (JSON.parse((await s.ok(['info', 'victim', '--json'])).stdout) as { id: string }).id;
  const home = path.join(s.home, 'instances', id);
  fs.renameSync(home, `${home}.disk`);
  fs.mkdirSync(home);
  execOk(['mount', '-t', 'tmpfs', '-o', 'size=2m', 'tarstack-test-full', home]);
  try {
    execOk(['cp', '-a', `${home}.disk/.`, home]);
    const victim = await s.mountInstance('victim');
    fs.writeFileSync(path.join(victim, 'small'), 'fits\n');
    t.throws(() => fs.writeFileSync(path.join(victim, 'huge'), Buffer.alloc(4 << 20, 1)), { code: 'ENOSPC' });
    bystanderAnswers(t, ok);
    t.is(fs.readFileSync(path.join(victim, 'small'), 'utf8'), 'fits\n', 'the full mount still reads');
    t.is(fs.readFileSync(path.join(victim, 'etc/motd'), 'utf8'), 'victim\n');
    fs.rmSync(path.join(home, 'upper'), { recursive: true, force: true });
    t.throws(() => fs.writeFileSync(path.join(victim, 'after'), 'x'), undefined, 'nothing can be made in a removed upper');
    bystanderAnswers(t, ok);
    t.is(fs.readFileSync(path.join(victim, 'etc/motd'), 'utf8'), 'victim\n', 'the image still shows through');
    await s.ok(['umount', 'victim']);
    bystanderAnswers(t, ok);
  } finally {
    if (strayMounts(home).some((m) => m.fsType.startsWith('fuse'))) forceUnmount(path.join(s.root, 'mnt-victim'));
    exec(['umount', home]);
  }
});

serial('its lower hung (the tar on a stopped FUSE filesystem): reads and a copy-up there wait, the other mount answers, all finish once it resumes', async (t) => {
  const { s, ok } = await withBystander(t);
  const dirs = Object.fromEntries(['lower', 'upper', 'work', 'fuse'].map((d) => [d, path.join(s.root, d)])) as Record<string, string>;
  for (const d of Object.values(dirs)) fs.mkdirSync(d);
  makeTar(path.join(dirs.lower!, 'hung.tar'), { 'big': BIG });
  const fo = spawn('fuse-overlayfs', ['-f', '-o', `lowerdir=${dirs.lower},upperdir=${dirs.upper},workdir=${dirs.work}`, dirs.fuse!], { stdio: 'ignore' });
  const readers: Array<ReturnType<typeof child>> = [];
  try {
    await waitFor('fuse-overlayfs to mount', () => strayMounts(dirs.fuse!).length === 1);
    const tar = path.join(dirs.fuse!, 'hung.tar');
    await s.addImage(tar, 'hung');
    await s.create('victim', 'hung');
    const victim = await s.mountInstance('victim');
    dropCache(path.join(dirs.lower!, 'hung.tar'));
    dropCache(tar);
    fo.kill('SIGSTOP');
    // Blocked on the hung mount: in a FUSE request, or waiting for a page a FUSE read is filling.
    const stack = (pid: number) => {
      try {
        return fs.readFileSync(`/proc/${pid}/stack`, 'utf8');
      } catch {
        return '';
      }
    };
    const waiting = (pid: number) => /fuse_|folio_wait|filemap_get_pages/.test(stack(pid));
    // A write that copies a chunk up from the hung tar (its copy waits off the loop), first, before
    // the readers' requests fill the connection's background queue...
    const writer = child(`const fs = require('fs'); const fd = fs.openSync(${JSON.stringify(path.join(victim, 'big'))}, 'r+'); fs.writeSync(fd, 'W', ${(6 << 20) + 5}); process.stdout.write('wrote');`);
    await waitFor('the writer to wait for its copy-up', () => /fuse_send_write|fuse_perform_write/.test(stack(writer.pid)));
    // ...then more readers than a read pool has threads: a hung lower must not starve the other mount's reads.
    for (let i = 0; i < 6; i++) {
      readers.push(child(`const fs = require('fs'); const b = Buffer.alloc(65536); const fd = fs.openSync(${JSON.stringify(path.join(victim, 'big'))}, 'r'); fs.readSync(fd, b, 0, b.length, ${i} << 20); process.stdout.write(b.toString('hex', 0, 8));`));
    }
    readers.push(writer);
    await waitFor('the readers to wait on the hung mount', () => readers.every((r) => waiting(r.pid)));
    dropCache(path.join(s.root, 'good.tar'));
    await bystanderAnswersSoon(t, ok);
    t.deepEqual((await status(s)).map((m) => m.state), ['serving', 'serving']);
    const finished = await Promise.race([Promise.any(readers.map((r) => r.done)).then(() => true), Promise.resolve(false)]);
    t.false(finished, 'the hung mount\'s reads were still waiting all along');
    fo.kill('SIGCONT');
    const results = await Promise.all(readers.map((r) => r.done));
    t.deepEqual(results.map((r) => r.stdout), [...results.slice(0, -1).map((_, i) => BIG.toString('hex', i << 20, (i << 20) + 8)), 'wrote'], 'once it resumes, every read gets its bytes and the write is done');
    const changed = Buffer.from(BIG);
    changed.write('W', (6 << 20) + 5);
    t.true(fs.readFileSync(path.join(victim, 'big')).equals(changed), 'the copied-up file is the image\'s with the write');
    await s.umountInstance('victim', victim);
  } finally {
    fo.kill('SIGCONT');
    for (const r of readers) r.kill();
    await s.cli(['umount', '--all']).catch(() => undefined);
    fo.kill('SIGTERM');
    await waitFor('fuse-overlayfs to unmount', () => strayMounts(dirs.fuse!).length === 0 || (exec(['umount', '-l', dirs.fuse!]), false));
  }
});

serial('its clients killed mid-request, and garbage on the server socket: the mount and the server answer on', async (t) => {
  const { s, ok } = await withBystander(t);
  await s.create('victim', 'good');
  const victim = await s.mountInstance('victim');
  const pid = serverPid(s)!;
  // Writers, readers and syncers killed in the middle of their calls.
  const busy = [
    `const fs = require('fs'); const fd = fs.openSync(${JSON.stringify(path.join(victim, 'stream'))}, 'w'); const b = Buffer.alloc(1 << 20, 7); for (;;) fs.writeSync(fd, b);`,
    `const fs = require('fs'); for (;;) fs.readFileSync(${JSON.stringify(path.join(victim, 'big'))});`,
    `const fs = require('fs'); const fd = fs.openSync(${JSON.stringify(path.join(victim, 'synced'))}, 'w'); for (;;) { fs.writeSync(fd, 'x'); fs.fsyncSync(fd); }`,
    `const fs = require('fs'); for (let i = 0;; i++) { fs.mkdirSync(${JSON.stringify(path.join(victim, 'd'))} + i); fs.rmdirSync(${JSON.stringify(path.join(victim, 'd'))} + i); }`,
  ].map(child);
  await waitFor('the writer to get going', () => (fs.statSync(path.join(victim, 'stream'), { throwIfNoEntry: false })?.size ?? 0) > 8 << 20);
  for (const b of busy) b.kill();
  await Promise.all(busy.map((b) => b.done));
  bystanderAnswers(t, ok);
  t.true(fs.readFileSync(path.join(victim, 'big')).equals(GOOD.big));
  fs.writeFileSync(path.join(victim, 'after'), 'after the kills\n');
  t.is(fs.readFileSync(path.join(victim, 'after'), 'utf8'), 'after the kills\n');

  // The socket: a silent connection, half a request, garbage, another protocol, a mount request
  // whose client vanishes at once.
  const sock = path.join(s.home, 'run', 'server.sock');
  const silent = net.connect(sock);
  silent.on('error', () => undefined);
  const say = (text: string, hangUp = false) =>
    new Promise<string>((resolve) => {
      const c = net.connect(sock, () => {
        c.write(text);
        if (hangUp) c.destroy();
      });
      let got = '';
      c.setEncoding('utf8').on('data', (d: string) => (got += d));
      c.on('error', () => undefined);
      c.on('close', () => resolve(got));
    });
  await say('{"v":1,"op":"mou', true);
  t.regex(await say('nonsense\n'), /"ok":false.*not JSON/);
  t.regex(await say('{"v":99,"op":"status"}\n'), /"ok":false.*another version/);
  t.regex(await say('{"v":1,"op":"fly"}\n'), /"ok":false.*unknown request/);
  const args = { store: s.home, mountId: 'feedfacecafe', kind: 'instance', target: 'nosuch', mountpoint: path.join(s.root, 'nowhere'), backend: 'native', allowOther: false, log: '/dev/null' };
  await say(JSON.stringify({ v: 1, op: 'mount', args }) + '\n', true);
  t.regex(await say(JSON.stringify({ v: 1, op: 'mount', args }) + '\n'), /"ok":false/);
  silent.destroy();

  t.true(alive(pid), 'the server lives on');
  t.is(serverPid(s), pid);
  bystanderAnswers(t, ok);
  t.deepEqual((await status(s)).map((m) => [m.name, m.state, m.pid]).sort(), [['ok', 'serving', pid], ['victim', 'serving', pid]]);
  await s.umountInstance('victim', victim);
  bystanderAnswers(t, ok);
});
