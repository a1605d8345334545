// The tar scanner: walks an archive header by header, seeking over bodies, and emits each real
// member with its PAX / GNU extension headers applied. Extension headers ('x', 'L', 'K') apply to
// the next real member only; PAX global headers ('g') to every member after them.
// Recoverable oddities become warnings with codes; damage that would serve wrong bytes is an error.
// Sparse maps are decoded in sparse.ts, the header block itself in header.ts.
import { BLOCK, decodeHeader, MAX_EXTENSION, TypeFlag, cString, type RawHeader, type SparseSegment } from './header.js';
import { parsePax, parsePaxInt, parsePaxTime, decodeLibarchiveXattrName, type PaxRecords } from './pax.js';
import type { ArchiveReader } from './reader.js';
import { printable, TarFormatError } from './format-error.js';
import { sparseLayout } from './sparse.js';
import { memberChecksum } from './identity.js';

export { memberChecksum };

export type MemberType = 'file' | 'hardlink' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

export interface Member {
  path: string; // byte string, as stored (normalised later)
  type: MemberType;
  mode: number; // permission bits only
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  size: number; // logical size (expanded, for sparse files)
  mtimeSec: number;
  mtimeNsec: number;
  linkname: string;
  devmajor: number;
  devminor: number;
  xattrs: Array<[name: string, value: Buffer]> | undefined;
  /** Where the stored body starts and how many bytes it has. */
  dataOffset: number;
  storedSize: number;
  /** Logical data segments stored back to back from dataOffset; undefined for a dense file. */
  sparse: SparseSegment[] | undefined;
  /** Offset of the member's first header block (extension headers included). */
  headerOffset: number;
  /** crc32 over the header blocks and the body (whole when small, else both ends): see memberChecksum. */
  checksum: number;
}

export interface ScanWarning {
  code: string;
  message: string;
  offset: number;
}

export { printable, TarFormatError };


type Warn = (code: string, message: string, offset: number) => void;

export interface ScanCallbacks {
  member(m: Member): void;
  warning?(w: ScanWarning): void;
  progress?(pos: number): void;
}

const pad = (n: number): number => Math.ceil(n / BLOCK) * BLOCK;

export function scanTar(reader: ArchiveReader, cb: ScanCallbacks): { end: number; members: number } {
  let pos = 0;
  let memberStart = 0;
  let members = 0;
  let longName: string | undefined;
  let longLink: string | undefined;
  let pax: PaxRecords | undefined;
  const globals = new Map<string, Buffer>();
  const warn: Warn = (code, message, offset) => cb.warning?.({ code, message, offset });
  let nextProgress = 0;

  if (!reader.has(1)) throw new TarFormatError('the file is empty, not a tar archive', 0);
  for (;;) {
    if (pos >= nextProgress) {
      cb.progress?.(pos);
      nextProgress = pos + 16 * 1024 * 1024;
    }
    const block = reader.read(pos, BLOCK);
    if (block.length === 0 && pos > 0 && memberStart === pos) {
      warn('NO_END_MARKER', 'archive ends without its end-of-archive blocks', pos);
      break;
    }
    if (block.length < BLOCK) throw new TarFormatError(`truncated archive: header at byte ${pos} is cut short`, pos);
    const decoded = decodeHeader(block);
    if (decoded.kind === 'zero') {
      if (memberStart !== pos) throw new TarFormatError(`truncated archive: extension header at byte ${memberStart} has no member after it`, pos);
      break;
    }
    if (decoded.kind === 'bad') {
      if (pos === 0) throw new TarFormatError(`not a tar archive (${decoded.reason} in the first block)`, 0);
      throw new TarFormatError(`damaged archive: ${decoded.reason} in the header at byte ${pos}`, pos);
    }
    const h = decoded.header;
    const bodyStart = pos + BLOCK;

    switch (h.typeflag) {
      case TypeFlag.GnuLongName:
        longName = cString(extensionBody(reader, h, pos, 'GNU long name'), 0, h.size);
        pos = bodyStart + pad(h.size);
        continue;
      case TypeFlag.GnuLongLink:
        longLink = cString(extensionBody(reader, h, pos, 'GNU long link name'), 0, h.size);
        pos = bodyStart + pad(h.size);
        continue;
      case TypeFlag.PaxNext:
        pax = (pax ?? []).concat(paxAt(extensionBody(reader, h, pos, 'PAX header'), pos));
        pos = bodyStart + pad(h.size);
        continue;
      case TypeFlag.PaxGlobal:
        for (const [k, v] of paxAt(extensionBody(reader, h, pos, 'PAX global header'), pos)) {
          if (v.length === 0) globals.delete(k);
          else globals.set(k, v);
        }
        pos = bodyStart + pad(h.size);
        memberStart = pos;
        continue;
      case TypeFlag.GnuVolume:
        pos = bodyStart + pad(h.size);
        memberStart = pos;
        continue;
      case TypeFlag.GnuMultiVol:
        throw new TarFormatError(`multi-volume archives are not supported (continuation member at byte ${pos})`, pos);
    }

    const m = buildMember({ header: h, pax, globals, longName, longLink, headerOffset: memberStart, bodyStart, reader, warn });
    const bodyEnd = m.dataOffset + m.storedSize;
    if (!reader.has(bodyEnd)) {
      throw new TarFormatError(`truncated archive: member "${printable(m.path)}" needs ${bodyEnd} bytes, the file has ${reader.size}`, memberStart);
    }
    m.checksum = memberChecksum(reader, memberStart, m.dataOffset, m.storedSize);
    cb.member(m);
    members++;
    pos = pad(bodyEnd);
    memberStart = pos;
    longName = longLink = pax = undefined;
  }
  return { end: pos, members };
}

