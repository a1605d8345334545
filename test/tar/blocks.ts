// Golden blocks for the scanner's tests: archives put together block by block (test/helpers/rawtar.ts
// writes ustar/GNU headers, PAX and GNU long-name extension headers), plus the old GNU sparse fields
// rawtar does not write, and the scanner run over them collecting members, warnings or its error.
import { BLOCK } from '../../src/tar/header.js';
import { BufferReader } from '../../src/tar/reader.js';
import { scanTar, type Member, type ScanWarning } from '../../src/tar/scan.js';

export interface Scanned {
  members: Member[];
  warnings: ScanWarning[];
  error?: Error;
}

/** scanTar over an in-memory archive: every member and warning, and the error that stopped it, if any. */
export function scan(...parts: Buffer[]): Scanned {
  const out: Scanned = { members: [], warnings: [] };
  try {
    scanTar(new BufferReader(Buffer.concat(parts)), { member: (m) => out.members.push(m), warning: (w) => out.warnings.push(w) });
  } catch (err) {
    out.error = err as Error;
  }
  return out;
}

/** Sets a header's checksum again after its bytes were changed by hand. */
export function fixChecksum(b: Buffer): Buffer {
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += b[i];
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return b;
}

const octal = (b: Buffer, at: number, len: number, v: number) => b.write(v.toString(8).padStart(len - 1, '0') + '\0', at, 'latin1');

/** Old GNU sparse fields in a GNU header (type 'S'): up to 4 map entries at 386, the "extended" flag at 482, the real size at 483. */
export function withGnuSparse(h: Buffer, segments: Array<[offset: number, size: number]>, extended: boolean, realSize: number): Buffer {
  const b = Buffer.from(h);
  segments.forEach(([o, z], i) => {
    octal(b, 386 + i * 24, 12, o);
    octal(b, 386 + i * 24 + 12, 12, z);
  });
  b[482] = extended ? 1 : 0;
  octal(b, 483, 12, realSize);
  return fixChecksum(b);
}

/** An old GNU sparse extension block: up to 21 entries, then the "more follow" flag at 504. */
export function gnuSparseExtension(segments: Array<[offset: number, size: number]>, extended: boolean): Buffer {
  const b = Buffer.alloc(BLOCK);
  segments.forEach(([o, z], i) => {
    octal(b, i * 24, 12, o);
    octal(b, i * 24 + 12, 12, z);
  });
  b[504] = extended ? 1 : 0;
  return b;
}
