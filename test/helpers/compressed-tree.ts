// The tree the compressed-layer tests serve: a big member spanning several seek points (gzip's come
// every ~1 MiB of output), a sparse file, a hard link, a symlink and small files at odd sizes, tarred
// by GNU tar in PAX format; and the check that a mount holds the same regular files with the same bytes.
import type { ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { seededBytes } from './bytes.js';

/** Builds the tree under dir/src and returns dir/tree.tar. */
export function buildCompressibleTar(dir: string): string {
  const src = path.join(dir, 'src');
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
  const tar = path.join(dir, 'tree.tar');
  execFileSync('tar', ['-cSf', tar, '--format=posix', '-C', src, '.']);
  return tar;
}

/** Regular files under `dir` by relative path, sorted (symlinks not followed). */
export function regularFiles(dir: string): string[] {
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

/** `got` holds the same regular files as `want`, each read whole with the same bytes (a read error names its errno). */
export function sameFiles(t: ExecutionContext, got: string, want: string, label: string): void {
  const files = regularFiles(want);
  t.deepEqual(regularFiles(got), files, `${label}: the same files`);
  const wrong: string[] = [];
  for (const f of files) {
    let bytes: Buffer | string;
    try {
      bytes = fs.readFileSync(path.join(got, f));
    } catch (err) {
      bytes = (err as NodeJS.ErrnoException).code ?? String(err);
    }
    if (typeof bytes === 'string' || !bytes.equals(fs.readFileSync(path.join(want, f)))) wrong.push(`${f}${typeof bytes === 'string' ? ` (${bytes})` : ''}`);
  }
  t.deepEqual(wrong, [], `${label}: files whose bytes differ`);
}
