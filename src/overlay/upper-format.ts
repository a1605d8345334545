// What an upper looks like on disk: the conventions tarstack writes, which are kernel overlayfs's
// (userxattr flavour by default) so an upper stays readable by standard tools:
//   whiteout      a character device 0/0 named NAME (or a `.wh.NAME` file; both are read)
//   opaque dir    xattr user.overlay.opaque = "y" (or trusted.overlay.opaque in a standard upper)
//   renamed dir   xattr user.overlay.redirect = "/lower/path" of its lower origin (or trusted.…)
// plus tarstack's own, unless the format forbids private metadata: user.tarstack.ino (the inode number
// a copied-up entry keeps) and user.tarstack.lazy (a lazily copied file's chunk map), the hard-link
// index and its table of lower names (link-sets.ts, lower-names.ts); what the host refuses an
// ordinary user is kept as kept.ts describes. user.tarstack.nlink is read from older uppers only.
import * as fs from 'node:fs';
import { loadSys } from '../native/sys.js';
import { Kept, type KeptStat } from './kept.js';
import { S_IFDIR, S_IFREG } from '../vfs/mode.js';
import { b } from '../util/latin1.js';

export const X_OPAQUE = 'user.overlay.opaque';
export const X_REDIRECT = 'user.overlay.redirect';
export const T_OPAQUE = 'trusted.overlay.opaque';
export const T_REDIRECT = 'trusted.overlay.redirect';
export const X_INO = 'user.tarstack.ino';
export const X_LAZY = 'user.tarstack.lazy';
export const X_NLINK = 'user.tarstack.nlink';
export const X_INO_LINK = 'trusted.tarstack.ino';
/** Attribute names the user never sees or sets: they describe the overlay, not the file (user.tarstack.* includes kept.ts's). */
export const isInternalXattr = (name: string): boolean =>
  name.startsWith('user.overlay.') || name.startsWith('user.tarstack.') || name.startsWith('trusted.overlay.') || name.startsWith('trusted.tarstack.');

/** What an upper written for other readers (kernel overlayfs, containers/storage) looks like. */
export interface UpperFormat {
  /** Namespace of the opaque and redirect xattrs written: kernel overlayfs reads trusted.* by default, user.* with `userxattr`. */
  xattrs: 'user' | 'trusted';
  /** Whiteouts written: character devices 0/0, or `.wh.NAME` files where mknod is refused. */
  whiteouts: 'chardev' | 'files';
  /** tarstack's own xattrs (user.tarstack.*) and the work/index hard-link index may be written. */
  privateMetadata: boolean;
}

export const TARSTACK_FORMAT: UpperFormat = { xattrs: 'user', whiteouts: 'chardev', privateMetadata: true };

/**
 * Give a fresh upper root the image root's owner, mode, xattrs and times (and its inode number, 1).
 * What the host refuses an ordinary user is kept (kept.ts); the mode goes last, as it may take away
 * our own write permission.
 */
export function prepareUpperRoot(upper: string, a: KeptStat & { atimeSec: number; atimeNsec: number; mtimeSec: number; mtimeNsec: number }, xattrs: Array<[string, Buffer]>): void {
  const sys = loadSys();
  const kept = new Kept(sys, null, () => '', process.getuid?.() !== 0);
  fs.mkdirSync(upper, { mode: 0o700 });
  if (!kept.active) fs.chownSync(upper, a.uid, a.gid);
  for (const [name, value] of xattrs) if (!kept.setX(upper, name, value, 0)) sys.setxattr(upper, name, value, 0);
  sys.setxattr(upper, X_INO, b('1'), 0);
  if (kept.active) kept.setStat(upper, a);
  sys.utimens(upper, a.atimeSec, a.atimeNsec, a.mtimeSec, a.mtimeNsec);
  if (!kept.active) fs.chmodSync(upper, a.mode & 0o7777);
}

/** user.* extended attributes exist for regular files and directories only (xattr(7)). */
export const userXattrOk = (type: number): boolean => type === S_IFREG || type === S_IFDIR;
