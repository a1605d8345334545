// A tar file served as a layer through its index: metadata from the typed arrays, data as ranges
// of the open tar file (the FUSE backend copies them straight into the reply), or for a compressed
// tar as bytes decoded through its seek table. The tar stays open for the layer's life, so a tar
// unlinked or renamed while mounted is still served.
import { closeSync } from 'node:fs';
import { LRUCache } from 'lru-cache';
import type { Attr, FdRange, FdRanges, FileStream, ReadReply } from '../vfs/api.js';
import { ABSENT, type Layer } from './layer.js';
import { NodeFlag, NONE, type IndexData } from '../tar/index-data.js';
import { readFully } from '../tar/reader.js';
import { SeekableArchive, type ArchiveInput } from '../tar/seekable.js';
import { makedev } from '../util/attr.js';
import { fsError } from '../util/errors.js';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../vfs/mode.js';

const DIR_SIZE = 4096;

/** A layer over an open tar and its index; a compressed tar gets its decoder. */
export function tarLayer(source: string, d: IndexData, fd: number, archive?: SeekableArchive): TarLayer {
  return new TarLayer(source, d, fd, archive ?? (d.seek ? new SeekableArchive(fd, d.seek, source) : undefined));
}

/**
 * The bytes of a tar that is not all on disk (a remote blob whose cache file is `fd`): a read first
 * makes its range present (ensure), pinned until it is read. `close` releases the blob.
 */
export interface PartialTar extends ArchiveInput {
  close(): void;
}

interface DecodedExtra {
  xattrs: Map<string, Buffer>;
  /** Sparse map: logical offsets, sizes, and where each segment's bytes start in the tar. */
  sparse?: { offset: Float64Array; size: Float64Array; stored: Float64Array };
}

export class TarLayer implements Layer {
  readonly nodeCount: number;
  readonly storageBytes: number;
  private readonly decoded = new LRUCache<number, DecodedExtra>({ max: 4096 });

  /** `archive`: the decoder of a compressed tar; data offsets are then in its decoded bytes. */
  constructor(readonly source: string, private readonly d: IndexData, private readonly fd: number, private readonly archive?: SeekableArchive, private readonly partial?: PartialTar) {
    this.nodeCount = d.nodeCount;
    this.storageBytes = d.source.size;
  }