/** An extension header's body (PAX records, a GNU long name), copied: the reader's window is reused. */
function extensionBody(reader: ArchiveReader, h: RawHeader, pos: number, what: string): Buffer {
  if (h.size > MAX_EXTENSION) throw new TarFormatError(`${what} at byte ${pos} claims ${h.size} bytes (limit ${MAX_EXTENSION})`, pos);
  const body = reader.read(pos + BLOCK, h.size);
  if (body.length < h.size) throw new TarFormatError(`truncated archive: ${what} at byte ${pos} is cut short`, pos);
  return Buffer.from(body);
}

function paxAt(body: Buffer, pos: number): PaxRecords {
  try {
    return parsePax(body);
  } catch (err) {
    throw new TarFormatError(`damaged PAX header at byte ${pos}: ${(err as Error).message}`, pos);
  }
}

/** What the scanner knows when a real member's header is reached. */
interface MemberHeaders {
  header: RawHeader;
  /** Its own PAX records ('x'), and the global ones ('g') in force. */
  pax: PaxRecords | undefined;
  globals: Map<string, Buffer>;
  /** GNU long name ('L') and long link name ('K') headers before it. */
  longName: string | undefined;
  longLink: string | undefined;
  /** Its first header block (extension headers included), and where its body starts. */
  headerOffset: number;
  bodyStart: number;
  reader: ArchiveReader;
  warn: Warn;
}

