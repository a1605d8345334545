// Mounts a FileSystem through tarstack's own libfuse3 binding: requests are read from /dev/fuse on
// Node's own loop and answered by native-translate.ts. Resolves once the kernel's INIT has been
// answered, i.e. once the mount serves.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Mounted, MountOptions } from './backend.js';
import * as ll from './lowlevel.js';
import { cachePolicy, Translator } from './native-translate.js';
import { setReadAhead } from './readahead.js';
import type { FileSystem } from '../vfs/api.js';
import { isWritable } from '../vfs/api.js';

export interface NativeMountOptions extends MountOptions {
  /** Tuning for benchmarks; the defaults are the measured best. */
  session?: ll.SessionConfig;
  /** Zero-message open/opendir for immutable read-only trees (default on where the kernel has it). */
  openless?: boolean;
  /** Readahead window in KiB set through sysfs when allowed (root); 0 leaves the kernel's 128. */
  readAheadKb?: number;
}

export interface NativeMounted extends Mounted {
  /** lazy: detach a busy mount (fusermount3 -u -z) instead of failing with EBUSY. */
  close(opts?: { lazy?: boolean }): Promise<void>;
  stats(): MountStats;
  /** Drop cached data (off >= 0) or only attributes (off < 0) of an inode; see lowlevel.ts for
   *  the one rule that keeps notifications from deadlocking. */
  invalidateInode(ino: number, off?: number, len?: number): Promise<number>;
  invalidateEntry(parent: number, name: string): Promise<number>;
}

/** What a mount's session did and which kernel features beyond libfuse 3.14 it uses (issue 17). */
export interface MountStats {
  requests: number;
  /** Requests by FUSE opcode (lowlevel.ts OP), while kext.c's hooks count them. */
  ops: number[];
  /** READs answered in C without calling the FileSystem (plain tar members, readDirect). */
  directReads: number;
  streamedReads: number;
  /** FUSE_PASSTHROUGH negotiated (root, kernel 6.9+, a writable mount). */
  passthrough: boolean;
  /** Opens answered with a backing file so far. */
  passthroughOpens: number;
  /** max_pages asked for (0: libfuse's 256; the kernel caps it at fs.fuse.max_pages_limit). */
  maxPages: number;
  /** FUSE_HANDLE_KILLPRIV_V2 negotiated: set-id bits are cleared by the translator. */
  killpriv: boolean;
  /** Set-id clearings the translator did for it. */
  killed: number;
  /** FUSE over io_uring in use (TARSTACK_URING=1, enable_uring Y). */
  uring: boolean;
  /** Requests taken from the ring, of `requests`. */
  uringRequests: number;
  /** Of their READs, those read by the ring itself (cold ranges; warm ones are copied in). */
  uringReads: number;
  /** Of those, read as one chain with their commit; and chains that broke (a short read: EIO). */
  uringLinked: number;
  uringBroken: number;
}

const CAP_NO_OPEN_SUPPORT = 1 << 17; // FUSE_CAP_* of fuse_common.h
const CAP_NO_OPENDIR_SUPPORT = 1 << 24;
const DEFAULT_READAHEAD_KB = 4096;
// Microseconds the request loop keeps reading after its last answer (TARSTACK_SPIN_US; 0 disables):
// 100 cut a create loop from ~470 to ~280 us a file and cold 4 KiB random reads from 175 to 60 us
// here; 200 and more were worse on this 2-vCPU machine.
const SPIN = Number(process.env.TARSTACK_SPIN_US ?? 100);
const DEFAULT_SESSION: ll.SessionConfig = { readdirplus: 1, nowait: 1, readThreads: 4, spinMicros: Number.isFinite(SPIN) ? SPIN : 0 };
// /dev/fuse through kext.c's hooks (TARSTACK_KERNEL_EXT=0: libfuse's own reads and writes, none of
// what follows): requests counted by opcode, and the INIT and open replies edited.
const KERNEL_EXT = process.env.TARSTACK_KERNEL_EXT === '0' ? 0 : 1;
// FUSE passthrough (TARSTACK_PASSTHROUGH=0 disables): only root may register backing files.
const PASSTHROUGH = process.env.TARSTACK_PASSTHROUGH !== '0' && process.getuid?.() === 0;
// Direct reads (TARSTACK_DIRECT_READS=0 disables): READs of a plain tar's members answered in C, not JS.
const DIRECT_READS = process.env.TARSTACK_DIRECT_READS !== '0';
// FUSE_HANDLE_KILLPRIV_V2 (TARSTACK_KILLPRIV=0 disables): the translator clears set-id bits itself.
const KILLPRIV = process.env.TARSTACK_KILLPRIV !== '0';
// FUSE over io_uring (TARSTACK_URING=1 asks; off by default, see native-bindings/README.md): used
// when the kernel offers it in INIT (enable_uring Y), else /dev/fuse as always.
const URING = process.env.TARSTACK_URING === '1' ? 1 : 0;

