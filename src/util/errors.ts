// The two error kinds of tarstack. FsError carries an errno name inside the filesystem and is
// turned into a reply in exactly one place (src/fuse); UserError carries a one-line message for
// the CLI's error funnel, printed as `tarstack: <message>` with a non-zero exit.
import { constants } from 'node:os';

export type ErrnoName = keyof typeof constants.errno;

/**
 * An errno as a thrown value. It carries no stack trace: it is the FileSystem contract's answer
 * (ENOENT for a lookup of a name being created, ENODATA for the kernel's security.capability
 * question before each first write), thrown on every request of that kind, and capturing the
 * frames cost ~5 µs of CPU a throw against ~0.8 without (issue 17). Unexpected failures are other
 * Errors and keep theirs.
 */
export class FsError extends Error {
  readonly code: ErrnoName;
  readonly errno: number;
  constructor(code: ErrnoName, message?: string) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      super(message ?? code);
    } finally {
      Error.stackTraceLimit = limit;
    }
    this.code = code;
    this.errno = constants.errno[code];
  }
}

/** Shorthand used on hot paths: `throw fsError('ENOENT')`. */
export function fsError(code: ErrnoName, message?: string): FsError {
  return new FsError(code, message);
}

/** A positive errno for any thrown value: FsError and Node system errors keep theirs, anything else is EIO. */
export function errnoOf(err: unknown): number {
  if (err instanceof FsError) return err.errno;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code === 'string' && code in constants.errno) return constants.errno[code as ErrnoName];
  return constants.errno.EIO;
}

export class UserError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.exitCode = exitCode;
  }
}
