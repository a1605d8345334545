// File type bits of st_mode (stat(2), inode(7)): defined once for the tar codec, the layers, the
// overlay and the CLI.
export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

/** The S_IFMT bits of a mode (a number, or a bigint from a BigIntStats). */
export const typeOf = (mode: number | bigint): number => Number(mode) & S_IFMT;