/**
 * Pages per request: TARSTACK_MAX_PAGES (capped at fs.fuse.max_pages_limit, as the kernel caps
 * it), else what fs.fuse.max_pages_limit allows up to 1024
 * (4 MiB requests; root may raise the limit with `sysctl fs.fuse.max_pages_limit=1024`), else
 * 0 when the limit is libfuse's 256 anyway.
 */
export function maxPagesWanted(): number {
  let limit = 256;
  try { limit = Number(readFileSync('/proc/sys/fs/fuse/max_pages_limit', 'latin1').trim()) || 256; } catch { /* an older kernel: 256 */ }
  const env = Number(process.env.TARSTACK_MAX_PAGES);
  // The kernel takes min(limit, asked): ask for (and so show) what it will use.
  if (process.env.TARSTACK_MAX_PAGES !== undefined && Number.isInteger(env) && env >= 0) return env === 0 ? 0 : Math.min(env, limit);
  return limit > 256 ? Math.min(limit, 1024) : 0;
}

/**
 * The process's worker pools (cold reads, notifications), shared by every mount it serves: their
 * threads and jobs, for status output and tests. Each mount is one mountNative() call; mounts share
 * these, the receive buffer and Node's thread, and one mount's end or stuck reads reach no other.
 */
export function nativePoolStats(): { reads: ll.PoolStats; notes: ll.PoolStats } {
  return ll.loadNative().poolStats();
}

/** libfuse option values: `,` separates options and `\` escapes. */
function escapeOpt(v: string): string {
  return v.replace(/[\\,]/g, (c) => '\\' + c);
}

export function mountArgs(o: MountOptions): string[] {
  const opts = [`fsname=${escapeOpt(o.fsname)}`];
  if (o.subtype) opts.push(`subtype=${escapeOpt(o.subtype)}`);
  if (o.readOnly) opts.push('ro');
  if (o.allowOther) opts.push('allow_other');
  if (o.allowOther || o.defaultPermissions) opts.push('default_permissions');
  if (process.getuid?.() !== 0) opts.push('nosuid', 'nodev');
  if (o.flags) opts.push(...o.flags.map(escapeOpt));
  const args = ['tarstack', '-o', opts.join(',')];
  if (o.debug) args.push('-d');
  return args;
}

