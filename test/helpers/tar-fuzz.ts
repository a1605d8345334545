// A mutation fuzzer for the tar reader: valid seed tars (tar-stream and hand-made GNU/PAX/ustar
// headers) get bit flips, interesting bytes, numeric fields rewritten (checksum fixed so the damage
// reaches past it), truncation, and blocks duplicated, dropped or spliced. Each case is indexed from a
// file; a rejected tar must be a TarFormatError with one short line, an accepted one must index,
// round-trip its index file and serve every member through the overlay with FsErrors only.
// Run as `node tar-fuzz.js SEED CASES SECONDS OUTDIR` (SECONDS '' for no time bound): prints one JSON
// summary line; the case being run is always in OUTDIR/current.tar, so a hang (the parent kills it)
// can be replayed.
import fs from 'node:fs';
import path from 'node:path';
import { indexTarFile } from '../../src/tar/indexer.js';
import { TarFormatError } from '../../src/tar/scan.js';
import { readIndex, writeIndex } from '../../src/tar/index-file.js';
import { decodeHeader } from '../../src/tar/header.js';
import { TarLayer } from '../../src/layer/tar-layer.js';
import { Overlay } from '../../src/overlay/overlay.js';
import { FsError } from '../../src/util/errors.js';
import { ROOT_INO, type FileSystem } from '../../src/vfs/api.js';
import { pack } from './pack.js';
import { END, entry, gnuLong, pax } from './rawtar.js';

export interface FuzzSummary {
  seed: number;
  cases: number;
  accepted: number;
  rejected: number;
  failures: Array<{ case: number; error: string; file: string }>;
  slowestCpuMs: number; // CPU time of the slowest case (all threads): a busy machine does not inflate it
  rssMiB: number;
  reasons: Record<string, number>;
}

/** xorshift32: the same seed gives the same cases. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
}

export async function seedTars(): Promise<Buffer[]> {
  const big = Buffer.alloc(40_000, 'big.');
  return [
    await pack([
      { name: 'dir/', type: 'directory', mode: 0o755 },
      { name: 'dir/file', body: 'hello\n' },
      { name: 'dir/link', type: 'link', linkname: 'dir/file' },
      { name: 'dir/sym', type: 'symlink', linkname: 'file' },
      { name: 'dev', type: 'character-device', devmajor: 1, devminor: 3 },
      { name: 'big', body: big },
      { name: 'x'.repeat(150), body: 'long name', pax: { 'SCHILY.xattr.user.k': 'v', mtime: '1700000000.5' } },
    ]),
    Buffer.concat([
      gnuLong('L', 'gnu/' + 'n'.repeat(200)),
      entry({ name: 'short', magic: 'gnu' }, 'gnu long name body'),
      gnuLong('K', 'target/' + 't'.repeat(120)),
      entry({ name: 'lnk', type: '2', magic: 'gnu' }),
      entry({ name: 'b256', magic: 'gnu', base256: ['size', 'uid', 'mtime'], uid: 3_000_000 }, 'base-256 fields'),
      END,
    ]),
    Buffer.concat([
      pax([['comment', 'global'], ['uname', 'someone']], 'g'),
      pax([['path', 'pax/path/\xff\xfe'], ['size', '11'], ['GNU.sparse.map', '0,5,100,6'], ['GNU.sparse.size', '200']]),
      entry({ name: 'sparse' }, 'abcdefghijk'),
      entry({ name: 'old-v7-dir/', magic: 'v7' }),
      entry({ name: '.wh.gone' }),
      entry({ name: 'dir/.wh..wh..opq' }),
      END,
    ]),
  ];
}

/** Offsets of the blocks that decode as headers in a seed. */
function headerOffsets(tar: Buffer): number[] {
  const out: number[] = [];
  for (let off = 0; off + 512 <= tar.length; off += 512) if (decodeHeader(tar, off).kind === 'header') out.push(off);
  return out;
}

function fixChecksum(buf: Buffer, off: number): void {
  if (off + 512 > buf.length) return;
  buf.fill(0x20, off + 148, off + 156);
  let sum = 0;
  for (let i = off; i < off + 512; i++) sum += buf[i]!;
  buf.write(sum.toString(8).padStart(6, '0') + '\0 ', off + 148, 'latin1');
}

const FIELDS: Array<[number, number]> = [[100, 8], [108, 8], [116, 8], [124, 12], [136, 12], [156, 1], [329, 8], [337, 8], [345, 155], [0, 100], [157, 100]];
const INTERESTING = [0, 0xff, 0x80, 0x7f, 0x20, 0x0a, 0x30, 0x37, 0x38, 0x39, 0x3d, 0x2f, 0x2e];

