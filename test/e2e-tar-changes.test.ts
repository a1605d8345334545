// The tar behind a live image mount changes: unlinked, it is still served from the open file;
// truncated, reads past its new end fail with EIO (never wrong bytes); rewritten in place, `image
// verify` and the next mount catch it with one clear line.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { cliAvailable, TarstackSession, withMount } from './helpers/mount.js';
import { makeTestRoot, removeTestRoot } from './helpers/mounted.js';
import { execOk } from './helpers/exec.js';

const skip = !cliAvailable() || process.getuid?.() !== 0;
const root = skip ? '' : makeTestRoot('tar-changes');
const t0 = skip ? test.skip : test.serial;

test.after.always(() => removeTestRoot(root));

/** A tar with a small file first and a 3 MiB one after it, and the bytes of that one. */
function makeTar(dir: string): { tar: string; big: Buffer } {
  const src = path.join(dir, 'src');
  fs.mkdirSync(src, { recursive: true });
  fs.writeFileSync(path.join(src, 'a'), 'first\n');
  const big = Buffer.alloc(3 << 20);
  for (let i = 0; i < big.length; i++) big[i] = (i * 13 + 7) & 255;
  fs.writeFileSync(path.join(src, 'big'), big);
  const tar = path.join(dir, 'img.tar');
  execOk(['tar', '-cf', tar, '-C', src, 'a', 'big']);
  return { tar, big };
}

const lines = (s: string) => s.split('\n').filter(Boolean);

t0('an unlinked tar is still served from the open file', async (t) => {
  const s = new TarstackSession(path.join(root, 'unlink'), t);
  const { tar, big } = makeTar(s.root);
  await s.addImage(tar, 'img');
  await withMount(s, 'img', (dir) => {
    fs.unlinkSync(tar);
    t.true(fs.readFileSync(path.join(dir, 'big')).equals(big));
    t.is(fs.readFileSync(path.join(dir, 'a'), 'utf8'), 'first\n');
  });
  const again = await s.cli(['image', 'mount', 'img', path.join(s.root, 'mnt')]);
  t.not(again.code, 0);
  t.is(lines(again.stderr).length, 1);
  t.regex(again.stderr, /^tarstack: image "img": cannot open its tar/);
});

t0('a truncated tar gives EIO past its end, never wrong bytes; verify and remount refuse it', async (t) => {
  const s = new TarstackSession(path.join(root, 'truncate'), t);
  const { tar, big } = makeTar(s.root);
  await s.addImage(tar, 'img');
  await withMount(s, 'img', (dir) => {
    fs.truncateSync(tar, 1 << 20); // cuts `big` in the middle
    const fd = fs.openSync(path.join(dir, 'big'), 'r');
    try {
      const head = Buffer.alloc(4096);
      t.is(fs.readSync(fd, head, 0, head.length, 0), head.length);
      t.true(head.equals(big.subarray(0, 4096)), 'bytes still in the file are right');
      t.throws(() => fs.readSync(fd, Buffer.alloc(65536), 0, 65536, 2 << 20), { code: 'EIO' });
    } finally {
      fs.closeSync(fd);
    }
  });
  const verify = await s.cli(['image', 'verify', 'img']);
  t.not(verify.code, 0);
  t.regex(verify.stderr, /^tarstack: image "img" failed verification/m);
  const mount = await s.cli(['image', 'mount', 'img', path.join(s.root, 'mnt')]);
  t.not(mount.code, 0);
  t.regex(mount.stderr, /changed since it was indexed/);
});

t0('a tar rewritten in place is caught by verify and by the next mount', async (t) => {
  const s = new TarstackSession(path.join(root, 'rewrite'), t);
  const { tar } = makeTar(s.root);
  await s.addImage(tar, 'img');
  const st = fs.statSync(tar, { bigint: true });
  const fd = fs.openSync(tar, 'r+');
  fs.writeSync(fd, Buffer.from('X'), 0, 1, 512); // the first byte of a's content
  fs.closeSync(fd);
  // Even with its old mtime restored to the nanosecond, so only the member checksums can tell.
  execOk(['touch', '-m', '-d', `@${st.mtimeNs / 1_000_000_000n}.${String(st.mtimeNs % 1_000_000_000n).padStart(9, '0')}`, tar]);
  const verify = await s.cli(['image', 'verify', 'img']);
  t.not(verify.code, 0);
  t.regex(verify.stdout, /FAILED.*no longer matches its index/);
  fs.mkdirSync(path.join(s.root, 'mnt'));
  const mount = await s.cli(['image', 'mount', 'img', path.join(s.root, 'mnt')]);
  t.not(mount.code, 0);
  t.is(lines(mount.stderr).length, 1);
  t.regex(mount.stderr, /no longer matches its index|changed since it was indexed/);
});