  lookup(dir: number, name: string): number {
    const d = this.d;
    if ((d.mode[dir] & S_IFMT) !== S_IFDIR) return ABSENT;
    let lo = d.a[dir];
    let hi = lo + d.b[dir] - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const c = this.compareName(mid, name);
      if (c === 0) return mid;
      if (c < 0) lo = mid + 1;
      else hi = mid - 1;
    }
    return ABSENT;
  }

  /** Byte-order comparison of node `n`'s name with a byte string, without allocating. */
  private compareName(n: number, name: string): number {
    const names = this.d.names;
    const off = this.d.nameOff[n];
    const len = this.d.nameLen[n];
    const m = Math.min(len, name.length);
    for (let i = 0; i < m; i++) {
      const diff = names[off + i] - name.charCodeAt(i);
      if (diff !== 0) return diff;
    }
    return len - name.length;
  }

  childCount(dir: number): number {
    return (this.d.mode[dir] & S_IFMT) === S_IFDIR ? this.d.b[dir] : 0;
  }

  childAt(dir: number, position: number): number {
    return this.d.a[dir] + position;
  }

  nameOf(node: number): string {
    return this.d.names.toString('latin1', this.d.nameOff[node], this.d.nameOff[node] + this.d.nameLen[node]);
  }

  parentOf(node: number): number {
    const p = this.d.parent[node];
    return p === NONE ? ABSENT : p;
  }

  isDir(node: number): boolean {
    return (this.d.mode[node] & S_IFMT) === S_IFDIR && !(this.d.flags[node] & NodeFlag.Whiteout);
  }

  isWhiteout(node: number): boolean {
    return (this.d.flags[node] & NodeFlag.Whiteout) !== 0;
  }

  isOpaque(dir: number): boolean {
    return (this.d.flags[dir] & NodeFlag.Opaque) !== 0;
  }

  modeOf(node: number): number {
    return this.d.mode[node];
  }

  inodeOf(node: number): number {
    return this.d.inode[node];
  }

  fillAttr(node: number, attr: Attr): void {
    const d = this.d;
    const mode = d.mode[node];
    const type = mode & S_IFMT;
    attr.mode = mode;
    attr.nlink = d.nlink[node];
    attr.uid = d.uid[node];
    attr.gid = d.gid[node];
    attr.rdev = type === S_IFCHR || type === S_IFBLK ? makedev(d.a[node], d.b[node]) : 0;
    if (type === S_IFDIR) {
      attr.size = DIR_SIZE;
      attr.blocks = DIR_SIZE / 512;
    } else if (type === S_IFLNK) {
      attr.size = d.b[node]; // a symlink's size is its target's length
      attr.blocks = 0;
    } else {
      attr.size = d.size[node];
      const sparse = d.extra[node] ? this.extra(node).sparse : undefined;
      let allocated = attr.size;
      if (sparse) {
        allocated = 0;
        for (let i = 0; i < sparse.size.length; i++) allocated += sparse.size[i];
      }
      attr.blocks = Math.ceil(allocated / 4096) * 8; // as a 4 KiB-block filesystem would hold it
    }
    attr.mtimeSec = attr.atimeSec = attr.ctimeSec = d.mtimeSec[node];
    attr.mtimeNsec = attr.atimeNsec = attr.ctimeNsec = d.mtimeNsec[node];
  }

  readlink(node: number): string {
    return this.d.strings.toString('latin1', this.d.a[node], this.d.a[node] + this.d.b[node]);
  }

  xattrNames(node: number): string[] {
    return this.d.extra[node] ? [...this.extra(node).xattrs.keys()] : [];
  }

  getxattr(node: number, name: string): Buffer | undefined {
    return this.d.extra[node] ? this.extra(node).xattrs.get(name) : undefined;
  }

  read(node: number, pos: number, len: number): ReadReply | Promise<ReadReply> {
    const ranges = this.ranges(node, pos, len);
    const a = this.archive;
    const p = this.partial;
    if (!a && p) return held(p, ranges);
    if (!a) return ranges;
    if (ranges.length === 1 && ranges[0].fd >= 0) return a.read(ranges[0].pos, ranges[0].len);
    const parts = ranges.map((r) => (r.fd < 0 ? Buffer.alloc(r.len) : a.read(r.pos, r.len)));
    if (parts.every((p) => Buffer.isBuffer(p))) return Buffer.concat(parts as Buffer[]);
    return Promise.all(parts).then((bufs) => Buffer.concat(bufs));
  }

  /** A plain tar's member that is not sparse: its bytes are one range of the tar, for good. */
  fileRange(node: number): FdRange | undefined {
    const d = this.d;
    if (this.archive || this.partial || (d.mode[node] & S_IFMT) !== S_IFREG) return undefined;
    if (d.extra[node] && this.extra(node).sparse) return undefined;
    return { fd: this.fd, pos: d.dataOff[node], len: d.size[node] };
  }

  /** A compressed tar's member that is not sparse, about to be read at `pos`: its archive's native stream there, if any. */
  fileStream(node: number, pos: number): FileStream | undefined {
    const d = this.d;
    if (!this.archive || this.partial || (d.mode[node] & S_IFMT) !== S_IFREG || pos >= d.size[node]) return undefined;
    if (d.extra[node] && this.extra(node).sparse) return undefined;
    const stream = this.archive.fileStream(d.dataOff[node] + pos);
    return stream && { stream: stream.handle, pos: d.dataOff[node], len: d.size[node] };
  }

  readInto(node: number, pos: number, buf: Buffer, off: number, len: number): number {
    let at = off;
    for (const r of this.ranges(node, pos, len)) {
      const release = r.fd >= 0 && !this.archive && this.partial ? this.partial.ensureSync(r.pos, r.pos + r.len) : undefined;
      try {
        if (r.fd < 0) buf.fill(0, at, at + r.len);
        else if ((this.archive ? this.archive.readInto(r.pos, buf, at, r.len) : readFully(r.fd, buf, r.len, r.pos, at)) !== r.len) {
          throw fsError('EIO', `${this.source} ends early`);
        }
      } finally {
        release?.();
      }
      at += r.len;
    }
    return at - off;
  }

  /** Where bytes [pos, pos+len) of a regular file live in the (decoded) tar, clamped to its size. */
  private ranges(node: number, pos: number, len: number): FdRange[] {
    const size = this.d.size[node];
    if (pos >= size || len <= 0) return [];
    const end = Math.min(size, pos + len);
    const sparse = this.d.extra[node] ? this.extra(node).sparse : undefined;
    if (!sparse) return [{ fd: this.fd, pos: this.d.dataOff[node] + pos, len: end - pos }];
    return sparseRanges(sparse, this.fd, this.d.dataOff[node], pos, end);
  }

  private extra(node: number): DecodedExtra {
    const idx = this.d.extra[node] - 1;
    let e = this.decoded.get(idx);
    if (!e) {
      const raw = this.d.extras[idx];
      e = { xattrs: new Map((raw.xattrs ?? []).map(([k, v]) => [k, Buffer.from(v, 'base64')])) };
      if (raw.sparse) {
        const n = raw.sparse.length;
        const s = { offset: new Float64Array(n), size: new Float64Array(n), stored: new Float64Array(n) };
        let at = 0;
        raw.sparse.forEach(([o, z], i) => {
          s.offset[i] = o;
          s.size[i] = z;
          s.stored[i] = at;
          at += z;
        });
        e.sparse = s;
      }
      this.decoded.set(idx, e);
    }
    return e;
  }

  close(): void {
    this.archive?.close();
    if (this.partial) this.partial.close(); // the cache file is the blob's, shared
    else closeSync(this.fd);
  }
}

