// Pure codec for one 512-byte tar header block: ustar (POSIX.1-1988), GNU (base-256 numbers,
// old sparse maps) and v7. No I/O here; the scanner (scan.ts) reads blocks and applies PAX and GNU
// extension headers. Names stay byte strings (latin1) so any byte but NUL round-trips.

export const BLOCK = 512;

/** Upper bound on an extension header body (PAX records, GNU long names, a PAX 1.0 sparse map): bigger means hostile. */
export const MAX_EXTENSION = 64 * 1024 * 1024;

export const enum TypeFlag {
  File = 0x30, // '0'
  Hardlink = 0x31, // '1'
  Symlink = 0x32, // '2'
  Char = 0x33, // '3'
  Block = 0x34, // '4'
  Dir = 0x35, // '5'
  Fifo = 0x36, // '6'
  Contiguous = 0x37, // '7' (a regular file to every reader but a few old systems)
  PaxNext = 0x78, // 'x'
  PaxGlobal = 0x67, // 'g'
  GnuLongName = 0x4c, // 'L'
  GnuLongLink = 0x4b, // 'K'
  GnuSparse = 0x53, // 'S' (old GNU sparse format, map in the header)
  GnuVolume = 0x56, // 'V'
  GnuMultiVol = 0x4d, // 'M'
  GnuDumpDir = 0x44, // 'D' (a directory whose body lists its names)
  AreaNul = 0x00, // old tars write NUL for a regular file
}

export interface SparseSegment {
  offset: number; // offset in the logical (expanded) file
  size: number; // bytes of data stored for it
}

export interface RawHeader {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number; // bytes of body stored in the archive
  mtime: number; // whole seconds
  typeflag: number;
  linkname: string;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
  /** Old GNU sparse ('S'): the map in the header, whether extension blocks follow, the expanded size. */
  gnuSparse?: { segments: SparseSegment[]; extended: boolean; realSize: number };
  format: 'ustar' | 'gnu' | 'v7';
}

export type DecodeResult =
  | { kind: 'header'; header: RawHeader }
  | { kind: 'zero' } // an all-zero block: part of the end-of-archive marker
  | { kind: 'bad'; reason: string };

/** Decode the header at `buf[off..off+512)`. Never throws: bad blocks come back as `bad`. */
export function decodeHeader(buf: Buffer, off = 0): DecodeResult {
  if (isZeroBlock(buf, off)) return { kind: 'zero' };
  const stored = parseNumber(buf, off + 148, 8);
  if (stored === undefined || !checksumMatches(buf, off, stored)) {
    return { kind: 'bad', reason: 'header checksum mismatch' };
  }
  const format = formatOf(buf, off);

  let name = cString(buf, off, 100);
  if (format === 'ustar') {
    const prefix = cString(buf, off + 345, 155);
    if (prefix) name = prefix + '/' + name;
  }
  try {
    const typeflag = buf[off + 156];
    const header: RawHeader = {
      name,
      mode: requiredNumber(buf, off + 100, 8, 'mode') & 0o7777,
      uid: requiredNumber(buf, off + 108, 8, 'uid'),
      gid: requiredNumber(buf, off + 116, 8, 'gid'),
      size: requiredNumber(buf, off + 124, 12, 'size'),
      mtime: requiredNumber(buf, off + 136, 12, 'mtime'),
      typeflag,
      linkname: cString(buf, off + 157, 100),
      uname: format === 'v7' ? '' : ownerName(buf, off + 265, 0),
      gname: format === 'v7' ? '' : ownerName(buf, off + 297, 1),
      devmajor: format === 'v7' ? 0 : parseNumber(buf, off + 329, 8) ?? 0,
      devminor: format === 'v7' ? 0 : parseNumber(buf, off + 337, 8) ?? 0,
      format,
    };
    if (typeflag === TypeFlag.GnuSparse) {
      header.gnuSparse = {
        segments: decodeSparseEntries(buf, off + 386, 4),
        extended: buf[off + 482] !== 0,
        realSize: requiredNumber(buf, off + 483, 12, 'realsize'),
      };
    }
    if (header.size < 0) return { kind: 'bad', reason: 'negative size' };
    return { kind: 'header', header };
  } catch (err) {
    if (err instanceof HeaderFieldError) return { kind: 'bad', reason: `unreadable ${err.field} field` };
    throw err;
  }
}

/** A numeric field that must parse (else the header is bad). */
function requiredNumber(buf: Buffer, at: number, len: number, field: string): number {
  const v = parseNumber(buf, at, len);
  if (v === undefined) throw new HeaderFieldError(field);
  return v;
}

/**
 * The magic at 257 and version at 263, compared as bytes (no strings made for every header):
 * "ustar\0" is POSIX ustar, "ustar " with version " \0" is GNU, anything else v7.
 */
function formatOf(buf: Buffer, off: number): RawHeader['format'] {
  const m = off + 257;
  if (buf[m] !== 0x75 || buf[m + 1] !== 0x73 || buf[m + 2] !== 0x74 || buf[m + 3] !== 0x61 || buf[m + 4] !== 0x72) return 'v7';
  if (buf[m + 5] === 0) return 'ustar';
  return buf[m + 5] === 0x20 && buf[m + 6] === 0x20 && buf[m + 7] === 0 ? 'gnu' : 'v7';
}

class HeaderFieldError extends Error {
  constructor(readonly field: string) {
    super(field);
  }
}

