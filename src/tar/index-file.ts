// The persistent index file: a 32-byte fixed header, a JSON header, then the typed arrays of
// IndexData at 8-aligned offsets (a compressed tar's seek table among them), the member table,
// and last the gzip windows. Loading maps the arrays straight onto one buffer (two reads, no
// rescan, no per-entry parsing); the member table is read only when wanted, windows when seeked to.
import { closeSync, openSync, readSync } from 'node:fs';
import { writeFileAtomic } from '../util/atomic.js';
import { readFully } from './reader.js';
import type { IndexData, MemberTable, NodeExtra, TarIdentity } from './index-data.js';
import type { Compression, SeekTable } from './seek-table.js';

const MAGIC = 'TARSTKIX';
/** 2: seek tables for compressed tars. Version 1 files (plain tars only, same layout) still load. */
export const INDEX_VERSION = 2;
const READABLE = [1, 2];
const FIXED = 32;

type ArrayName = 'size' | 'dataOff' | 'mtimeSec' | 'parent' | 'nameOff' | 'mode' | 'uid' | 'gid' | 'mtimeNsec' | 'a' | 'b' | 'inode' | 'nlink' | 'extra' | 'nameLen' | 'flags';
const NODE_ARRAYS: Array<[ArrayName, Float64ArrayConstructor | Uint32ArrayConstructor | Uint16ArrayConstructor | Uint8ArrayConstructor]> = [
  ['size', Float64Array],
  ['dataOff', Float64Array],
  ['mtimeSec', Float64Array],
  ['parent', Uint32Array],
  ['nameOff', Uint32Array],
  ['mode', Uint32Array],
  ['uid', Uint32Array],
  ['gid', Uint32Array],
  ['mtimeNsec', Uint32Array],
  ['a', Uint32Array],
  ['b', Uint32Array],
  ['inode', Uint32Array],
  ['nlink', Uint32Array],
  ['extra', Uint32Array],
  ['nameLen', Uint16Array],
  ['flags', Uint8Array],
];
const MEMBER_ARRAYS = [
  ['headerOff', Float64Array],
  ['dataOff', Float64Array],
  ['stored', Float64Array],
  ['crc', Uint32Array],
] as const;
const SEEK_ARRAYS = [
  ['inBit', Float64Array],
  ['outOff', Float64Array],
  ['winOff', Float64Array],
  ['kind', Uint32Array],
  ['winLen', Uint32Array],
  ['inCrc', Uint32Array],
  ['pieceCrc', Uint32Array],
] as const;

/** The seek table's scalars; its arrays are sections `s.<name>`, its windows the last section. */
interface SeekHeader {
  format: Compression;
  compressedSize: number;
  size: number;
  pieceSize: number;
  spacing: number;
  count: number;
  tailCrc: number;
}

interface JsonHeader {
  version: number;
  nodeCount: number;
  memberCount: number;
  source: TarIdentity;
  warnings: IndexData['warnings'];
  seek?: SeekHeader;
  sections: Record<string, [offset: number, bytes: number]>;
}

export class IndexFormatError extends Error {}

const align8 = (n: number): number => (n + 7) & ~7;

