// The one error funnel of tarstack's programs (tarstack, tarstack-overlay): an error that reaches a
// program's top becomes one line, `PROGRAM: message`, on stderr and a non-zero exit; a stack trace
// only when asked for (--verbose, TARSTACK_DEBUG), never for a user's mistake. A failed system call
// is said in words, with the file it was about: `cannot write /x/index: no space left on device (ENOSPC)`.
import { getSystemErrorMap } from 'node:util';
import { UserError } from './errors.js';

export interface ErrorFunnel {
  /** Print `PROGRAM: message` (and the stack when verbose) and exit with `code`. */
  fail(message: string, code: number, stack?: string): never;
  /** Any thrown value: a UserError as its message and exit code; a system call's error in words (systemErrorText); anything else as `unexpected` says. */
  report(err: unknown): never;
}

export interface FunnelOptions {
  verbose: boolean;
  /**
   * What an error that is neither a UserError nor a failed system call says: 'internal' (tarstack:
   * a bug, exit 70, with a hint to rerun with --verbose) or 'message' (a mount program, whose callers
   * (mount, podman) show its one line: the error's message, exit 1).
   */
  unexpected: 'internal' | 'message';
}

export function errorFunnel(program: string, opts: FunnelOptions): ErrorFunnel {
  const fail = (message: string, code: number, stack?: string): never => {
    process.stderr.write(`${program}: ${message}\n`);
    if (opts.verbose && stack) process.stderr.write(stack + '\n');
    process.exit(code);
  };
  const report = (err: unknown): never => {
    if (err instanceof UserError) return fail(err.message, err.exitCode, err.stack);
    const e = err as NodeJS.ErrnoException;
    if (isSystemError(e)) return fail(systemErrorText(e), 1, e.stack);
    const message = e?.message ?? String(err);
    if (opts.unexpected === 'message') return fail(message, 1, e?.stack);
    return fail(`internal error: ${message} (run with --verbose for details)`, 70, e?.stack);
  };
  return { fail, report };
}

type SystemError = NodeJS.ErrnoException & { code: string; syscall: string; dest?: string };

function isSystemError(e: NodeJS.ErrnoException | undefined): e is SystemError {
  return typeof e?.code === 'string' && typeof e.syscall === 'string';
}

/** What each system call was doing, as "cannot …" says it; others by their own name. */
const DOING: Record<string, string> = {
  open: 'open',
  read: 'read',
  write: 'write',
  writev: 'write',
  pwrite: 'write',
  fsync: 'write',
  fdatasync: 'write',
  ftruncate: 'write',
  close: 'write',
  fallocate: 'write',
  copyfile: 'copy',
  rename: 'rename',
  link: 'link',
  symlink: 'make the symlink',
  mkdir: 'make the directory',
  mkdtemp: 'make a directory in',
  rmdir: 'remove',
  rm: 'remove',
  unlink: 'remove',
  scandir: 'list',
  opendir: 'list',
  stat: 'look at',
  lstat: 'look at',
  fstat: 'look at',
  access: 'look at',
  realpath: 'look at',
  readlink: 'read the symlink',
  chmod: 'change the mode of',
  chown: 'change the owner of',
  lchown: 'change the owner of',
  utime: 'change the times of',
  lutime: 'change the times of',
  futime: 'change the times of',
  spawn: 'run',
};

/** Words for the errors people meet (strerror's, where libuv's differ or lack one). */
const WORDS: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOENT: 'no such file or directory',
  EEXIST: 'file exists',
  EISDIR: 'is a directory',
  EIO: 'input/output error',
  EBUSY: 'device or resource busy',
  ENOTCONN: 'transport endpoint is not connected (a FUSE mount whose server is gone?)',
  EXDEV: 'invalid cross-device link',
  ESTALE: 'stale file handle',
  EOPNOTSUPP: 'operation not supported',
  ENOTSUP: 'operation not supported',
};

function words(code: string): string {
  if (WORDS[code]) return WORDS[code];
  for (const [, [name, text]] of getSystemErrorMap()) if (name === code) return text;
  return code;
}

/** `cannot write /x: no space left on device (ENOSPC)`; two paths for copy, rename and link. */
export function systemErrorText(e: SystemError): string {
  const syscall = e.syscall.split(' ')[0]; // spawn's is "spawn PROGRAM"
  const what = syscall === 'spawn' ? e.syscall.slice(6) || e.path : e.path;
  const doing = DOING[syscall] ?? syscall;
  const target = what ? ` ${what}${e.dest ? ` to ${e.dest}` : ''}` : '';
  return `cannot ${doing}${target}: ${words(e.code)} (${e.code})`;
}

/** The calls on a descriptor that write: their errors name no file. */
const WRITES = new Set(['write', 'writev', 'pwrite', 'fsync', 'fdatasync', 'ftruncate', 'close', 'fallocate']);

/**
 * `work` writes `file` through a descriptor, whose calls fail without naming a file (`write:
 * ENOSPC`); such an error is given `file`, so the funnel can say which file could not be written.
 */
export function writingTo<T>(file: string, work: () => T): T {
  const rethrow = (err: unknown): never => {
    throw namedWriteError(err, file);
  };
  try {
    const result = work();
    return (result instanceof Promise ? result.catch(rethrow) : result) as T;
  } catch (err) {
    return rethrow(err);
  }
}

/** The error itself, given `file` when it is a write on a descriptor (see writingTo). */
export function namedWriteError(err: unknown, file: string): unknown {
  const e = err as NodeJS.ErrnoException;
  if (isSystemError(e) && e.path === undefined && WRITES.has(e.syscall)) e.path = file;
  return err;
}
