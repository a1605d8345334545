// The chunks of a remote blob and their digests: the unit a read fetches, checks and caches, and the
// sha256 of each that an index records (32 bytes a chunk, concatenated).
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';

/**
 * Bytes per chunk: the unit fetched, checked and cached. Measured with the bench's `remote` suite
 * (ls -R and 10 small files of a 25 MiB gzip layer, index pushed): 256 KiB chunks put 8.5 MiB on the
 * wire, 64 KiB 1.7 MiB, most of it rounding up the compressed range a read needs (a seek point's
 * 256 KiB piece is ~50 KiB compressed); 16 KiB keeps a small read near its own size, while neighbours
 * missing together still go in one request (RUN) and sequential reading fetches ahead (AHEAD_MIN
 * doubling to AHEAD_MAX bytes), so a large read costs few requests. The digests cost 0.2 %.
 */
export const CHUNK_SIZE = 16 * 1024;
/** Chunks of a pushed index's seek windows: a window is 5-32 KiB deflated, and only those seeked to are read. */
export const WINDOW_CHUNK_SIZE = 4 * 1024;

/** sha256 of every chunk of a file, concatenated (what the index records, 32 bytes a chunk). */
export function chunkDigestsOf(path: string, size: number, chunkSize: number): Buffer {
  const n = Math.ceil(size / chunkSize);
  const out = Buffer.alloc(n * 32);
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(chunkSize);
  try {
    for (let k = 0; k < n; k++) {
      const len = Math.min(chunkSize, size - k * chunkSize);
      let got = 0;
      while (got < len) got += readSync(fd, buf, got, len - got, k * chunkSize + got) || len;
      createHash('sha256').update(buf.subarray(0, len)).digest().copy(out, k * 32);
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

/** The same, of bytes in memory. */
export function chunkDigestsOfBuffer(b: Buffer, chunkSize: number): Buffer {
  const h = new ChunkHasher(chunkSize);
  h.update(b);
  return h.digests();
}

/** The same, of bytes as they arrive (a download). */
export class ChunkHasher {
  private readonly out: Buffer[] = [];
  private h = createHash('sha256');
  private left: number;

  constructor(private readonly chunkSize: number) {
    this.left = chunkSize;
  }

  update(b: Buffer): void {
    let at = 0;
    while (at < b.length) {
      const n = Math.min(this.left, b.length - at);
      this.h.update(b.subarray(at, at + n));
      at += n;
      this.left -= n;
      if (this.left === 0) {
        this.out.push(this.h.digest());
        this.h = createHash('sha256');
        this.left = this.chunkSize;
      }
    }
  }

  /** The digests of every chunk, the last (short) one included. */
  digests(): Buffer {
    if (this.left < this.chunkSize) {
      this.out.push(this.h.digest());
      this.left = this.chunkSize;
    }
    return Buffer.concat(this.out);
  }
}

/** Whether `bytes` are chunk k of a blob whose chunk digests are `digests`. */
export function chunkMatches(digests: Buffer, k: number, bytes: Buffer): boolean {
  return createHash('sha256').update(bytes).digest().equals(digests.subarray(k * 32, k * 32 + 32));
}
