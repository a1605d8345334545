// GNU sparse files, in the four encodings GNU tar writes (its manual, "Storing Sparse Files"), decoded
// into one list of data segments: old GNU (type 'S': four map entries in the header, more in
// extension blocks before the data), PAX 0.0 (repeated GNU.sparse.offset / GNU.sparse.numbytes
// records), PAX 0.1 (GNU.sparse.map, one comma list) and PAX 1.0 (the map as decimal lines at the
// start of the body, padded to a block). A map that overlaps, leaves the file or maps more bytes than
// are stored is refused: served, it would read the wrong bytes.
import { BLOCK, decodeSparseExtension, MAX_EXTENSION, type RawHeader, type SparseSegment } from './header.js';
import { parsePaxInt } from './pax.js';
import type { ArchiveReader } from './reader.js';
import { printable, TarFormatError } from './format-error.js';

/** Where a sparse member's data is and what it expands to. */
export interface SparseLayout {
  segments: SparseSegment[];
  /** Where the stored data starts: after an old GNU map's extension blocks, or a 1.0 map. */
  dataOffset: number;
  storedSize: number;
  /** The expanded file's size. */
  size: number;
}

/** What a member's headers say, as far as sparse maps go. */
export interface SparseSource {
  header: RawHeader;
  /** The member's PAX record `key` (later records winning), as text. */
  text(key: string): string | undefined;
  /** The same as a number; `fallback` when absent or (with a warning) unparsable. */
  int(key: string, fallback: number): number;
  /** PAX 0.0's GNU.sparse.offset and GNU.sparse.numbytes records, in order (they repeat). */
  offsets: number[];
  sizes: number[];
  bodyStart: number;
  storedSize: number;
  path: string;
  headerOffset: number;
  reader: ArchiveReader;
}

/** The member's sparse layout, or undefined when it is not sparse. */
export function sparseLayout(s: SparseSource): SparseLayout | undefined {
  const layout = s.header.gnuSparse ? oldGnu(s) : s.text('GNU.sparse.major') === '1' ? pax10(s) : s.text('GNU.sparse.map') !== undefined || s.offsets.length > 0 ? pax0x(s) : undefined;
  if (layout) validate(layout, s.path, s.headerOffset);
  return layout;
}

function oldGnu(s: SparseSource): SparseLayout {
  const sparse = s.header.gnuSparse!;
  const segments = [...sparse.segments];
  let dataOffset = s.bodyStart;
  for (let extended = sparse.extended; extended; dataOffset += BLOCK) {
    const block = s.reader.read(dataOffset, BLOCK);
    if (block.length < BLOCK) throw new TarFormatError(`truncated archive: sparse map of "${printable(s.path)}" is cut short`, s.headerOffset);
    const ext = decodeSparseExtension(block, 0);
    segments.push(...ext.segments);
    extended = ext.extended;
  }
  return { segments, dataOffset, storedSize: s.storedSize, size: sparse.realSize };
}

function pax10(s: SparseSource): SparseLayout {
  const { segments, mapBytes } = readMapV1(s);
  const storedSize = s.storedSize - mapBytes;
  return { segments, dataOffset: s.bodyStart + mapBytes, storedSize, size: s.int('GNU.sparse.realsize', s.int('GNU.sparse.size', storedSize)) };
}

function pax0x(s: SparseSource): SparseLayout {
  const map = s.text('GNU.sparse.map');
  const nums = map !== undefined ? map.split(',').map(Number) : s.offsets.flatMap((o, i) => [o, s.sizes[i]]);
  const segments: SparseSegment[] = [];
  for (let i = 0; i + 1 < nums.length; i += 2) segments.push({ offset: nums[i], size: nums[i + 1] });
  return { segments, dataOffset: s.bodyStart, storedSize: s.storedSize, size: s.int('GNU.sparse.size', s.int('GNU.sparse.realsize', s.storedSize)) };
}

/** PAX 1.0's map: a count, then offset and size pairs, one decimal number a line, padded to a block. */
function readMapV1(s: SparseSource): { segments: SparseSegment[]; mapBytes: number } {
  const fail = (why: string): never => {
    throw new TarFormatError(`damaged sparse map of "${printable(s.path)}": ${why}`, s.headerOffset);
  };
  const start = s.bodyStart;
  const nums: number[] = [];
  let want = -1;
  let pos = start;
  let digits = '';
  while (want < 0 || nums.length < 1 + want * 2) {
    if (pos - start >= s.storedSize || pos - start > MAX_EXTENSION) fail('runs past the member');
    const block = s.reader.read(pos, BLOCK);
    if (block.length < BLOCK) fail('cut short');
    for (let i = 0; i < BLOCK && (want < 0 || nums.length < 1 + want * 2); i++) {
      const c = block[i];
      if (c === 0x0a) {
        const v = parsePaxInt(digits);
        if (v === undefined) fail(`"${digits}" is not a number`);
        nums.push(v!);
        if (nums.length === 1) want = v!;
        digits = '';
      } else if (c >= 0x30 && c <= 0x39 && digits.length < 20) {
        digits += String.fromCharCode(c);
      } else {
        fail('unexpected byte');
      }
    }
    pos += BLOCK;
  }
  const segments: SparseSegment[] = [];
  for (let i = 1; i + 1 < nums.length; i += 2) segments.push({ offset: nums[i], size: nums[i + 1] });
  return { segments, mapBytes: pos - start };
}

function validate(l: SparseLayout, path: string, at: number): void {
  let total = 0;
  let end = 0;
  for (const s of l.segments) {
    if (!Number.isSafeInteger(s.offset) || !Number.isSafeInteger(s.size) || s.offset < end || s.offset + s.size > l.size) {
      throw new TarFormatError(`damaged sparse map of "${printable(path)}": segments overlap or exceed the file`, at);
    }
    end = s.offset + s.size;
    total += s.size;
  }
  if (total > l.storedSize) throw new TarFormatError(`damaged sparse map of "${printable(path)}": maps ${total} bytes, stores ${l.storedSize}`, at);
}
