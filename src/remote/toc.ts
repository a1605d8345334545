// A layer that carries its own table of contents: eStargz (a gzip blob whose files each start a gzip
// member, its TOC `stargz.index.json` in a member of its own before a 51-byte footer) and
// zstd:chunked (each file's content in zstd frames of its own, its manifest a zstd frame at the
// position an annotation gives). The TOC is fetched by range (a few KiB), its digest checked against
// the manifest's annotation, and made the layer's index: no layer byte is read until a file is.
//
// The index's decoded stream is not the tar but the files' contents laid end to end: a seek point
// starts every TOC chunk (a gzip member or zstd frame whose decoded bytes begin with that chunk), and
// every chunk is one piece of the seek table, checked against the TOC's sha256 of its bytes
// (TOC_SHA_FILE) before it is served: the blob's bytes cannot be checked chunk by chunk as a streamed
// layer's are (nothing hashed them), so the decoded bytes are. The tar as tar readers see it (export)
// is the whole blob, fetched, checked against the layer's digest and decoded.
import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { LayerBuilder } from '../tar/build.js';
import type { IndexData } from '../tar/index-data.js';
import type { Member, MemberType } from '../tar/scan.js';
import { CHEAP_SPACING, type SeekTable } from '../tar/seek-table.js';
import { CodecFormat, loadCodec, PointKind } from '../native/codec.js';
import { toByteString } from '../util/latin1.js';
import { getRange } from './fetch-thread.js';
import type { Remote } from './http.js';
import type { Descriptor } from './registry.js';

export const ESTARGZ_TOC_DIGEST = 'containerd.io/snapshot/stargz/toc.digest';
/** zstd:chunked's annotations: the current names and those of containers/storage before 1.45. */
const ZSTD_CHUNKED_CHECKSUM = ['io.github.containers.zstd-chunked.manifest-checksum', 'io.containers.zstd-chunked.manifest-checksum'];
const ZSTD_CHUNKED_POSITION = ['io.github.containers.zstd-chunked.manifest-position', 'io.containers.zstd-chunked.manifest-position'];
/** A TOC chunk longer than this would be one piece decoded (and held) whole: such a layer is streamed instead. */
export const MAX_TOC_CHUNK = 32 << 20;
/** A TOC larger than this is not fetched (the streaming pass indexes the layer instead). */
const MAX_TOC_BYTES = 256 << 20;
const ESTARGZ_FOOTER = 51;
/** Entries eStargz adds that are not the layer's files (stargz-snapshotter hides them too). */
const ESTARGZ_HIDDEN = new Set(['.prefetch.landmark', '.no.prefetch.landmark', 'stargz.index.json']);

export type TocKind = 'estargz' | 'zstd:chunked';

/** The TOC a layer's annotations announce, if any. */
export function tocOf(layer: Descriptor): { kind: TocKind; digest: string; position?: string } | undefined {
  const a = layer.annotations ?? {};
  if (/gzip$/.test(layer.mediaType) && a[ESTARGZ_TOC_DIGEST]) return { kind: 'estargz', digest: a[ESTARGZ_TOC_DIGEST] };
  const sum = ZSTD_CHUNKED_CHECKSUM.map((k) => a[k]).find(Boolean);
  const pos = ZSTD_CHUNKED_POSITION.map((k) => a[k]).find(Boolean);
  if (/zstd$/.test(layer.mediaType) && sum && pos) return { kind: 'zstd:chunked', digest: sum, position: pos };
  return undefined;
}

/** Why a TOC was not used: the layer is then streamed as any other. */
export class TocError extends Error {}

interface TocEntry {
  name: string;
  type: string;
  size?: number;
  modtime?: string;
  linkName?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  userName?: string;
  groupName?: string;
  devMajor?: number;
  devMinor?: number;
  xattrs?: Record<string, string>;
  digest?: string;
  offset?: number;
  chunkOffset?: number;
  chunkSize?: number;
  chunkDigest?: string;
}

