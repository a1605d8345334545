// LayerWriter's PAX encoding, read back by tarstack's own indexer, GNU tar and bsdtar: names that are not
// UTF-8 (hdrcharset=BINARY) and longer than ustar holds, binary xattr values, nanosecond and
// pre-1970 mtimes, ids beyond ustar's 6 octal digits, mode 0, whiteout markers, hard links.
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LayerWriter, encodePax, paxTime } from '../../src/image/layer-writer.js';
import { indexTarFile } from '../../src/tar/indexer.js';
import { exec } from '../helpers/exec.js';
import type { Attr } from '../../src/vfs/api.js';

const attr = (mode: number, over: Partial<Attr> = {}): Attr => ({
  ino: 0, mode, nlink: 1, uid: 0, gid: 0, rdev: 0, size: 0, blocks: 0, atimeSec: 0, atimeNsec: 0, mtimeSec: 1_600_000_000, mtimeNsec: 123_456_789, ctimeSec: 0, ctimeNsec: 0, ...over,
});
const bytes = (b: Buffer) => async function* () { yield b; };
const LATIN = 'caf\xe9'; // a byte string: 0xe9 alone is not UTF-8
const LONG = `dir/${'n'.repeat(180)}`;

test('PAX records count their own length', (t) => {
  t.is(encodePax([['path', Buffer.from('a')]]).toString(), '9 path=a\n');
  const v = Buffer.alloc(94, 0x61); // 98 bytes without the length: with it, 101 (3 digits, not 2)
  const rec = encodePax([['k', v]]).toString();
  t.is(rec.split(' ')[0], '101');
  t.is(Buffer.byteLength(rec), 101);
  t.is(paxTime(-2, 750_000_000), '-1.250000000');
  t.is(paxTime(5, 7), '5.000000007');
});

test('what the writer puts in a layer is what the indexer, GNU tar and bsdtar read', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tarstack-writer-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const tar = path.join(dir, 'layer.tar');
  const w = new LayerWriter(tar);
  await w.add({ path: '', attr: attr(0o40755), xattrs: [] });
  await w.add({ path: 'dir', attr: attr(0o40700, { uid: 300_000, gid: 400_000 }), xattrs: [['user.dir', Buffer.from([0, 255, 1])]] });
  await w.add({ path: LONG, attr: attr(0o100000, { size: 5, mtimeSec: -2, mtimeNsec: 750_000_000 }), xattrs: [], body: bytes(Buffer.from('long\n')) });
  await w.add({ path: `dir/${LATIN}`, attr: attr(0o100644, { size: 3, nlink: 2 }), xattrs: [], body: bytes(Buffer.from('hi\n')) });
  await w.add({ path: 'dir/link', attr: attr(0o100644, { size: 3, nlink: 2 }), xattrs: [], linkTo: `dir/${LATIN}` });
  await w.add({ path: 'dir/sym', attr: attr(0o120777), xattrs: [], symlink: LATIN });
  await w.whiteout('dir', 'gone', 1_600_000_000);
  await w.opaque('dir', 1_600_000_000);
  await w.close();
  t.false(fs.readdirSync(dir).some((n) => n.includes('.partial')), 'no temp file left');

  const idx = indexTarFile(tar).data;
  t.deepEqual(idx.warnings, [], 'the indexer reads it without a warning');
  t.is(idx.members.count, 8);

  const out = path.join(dir, 'x');
  fs.mkdirSync(out);
  const r = exec(['tar', '-x', '--xattrs', '--xattrs-include=*', '--numeric-owner', '-p', '-f', tar, '-C', out]);
  t.is(r.code, 0, r.stderr);
  const p = (rel: string) => Buffer.from(`${out}/${rel}`, 'latin1');
  t.is(fs.readFileSync(p(`dir/${LATIN}`), 'utf8'), 'hi\n', 'a non-UTF-8 name keeps its bytes');
  t.is(fs.statSync(p(`dir/${LATIN}`)).ino, fs.statSync(p('dir/link')).ino, 'the link is a hard link');
  t.is(fs.readlinkSync(p('dir/sym'), { encoding: 'buffer' }).toString('latin1'), LATIN);
  const long = fs.statSync(p(LONG), { bigint: true });
  t.is(long.mtimeNs, -1_250_000_000n, 'a pre-1970 mtime with its fraction');
  t.is(Number(long.mode & 0o7777n), 0, 'mode 0 stays 0');
  const d = fs.statSync(p('dir'), { bigint: true });
  t.deepEqual([d.uid, d.gid], [300_000n, 400_000n], 'big ids');
  const x = exec(['getfattr', '-e', 'hex', '-n', 'user.dir', `${out}/dir`]).stdout.toString();
  t.regex(x, /user\.dir=0x00ff01/, 'a binary xattr value');
  t.true(fs.existsSync(p('dir/.wh.gone')) && fs.existsSync(p('dir/.wh..wh..opq')), 'the OCI markers, as plain files');
  const names = exec(['tar', '-tf', tar]).stdout.toString('latin1').split('\n');
  t.is(names[0], './', 'the root comes first');

  // bsdtar (libarchive) reads it the same way.
  const bsd = path.join(dir, 'bsd');
  fs.mkdirSync(bsd);
  const b = exec(['bsdtar', '-x', '-p', '--xattrs', '--numeric-owner', '-f', tar, '-C', bsd]);
  t.is(b.code, 0, b.stderr);
  const q = (rel: string) => Buffer.from(`${bsd}/${rel}`, 'latin1');
  t.is(fs.readFileSync(q(`dir/${LATIN}`), 'utf8'), 'hi\n', 'bsdtar: the non-UTF-8 name');
  t.is(fs.statSync(q(`dir/${LATIN}`)).ino, fs.statSync(q('dir/link')).ino, 'bsdtar: the hard link');
  // libarchive reads "mtime=-1.25" as -1 s plus .25 (its own convention, as reference.test.ts notes
  // for what it writes); POSIX and GNU tar read the decimal number, as tarstack does.
  t.is(fs.statSync(q(LONG), { bigint: true }).mtimeNs, -750_000_000n, 'bsdtar: a pre-1970 mtime, its way');
  t.regex(exec(['getfattr', '-e', 'hex', '-n', 'user.dir', `${bsd}/dir`]).stdout.toString(), /user\.dir=0x00ff01/, 'bsdtar: the binary xattr');
});
