// The image the instance model test runs on: a small tree (nested dirs, files of several sizes with
// one above 1 MiB, a hard-linked pair across dirs, symlinks, a fifo, xattrs, odd owners and modes,
// nanosecond times) archived by GNU tar (posix format) and extracted again by GNU tar as the lower.
import fs from 'node:fs';
import path from 'node:path';
import { execOk } from './exec.js';
import { extractReference } from './reference.js';
import { snapshotTree, type Snapshot } from './tree.js';

export const BIG_SIZE = 1_258_291; // above 1 MiB and not page aligned: lazy copy-up by ranges

/** Bytes that differ at every offset of a 251-byte period, so misplaced ranges show in a hash. */
export function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (i * 7 + seed + (i >> 12)) % 251;
  return b;
}

const setTime = (p: string, time: string) => execOk(['touch', '-h', '-d', `@${time}`, p]);
const setXattr = (p: string, name: string, value: string) => execOk(['setfattr', '-h', '-n', name, '-v', value, p]);

/** Builds the source tree (as root: owners and trusted.* xattrs need it). Times are set last,
 *  deepest first, so making a child never bumps a directory's time afterwards. */
export function buildModelSource(root: string): void {
  const at = (rel: string) => path.join(root, rel);
  const file = (rel: string, data: string | Buffer, mode = 0o644) => {
    fs.writeFileSync(at(rel), data);
    fs.chmodSync(at(rel), mode);
  };
  for (const [d, mode] of [['d1', 0o755], ['d1/sub', 0o750], ['d2', 0o755], ['d2/deep', 0o755], ['d2/deep/x', 0o755], ['e', 0o700]] as const) {
    fs.mkdirSync(at(d), { recursive: true });
    fs.chmodSync(at(d), mode);
  }
  fs.chmodSync(root, 0o755);
  file('f1', 'top file\n');
  file('d1/a', 'lower a\n');
  file('d1/big', pattern(BIG_SIZE, 3), 0o640);
  file('d1/hl', 'two names, one inode\n');
  fs.linkSync(at('d1/hl'), at('d2/hl'));
  file('d1/sub/a', 'deep a\n', 0o600);
  fs.chownSync(at('d1/sub/a'), 1000, 1000);
  fs.symlinkSync('a', at('d1/sub/s'));
  fs.symlinkSync('../a', at('d1/sub/up')); // one '..' at depth 2: no rename can point it outside the root
  fs.symlinkSync('nowhere/x', at('d1/dangling'));
  file('d2/b', pattern(70_000, 9), 0o664);
  file('d2/deep/x/y', 'y\n', 0o4755);
  fs.symlinkSync('y', at('d2/deep/x/z'));
  execOk(['mkfifo', '-m', '0640', at('d2/fifo')]);
  fs.symlinkSync('d1', at('s'));
  setXattr(at('f1'), 'user.top', 'lower');
  setXattr(at('d1'), 'user.dir', 'd1');
  setXattr(at('d1/big'), 'user.big', 'yes');
  setXattr(at('d1/big'), 'trusted.t', 'tv');
  setXattr(at('d1/hl'), 'user.hl', 'shared');
  const times: Array<[string, string]> = [
    ['f1', '1262304000.123456789'], ['d1/a', '1262304001.000000001'], ['d1/big', '1262304002.5'], ['d1/hl', '1262304003.999999999'],
    ['d1/sub/a', '1262304004.25'], ['d1/sub/s', '1262304005.3'], ['d1/sub/up', '1262304005.4'], ['d1/dangling', '1262304006.7'],
    ['d2/b', '1262304007.1'], ['d2/deep/x/y', '1262304008.2'], ['d2/deep/x/z', '1262304008.3'], ['d2/fifo', '1262304009.4'],
    ['s', '1262304010.5'], ['d2/deep/x', '1262304011.6'], ['d2/deep', '1262304012.7'], ['d1/sub', '1262304013.8'],
    ['d1', '1262304014.9'], ['d2', '1262304015.11'], ['e', '1262304016.12'], ['.', '1262304017.13'],
  ];
  for (const [rel, t] of times) setTime(at(rel), t);
}

export interface ModelImage {
  tar: string;
  lower: string; // GNU tar's extraction: the kernel overlayfs lower, never written
  pristine: Snapshot; // of lower
}

/** Makes dir/src, dir/image.tar and dir/lower; the lower is shared by every run (read-only). */
export function buildModelImage(dir: string): ModelImage {
  const src = path.join(dir, 'src');
  fs.mkdirSync(src, { recursive: true });
  buildModelSource(src);
  const tar = path.join(dir, 'image.tar');
  execOk(['tar', '--format=posix', '--xattrs', '--xattrs-include=*', '--numeric-owner', '-cf', tar, '-C', src, '.']);
  const ref = extractReference(tar, path.join(dir, 'lower'));
  if (ref.exitCode !== 0) throw new Error(`GNU tar could not extract the model image: ${ref.stderr.join(' | ')}`);
  return { tar, lower: ref.dir, pristine: snapshotTree(ref.dir) };
}
