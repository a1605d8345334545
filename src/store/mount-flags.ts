// What a mount is made with, decided in one place for every command that mounts. Root gets what
// mount(8) gives root: dev, suid, and other users let in (allow_other, always with
// default_permissions: the kernel checks modes and owners), so a root filesystem works in a chroot
// (su, setuid binaries, /dev/null). An ordinary user gets what fusermount3 enforces: nosuid, nodev,
// and allow_other only where /etc/fuse.conf says user_allow_other. Then -o options apply in order,
// then --nodev, --nosuid and --[no-]allow-other.
import { readFileSync } from 'node:fs';
import { UserError } from '../util/errors.js';

export interface MountFlagArgs {
  nonempty?: boolean;
  allowOther?: boolean;
  nodev?: boolean;
  nosuid?: boolean;
  /** -o, once or repeated: comma-separated mount options. */
  o?: string | string[];
}

export interface MountChoice {
  allowOther: boolean;
  /** Mount flags for libfuse (suid/nosuid and dev/nodev always, then what -o asked for). */
  flags: string[];
  nonempty: boolean;
}

/**
 * The per-mount flags libfuse (3.14) hands to mount(2), each with its opposite. Any other it refuses
 * ("fuse: unknown option(s)"), so they are sorted here: the kernel's defaults are taken and change
 * nothing, the rest are refused with the reason.
 */
const OPPOSITES: Array<[string, string]> = [
  ['suid', 'nosuid'],
  ['dev', 'nodev'],
  ['exec', 'noexec'],
  ['rw', 'ro'],
  ['async', 'sync'],
  ['atime', 'noatime'],
];
const GROUP = new Map<string, string>();
for (const [on, off] of OPPOSITES) GROUP.set(on, on).set(off, on);
GROUP.set('dirsync', 'dirsync');
/** Every per-mount flag that reaches the kernel (tarstack-overlay's -o takes the same). */
export const KERNEL_MOUNT_FLAGS: ReadonlySet<string> = new Set(GROUP.keys());
/** Generic flags that are what a FUSE mount gets anyway: taken, with no effect. */
export const DEFAULT_MOUNT_FLAGS: ReadonlySet<string> = new Set(['relatime', 'diratime', 'symfollow', 'nolazytime', 'nostrictatime']);
/** Generic flags libfuse cannot hand to the kernel: refused rather than dropped. */
const UNPASSABLE = new Set(['norelatime', 'strictatime', 'nodiratime', 'lazytime', 'nosymfollow']);

/** Why `opt` cannot be had, when it is a generic mount flag libfuse does not pass; else undefined. */
export function unpassableFlag(opt: string): string | undefined {
  return UNPASSABLE.has(opt) ? `libfuse 3 cannot hand ${opt} to the kernel for a FUSE mount (it passes ${[...GROUP.keys()].join(', ')})` : undefined;
}
const OTHERS = ['allow_other', 'default_permissions', 'nonempty'];

/** Every -o option tarstack takes, for help and errors. */
export const MOUNT_OPTION_NAMES = [...GROUP.keys(), ...DEFAULT_MOUNT_FLAGS, ...OTHERS];

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

export function resolveMountFlags(a: MountFlagArgs, kind: 'image' | 'instance', root = isRoot()): MountChoice {
  const chosen = new Map<string, string>([
    ['suid', root ? 'suid' : 'nosuid'],
    ['dev', root ? 'dev' : 'nodev'],
  ]);
  let allowOther = root;
  let nonempty = !!a.nonempty;
  let defaultPermissions = false;
  for (const opt of optionList(a)) {
    const unpassable = unpassableFlag(opt);
    if (unpassable) throw new UserError(`-o ${opt}: ${unpassable}`);
    if (DEFAULT_MOUNT_FLAGS.has(opt)) continue;
    const group = GROUP.get(opt);
    if (group !== undefined) {
      if (!root && (opt === 'suid' || opt === 'dev')) throw new UserError(`-o ${opt}: only root may mount with ${opt} (fusermount3 mounts an ordinary user's filesystems nosuid,nodev)`);
      if (kind === 'image' && opt === 'rw') throw new UserError('-o rw: an image mounts read-only (make an instance of it to write: `tarstack create NAME IMAGE`)');
      chosen.set(group, opt);
    } else if (opt === 'allow_other') allowOther = true;
    else if (opt === 'default_permissions') defaultPermissions = true;
    else if (opt === 'nonempty') nonempty = true;
    else throw new UserError(`unknown mount option "${opt}" (-o takes: ${MOUNT_OPTION_NAMES.join(', ')})`);
  }
  if (a.nodev) chosen.set('dev', 'nodev');
  if (a.nosuid) chosen.set('suid', 'nosuid');
  if (a.allowOther !== undefined) allowOther = a.allowOther;
  if (allowOther && !root) checkUserAllowOther();
  if (kind === 'image') chosen.delete('rw'); // ro either way
  const flags = [...chosen.values()];
  if (defaultPermissions && !allowOther) flags.push('default_permissions');
  return { allowOther, flags, nonempty };
}

/** fusermount3 lets an ordinary user pass allow_other only when /etc/fuse.conf says user_allow_other. */
function checkUserAllowOther(): void {
  let conf = '';
  try {
    conf = readFileSync('/etc/fuse.conf', 'utf8');
  } catch {
    /* no file: nothing allowed */
  }
  if (!/^\s*user_allow_other\s*$/m.test(conf)) throw new UserError('--allow-other needs a line "user_allow_other" in /etc/fuse.conf (ask your administrator), or mount without it');
}

/** --nonempty or -o nonempty, known before the mount point is checked. */
export function wantsNonempty(a: MountFlagArgs): boolean {
  return !!a.nonempty || optionList(a).includes('nonempty');
}

/** Every -o option, in order (-o given once or repeated, each comma-separated). */
function optionList(a: MountFlagArgs): string[] {
  const given = a.o === undefined ? [] : Array.isArray(a.o) ? a.o : [a.o];
  return given.flatMap((o) => String(o).split(',')).map((o) => o.trim()).filter(Boolean);
}
