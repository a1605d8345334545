// How a tar is recognised as the one that was indexed: its identity (size, mtime, inode, device) and
// the checksum of a member. Kept apart from the scanner and the indexer, so that opening an indexed
// tar (a mount) loads neither.
import { fstatSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import type { ArchiveReader } from './reader.js';
import type { TarIdentity } from './index-data.js';

const SAMPLE = 4096;
const WHOLE_BODY = 16384;

export function identityOf(fd: number): TarIdentity {
  const st = fstatSync(fd, { bigint: true });
  return { size: Number(st.size), mtimeNs: st.mtimeNs.toString(), ino: Number(st.ino), dev: Number(st.dev) };
}

/**
 * crc32 of the member's header blocks and its body: all of a body up to 16 KiB (read anyway with
 * the headers around it), else 4 KiB at each end, so indexing never reads a large body whole.
 * The headers and the body's head are one run of bytes, summed in one call (the same crc32 as
 * chaining the two: indexes made before still match); a tar of small files costs a call a member.
 */
export function memberChecksum(reader: ArchiveReader, headerOffset: number, dataOffset: number, stored: number): number {
  const head = stored <= WHOLE_BODY ? stored : SAMPLE;
  let crc = crc32(reader.read(headerOffset, dataOffset - headerOffset + head));
  const tail = Math.min(SAMPLE, stored - head);
  if (tail > 0) crc = crc32(reader.read(dataOffset + stored - tail, tail), crc);
  return crc;
}