/** Ranges of a partial tar's file, made present and pinned in its cache until the reader releases them. */
async function held(p: PartialTar, ranges: FdRanges): Promise<FdRanges> {
  const unpins: Array<() => void> = [];
  const release = (): void => unpins.forEach((unpin) => unpin());
  try {
    for (const r of ranges) if (r.fd >= 0) unpins.push(await p.ensure(r.pos, r.pos + r.len));
  } catch (err) {
    release();
    throw err;
  }
  ranges.release = release;
  return ranges;
}

/** Map [pos, end) of a sparse file onto stored segments, with holes as zero runs (fd -1). */
function sparseRanges(s: NonNullable<DecodedExtra['sparse']>, fd: number, dataOff: number, pos: number, end: number): FdRange[] {
  const out: FdRange[] = [];
  // First segment ending after pos.
  let lo = 0;
  let hi = s.offset.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (s.offset[mid] + s.size[mid] <= pos) lo = mid + 1;
    else hi = mid;
  }
  let at = pos;
  for (let i = lo; i < s.offset.length && at < end; i++) {
    const segStart = s.offset[i];
    if (segStart >= end) break;
    if (segStart > at) {
      out.push({ fd: -1, pos: 0, len: segStart - at });
      at = segStart;
    }
    const take = Math.min(end, segStart + s.size[i]) - at;
    if (take > 0) {
      out.push({ fd, pos: dataOff + s.stored[i] + (at - segStart), len: take });
      at += take;
    }
  }
  if (at < end) out.push({ fd: -1, pos: 0, len: end - at });
  return out;
}
