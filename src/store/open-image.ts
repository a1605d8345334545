// Opening an image's stack for serving: each layer's tar is opened and checked against the identity
// recorded at indexing (size, mtime, inode) and a sample of member checksums, so a changed tar is
// reported, never served. A compressed tar's sample is of its compressed bytes (decoding 32 members
// at mount would cost up to 32 seek-point spacings); every byte it serves is checked on decoding.
// `image verify` ('all') checks every member, and for a compressed tar every decoded piece.
import { closeSync, openSync } from 'node:fs';
import { identityOf } from '../tar/indexer.js';
import { readIndex, IndexFormatError } from '../tar/index-file.js';
import { FdReader, type ArchiveReader } from '../tar/reader.js';
import { memberChecksum } from '../tar/scan.js';
import { sampleMismatch } from '../tar/seek-table.js';
import { DecodedReader, SeekableArchive } from '../tar/seekable.js';
import type { IndexData, MemberTable } from '../tar/index-data.js';
import { tarLayer, type TarLayer } from '../layer/tar-layer.js';
import { FsError, UserError } from '../util/errors.js';
import type { ImageRecord, Images } from './images.js';

const SAMPLE = 32;

export function openStack(images: Images, stack: ImageRecord[]): TarLayer[] {
  const layers: TarLayer[] = [];
  try {
    for (const r of stack) layers.push(openLayer(images, r, 'sample'));
    return layers;
  } catch (err) {
    for (const l of layers) l.close();
    throw err;
  }
}

export function openLayer(images: Images, r: ImageRecord, check: 'sample' | 'all'): TarLayer {
  let fd: number;
  try {
    fd = openSync(r.layer.tar, 'r');
  } catch (err) {
    throw new UserError(`image "${r.name}": cannot open its tar ${r.layer.tar}: ${(err as NodeJS.ErrnoException).code}`);
  }
  try {
    const now = identityOf(fd);
    const was = r.layer.identity;
    const changed = now.size !== was.size ? `size ${was.size} → ${now.size}` : now.mtimeNs !== was.mtimeNs ? 'its modification time changed' : now.ino !== was.ino ? 'it was replaced (new inode)' : undefined;
    if (changed) throw new UserError(`image "${r.name}": the tar ${r.layer.tar} changed since it was indexed (${changed}); add it again as a new image`);
    let data: IndexData;
    try {
      data = readIndex(images.indexPath(r), { members: check === 'all' ? 'all' : SAMPLE });
    } catch (err) {
      if (err instanceof IndexFormatError || (err as NodeJS.ErrnoException).code) throw new UserError(`image "${r.name}": its index is unreadable: ${(err as Error).message}`);
      throw err;
    }
    const stale = (what: string) => new UserError(`image "${r.name}": the tar ${r.layer.tar} no longer matches its index (${what}); add it again as a new image`);
    if (!data.seek) {
      const bad = checkMembers(new FdReader(fd), data.members);
      if (bad !== undefined) throw stale(`member at byte ${bad} differs`);
      return tarLayer(r.layer.tar, data, fd);
    }
    const archive = new SeekableArchive(fd, data.seek, r.layer.tar);
    try {
      const bad = sampleMismatch(fd, data.seek, SAMPLE);
      if (bad !== undefined) throw stale(`compressed byte ${bad} differs`);
      if (check === 'all') {
        archive.verifyAll();
        const member = checkMembers(new DecodedReader(archive), data.members);
        if (member !== undefined) throw stale(`member at byte ${member} of the decoded tar differs`);
      }
    } catch (err) {
      archive.close();
      if (err instanceof FsError) throw stale(err.message.replace(`${r.layer.tar}: `, ''));
      throw err;
    }
    return tarLayer(r.layer.tar, data, fd, archive);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/** The header offset of the first member in `m` whose checksum differs from the tar's, if any. */
export function checkMembers(reader: ArchiveReader, m: MemberTable): number | undefined {
  for (let i = 0; i < m.count; i++) {
    if (memberChecksum(reader, m.headerOff[i], m.dataOff[i], m.stored[i]) !== m.crc[i]) return m.headerOff[i];
  }
  return undefined;
}