const sha256hex = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** The TOC's JSON bytes, fetched by range and checked against the annotation's digest. */
export async function fetchToc(remote: Remote, size: number, toc: NonNullable<ReturnType<typeof tocOf>>): Promise<Buffer> {
  if (toc.kind === 'estargz') {
    if (size < ESTARGZ_FOOTER) throw new TocError('the blob is too short for an eStargz footer');
    const footer = await getRange(remote, size - ESTARGZ_FOOTER, size);
    const m = /([0-9a-f]{16})STARGZ/.exec(footer.toString('latin1'));
    if (!m) throw new TocError('no eStargz footer at the end of the blob');
    const at = parseInt(m[1], 16);
    if (!(at >= 0 && at < size - ESTARGZ_FOOTER) || size - ESTARGZ_FOOTER - at > MAX_TOC_BYTES) throw new TocError(`the footer's TOC offset ${at} is outside the blob`);
    let tar: Buffer;
    try {
      tar = gunzipSync(await getRange(remote, at, size - ESTARGZ_FOOTER));
    } catch (err) {
      throw new TocError(`the TOC's gzip member does not decode: ${(err as Error).message}`);
    }
    // One tar member, stargz.index.json: its size in the header's octal field.
    const name = tar.toString('latin1', 0, 100).replace(/\0.*$/s, '');
    const len = parseInt(tar.toString('latin1', 124, 136).replace(/\0.*$/s, '').trim(), 8);
    if (name !== 'stargz.index.json' || !(len >= 0) || 512 + len > tar.length) throw new TocError('the TOC member is not stargz.index.json');
    const json = tar.subarray(512, 512 + len);
    if (`sha256:${sha256hex(json)}` !== toc.digest) throw new TocError(`the TOC's digest is sha256:${sha256hex(json)}, not ${toc.digest} as the manifest says`);
    return json;
  }
  const [off, len, ulen, type] = (toc.position ?? '').split(':').map(Number);
  if (![off, len, ulen].every((n) => Number.isSafeInteger(n) && n >= 0) || off + len > size || ulen > MAX_TOC_BYTES) throw new TocError(`manifest position "${toc.position}" is not in the blob`);
  if (type !== 1) throw new TocError(`manifest type ${type} is not the JSON one (1)`);
  const packed = await getRange(remote, off, off + len);
  if (`sha256:${sha256hex(packed)}` !== toc.digest) throw new TocError(`the manifest's digest is sha256:${sha256hex(packed)}, not ${toc.digest} as the annotation says`);
  return zstdDecode(packed, ulen);
}