export function mutate(seeds: Buffer[], heads: number[][], r: () => number): Buffer {
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
  const k = Math.floor(r() * seeds.length);
  let buf = Buffer.from(seeds[k]!);
  const hs = heads[k]!;
  for (let rounds = 1 + Math.floor(r() * 3); rounds > 0; rounds--) {
    const kind = Math.floor(r() * 8);
    if (kind === 0) for (let i = 1 + Math.floor(r() * 8); i > 0; i--) buf[Math.floor(r() * buf.length)]! ^= 1 << Math.floor(r() * 8);
    else if (kind === 1) for (let i = 1 + Math.floor(r() * 4); i > 0; i--) buf[Math.floor(r() * buf.length)] = pick(INTERESTING);
    else if (kind === 2 || kind === 3) {
      // A header field rewritten, checksum fixed most of the time so the scanner believes it.
      const h = pick(hs);
      if (h + 512 > buf.length) continue; // cut off by an earlier truncation
      const [off, len] = pick(FIELDS);
      const values = ['77777777777', '0', '-1', '99999999', ' 1 2', '', 'x', String(Math.floor(r() * 1e12).toString(8)), '\x80\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff', '12345670123'];
      const v = Buffer.from(pick(values), 'latin1').subarray(0, len);
      buf.fill(0, h + off, h + off + len);
      v.copy(buf, h + off);
      if (off === 156) buf[h + off] = pick([0x30, 0x31, 0x32, 0x33, 0x35, 0x36, 0x37, 0x4b, 0x4c, 0x53, 0x56, 0x4d, 0x44, 0x78, 0x67, 0x41, 0x00]);
      if (r() < 0.85) fixChecksum(buf, h);
    } else if (kind === 4) buf = buf.subarray(0, Math.floor(r() * buf.length));
    else if (kind === 5) {
      const at = Math.floor(r() * (buf.length / 512)) * 512;
      buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at, at + 512 * (1 + Math.floor(r() * 3))), buf.subarray(at)]);
    } else if (kind === 6) {
      const at = Math.floor(r() * (buf.length / 512)) * 512;
      buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at + 512 * (1 + Math.floor(r() * 2)))]);
    } else {
      const other = pick(seeds);
      const from = Math.floor(r() * (other.length / 512)) * 512;
      const at = Math.floor(r() * (buf.length / 512)) * 512;
      buf = Buffer.concat([buf.subarray(0, at), other.subarray(from, from + 512 * (1 + Math.floor(r() * 4))), buf.subarray(at)]);
    }
  }
  return buf;
}

/** Serve every member of an accepted tar: lookups, attributes, links, xattrs and all bytes. */
async function serveAll(layer: TarLayer): Promise<void> {
  const fsys: FileSystem = new Overlay([layer]);
  const expected = (e: unknown): void => {
    if (!(e instanceof FsError)) throw e;
  };
  const walk = async (ino: number, depth: number): Promise<void> => {
    const fh = await fsys.opendir(ino);
    const names: string[] = [];
    for (const e of await fsys.readdir(ino, fh, 0)) if (e.name !== '.' && e.name !== '..') names.push(e.name);
    fsys.releasedir(ino, fh);
    for (const name of names) {
      try {
        const e = await fsys.lookup(ino, name);
        const type = e.attr.mode & 0o170000;
        for (const x of await fsys.listxattr(e.ino)) await fsys.getxattr(e.ino, x);
        if (type === 0o040000 && depth < 64) await walk(e.ino, depth + 1);
        else if (type === 0o120000) await fsys.readlink(e.ino);
        else if (type === 0o100000) {
          const o = await fsys.open(e.ino, 0);
          try {
            await fsys.read(e.ino, o.fh, 0, Math.min(e.attr.size, 1 << 20));
          } finally {
            await fsys.release(e.ino, o.fh);
          }
        }
      } catch (err) {
        expected(err);
      }
    }
  };
  try {
    await walk(ROOT_INO, 0);
  } finally {
    fsys.destroy();
  }
}

export async function fuzz(seed: number, cases: number, seconds: number, outDir: string): Promise<FuzzSummary> {
  const seeds = await seedTars();
  const heads = seeds.map(headerOffsets);
  const r = rng(seed);
  const s: FuzzSummary = { seed, cases: 0, accepted: 0, rejected: 0, failures: [], slowestCpuMs: 0, rssMiB: 0, reasons: {} };
  const current = path.join(outDir, 'current.tar');
  const until = Number.isFinite(seconds) ? Date.now() + seconds * 1000 : Infinity; // long runs only: CI runs a number of cases
  for (let i = 0; i < cases && Date.now() < until; i++) {
    const tar = mutate(seeds, heads, r);
    fs.writeFileSync(current, tar);
    const cpu0 = process.cpuUsage();
    try {
      const { data } = indexTarFile(current);
      writeIndex(path.join(outDir, 'index'), data);
      const back = readIndex(path.join(outDir, 'index'));
      await serveAll(new TarLayer(current, back, fs.openSync(current, 'r')));
      s.accepted++;
    } catch (err) {
      const msg = (err as Error).message ?? String(err);
      if (err instanceof TarFormatError && msg.length > 0 && msg.length < 400 && !msg.includes('\n')) {
        s.rejected++;
        const reason = msg.replace(/\d+/g, 'N').replace(/"[^"]*"/g, '"…"').slice(0, 60);
        s.reasons[reason] = (s.reasons[reason] ?? 0) + 1;
      } else {
        const file = path.join(outDir, `failure-${seed}-${i}.tar`);
        fs.writeFileSync(file, tar);
        s.failures.push({ case: i, error: (err as Error).stack?.split('\n').slice(0, 3).join(' | ') ?? msg, file });
      }
    }
    const cpu = process.cpuUsage(cpu0);
    s.slowestCpuMs = Math.max(s.slowestCpuMs, (cpu.user + cpu.system) / 1000);
    s.cases++;
  }
  s.rssMiB = Math.round(process.memoryUsage().rss / 1048576);
  return s;
}

if (process.argv[1] && import.meta.url.endsWith(path.basename(process.argv[1]))) {
  const [seed, cases, seconds, outDir] = process.argv.slice(2);
  const summary = await fuzz(Number(seed), Number(cases), seconds === '' ? Infinity : Number(seconds), outDir!);
  process.stdout.write(JSON.stringify(summary) + '\n');
}
