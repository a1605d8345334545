// The read interface every lower layer implements (TarLayer, DirLayer). Nodes
// are numbers local to the layer, 0 being its root. "Absent" is a value (ABSENT), never a throw;
// whiteouts are decoded at the layer boundary so the overlay never sees `.wh.` names.
import type { Attr, FdRange, FileStream, ReadReply } from '../vfs/api.js';

export const ABSENT = -1;

export interface Layer {
  /** For messages: where the layer comes from. */
  readonly source: string;
  /** Node ids are in [0, nodeCount); the overlay derives inode numbers from them. */
  readonly nodeCount: number;

  /** Child `name` of directory `dir`: a node (possibly a whiteout) or ABSENT. */
  lookup(dir: number, name: string): number;
  /** Children of `dir` in name-byte order, whiteouts included; positions are stable. */
  childCount(dir: number): number;
  childAt(dir: number, position: number): number;
  nameOf(node: number): string;
  parentOf(node: number): number; // ABSENT for the root

  isDir(node: number): boolean;
  isWhiteout(node: number): boolean;
  isOpaque(dir: number): boolean;
  /**
   * A directory's overlay redirect (overlayfs(5), "Renaming directories"): where its merge continues
   * in the layers below, "/a/b" from their root or "name" in the same parent; undefined when none.
   * Only layers that can hold one (a directory written as an overlay upper) implement it.
   */
  redirectOf?(dir: number): string | undefined;
  /** S_IFMT type bits and permissions. */
  modeOf(node: number): number;
  /** The inode key of a name, in [0, nodeCount): names a layer hard-links share it. */
  inodeOf(node: number): number;
  /** A node whose inodeOf is `key` (ABSENT if none is known); without it, the key is that node. */
  nodeOfInode?(key: number): number;
  /** Fill every field of `attr` but `ino`. */
  fillAttr(node: number, attr: Attr): void;
  readlink(node: number): string;
  xattrNames(node: number): string[];
  getxattr(node: number, name: string): Buffer | undefined;
  /**
   * Bytes [pos, pos+len) of a regular file, clamped to its size, for serving: ranges of an open file
   * (the backend copies them itself) or bytes, perhaps later (decoded off Node's thread).
   * A failure (EIO: the archive changed) throws or rejects with FsError.
   */
  read(node: number, pos: number, len: number): ReadReply | Promise<ReadReply>;
  /** All of a regular file's bytes as one range of a descriptor open for the layer's life, when
   *  they are that (FileSystem.fileRange); optional. */
  fileRange?(node: number): FdRange | undefined;
  /** A regular file about to be read at `pos` as a native stream's output (FileSystem.fileStream); optional. */
  fileStream?(node: number, pos: number): FileStream | undefined;
  /** The same bytes copied into `buf` at `off` now (copy-up): the count, short only at the file's end. */
  readInto(node: number, pos: number, buf: Buffer, off: number, len: number): number;
  /** An open file handle starts / stops reading the node (layers that need a descriptor per file). */
  openFile?(node: number): void;
  closeFile?(node: number): void;
  /** Bytes of backing storage, for statfs. */
  readonly storageBytes: number;
  close(): void;
}
