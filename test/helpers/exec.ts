// Running host tools (GNU tar, bsdtar, getfattr, mount) from test helpers: synchronous, with the
// raw stdout bytes kept (names may be invalid UTF-8) and a thrown error that shows the command.
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';

export interface ExecResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/** Runs argv[0] with argv[1..]; never throws for a non-zero exit (callers decide what it means). */
export function exec(argv: string[], opts: SpawnSyncOptions = {}): ExecResult {
  const r = spawnSync(argv[0]!, argv.slice(1), {
    maxBuffer: 256 * 1024 * 1024, // no time limit: a busy machine is no reason to fail; ava's timeout ends a hang
    ...opts,
    env: { ...process.env, LC_ALL: 'C', ...opts.env },
  });
  if (r.error) throw new Error(`${argv.join(' ')}: ${r.error.message}`);
  return {
    code: r.status ?? 128 + 9,
    stdout: Buffer.isBuffer(r.stdout) ? r.stdout : Buffer.from(r.stdout ?? ''),
    stderr: Buffer.isBuffer(r.stderr) ? r.stderr.toString('latin1') : String(r.stderr ?? ''),
  };
}

/** Runs a command that must succeed (exit 0); its stderr is allowed (GNU tar warns on odd times). */
export function execOk(argv: string[], opts: SpawnSyncOptions = {}): ExecResult {
  const r = exec(argv, opts);
  if (r.code !== 0) throw new Error(`${argv.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r;
}