export function writeIndex(path: string, d: IndexData): void {
  const sections: Record<string, [number, number]> = {};
  const chunks: Uint8Array[] = [];
  const extrasJson = Buffer.from(JSON.stringify(d.extras));
  const bodies: Array<[string, Uint8Array]> = [
    ...NODE_ARRAYS.map(([name]) => [name, bytesOf(d[name])] as [string, Uint8Array]),
    ['names', d.names],
    ['strings', d.strings],
    ['extras', extrasJson],
    ...(d.seek ? SEEK_ARRAYS.map(([name]) => [`s.${name}`, bytesOf(d.seek![name])] as [string, Uint8Array]) : []),
    ...MEMBER_ARRAYS.map(([name]) => [`m.${name}`, bytesOf(d.members[name])] as [string, Uint8Array]),
    ...(d.seek ? [['s.windows', windowBytes(d.seek)] as [string, Uint8Array]] : []),
  ];
  const seek = d.seek ? seekHeader(d.seek) : undefined;
  // Lay out after a header whose size depends on the offsets: fix the JSON size by iterating.
  let headerLen = 0;
  let json: Buffer;
  for (;;) {
    let off = align8(FIXED + headerLen);
    for (const [name, body] of bodies) {
      sections[name] = [off, body.length];
      off = align8(off + body.length);
    }
    const h: JsonHeader = { version: INDEX_VERSION, nodeCount: d.nodeCount, memberCount: d.members.count, source: d.source, warnings: d.warnings, seek, sections };
    json = Buffer.from(JSON.stringify(h));
    if (json.length === headerLen) break;
    headerLen = json.length;
  }
  const nodeEnd = sections['m.headerOff'][0];
  const fixed = Buffer.alloc(FIXED);
  fixed.write(MAGIC, 0, 'latin1');
  fixed.writeUInt32LE(INDEX_VERSION, 8);
  fixed.writeUInt32LE(json.length, 12);
  fixed.writeDoubleLE(nodeEnd, 16);
  chunks.push(fixed, json);
  let pos = FIXED + json.length;
  for (const [name, body] of bodies) {
    const at = sections[name][0];
    if (at > pos) chunks.push(Buffer.alloc(at - pos));
    chunks.push(body);
    pos = at + body.length;
  }
  writeFileAtomic(path, chunks);
}

function seekHeader(t: SeekTable): SeekHeader {
  return { format: t.format, compressedSize: t.compressedSize, size: t.size, pieceSize: t.pieceSize, spacing: t.spacing, count: t.count, tailCrc: t.tailCrc };
}

function windowBytes(t: SeekTable): Uint8Array {
  if (!Buffer.isBuffer(t.windows)) throw new Error('writeIndex: the seek windows are not in memory');
  return t.windows;
}

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * Where an index file's seek windows start, when they are its last section and not empty: an index
 * can be cut there, the head loaded as a whole index and the windows read from elsewhere (a pulled
 * index whose windows stay in the registry, read by range as seeks need them).
 */
export function windowsCut(index: Buffer): number | undefined {
  if (index.length < FIXED || index.toString('latin1', 0, 8) !== MAGIC) return undefined;
  const h = JSON.parse(index.toString('utf8', FIXED, FIXED + index.readUInt32LE(12))) as JsonHeader;
  const w = h.sections['s.windows'];
  return w && w[1] > 0 && w[0] + w[1] === index.length ? w[0] : undefined;
}

export interface LoadOptions {
  /**
   * The member table (checksum verification, not serving): 'all', or a number n for an even sample
   * of n members read entry by entry, so a mount-time check never holds the whole table in memory.
   */
  members?: 'all' | number;
}

