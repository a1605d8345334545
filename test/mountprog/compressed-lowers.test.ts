// tarstack-overlay over compressed tar lowers (.tar.gz, .tar.zst, .tar.xz): every file's bytes equal
// GNU tar's extraction of the same compressed file, read-only and with an upper, and a copy-up
// (append, chmod of a big file, a partial overwrite) puts the lower's right bytes into the upper.
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { seededBytes } from '../helpers/bytes.js';
import { compress, type Shape } from '../helpers/compressed.js';
import { execOk } from '../helpers/exec.js';
import { waitGone } from '../helpers/children.js';
import { mount, overlayDaemons } from '../helpers/mounted.js';
import { mountProgRoot } from '../helpers/mountprog.js';
import { extractReference } from '../helpers/reference.js';

const skip = process.getuid?.() !== 0 || !fs.existsSync('/dev/fuse') ? 'needs root and /dev/fuse' : undefined;

/** A tree whose big member spans several seek points (gzip's come every ~1 MiB of output), a
 *  sparse file, a hard link and small files at odd sizes; tarred by GNU tar, PAX format. */
function buildTar(root: string): string {
  const src = path.join(root, 'src');
  fs.mkdirSync(path.join(src, 'd/sub'), { recursive: true });
  fs.writeFileSync(path.join(src, 'big.bin'), Buffer.concat([seededBytes(3 << 20, 11), Buffer.from('text in the middle\n'.repeat(50_000)), seededBytes(2 << 20, 12)]));
  for (let i = 0; i < 40; i++) fs.writeFileSync(path.join(src, 'd', `f${i}`), seededBytes(i * 997 + 1, 100 + i));
  fs.writeFileSync(path.join(src, 'd/sub/empty'), '');
  fs.writeFileSync(path.join(src, 'd/sub/text'), 'a small text file\n');
  fs.linkSync(path.join(src, 'd/f3'), path.join(src, 'd/hard'));
  fs.symlinkSync('../big.bin', path.join(src, 'd/link'));
  const sparse = path.join(src, 'sparse');
  fs.writeFileSync(sparse, '');
  fs.truncateSync(sparse, 4 << 20);
  const fd = fs.openSync(sparse, 'r+');
  fs.writeSync(fd, seededBytes(70_000, 13), 0, 70_000, 1 << 20);
  fs.closeSync(fd);
  const tar = path.join(root, 'tree.tar');
  execFileSync('tar', ['-cSf', tar, '--format=posix', '-C', src, '.']);
  return tar;
}

/** Regular files under `dir` by relative path (symlinks not followed). */
function regularFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const n of fs.readdirSync(path.join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${n}` : n;
      const st = fs.lstatSync(path.join(dir, r));
      if (st.isDirectory()) walk(r);
      else if (st.isFile()) out.push(r);
    }
  };
  walk('');
  return out;
}

/** Every regular file of the mount read whole and compared with the reference's bytes. */
function sameBytes(t: ExecutionContext, mnt: string, ref: string, label: string): void {
  const files = regularFiles(ref);
  t.deepEqual(regularFiles(mnt), files, `${label}: the same files`);
  const wrong: string[] = [];
  for (const f of files) {
    let got: Buffer | string;
    try {
      got = fs.readFileSync(path.join(mnt, f));
    } catch (err) {
      got = (err as NodeJS.ErrnoException).code ?? String(err);
    }
    if (typeof got === 'string' || !got.equals(fs.readFileSync(path.join(ref, f)))) wrong.push(`${f}${typeof got === 'string' ? ` (${got})` : ''}`);
  }
  t.deepEqual(wrong, [], `${label}: files whose bytes differ from GNU tar's extraction`);
}

const SHAPES: Shape[] = ['gzip', 'zstd-multi', 'xz'];

for (const shape of SHAPES) {
  test(`${shape} lower: every file equals GNU tar's extraction; copy-up writes the lower's bytes into the upper`, async (t) => {
    if (skip) return t.pass(skip);
    const root = mountProgRoot(t, `mountprog-${shape}`);
    const lower = compress(buildTar(root), root, shape, 512 * 1024).path;
    const ref = extractReference(lower, path.join(root, 'ref'));
    t.is(ref.exitCode, 0, ref.stderr.join('\n'));

    // Read-only: no upper.
    const readOnly = await mount(t, path.join(root, 'ro'), { kind: 'overlay-program', lowers: [lower], upper: null });
    const [ro, r0] = [readOnly.root, readOnly.result!];
    t.is(r0.code, 0, r0.stderr);
    sameBytes(t, ro!, ref.dir, 'read-only');
    const roDaemons = overlayDaemons(ro!);
    execOk(['umount', ro!]);
    t.true(await waitGone(roDaemons));

    // Writable: copy-up of a small file by append, of the big one by chmod, of another by a write inside.
    const writable = await mount(t, path.join(root, 'rw'), { kind: 'overlay-program', lowers: [lower] });
    const [upper, mnt, r] = [writable.upper, writable.root, writable.result!];
    t.is(r.code, 0, r.stderr);
    sameBytes(t, mnt!, ref.dir, 'with an upper');
    const want = (rel: string) => fs.readFileSync(path.join(ref.dir, rel));
    fs.appendFileSync(path.join(mnt!, 'd/f5'), 'appended');
    fs.appendFileSync(path.join(mnt!, 'big.bin'), 'appended');
    fs.chmodSync(path.join(mnt!, 'sparse'), 0o600);
    const fd = fs.openSync(path.join(mnt!, 'd/sub/text'), 'r+');
    fs.writeSync(fd, 'A', 0);
    fs.closeSync(fd);
    const expected = new Map<string, Buffer>([
      ['d/f5', Buffer.concat([want('d/f5'), Buffer.from('appended')])],
      ['big.bin', Buffer.concat([want('big.bin'), Buffer.from('appended')])],
      ['sparse', want('sparse')],
      ['d/sub/text', Buffer.from('A small text file\n')],
    ]);
    for (const [rel, bytes] of expected) {
      t.true(fs.readFileSync(path.join(mnt!, rel)).equals(bytes), `${rel} through the mount`);
      t.true(fs.readFileSync(path.join(upper!, rel)).equals(bytes), `${rel} in the upper`);
    }
    const daemons = overlayDaemons(mnt!);
    execOk(['umount', mnt!]);
    t.true(await waitGone(daemons));
    for (const [rel, bytes] of expected) t.true(fs.readFileSync(path.join(upper!, rel)).equals(bytes), `${rel} in the upper after unmount`);
  });
}
