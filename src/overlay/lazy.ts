// The chunk map of a lazily copied-up file: the upper file has the full size from the start (sparse),
// and a chunk's bytes come from the lower file until the chunk is marked present. Bytes at or past
// `limit` never come from the lower (appends, or what a truncate cut off). Stored in the upper file's
// user.tarstack.lazy xattr as an 8-byte little-endian limit then the bitmap; a set bit is persisted
// only after its data was written, so a crash leaves each chunk old or new, never torn.

export const CHUNK = 1 << 20;

export class LazyMap {
  constructor(
    public limit: number,
    private bits: Uint8Array,
  ) {}

  static fresh(size: number): LazyMap {
    return new LazyMap(size, new Uint8Array(Math.ceil(Math.ceil(size / CHUNK) / 8)));
  }

  static decode(buf: Buffer): LazyMap {
    return new LazyMap(Number(buf.readBigUInt64LE(0)), new Uint8Array(buf.subarray(8)));
  }

  /**
   * A file is never shorter than its limit but when a crash came between a truncate and the map's
   * update: the truncate happened, so the limit follows the file.
   */
  clamp(fileSize: number): LazyMap {
    if (fileSize < this.limit) this.limit = fileSize;
    return this;
  }

  encode(): Buffer {
    const out = Buffer.alloc(8 + this.bits.length);
    out.writeBigUInt64LE(BigInt(this.limit), 0);
    out.set(this.bits, 8);
    return out;
  }

  has(chunk: number): boolean {
    return chunk * CHUNK >= this.limit || (this.bits[chunk >> 3] & (1 << (chunk & 7))) !== 0;
  }

  mark(chunk: number): void {
    if (chunk * CHUNK < this.limit) this.bits[chunk >> 3] |= 1 << (chunk & 7);
  }

  /** Chunks overlapping [pos, end) whose bytes still come from the lower file. */
  missing(pos: number, end: number): number[] {
    const out: number[] = [];
    const last = Math.min(end, this.limit);
    for (let c = Math.floor(pos / CHUNK); c * CHUNK < last; c++) if (!this.has(c)) out.push(c);
    return out;
  }

  /** How many chunks below the limit hold their own bytes. */
  presentChunks(): number {
    let n = 0;
    for (let c = 0; c * CHUNK < this.limit; c++) if (this.has(c)) n++;
    return n;
  }

  /** Nothing comes from the lower any more. */
  complete(): boolean {
    return this.missing(0, this.limit).length === 0;
  }

  /** Split [pos, end) into runs served by the upper file or by the lower one. */
  runs(pos: number, end: number): Array<{ lower: boolean; pos: number; len: number }> {
    const out: Array<{ lower: boolean; pos: number; len: number }> = [];
    let at = pos;
    while (at < end) {
      const c = Math.floor(at / CHUNK);
      const lower = at < this.limit && !this.has(c);
      const stop = Math.min(end, lower ? Math.min((c + 1) * CHUNK, this.limit) : (c + 1) * CHUNK);
      const prev = out[out.length - 1];
      if (prev && prev.lower === lower && prev.pos + prev.len === at) prev.len += stop - at;
      else out.push({ lower, pos: at, len: stop - at });
      at = stop;
    }
    return out;
  }
}
