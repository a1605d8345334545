// The in-memory (and on-disk) shape of one tar layer's index: a struct of typed arrays indexed by
// node id. Node 0 is the root; each directory's children are contiguous and sorted by name bytes,
// so lookup is a binary search and a listing is a range, with no per-entry objects.
import type { SeekTable } from './seek-table.js';

export const NONE = 0xffffffff;


export const enum NodeFlag {
  Whiteout = 1, // an OCI `.wh.NAME`: hides NAME in lower layers
  Opaque = 2, // a directory marked `.wh..wh..opq`: lower layers' entries do not show through
  Implicit = 4, // a directory the archive implies but does not list
  Detached = 8, // a hard-link target whose name a later member replaced: data only, no name
}

/** Rare per-node data, kept out of the arrays. Xattr values are base64; sparse maps are [offset, size] pairs. */
export interface NodeExtra {
  xattrs?: Array<[name: string, base64: string]>;
  sparse?: Array<[offset: number, size: number]>;
}

/** Identity of the archive an index was built from; a mismatch means the index is stale. */
export interface TarIdentity {
  size: number;
  mtimeNs: string; // bigint as decimal text
  ino: number;
  dev: number;
}

export interface MemberTable {
  count: number;
  headerOff: Float64Array;
  dataOff: Float64Array;
  stored: Float64Array;
  crc: Uint32Array;
}

export interface IndexData {
  nodeCount: number;
  parent: Uint32Array;
  nameOff: Uint32Array;
  nameLen: Uint16Array;
  flags: Uint8Array;
  mode: Uint32Array;
  uid: Uint32Array;
  gid: Uint32Array;
  size: Float64Array;
  dataOff: Float64Array;
  mtimeSec: Float64Array;
  mtimeNsec: Uint32Array;
  /** Directories: first child id; symlinks: target offset in `strings`; devices: major. */
  a: Uint32Array;
  /** Directories: child count; symlinks: target length; devices: minor. */
  b: Uint32Array;
  /** The node that is this name's inode (itself unless hard-linked): names sharing it share st_ino. */
  inode: Uint32Array;
  nlink: Uint32Array;
  /** 1 + index into `extras`, or 0. */
  extra: Uint32Array;
  names: Buffer;
  strings: Buffer;
  extras: NodeExtra[];
  members: MemberTable;
  /** Compressed archives only: where decoding can start; offsets elsewhere are in the decoded tar. */
  seek?: SeekTable;
  source: TarIdentity;
  warnings: Array<{ code: string; message: string; offset: number }>;
}