function fusermountUnmount(mountpoint: string, lazy: boolean): Promise<void> {
  const args = ['-u', ...(lazy ? ['-z'] : []), '--', mountpoint];
  return new Promise((resolve, reject) => {
    execFile('fusermount3', args, (err, _stdout, stderr) => {
      if (err) reject(new Error(`fusermount3 ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve();
    });
  });
}

export async function mountNative(fs: FileSystem, opts: NativeMountOptions): Promise<NativeMounted> {
  const native = ll.loadNative();
  const tr = new Translator(fs, native, cachePolicy(fs.immutable));
  let ended = false;
  let finalRequests = 0;
  let markReady!: () => void;
  let failReady!: (err: Error) => void;
  const ready = new Promise<void>((resolve, reject) => ((markReady = resolve), (failReady = reject)));
  let markUnmounted!: () => void;
  const unmounted = new Promise<void>((resolve) => (markUnmounted = resolve));

  const destroyed = (): void => {
    let r: void | Promise<void> = undefined;
    try { r = fs.destroy(); } catch (e) { console.error('tarstack: destroy failed:', e); }
    Promise.resolve(r).catch((e: unknown) => console.error('tarstack: destroy failed:', e)).finally(markUnmounted);
  };
  const handlers: ll.Handlers = {
    ...tr.handlers,
    init: () => {
      const capable = native.sessionInfo(session).capable ?? 0;
      const both = CAP_NO_OPEN_SUPPORT | CAP_NO_OPENDIR_SUPPORT;
      if ((opts.openless ?? true) && fs.immutable && !fs.needsOpen && opts.readOnly && (capable & both) === both) tr.enableOpenless();
      if (DIRECT_READS) tr.enableDirectReads((ino, fd, pos, size) => native.readDirect(session, ino, fd, pos, size), (req, ino, st, pos, size, off) => native.readStreamed(req, ino, st, pos, size, off));
      if (native.sessionInfo(session).killpriv && isWritable(fs)) tr.kill.enable(fs, (ino) => void native.notifyInvalInode(session, ino, -1, 0));
      if (native.sessionInfo(session).passthrough) tr.enablePassthrough({ open: (fd) => native.backingOpen(session, fd), close: (id) => void native.backingClose(session, id) });
      markReady();
    },
    end: (errno, requests) => {
      ended = true;
      finalRequests = requests;
      if (errno !== 0) console.error(`tarstack: FUSE session for ${opts.mountpoint} ended with errno ${errno}`);
      failReady(new Error(`the FUSE session for ${opts.mountpoint} ended before it served`));
      tr.ended();
      destroyed();
    },
  };
  // A writable FileSystem keeps a node per inode the kernel holds: always-readdirplus would make
  // `ls -f` of a million-entry directory hold a million of them, so the kernel chooses (auto).
  const kernel: ll.SessionConfig = { kernelExt: KERNEL_EXT, maxPages: KERNEL_EXT ? maxPagesWanted() : 0, passthrough: KERNEL_EXT && PASSTHROUGH && !fs.immutable && !opts.readOnly ? 1 : 0, killpriv: KERNEL_EXT && KILLPRIV && !fs.immutable && !opts.readOnly ? 1 : 0, uring: KERNEL_EXT ? URING : 0 };
  const session = native.mount(opts.mountpoint, mountArgs(opts), handlers, { ...DEFAULT_SESSION, ...kernel, ...(fs.immutable ? {} : { readdirplus: 2 as const }), ...opts.session });
  // The kernel queues INIT before mount(2) returns, so it is read on this loop's next turn; the only
  // other outcome is the session ending (aborted, unmounted), which rejects `ready`. No timer: a busy
  // machine delays INIT, it never loses it.
  try {
    await ready;
  } catch (err) {
    native.unmount(session);
    throw err;
  }
  let last: ll.SessionInfo = native.sessionInfo(session);
  const stats = (): MountStats => {
    if (!ended) last = native.sessionInfo(session);
    return { requests: ended ? finalRequests : last.requests ?? 0, ops: last.ops ?? [], directReads: last.directReads ?? 0, streamedReads: last.streamedReads ?? 0, passthrough: !!last.passthrough, passthroughOpens: tr.passthroughOpens(), maxPages: last.maxPages ?? 0, killpriv: !!last.killpriv, killed: tr.kill.killed, uring: !!last.uring, uringRequests: last.uringRequests ?? 0, uringReads: last.uringReads ?? 0, uringLinked: last.uringLinked ?? 0, uringBroken: last.uringBroken ?? 0 };
  };
  const readAheadKb = opts.readAheadKb ?? DEFAULT_READAHEAD_KB;
  if (readAheadKb > 0) setReadAhead(opts.mountpoint, readAheadKb);

  return {
    unmounted,
    async close(o?: { lazy?: boolean }): Promise<void> {
      if (!ended) {
        try {
          await fusermountUnmount(opts.mountpoint, o?.lazy ?? false);
        } catch (err) {
          if (!ended) throw err; // still mounted (busy?): the caller decides
        }
      }
      await unmounted;
    },
    stats,
    features() {
      const s = stats();
      return [...(s.passthrough ? ['passthrough'] : []), ...(s.killpriv ? ['killpriv_v2'] : []), ...(s.uring ? ['io_uring'] : []), ...(s.maxPages > 0 ? [`max_pages=${s.maxPages}`] : [])];
    },
    invalidateInode(ino: number, off = 0, len = 0) {
      return ended ? Promise.resolve(0) : native.notifyInvalInode(session, ino, off, len);
    },
    invalidateEntry(parent: number, name: string) {
      return ended ? Promise.resolve(0) : native.notifyInvalEntry(session, parent, name);
    },
  };
}
