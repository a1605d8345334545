// The one way a tar becomes a layer, for the store's images and tarstack-overlay's lowers alike: its
// descriptor is opened and checked against the identity recorded at indexing (size, mtime, inode) and
// a sample of member checksums, and a compressed tar gets its decoder, so data offsets are read in
// the decoded bytes. A compressed tar's sample is of its compressed bytes (decoding 32 members at
// mount would cost up to 32 seek-point spacings); every byte it serves is checked on decoding.
// 'all' (`image verify`) checks every member, and for a compressed tar every decoded piece.
import { closeSync, openSync } from 'node:fs';
import { identityOf, memberChecksum } from '../tar/identity.js';
import { FdReader, readFully, type ArchiveReader } from '../tar/reader.js';
import { sampleMismatch } from '../tar/seek-table.js';
import { DecodedReader, SeekableArchive } from '../tar/seekable.js';
import type { IndexData, MemberTable, TarIdentity } from '../tar/index-data.js';
import { tarLayer, TarLayer, type PartialTar } from '../layer/tar-layer.js';
import { FsError } from '../util/errors.js';

/** Members (and seek points) checked at open: enough to catch a rewritten tar, cheap at mount. */
export const SAMPLE = 32;
const CHUNK = 1 << 20;

/**
 * Why a tar cannot be served: it cannot be opened ('open', detail: the errno name), it is not the
 * file that was indexed ('changed'), or its bytes no longer match the index ('stale'). Callers word
 * it for their users (an image name, a lowerdir option).
 */
export class TarCheckError extends Error {
  constructor(readonly kind: 'open' | 'changed' | 'stale', readonly detail: string) {
    super(`${kind}: ${detail}`);
  }
}

export interface OpenTarOptions {
  /** The tar's index; loaded once the descriptor is open and its identity checked. */
  index(): IndexData;
  /** The identity recorded at indexing, checked before the index is loaded; default: the index's own. */
  identity?: TarIdentity;
  check: 'sample' | 'all';
}

/** An open, checked tar: its descriptor, its index and, when compressed, its decoder. */
export interface CheckedTar {
  path: string;
  fd: number;
  data: IndexData;
  archive?: SeekableArchive;
}

export function openCheckedTar(path: string, opts: OpenTarOptions): CheckedTar {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new TarCheckError('open', String((err as NodeJS.ErrnoException).code ?? (err as Error).message));
  }
  try {
    if (opts.identity) checkIdentity(fd, opts.identity);
    const data = opts.index();
    checkIdentity(fd, data.source);
    const members = opts.check === 'all' ? data.members : sampleOf(data.members, SAMPLE);
    if (!data.seek) {
      const bad = checkMembers(new FdReader(fd), members);
      if (bad !== undefined) throw new TarCheckError('stale', `member at byte ${bad} differs`);
      return { path, fd, data };
    }
    const archive = new SeekableArchive(fd, data.seek, path);
    try {
      const bad = sampleMismatch(fd, data.seek, SAMPLE);
      if (bad !== undefined) throw new TarCheckError('stale', `compressed byte ${bad} differs`);
      if (opts.check === 'all') {
        archive.verifyAll();
        const member = checkMembers(new DecodedReader(archive), members);
        if (member !== undefined) throw new TarCheckError('stale', `member at byte ${member} of the decoded tar differs`);
      }
    } catch (err) {
      archive.close();
      if (err instanceof FsError) throw new TarCheckError('stale', err.message.replace(`${path}: `, ''));
      throw err;
    }
    return { path, fd, data, archive };
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/** A checked tar served as a layer (it owns the descriptor and decoder from then on). */
export function openTarLayer(path: string, opts: OpenTarOptions): TarLayer {
  const t = openCheckedTar(path, opts);
  return tarLayer(t.path, t.data, t.fd, t.archive);
}

/**
 * A tar whose bytes are fetched as read (a remote blob through the store's chunk cache): no identity
 * or sample check at open (that would fetch 32 members at mount); instead every chunk is checked
 * against its sha256 in the index before use, and a compressed tar's pieces against their crc32.
 */
export function openPartialTar(label: string, data: IndexData, fd: number, partial: PartialTar): TarLayer {
  const archive = data.seek ? new SeekableArchive(fd, data.seek, label, partial) : undefined;
  return new TarLayer(label, data, fd, archive, partial);
}

/** The tar's bytes as a tar reader sees them (decoded when compressed), in chunks of up to 1 MiB. */
export async function* tarChunks(t: CheckedTar): AsyncGenerator<Buffer> {
  const size = t.archive ? t.archive.size : t.data.source.size;
  for (let pos = 0; pos < size; pos += CHUNK) {
    const len = Math.min(CHUNK, size - pos);
    let chunk: Buffer;
    if (t.archive) chunk = await t.archive.read(pos, len);
    else {
      chunk = Buffer.allocUnsafe(len);
      chunk = chunk.subarray(0, readFully(t.fd, chunk, len, pos));
    }
    if (chunk.length !== len) throw new TarCheckError('stale', `it ends at byte ${pos + chunk.length}`);
    yield chunk;
  }
}

export function closeCheckedTar(t: CheckedTar): void {
  t.archive?.close();
  closeSync(t.fd);
}

function checkIdentity(fd: number, was: TarIdentity): void {
  const now = identityOf(fd);
  const changed = now.size !== was.size ? `size ${was.size} → ${now.size}` : now.mtimeNs !== was.mtimeNs ? 'its modification time changed' : now.ino !== was.ino ? 'it was replaced (new inode)' : undefined;
  if (changed) throw new TarCheckError('changed', changed);
}

/** The header offset of the first member in `m` whose checksum differs from the tar's, if any. */
export function checkMembers(reader: ArchiveReader, m: MemberTable): number | undefined {
  for (let i = 0; i < m.count; i++) {
    if (memberChecksum(reader, m.headerOff[i], m.dataOff[i], m.stored[i]) !== m.crc[i]) return m.headerOff[i];
  }
  return undefined;
}

/** At most n members spread evenly (first and last included), as readIndex samples a stored index. */
function sampleOf(m: MemberTable, n: number): MemberTable {
  if (m.count <= n) return m;
  const picks = [...new Set(Array.from({ length: n }, (_, s) => Math.floor((s * (m.count - 1)) / (n - 1))))];
  const pick = <T extends Float64Array | Uint32Array>(a: T): T => a.constructor === Float64Array ? (Float64Array.from(picks, (i) => a[i]) as T) : (Uint32Array.from(picks, (i) => a[i]) as T);
  return { count: picks.length, headerOff: pick(m.headerOff), dataOff: pick(m.dataOff), stored: pick(m.stored), crc: pick(m.crc) };
}
