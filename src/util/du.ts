// Bytes a directory tree occupies on disk (allocated blocks, as du counts them), hard links once, at any depth.
import { lstatSync, readdirSync } from 'node:fs';
import { DirFds } from './dir-fds.js';
import { b } from './latin1.js';

export function duBytes(root: string): number {
  const seen = new Set<string>();
  let total = 0;
  const paths = new DirFds(Buffer.from(root).toString('latin1'));
  const walk = (rel: string): void => {
    const st = lstatSync(b(paths.path(rel)), { throwIfNoEntry: false });
    if (!st) return;
    const key = `${st.dev}:${st.ino}`;
    if (st.nlink > 1 && seen.has(key)) return;
    seen.add(key);
    total += st.blocks * 512;
    if (!st.isDirectory()) return;
    // Paths anew for each name: a walk below may reuse a descriptor (dir-fds.ts).
    for (const n of readdirSync(b(paths.path(rel)), { encoding: 'buffer' })) walk(rel === '' ? n.toString('latin1') : `${rel}/${n.toString('latin1')}`);
  };
  try {
    walk('');
  } finally {
    paths.close();
  }
  return total;
}