/** One zstd frame (a zstd:chunked manifest) decoded by the native codec (Node 20 has no zstd). */
function zstdDecode(packed: Buffer, size: number): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'tarstack-toc-'));
  const file = join(dir, 'manifest.zst');
  try {
    writeFileSync(file, packed);
    const fd = openSync(file, 'r');
    const codec = loadCodec();
    const h = codec.open(CodecFormat.Zstd, fd, packed.length);
    try {
      const out = Buffer.alloc(size);
      const n = codec.decodeSync(h, PointKind.ZstdFrame, 0, null, out, Math.max(1, size), null);
      if (n !== size) throw new TocError(`the manifest decodes to ${n} bytes, not ${size}`);
      return out;
    } catch (err) {
      if (err instanceof TocError) throw err;
      throw new TocError(`the manifest does not decode: ${(err as Error).message}`);
    } finally {
      codec.close(h);
      closeSync(fd);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const TYPES: Record<string, MemberType> = { reg: 'file', dir: 'dir', symlink: 'symlink', hardlink: 'hardlink', char: 'char', block: 'block', fifo: 'fifo' };
const bytes = (s: string | undefined): string => toByteString(s ?? '');

function mtimeOf(s: string | undefined): [number, number] {
  if (!s) return [0, 0];
  const ms = Date.parse(s);
  if (!Number.isFinite(ms)) return [0, 0];
  const frac = /\.(\d+)/.exec(s);
  const nsec = frac ? Number(frac[1].padEnd(9, '0').slice(0, 9)) : 0;
  return [Math.floor(ms / 1000), nsec];
}

export interface TocIndex {
  data: IndexData;
  /** sha256 of every chunk's decoded bytes, 32 bytes each, in seek-table order. */
  chunkSha: Buffer;
}

/**
 * The layer's index from its TOC: the tree (as the tar's headers would give it) and a seek table
 * with a point at every chunk. Offsets in the TOC that do not run forward through the blob, chunks
 * that do not tile their file, or a chunk over MAX_TOC_CHUNK: a TocError (the layer is streamed).
 */
export function indexFromToc(json: Buffer, kind: TocKind, blobSize: number, impliedMtimeSec: number): TocIndex {
  let toc: { entries?: TocEntry[] };
  try {
    toc = JSON.parse(json.toString()) as { entries?: TocEntry[] };
  } catch (err) {
    throw new TocError(`the TOC is not JSON: ${(err as Error).message}`);
  }
  if (!Array.isArray(toc.entries)) throw new TocError('the TOC has no entries');
  const builder = new LayerBuilder({ impliedMtimeSec });
  const inBit: number[] = [];
  const outOff: number[] = [];
  const shas: Buffer[] = [];
  let out = 0;
  let lastOffset = -1;
  let maxChunk = 0;
  const entries = toc.entries;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i];
    if (e.type === 'chunk') throw new TocError(`a chunk of "${e.name}" does not follow its file`);
    const type = TYPES[e.type];
    if (!type) throw new TocError(`entry "${e.name}" has type "${e.type}"`);
    const name = String(e.name ?? '');
    if (kind === 'estargz' && ESTARGZ_HIDDEN.has(name.replace(/^(\.\/)+/, ''))) {
      while (entries[i + 1]?.type === 'chunk') i++;
      continue;
    }
    const size = type === 'file' ? Number(e.size ?? 0) : 0;
    if (!Number.isSafeInteger(size) || size < 0) throw new TocError(`entry "${name}" has size ${e.size}`);
    const dataOffset = out;
    if (size > 0) {
      // The file's chunks: this entry, then the 'chunk' entries after it, tiling [0, size).
      const chunks: TocEntry[] = [e];
      while (entries[i + 1]?.type === 'chunk') chunks.push(entries[++i]);
      let at = 0;
      for (const [k, c] of chunks.entries()) {
        const from = Number(c.chunkOffset ?? 0);
        const len = c.chunkSize ? Number(c.chunkSize) : size - from;
        const off = Number(c.offset);
        const sha = k === 0 && chunks.length === 1 && !c.chunkDigest ? e.digest : c.chunkDigest;
        if (from !== at || !(len > 0) || from + len > size) throw new TocError(`the chunks of "${name}" do not tile it (chunk at ${from}, ${len} bytes)`);
        if (!Number.isSafeInteger(off) || off <= lastOffset || off >= blobSize) throw new TocError(`a chunk of "${name}" starts at ${c.offset}, not after the one before it`);
        if (!sha || !/^sha256:[0-9a-f]{64}$/.test(sha)) throw new TocError(`a chunk of "${name}" has no sha256 digest`);
        if (len > MAX_TOC_CHUNK) throw new TocError(`a chunk of "${name}" is ${len} bytes`);
        inBit.push(off * 8);
        outOff.push(out);
        shas.push(Buffer.from(sha.slice(7), 'hex'));
        lastOffset = off;
        maxChunk = Math.max(maxChunk, len);
        out += len;
        at += len;
      }
      if (at !== size) throw new TocError(`the chunks of "${name}" cover ${at} of its ${size} bytes`);
    }
    const [mtimeSec, mtimeNsec] = mtimeOf(e.modtime);
    const m: Member = {
      path: bytes(name),
      type,
      mode: Number(e.mode ?? 0) & 0o7777,
      uid: Number(e.uid ?? 0),
      gid: Number(e.gid ?? 0),
      uname: bytes(e.userName),
      gname: bytes(e.groupName),
      size,
      mtimeSec,
      mtimeNsec,
      linkname: bytes(e.linkName),
      devmajor: Number(e.devMajor ?? 0),
      devminor: Number(e.devMinor ?? 0),
      xattrs: e.xattrs ? Object.entries(e.xattrs).map(([k, v]) => [bytes(k), Buffer.from(v, 'base64')] as [string, Buffer]) : undefined,
      dataOffset,
      storedSize: size,
      sparse: undefined,
      headerOffset: 0,
      checksum: 0,
    };
    builder.add(m);
  }
  const tree = builder.finish();
  const count = inBit.length;
  const seek: SeekTable | undefined = count === 0 ? undefined : {
    format: kind === 'estargz' ? 'gzip' : 'zstd',
    compressedSize: blobSize,
    size: out,
    pieceSize: maxChunk,
    spacing: CHEAP_SPACING,
    count,
    inBit: Float64Array.from(inBit),
    outOff: Float64Array.from(outOff),
    kind: new Uint32Array(count).fill(kind === 'estargz' ? PointKind.GzipMember : PointKind.ZstdFrame),
    winOff: new Float64Array(count),
    winLen: new Uint32Array(count),
    inCrc: new Uint32Array(count),
    pieceCrc: new Uint32Array(count),
    tailCrc: 0,
    windows: Buffer.alloc(0),
  };
  const data: IndexData = {
    ...tree,
    members: { count: 0, headerOff: new Float64Array(0), dataOff: new Float64Array(0), stored: new Float64Array(0), crc: new Uint32Array(0) },
    source: { size: blobSize, mtimeNs: '0', ino: 0, dev: 0 },
    warnings: builder.warnings,
    ...(seek ? { seek } : {}),
  };
  return { data, chunkSha: Buffer.concat(shas) };
}
