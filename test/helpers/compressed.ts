// Compressed copies of a tar made by the real tools (gzip, pigz, zstd, xz), in every shape the
// decoders handle: one gzip member or many, one zstd frame or many, one xz block or many.
// Multi-member / multi-frame files are the tar cut in pieces, each compressed, concatenated.
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export interface Variant {
  name: string;
  path: string;
  format: 'gzip' | 'zstd' | 'xz';
}

export type Shape = 'gzip' | 'gzip-multi' | 'pigz' | 'zstd' | 'zstd-multi' | 'xz' | 'xz-blocks';
export const SHAPES: Shape[] = ['gzip', 'gzip-multi', 'pigz', 'zstd', 'zstd-multi', 'xz', 'xz-blocks'];

const run = (cmd: string, args: string[], input: Buffer): Buffer => execFileSync(cmd, args, { input, maxBuffer: 1 << 30 });

/** One gzip member per piece from a single gzip process (`gzip -c -n FILES` writes the members one
 *  after the other, the same bytes as a gzip per piece with -n): a process per piece cost ~30 ms of
 *  CPU each, and the small pieces some tests use make dozens. */
function gzipMembers(cuts: Buffer[], dir: string): Buffer {
  const tmp = mkdtempSync(join(dir, '.gzip-pieces-'));
  try {
    const names = cuts.map((c, i) => {
      const p = join(tmp, String(i).padStart(6, '0'));
      writeFileSync(p, c);
      return p;
    });
    return execFileSync('gzip', ['-c', '-n', '--', ...names], { maxBuffer: 1 << 30 });
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Write `tar` compressed as `shape` into dir; `piece` is the cut size for the multi shapes. */
export function compress(tarPath: string, dir: string, shape: Shape, piece = 300 * 1024): Variant {
  const tar = readFileSync(tarPath);
  const cuts: Buffer[] = [];
  for (let at = 0; at < tar.length; at += piece) cuts.push(tar.subarray(at, at + piece));
  let out: Buffer;
  let format: Variant['format'];
  switch (shape) {
    case 'gzip': out = run('gzip', ['-c', '-6'], tar); format = 'gzip'; break;
    case 'gzip-multi': out = gzipMembers(cuts, dir); format = 'gzip'; break;
    case 'pigz': out = run('pigz', ['-c', '-p', '2', '-b', '128'], tar); format = 'gzip'; break;
    case 'zstd': out = run('zstd', ['-q', '-c', '-3'], tar); format = 'zstd'; break;
    case 'zstd-multi': out = Buffer.concat(cuts.map((c) => run('zstd', ['-q', '-c'], c))); format = 'zstd'; break;
    case 'xz': out = run('xz', ['-c', '-0'], tar); format = 'xz'; break;
    case 'xz-blocks': out = run('xz', ['-c', '-0', '-T1', `--block-size=${piece}`], tar); format = 'xz'; break;
  }
  const path = join(dir, `${shape}.tar.${format === 'gzip' ? 'gz' : format === 'zstd' ? 'zst' : 'xz'}`);
  writeFileSync(path, out);
  return { name: shape, path, format };
}

/** Overwrite one byte at `pos` (negative: from the end) in place: same file, same size. */
export function flipByte(path: string, pos: number): void {
  const at = pos < 0 ? statSync(path).size + pos : pos;
  const b = readFileSync(path).subarray(at, at + 1);
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.from([b[0] ^ 0x5a]), 0, 1, at);
  closeSync(fd);
}
