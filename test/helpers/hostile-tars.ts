// Hostile and huge tars for test/hostile-tars.test.ts: absurd sizes, huge PAX records, a 10,000-deep
// directory chain, one directory of a million members (written straight as header blocks, fast),
// symlink loops, and names with newlines or invalid UTF-8.
import fs from 'node:fs';
import { END, entry, header, pax, paxRecords } from './rawtar.js';

/** A member whose header claims `size` (octal or base-256) with only a block of body behind it. */
export function absurdSize(size: bigint): Buffer {
  return Buffer.concat([entry({ name: 'ok', size: 2 }, 'ok'), header({ name: 'huge', size }), Buffer.alloc(512), END]);
}

/** A PAX header whose size field claims `claimed` bytes (more than tarstack reads for one). */
export function paxClaiming(claimed: number): Buffer {
  return Buffer.concat([header({ name: 'PaxHeader', type: 'x', size: claimed }), Buffer.alloc(1024), END]);
}

/** A real PAX header of about `bytes` (a comment record, which readers ignore) before a small file. */
export function bigPax(bytes: number): Buffer {
  return Buffer.concat([entry({ name: 'PaxHeader', type: 'x' }, paxRecords([['comment', Buffer.alloc(bytes, 'c')]])), entry({ name: 'after-big-pax' }, 'fine\n'), END]);
}

/** d/d/…/d/f, `depth` directories deep, named through one PAX path (parents implied). */
export function deepTar(depth: number): Buffer {
  const path = 'd/'.repeat(depth) + 'f';
  return Buffer.concat([pax([['path', path]]), entry({ name: 'placeholder' }, 'at the bottom\n'), entry({ name: 'top' }, 'top\n'), END]);
}

/** Symlinks that loop: a -> b -> a, self -> self, up -> . (a directory loop), and a file to compare. */
export function loopTar(): Buffer {
  return Buffer.concat([
    entry({ name: 'a', type: '2', linkname: 'b' }),
    entry({ name: 'b', type: '2', linkname: 'a' }),
    entry({ name: 'self', type: '2', linkname: 'self' }),
    entry({ name: 'dir/up', type: '2', linkname: '.' }),
    entry({ name: 'dir/file' }, 'in dir\n'),
    END,
  ]);
}

export const ODD_NAMES = [Buffer.from('new\nline'), Buffer.from('bad-\xff\xfe-utf8', 'latin1'), Buffer.from('caf\xe9', 'latin1'), Buffer.from('tab\there')];

/** Files whose names have a newline, invalid UTF-8, latin-1 and a tab (plain ustar names, raw bytes). */
export function oddNamesTar(): Buffer {
  return Buffer.concat([...ODD_NAMES.map((n, i) => entry({ name: n }, `odd ${i}\n`)), END]);
}

/** wide/f0000000 … in one directory: `n` empty members written as raw header blocks (~1 s per million). */
export function writeWideTar(path: string, n: number): void {
  const fd = fs.openSync(path, 'w');
  try {
    const tmpl = header({ name: 'wide/f0000000', size: 0, mtime: 1_700_000_000 });
    let base = 0;
    for (let i = 0; i < 512; i++) base += i >= 148 && i < 156 ? 0x20 : tmpl[i]!;
    for (let i = 6; i < 13; i++) base -= tmpl[i]!; // the seven digits, added back per member
    const batch = 8192;
    const buf = Buffer.alloc(batch * 512);
    for (let start = 0; start < n; start += batch) {
      const count = Math.min(batch, n - start);
      for (let j = 0; j < count; j++) {
        const off = j * 512;
        tmpl.copy(buf, off);
        let v = start + j;
        let sum = base;
        for (let d = 12; d >= 6; d--) {
          const c = 0x30 + (v % 10);
          v = Math.floor(v / 10);
          buf[off + d] = c;
          sum += c;
        }
        buf.write(sum.toString(8).padStart(6, '0') + '\0 ', off + 148, 'latin1');
      }
      fs.writeSync(fd, buf, 0, count * 512);
    }
    fs.writeSync(fd, END);
  } finally {
    fs.closeSync(fd);
  }
}
