// Bytes a directory tree occupies on disk (allocated blocks, as du counts them), hard links once.
import { lstatSync, readdirSync } from 'node:fs';

export function duBytes(root: string): number {
  const seen = new Set<string>();
  let total = 0;
  const walk = (p: Buffer | string): void => {
    const st = lstatSync(p, { throwIfNoEntry: false });
    if (!st) return;
    const key = `${st.dev}:${st.ino}`;
    if (st.nlink > 1 && seen.has(key)) return;
    seen.add(key);
    total += st.blocks * 512;
    if (st.isDirectory()) for (const n of readdirSync(p, { encoding: 'buffer' })) walk(Buffer.concat([Buffer.from(p), Buffer.from('/'), n]));
  };
  walk(root);
  return total;
}
