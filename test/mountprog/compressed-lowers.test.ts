// tarstack-overlay over compressed tar lowers (.tar.gz, .tar.zst, .tar.xz): every file's bytes equal
// GNU tar's extraction of the same compressed file, read-only and with an upper, and a copy-up
// (append, chmod of a big file, a partial overwrite) puts the lower's right bytes into the upper.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { buildCompressibleTar, sameFiles } from '../helpers/compressed-tree.js';
import { compress, type Shape } from '../helpers/compressed.js';
import { execOk } from '../helpers/exec.js';
import { waitGone } from '../helpers/children.js';
import { mount, overlayDaemons } from '../helpers/mounted.js';
import { mountProgRoot } from '../helpers/mountprog.js';
import { extractReference } from '../helpers/reference.js';

const skip = process.getuid?.() !== 0 || !fs.existsSync('/dev/fuse') ? 'needs root and /dev/fuse' : undefined;

const SHAPES: Shape[] = ['gzip', 'zstd-multi', 'xz'];

for (const shape of SHAPES) {
  test(`${shape} lower: every file equals GNU tar's extraction; copy-up writes the lower's bytes into the upper`, async (t) => {
    if (skip) return t.pass(skip);
    const root = mountProgRoot(t, `mountprog-${shape}`);
    const lower = compress(buildCompressibleTar(root), root, shape, 512 * 1024).path;
    const ref = extractReference(lower, path.join(root, 'ref'));
    t.is(ref.exitCode, 0, ref.stderr.join('\n'));

    // Read-only: no upper.
    const readOnly = await mount(t, path.join(root, 'ro'), { kind: 'overlay-program', lowers: [lower], upper: null });
    const [ro, r0] = [readOnly.root, readOnly.result!];
    t.is(r0.code, 0, r0.stderr);
    sameFiles(t, ro!, ref.dir, 'read-only');
    const roDaemons = overlayDaemons(ro!);
    execOk(['umount', ro!]);
    t.true(await waitGone(roDaemons));

    // Writable: copy-up of a small file by append, of the big one by chmod, of another by a write inside.
    const writable = await mount(t, path.join(root, 'rw'), { kind: 'overlay-program', lowers: [lower] });
    const [upper, mnt, r] = [writable.upper, writable.root, writable.result!];
    t.is(r.code, 0, r.stderr);
    sameFiles(t, mnt!, ref.dir, 'with an upper');
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