/** A GNU sparse extension block: 21 entries, then the "more follow" flag at byte 504. */
export function decodeSparseExtension(buf: Buffer, off: number): { segments: SparseSegment[]; extended: boolean } {
  return { segments: decodeSparseEntries(buf, off, 21), extended: buf[off + 504] !== 0 };
}

function decodeSparseEntries(buf: Buffer, off: number, count: number): SparseSegment[] {
  const out: SparseSegment[] = [];
  for (let i = 0; i < count; i++) {
    const at = off + i * 24;
    if (buf[at] === 0) break; // an empty entry ends the list
    const offset = parseNumber(buf, at, 12);
    const size = parseNumber(buf, at + 12, 12);
    if (offset === undefined || size === undefined) break;
    out.push({ offset, size });
  }
  return out;
}

export function isZeroBlock(buf: Uint8Array, off: number): boolean {
  for (let i = off; i < off + BLOCK; i++) if (buf[i] !== 0) return false;
  return true;
}

/**
 * The header checksum: the byte sum with the checksum field counted as spaces (POSIX.1 ustar).
 * Some old tars summed signed chars; both are accepted, as GNU tar does.
 */
function checksumMatches(buf: Uint8Array, off: number, stored: number): boolean {
  if (stored === unsignedSum(buf, off)) return true;
  let signed = 8 * 0x20; // the rare old tar that summed signed chars
  for (let i = 0; i < BLOCK; i++) {
    if (i >= 148 && i < 156) continue;
    const b = buf[off + i];
    signed += b > 127 ? b - 256 : b;
  }
  return stored === signed;
}

/**
 * The unsigned byte sum of a header, the checksum field counted as spaces. A block at a 4-aligned
 * address (every block of a scan's window) is summed a word at a time, two bytes to a 16-bit lane
 * (126 words of at most 2 x 255 a lane never carry out of it): less than half the byte loop's CPU.
 */
function unsignedSum(buf: Uint8Array, off: number): number {
  let sum = 8 * 0x20; // the checksum field itself counts as spaces
  const at = buf.byteOffset + off;
  if ((at & 3) !== 0 || off + BLOCK > buf.length) {
    for (let i = off; i < off + 148; i++) sum += buf[i];
    for (let i = off + 156; i < off + BLOCK; i++) sum += buf[i];
    return sum;
  }
  const words = new Uint32Array(buf.buffer, at, BLOCK / 4);
  let lanes = 0;
  for (let i = 0; i < 37; i++) lanes = (lanes + (words[i] & 0xff00ff) + ((words[i] >>> 8) & 0xff00ff)) | 0; // bytes 0-147
  for (let i = 39; i < 128; i++) lanes = (lanes + (words[i] & 0xff00ff) + ((words[i] >>> 8) & 0xff00ff)) | 0; // 156-511
  return sum + (lanes & 0xffff) + (lanes >>> 16);
}

/**
 * A numeric field: octal digits (leading spaces allowed, ended by space or NUL), or GNU base-256
 * when the top bit of the first byte is set (0x80 positive, 0xff negative two's complement).
 * Returns undefined for garbage; values beyond 2^53 are refused (no member is that large).
 */
export function parseNumber(buf: Uint8Array, off: number, len: number): number | undefined {
  const first = buf[off];
  if (first & 0x80) {
    const negative = first === 0xff;
    let v = 0;
    for (let i = 0; i < len; i++) {
      let b = buf[off + i];
      if (i === 0 && !negative) b &= 0x7f; // the sign bit; a negative field is two's complement throughout
      if (negative) b = ~b & 0xff;
      v = v * 256 + b;
      if (v > Number.MAX_SAFE_INTEGER) return undefined;
    }
    if (negative) v = -(v + 1);
    return v;
  }
  let i = off;
  const end = off + len;
  while (i < end && (buf[i] === 0x20 || buf[i] === 0)) {
    if (buf[i] === 0 && i === off) return 0; // an all-NUL field means 0
    i++;
  }
  let v = 0;
  let digits = 0;
  for (; i < end; i++) {
    const b = buf[i];
    if (b >= 0x30 && b <= 0x37) {
      v = v * 8 + (b - 0x30);
      digits++;
    } else if (b === 0x20 || b === 0) {
      break;
    } else {
      return undefined;
    }
  }
  return digits === 0 ? 0 : v;
}

/** Bytes up to the first NUL, as a byte string. */
export function cString(buf: Buffer, off: number, len: number): string {
  const max = off + len;
  let end = off;
  while (end < max && buf[end] !== 0) end++;
  return end === off ? '' : buf.toString('latin1', off, end);
}

/**
 * The last uname and gname decoded, with their bytes: nearly every header of an archive names the
 * same owner, which is then compared in place instead of made into a new string each time.
 */
const lastOwner: Array<{ bytes: Uint8Array; len: number; text: string }> = [
  { bytes: new Uint8Array(32), len: 0, text: '' },
  { bytes: new Uint8Array(32), len: 0, text: '' },
];

/** The 32-byte uname (slot 0) or gname (slot 1) field at `off`, as cString would read it. */
function ownerName(buf: Buffer, off: number, slot: number): string {
  const last = lastOwner[slot]!;
  let len = 0;
  while (len < 32 && buf[off + len] !== 0) len++;
  if (len === last.len) {
    let i = 0;
    while (i < len && buf[off + i] === last.bytes[i]) i++;
    if (i === len) return last.text;
  }
  last.len = len;
  last.bytes.set(buf.subarray(off, off + len));
  last.text = len === 0 ? '' : buf.toString('latin1', off, off + len);
  return last.text;
}
