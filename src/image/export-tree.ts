// One tar of a whole tree as a FileSystem shows it (an image's merged layers): every entry in tar
// order (a directory before its entries, names by their bytes), hard-linked names written once and
// linked after, no whiteouts. Streams as it walks, so memory grows with depth and link sets only.
import type { FileSystem } from '../vfs/api.js';
import { ROOT_INO } from '../vfs/api.js';
import { childNames, isDir } from './fs-read.js';
import { LayerWriter } from './layer-writer.js';
import { writeEntry } from './freeze.js';

export async function exportTree(fs: FileSystem, out: string): Promise<{ entries: number; bytes: number; skipped: string[] }> {
  const writer = new LayerWriter(out);
  const firstName = new Map<number, string>();
  const result = { entries: 0, bytes: 0, skipped: [] as string[] };
  const walk = async (ino: number, path: string[]): Promise<void> => {
    for (const name of await childNames(fs, ino)) {
      const e = await fs.lookup(ino, name);
      try {
        await writeEntry(fs, writer, { path: [...path, name], ino: e.ino, attr: e.attr }, firstName, result);
        if (isDir(e.attr)) await walk(e.ino, [...path, name]);
      } finally {
        fs.forget(e.ino, 1);
      }
    }
  };
  return writer.writeAll(result, async () => {
    await writeEntry(fs, writer, { path: [], ino: ROOT_INO, attr: await fs.getattr(ROOT_INO) }, firstName, result);
    await walk(ROOT_INO, []);
  });
}
