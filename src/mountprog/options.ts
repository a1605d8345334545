// The command line of tarstack-overlay, fuse-overlayfs's calling convention: `-o OPTS MOUNTPOINT`, or
// `SOURCE MOUNTPOINT -o OPTS` as mount.fuse passes it. Every option is supported, accepted and ignored
// (generic mount options, tuning knobs of fuse-overlayfs's own threads), or refused by name with why.

import { DEFAULT_MOUNT_FLAGS, KERNEL_MOUNT_FLAGS, unpassableFlag } from '../store/mount-flags.js';
import { UserError } from '../util/errors.js';

/** A mistake in the command line or its paths: exit status 2, as mount programs use for usage errors. */
export class UsageError extends UserError {
  constructor(message: string) {
    super(message, 2);
  }
}

export interface MountRequest {
  /** Top first, as overlayfs lists them: directories or tar files. */
  lowers: string[];
  upper?: string;
  work?: string;
  mountpoint: string;
  source?: string;
  readOnly: boolean;
  allowOther: boolean;
  /** Overlay xattrs written: user.overlay.* (`userxattr`, or not root) or trusted.overlay.*. */
  userXattr: boolean;
  squash: { uid?: number; gid?: number };
  /** Stay in the foreground (-f, -d, debug). */
  foreground: boolean;
  debug: boolean;
  /** Mount flags passed on to the kernel through libfuse (suid, nodev, noexec, noatime, ...). */
  flags: string[];
  /** Accepted options that change nothing here, for --verbose reporting. */
  ignored: string[];
}

/** Generic mount flags libfuse hands to mount(2), as `tarstack mount -o` takes them (ro and rw are the overlay's own). */
const MOUNT_FLAGS = new Set([...KERNEL_MOUNT_FLAGS].filter((f) => f !== 'ro' && f !== 'rw'));
/** Options with an effect here. */
const SUPPORTED = ['lowerdir=', 'upperdir=', 'workdir=', 'ro', 'rw', ...MOUNT_FLAGS, 'allow_other', 'allow_root', 'default_permissions', 'userxattr', 'redirect_dir=on|follow', 'squash_to_root', 'squash_to_uid=', 'squash_to_gid=', 'debug'];
/** Accepted and ignored: what mount(8), mount.fuse, fstab and systemd add, and knobs that do not apply. */
const IGNORED_FLAGS = new Set([
  ...DEFAULT_MOUNT_FLAGS, 'defaults', 'auto', 'noauto', 'user', 'nouser', 'users', 'owner',
  'group', '_netdev', 'nofail', 'mand', 'nomand', 'iversion', 'noiversion', 'loud', 'silent', 'nonempty', 'static_nlink', 'noacl', 'volatile',
]);
const IGNORED_VALUES = new Set(['fsname', 'subtype', 'comment', 'context', 'fscontext', 'defcontext', 'rootcontext', 'threaded', 'fast_ino', 'writeback', 'timeout', 'fsync', 'max_read', 'blksize', 'uuid', 'xino', 'helper']);
/** Refused, each with the reason. */
const REFUSED: Record<string, (v: string | undefined) => string | undefined> = {
  uidmapping: () => 'uid mapping is not implemented: run the mount in a user namespace instead',
  gidmapping: () => 'gid mapping is not implemented: run the mount in a user namespace instead',
  plugins: () => 'lower-layer plugins are not supported (a tar file can be a lower directly)',
  noxattrs: (v) => (v === '0' ? undefined : 'xattrs cannot be turned off'),
  xattr_permissions: (v) => (v === '0' ? undefined : 'xattr permission emulation is not implemented'),
  redirect_dir: (v) => (v === 'on' || v === 'follow' ? undefined : 'directory renames always write a redirect (redirect_dir=on); off/nofollow would need a subtree copy'),
  index: (v) => (v === 'off' ? undefined : 'the hard-link index is not written in a standard upper (index=off)'),
  metacopy: (v) => (v === 'off' ? undefined : 'copy-up copies data and metadata together (metacopy=off)'),
  nfs_export: (v) => (v === 'off' ? undefined : 'NFS export is not supported'),
  remount: () => 'remount is not supported: unmount and mount again (the upper is kept)',
  bind: () => 'bind is not an overlay option',
};

export function supportedText(): string {
  return `supported: ${SUPPORTED.join(', ')}; accepted and ignored: generic mount options (${[...IGNORED_FLAGS].slice(0, 14).join(', ')}, …, x-*), ${[...IGNORED_VALUES].map((v) => v + '=').join(', ')}; refused: ${Object.keys(REFUSED).join(', ')}`;
}

/** Split on `sep` where it is not escaped by a backslash; escapes stay for the next stage. */
function splitEscaped(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\' && i + 1 < s.length) {
      cur += c + s[++i];
    } else if (c === sep) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

const unescape = (s: string): string => s.replace(/\\(.)/g, '$1');