function buildMember(x: MemberHeaders): Member {
  const { header: h, pax, globals, headerOffset, bodyStart, warn } = x;
  if (!pax && globals.size === 0 && x.longName === undefined && x.longLink === undefined && !h.gnuSparse) {
    const plain = plainMember(h, headerOffset, bodyStart);
    if (plain) return plain;
  }
  // Later records win: globals first, then this member's own records in order.
  const rec = new Map<string, Buffer>(globals);
  const sparseOffsets: number[] = [];
  const sparseSizes: number[] = [];
  const schily = new Map<string, Buffer>();
  const libarchive = new Map<string, Buffer>();
  for (const [k, v] of globals) {
    if (k.startsWith('SCHILY.xattr.')) schily.set(k.slice(13), v);
  }
  for (const [k, v] of pax ?? []) {
    if (k === 'GNU.sparse.offset') sparseOffsets.push(Number(v.toString('latin1')));
    else if (k === 'GNU.sparse.numbytes') sparseSizes.push(Number(v.toString('latin1')));
    else if (k.startsWith('SCHILY.xattr.')) schily.set(k.slice(13), Buffer.from(v));
    else if (k.startsWith('LIBARCHIVE.xattr.')) libarchive.set(decodeLibarchiveXattrName(k.slice(17)), Buffer.from(v.toString('latin1'), 'base64'));
    else rec.set(k, v);
  }
  // bsdtar writes each xattr twice, %-encoding the name in SCHILY.xattr too; its LIBARCHIVE.xattr
  // record is the unambiguous one, so a SCHILY name that decodes to one of those is the same xattr.
  for (const name of schily.keys()) {
    if (libarchive.size && libarchive.has(decodeLibarchiveXattrName(name))) schily.delete(name);
  }
  const xattrs = schily.size + libarchive.size ? [...schily, ...libarchive] : undefined;
  const text = (k: string): string | undefined => rec.get(k)?.toString('latin1');
  const int = (k: string, fallback: number): number => {
    const s = text(k);
    if (s === undefined) return fallback;
    const v = parsePaxInt(s);
    if (v === undefined) warn('BAD_PAX_NUMBER', `PAX ${k}="${s}" is not a number; using the header's value`, headerOffset);
    return v ?? fallback;
  };

  const path = text('GNU.sparse.name') ?? text('path') ?? x.longName ?? h.name;
  const linkname = text('linkpath') ?? x.longLink ?? h.linkname;
  let storedSize = int('size', h.size);
  let type = memberType(h.typeflag);
  if (type === 'file' && h.format === 'v7' && path.endsWith('/')) type = 'dir'; // pre-POSIX directories
  if (h.typeflag === TypeFlag.GnuDumpDir) type = 'dir';
  if (type === undefined) {
    warn('UNKNOWN_TYPE', `member "${printable(path)}" has unknown type '${String.fromCharCode(h.typeflag)}'; served as a regular file`, headerOffset);
    type = 'file';
  }

  let mtimeSec = h.mtime;
  let mtimeNsec = 0;
  const paxMtime = text('mtime');
  if (paxMtime !== undefined) {
    const t = parsePaxTime(paxMtime);
    if (t) ({ sec: mtimeSec, nsec: mtimeNsec } = t);
    else warn('BAD_PAX_TIME', `PAX mtime="${paxMtime}" is not a time; using the header's value`, headerOffset);
  }

  let dataOffset = bodyStart;
  let size = type === 'file' ? storedSize : 0;
  let sparse: SparseSegment[] | undefined;
  const layout = sparseLayout({ header: h, text, int, offsets: sparseOffsets, sizes: sparseSizes, bodyStart, storedSize, path, headerOffset, reader: x.reader });
  if (layout) {
    ({ segments: sparse, dataOffset, storedSize, size } = layout);
    if (h.gnuSparse) type = 'file';
    if (path.includes('/GNUSparseFile.') && !rec.has('GNU.sparse.name')) {
      warn('SPARSE_NAME', `sparse member "${printable(path)}" has no GNU.sparse.name`, headerOffset);
    }
  }
  if (type === 'hardlink' || type === 'symlink' || type === 'dir' || type === 'fifo' || type === 'char' || type === 'block') size = 0;

  return {
    path,
    type,
    mode: h.mode,
    uid: int('uid', h.uid),
    gid: int('gid', h.gid),
    uname: text('uname') ?? h.uname,
    gname: text('gname') ?? h.gname,
    size,
    mtimeSec,
    mtimeNsec,
    linkname,
    devmajor: int('SCHILY.devmajor', h.devmajor),
    devminor: int('SCHILY.devminor', h.devminor),
    xattrs,
    dataOffset,
    storedSize,
    sparse,
    headerOffset,
    checksum: 0,
  };
}

/** The common case, a member with no extension headers at all, without the general path's maps. */
function plainMember(h: RawHeader, headerOffset: number, bodyStart: number): Member | undefined {
  let type = memberType(h.typeflag);
  if (type === undefined || h.typeflag === TypeFlag.GnuDumpDir) return undefined;
  if (type === 'file' && h.format === 'v7' && h.name.endsWith('/')) type = 'dir';
  return {
    path: h.name,
    type,
    mode: h.mode,
    uid: h.uid,
    gid: h.gid,
    uname: h.uname,
    gname: h.gname,
    size: type === 'file' ? h.size : 0,
    mtimeSec: h.mtime,
    mtimeNsec: 0,
    linkname: h.linkname,
    devmajor: h.devmajor,
    devminor: h.devminor,
    xattrs: undefined,
    dataOffset: bodyStart,
    storedSize: h.size,
    sparse: undefined,
    headerOffset,
    checksum: 0,
  };
}

function memberType(flag: number): MemberType | undefined {
  switch (flag) {
    case TypeFlag.File:
    case TypeFlag.AreaNul:
    case TypeFlag.Contiguous:
    case TypeFlag.GnuSparse:
      return 'file';
    case TypeFlag.Hardlink:
      return 'hardlink';
    case TypeFlag.Symlink:
      return 'symlink';
    case TypeFlag.Char:
      return 'char';
    case TypeFlag.Block:
      return 'block';
    case TypeFlag.Dir:
      return 'dir';
    case TypeFlag.Fifo:
      return 'fifo';
    default:
      return undefined;
  }
}

