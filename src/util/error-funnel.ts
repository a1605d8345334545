// The one error funnel of tarstack's programs (tarstack, tarstack-overlay): an error that reaches a
// program's top becomes one line, `PROGRAM: message`, on stderr and a non-zero exit; a stack trace
// only when asked for (--verbose, TARSTACK_DEBUG), never for a user's mistake.
import { UserError } from './errors.js';

export interface ErrorFunnel {
  /** Print `PROGRAM: message` (and the stack when verbose) and exit with `code`. */
  fail(message: string, code: number, stack?: string): never;
  /** Any thrown value: a UserError as its message and exit code; a system call's error as `syscall path: CODE`; anything else as `unexpected` says. */
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
    if (e?.code && e.syscall) return fail(`${e.syscall} ${e.path ?? ''}: ${e.code}`.replace(' :', ':'), 1, e.stack);
    const message = e?.message ?? String(err);
    if (opts.unexpected === 'message') return fail(message, 1, e?.stack);
    return fail(`internal error: ${message} (run with --verbose for details)`, 70, e?.stack);
  };
  return { fail, report };
}
