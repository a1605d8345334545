// Unit-test helpers: index a tar held in memory (written to a temp file) and serve it as a layer,
// and read a FileSystem back as a flat tree without mounting anything.
import { mkdtempSync, openSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { indexTarFile, type IndexOptions } from '../../src/tar/indexer.js';
import { tarLayer, type TarLayer } from '../../src/layer/tar-layer.js';
import type { FileSystem } from '../../src/vfs/api.js';
import { ROOT_INO } from '../../src/vfs/api.js';
import type { IndexData } from '../../src/tar/index-data.js';
import { Overlay } from '../../src/overlay/overlay.js';

export function tempDir(): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'tarstack-test-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function layerFromTar(tar: Buffer, dir: string, name = 'layer.tar'): { layer: TarLayer; data: IndexData; bytesRead: number } {
  const path = join(dir, name);
  writeFileSync(path, tar);
  return layerFromFile(path);
}

/** Index a tar file (plain or compressed) and serve it as a layer. */
export function layerFromFile(path: string, opts: IndexOptions = {}): { layer: TarLayer; data: IndexData; bytesRead: number } {
  const { data, bytesRead } = indexTarFile(path, opts);
  return { layer: tarLayer(path, data, openSync(path, 'r')), data, bytesRead };
}

export interface FlatEntry {
  type: string;
  mode: number;
  ino: number;
  nlink: number;
  size: number;
  content?: string;
  target?: string;
}

const TYPES: Record<number, string> = { 0o040000: 'dir', 0o100000: 'file', 0o120000: 'symlink', 0o020000: 'char', 0o060000: 'block', 0o010000: 'fifo' };

/** Every path below the root with its attributes and (for small files) content, via the FileSystem API. */
export async function flatten(fs: FileSystem): Promise<Record<string, FlatEntry>> {
  const out: Record<string, FlatEntry> = {};
  const walk = async (ino: number, prefix: string): Promise<void> => {
    const fh = await fs.opendir(ino);
    const entries = [...fs.readdir(ino, fh, 0)].filter((e) => e.name !== '.' && e.name !== '..');
    fs.releasedir(ino, fh);
    for (const e of entries) {
      const entry = await fs.lookup(ino, e.name);
      const a = entry.attr;
      const path = prefix + e.name;
      const type = TYPES[a.mode & 0o170000] ?? '?';
      const f: FlatEntry = { type, mode: a.mode & 0o7777, ino: a.ino, nlink: a.nlink, size: a.size };
      if (type === 'file' && a.size < 65536) f.content = await readAll(fs, entry.ino, a.size);
      if (type === 'symlink') f.target = await fs.readlink(entry.ino);
      out[path] = f;
      if (type === 'dir') await walk(entry.ino, path + '/');
    }
  };
  await walk(ROOT_INO, '');
  return out;
}

export async function readAll(fs: FileSystem, ino: number, size: number): Promise<string> {
  const { fh } = await fs.open(ino, 0);
  const reply = await fs.read(ino, fh, 0, size);
  if (Buffer.isBuffer(reply)) {
    await fs.release(ino, fh);
    return reply.toString('latin1');
  }
  // Ranges are valid while the handle is open (a layer may hold a descriptor per open file).
  const parts: Buffer[] = [];
  for (const r of reply) {
    const b = Buffer.alloc(r.len);
    if (r.fd >= 0) readSync(r.fd, b, 0, r.len, r.pos);
    parts.push(b);
  }
  reply.release?.();
  await fs.release(ino, fh);
  return Buffer.concat(parts).toString('latin1');
}

/** A tar indexed and served by a one-layer Overlay: its flattened tree and the indexer's warning codes. */
export async function tree(tar: Buffer): Promise<{ flat: Record<string, FlatEntry>; warnings: string[] }> {
  const t = tempDir();
  try {
    const { layer, data } = layerFromTar(tar, t.dir);
    const fs = new Overlay([layer]);
    const flat = await flatten(fs);
    fs.destroy();
    return { flat, warnings: data.warnings.map((w) => w.code) };
  } finally {
    t.cleanup();
  }
}