/** `lowerdir=A:B\:C` → ['A', 'B:C'] (overlayfs escapes a colon in a path with a backslash). */
export function splitLowerdir(v: string): string[] {
  return splitEscaped(v, ':').map(unescape);
}

function intOpt(name: string, v: string | undefined): number {
  if (v === undefined || !/^\d+$/.test(v)) throw new UsageError(`${name} needs a number (${name}=N)`);
  return Number(v);
}

export function parseArgs(argv: string[]): MountRequest | 'help' | 'version' {
  const opts: string[] = [];
  const positional: string[] = [];
  let foreground = false;
  let debug = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-o') {
      if (i + 1 >= argv.length) throw new UsageError('-o needs a list of options');
      opts.push(...splitEscaped(argv[++i], ','));
    } else if (a.startsWith('-o')) opts.push(...splitEscaped(a.slice(2), ','));
    else if (a === '-f') foreground = true;
    else if (a === '-d') foreground = debug = true;
    else if (a === '-h' || a === '--help') return 'help';
    else if (a === '-V' || a === '--version') return 'version';
    else if (a === '--') positional.push(...argv.slice(i + 1)), (i = argv.length);
    else if (a.startsWith('-') && a.length > 1) throw new UsageError(`unknown flag ${a} (flags: -o OPTIONS, -f, -d, -h, -V)`);
    else positional.push(a);
  }
  if (positional.length === 0) throw new UsageError('no mount point given (usage: tarstack-overlay -o lowerdir=A:B,upperdir=U,workdir=W MOUNTPOINT)');
  if (positional.length > 2) throw new UsageError(`too many arguments: ${positional.join(' ')} (give [SOURCE] MOUNTPOINT)`);
  const req: MountRequest = {
    lowers: [],
    mountpoint: positional[positional.length - 1],
    source: positional.length === 2 ? positional[0] : undefined,
    readOnly: false,
    allowOther: process.getuid?.() === 0, // container processes run as other uids (fuse-overlayfs does the same as root)
    userXattr: process.getuid?.() !== 0,
    squash: {},
    foreground,
    debug,
    // The kernel checks permissions (the overlay does not), and root gets suid/dev as with fuse-overlayfs.
    flags: process.getuid?.() === 0 ? ['default_permissions', 'suid', 'dev'] : ['default_permissions'],
    ignored: [],
  };
  for (const raw of opts) {
    if (raw === '') continue;
    const eq = raw.indexOf('=');
    const key = eq < 0 ? raw : raw.slice(0, eq);
    const value = eq < 0 ? undefined : unescape(raw.slice(eq + 1));
    const refusal = REFUSED[key]?.(value) ?? (value === undefined ? unpassableFlag(key) : undefined);
    if (refusal) throw new UsageError(`option ${key}${value !== undefined ? '=' + value : ''} is not supported: ${refusal}\n${supportedText()}`);
    if (key in REFUSED) {
      req.ignored.push(raw);
      continue;
    }
    switch (key) {
      case 'lowerdir':
        // Kernel overlayfs also takes `lowerdir+=` one at a time; both append in order.
        req.lowers.push(...splitLowerdir(raw.slice(eq + 1)).filter((x) => x !== ''));
        break;
      case 'lowerdir+':
        req.lowers.push(unescape(raw.slice(eq + 1)));
        break;
      case 'upperdir':
        req.upper = value;
        break;
      case 'workdir':
        req.work = value;
        break;
      case 'ro':
        req.readOnly = true;
        break;
      case 'rw':
        req.readOnly = false;
        break;
      case 'allow_other':
      case 'allow_root':
      case 'default_permissions':
        req.allowOther = true;
        break;
      case 'userxattr':
        req.userXattr = true;
        break;
      case 'squash_to_root':
        req.squash = { uid: 0, gid: 0 };
        break;
      case 'squash_to_uid':
        req.squash.uid = intOpt(key, value);
        break;
      case 'squash_to_gid':
        req.squash.gid = intOpt(key, value);
        break;
      case 'debug':
        req.debug = req.foreground = true;
        break;
      default:
        if (value === undefined && MOUNT_FLAGS.has(key)) {
          req.flags.push(key);
          break;
        }
        if ((value === undefined && IGNORED_FLAGS.has(key)) || (value !== undefined && IGNORED_VALUES.has(key)) || key.startsWith('x-')) {
          req.ignored.push(raw);
          break;
        }
        throw new UsageError(`unknown option ${raw}\n${supportedText()}`);
    }
  }
  if (req.lowers.length === 0) throw new UsageError(`no lowerdir given (-o lowerdir=A:B:C, leftmost on top)\n${supportedText()}`);
  if ((req.upper === undefined) !== (req.work === undefined)) throw new UsageError('upperdir and workdir go together: give both, or neither for a read-only mount');
  if (req.upper === undefined) req.readOnly = true;
  return req;
}
