// The tree the end-to-end tests mount: what the child builds and what the tests expect.
import { ROOT_INO } from '../../src/vfs/api.js';
import type { ToyFs } from './toy-fs.js';

export const BIG_POS = 4096;
export const BIG_SIZE = 8 * 1024 * 1024 + 123;
export const SPARSE_SIZE = 10 * 1024 * 1024;
/** Data extents of sparse.bin: [file offset, length, backing position]. */
export const SPARSE_EXTENTS: [number, number, number][] = [
  [0, 65536, 0],
  [3 * 1024 * 1024 + 100, 100_000, 200_000],
  [SPARSE_SIZE - 4096, 4096, 500_000],
];
export const MANY = 2000;

export function buildTree(fs: ToyFs, fd: number): Record<string, number> {
  const r = ROOT_INO;
  const hello = fs.file(r, 'hello.txt', Buffer.from('hello world\n'));
  fs.setXattr(hello, 'user.color', Buffer.from('blue'));
  fs.setXattr(hello, 'user.big', Buffer.alloc(1000, 0x61));
  fs.file(r, 'empty', Buffer.alloc(0));
  const dir = fs.mkdir(r, 'dir');
  const nested = fs.mkdir(dir, 'nested');
  fs.file(nested, 'deep.txt', Buffer.from('deep\n'));
  fs.symlink(dir, 'link-to-hello', '../hello.txt');
  const big = fs.fdFile(r, 'big.bin', fd, BIG_POS, BIG_SIZE);
  const sparse = fs.sparseFile(r, 'sparse.bin', SPARSE_SIZE, SPARSE_EXTENTS.map(([off, len, pos]) => ({ off, len, fd, pos })));
  const hard = fs.file(r, 'hard1', Buffer.from('shared inode\n'));
  fs.hardlink(r, 'hard2', hard);
  fs.file(r, 'caf\xe9', Buffer.from('latin1 name\n')); // the byte 0xe9, not UTF-8
  const many = fs.mkdir(r, 'many');
  for (let i = 0; i < MANY; i++) fs.file(many, `file-${String(i).padStart(5, '0')}`, Buffer.from(`${i}\n`));
  return { hello, dir, nested, big, sparse, hard, many };
}