export function readIndex(path: string, opts: LoadOptions = {}): IndexData {
  const fd = openSync(path, 'r');
  try {
    const fixed = Buffer.alloc(FIXED);
    if (readSync(fd, fixed, 0, FIXED, 0) !== FIXED || fixed.toString('latin1', 0, 8) !== MAGIC) throw new IndexFormatError(`${path} is not a tarstack index`);
    const version = fixed.readUInt32LE(8);
    if (!READABLE.includes(version)) throw new IndexFormatError(`${path} has index version ${version}, this tarstack reads ${INDEX_VERSION}`);
    const jsonLen = fixed.readUInt32LE(12);
    const nodeEnd = fixed.readDoubleLE(16);
    const whole = new ArrayBuffer(nodeEnd);
    const buf = Buffer.from(whole);
    if (readFully(fd, buf, nodeEnd, 0) !== nodeEnd) throw new IndexFormatError(`${path} is truncated`);
    const h = JSON.parse(buf.toString('utf8', FIXED, FIXED + jsonLen)) as JsonHeader;
    const view = <T>(ctor: { new (b: ArrayBuffer, o: number, n: number): T; BYTES_PER_ELEMENT: number }, name: string, src: ArrayBuffer, base: number): T => {
      const [off, bytes] = h.sections[name];
      return new ctor(src, off - base, bytes / ctor.BYTES_PER_ELEMENT);
    };
    const arrays = Object.fromEntries(NODE_ARRAYS.map(([name, ctor]) => [name, view(ctor as Uint8ArrayConstructor, name, whole, 0)])) as unknown as Pick<IndexData, ArrayName>;
    const slice = (name: string): Buffer => {
      const [off, bytes] = h.sections[name];
      return buf.subarray(off, off + bytes);
    };
    const empty: MemberTable = { count: 0, headerOff: new Float64Array(0), dataOff: new Float64Array(0), stored: new Float64Array(0), crc: new Uint32Array(0) };
    let members = empty;
    if (opts.members === 'all') {
      const [start] = h.sections['m.headerOff'];
      const [lastOff, lastBytes] = h.sections['m.crc'];
      const mbuf = new ArrayBuffer(lastOff + lastBytes - start);
      if (readFully(fd, Buffer.from(mbuf), mbuf.byteLength, start) !== mbuf.byteLength) throw new IndexFormatError(`${path} is truncated`);
      members = {
        count: h.memberCount,
        headerOff: view(Float64Array, 'm.headerOff', mbuf, start),
        dataOff: view(Float64Array, 'm.dataOff', mbuf, start),
        stored: view(Float64Array, 'm.stored', mbuf, start),
        crc: view(Uint32Array, 'm.crc', mbuf, start),
      };
    } else if (typeof opts.members === 'number' && h.memberCount > 0) {
      members = sampleMembers(fd, path, h, opts.members);
    }
    let seek: SeekTable | undefined;
    if (h.seek) {
      const s = Object.fromEntries(SEEK_ARRAYS.map(([name, ctor]) => [name, view(ctor as unknown as Uint8ArrayConstructor, `s.${name}`, whole, 0)])) as unknown as Pick<SeekTable, (typeof SEEK_ARRAYS)[number][0]>;
      const [offset, bytes] = h.sections['s.windows'];
      seek = { ...h.seek, ...s, windows: { path, offset, bytes } };
    }
    return {
      ...arrays,
      nodeCount: h.nodeCount,
      names: slice('names'),
      strings: slice('strings'),
      extras: JSON.parse(slice('extras').toString('utf8')) as NodeExtra[],
      members,
      seek,
      source: h.source,
      warnings: h.warnings,
    };
  } finally {
    closeSync(fd);
  }
}

/** Members spread evenly over the archive (first and last included), read one entry at a time. */
function sampleMembers(fd: number, path: string, h: JsonHeader, n: number): MemberTable {
  const total = h.memberCount;
  const picks = total <= n ? Array.from({ length: total }, (_, i) => i) : [...new Set(Array.from({ length: n }, (_, s) => Math.floor((s * (total - 1)) / (n - 1))))];
  const out: MemberTable = { count: picks.length, headerOff: new Float64Array(picks.length), dataOff: new Float64Array(picks.length), stored: new Float64Array(picks.length), crc: new Uint32Array(picks.length) };
  const cell = Buffer.alloc(8);
  for (const [name, ctor] of MEMBER_ARRAYS) {
    const [off] = h.sections[`m.${name}`];
    const size = ctor.BYTES_PER_ELEMENT;
    picks.forEach((i, j) => {
      if (readFully(fd, cell, size, off + i * size) !== size) throw new IndexFormatError(`${path} is truncated`);
      out[name][j] = size === 8 ? cell.readDoubleLE(0) : cell.readUInt32LE(0);
    });
  }
  return out;
}
