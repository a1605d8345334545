// Which compression an archive uses, from its first bytes (never its name): gzip (RFC 1952), zstd
// (RFC 8878, a frame or a skippable frame first), xz (the .xz format 1.0.4). Formats tarstack
// cannot serve in place are named, so the user learns what to do instead of "not a tar".
import { readSync } from 'node:fs';
import { BLOCK, decodeHeader } from './header.js';
import { TarFormatError } from './format-error.js';
import type { Compression } from './seek-table.js';
import { CodecFormat } from '../native/codec.js';

const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);

export function detectCompression(fd: number): Compression | undefined {
  const b = Buffer.alloc(BLOCK);
  const n = readSync(fd, b, 0, BLOCK, 0);
  return compressionOf(b.subarray(0, n));
}

export function compressionOf(b: Buffer): Compression | undefined {
  // A valid tar header wins: a first member may be named "BZh…" or "LZIP…".
  if (b.length === BLOCK && decodeHeader(b).kind !== 'bad') return undefined;
  if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) return 'gzip';
  if (b.length >= 4 && b.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  if (b.length >= 4 && (b.readUInt32LE(0) & 0xfffffff0) === 0x184d2a50) return 'zstd'; // skippable frame first
  if (b.length >= 6 && b.subarray(0, 6).equals(XZ_MAGIC)) return 'xz';
  const other = b.length >= 3 && b.toString('latin1', 0, 3) === 'BZh' ? 'bzip2'
    : b.length >= 4 && b.readUInt32LE(0) === 0x184d2204 ? 'lz4'
    : b.length >= 4 && b.toString('latin1', 0, 4) === 'LZIP' ? 'lzip'
    : b.length >= 2 && b[0] === 0x1f && b[1] === 0x9d ? 'compress (.Z)'
    : undefined;
  if (other) throw new TarFormatError(`${other}-compressed tars are not served in place (gzip, zstd and xz are); decompress it or recompress it with zstd`, 0);
  return undefined;
}

export function codecFormat(c: Compression): CodecFormat {
  return c === 'gzip' ? CodecFormat.Gzip : c === 'zstd' ? CodecFormat.Zstd : CodecFormat.Xz;
}
