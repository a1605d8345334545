// Instances through the CLI for the instance suites: whether this build has them at all (so the
// suites skip with one message until it does), and a session that creates, mounts and diffs them.
import type { ExecutionContext } from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CLI_MAIN, cliAvailable, tarstackCli, TarstackSession, type CliResult } from './mount.js';
import { strayMounts } from './mounted.js';

/** Why the instance suites cannot run here, or undefined when they can. `tarstack instance --help`
 *  must exit 0 and list `create`: yargs answers an unknown command's --help with the top-level
 *  help and exit 0, so the exit status alone cannot tell. */
export async function instanceSkipReason(): Promise<string | undefined> {
  if (!cliAvailable()) return `the tarstack CLI is not built (${CLI_MAIN} is missing)`;
  if (process.getuid?.() !== 0) return 'needs root (owners, trusted.* xattrs, kernel overlayfs as the reference)';
  if (!fs.existsSync('/dev/fuse')) return 'needs /dev/fuse';
  return instancesProbe();
}

/**
 * The CLI half of the probe, run once per build of the CLI: a yargs --help is ~0.4 s of CPU and 25
 * suites ask. Its answer is kept in the temp dir under a name made of the CLI's path, then its
 * files and their mtimes, so a rebuild asks again; the answer for an earlier build of the same
 * checkout is removed then, so one file per checkout is kept.
 */
async function instancesProbe(): Promise<string | undefined> {
  const cliDir = path.dirname(CLI_MAIN);
  const key = crypto.createHash('sha256');
  for (const f of fs.readdirSync(cliDir).filter((n) => n.endsWith('.js')).sort()) key.update(`${f}\0${fs.statSync(path.join(cliDir, f)).mtimeMs}\0`);
  const prefix = `tarstack-test-instances-probe-${crypto.createHash('sha256').update(CLI_MAIN).digest('hex').slice(0, 12)}-`;
  const cached = path.join(os.tmpdir(), `${prefix}${key.digest('hex').slice(0, 12)}.json`);
  try {
    return (JSON.parse(fs.readFileSync(cached, 'utf8')) as { reason?: string }).reason;
  } catch {
    // not asked yet for this build
  }
  const home = fs.mkdtempSync('/tmp/tarstack-probe-');
  let reason: string | undefined;
  try {
    const r = await tarstackCli(['instance', '--help'], { env: { TARSTACK_HOME: home } });
    if (r.code !== 0 || !/\bcreate\b/.test(r.stdout)) reason = `this tarstack has no instances yet (\`tarstack instance --help\` exited ${r.code} without listing \`create\`)`;
  } finally {
    fs.rmSync(home, { recursive: true, force: true });
  }
  for (const old of fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith(prefix) && n.endsWith('.json'))) fs.rmSync(path.join(os.tmpdir(), old), { force: true });
  const tmp = `${cached}.${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(reason === undefined ? {} : { reason }));
  fs.renameSync(tmp, cached); // whole, for suites starting at the same time
  return reason;
}

/** The last stdout line: where a mount command says it mounted. */
export const lastLine = (r: CliResult) => r.stdout.trimEnd().split('\n').pop() ?? '';

export const stderrLines = (r: CliResult) => r.stderr.split('\n').filter((l) => l !== '');

/** A user mistake: non-zero exit, exactly one stderr line `tarstack: ...`, no stack trace. */
export function assertOneLineError(t: ExecutionContext, r: CliResult, what: string): void {
  t.not(r.code, 0, `${what}: exit code`);
  t.is(stderrLines(r).length, 1, `${what}: one stderr line, got:\n${r.stderr}`);
  t.regex(r.stderr, /^tarstack: \S/, what);
  t.notRegex(r.stderr, /^\s+at /m, `${what}: stack trace`);
}

/** A TarstackSession with instance verbs; its cleanup already unmounts anything under its root. */
export class InstanceSession extends TarstackSession {
  /** Runs a CLI command that must succeed; returns its result. */
  async ok(args: string[], opts: { checkPipes?: boolean } = {}): Promise<CliResult> {
    const r = await this.cli(args, opts);
    if (r.code !== 0) throw new Error(`tarstack ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
    return r;
  }

  async create(instance: string, image: string): Promise<void> {
    await this.ok(['instance', 'create', instance, image]);
  }

  /** `tarstack mount INSTANCE [DIR]`: must succeed, print the mount path last, return once serving.
   *  DIR defaults to root/mnt-INSTANCE (created); pass null for the CLI's default under the store. */
  async mountInstance(instance: string, dir: string | null = path.join(this.root, `mnt-${instance}`)): Promise<string> {
    if (dir) fs.mkdirSync(dir, { recursive: true });
    const r = await this.ok(['mount', instance, ...(dir ? [dir] : [])], { checkPipes: true });
    if (r.pipesHeld) throw new Error('the mount daemon kept the CLI\'s stdout/stderr open');
    const printed = lastLine(r);
    if (dir && printed !== dir) throw new Error(`mount printed ${JSON.stringify(printed)} last, not ${dir}`);
    if (!path.isAbsolute(printed) || !strayMounts(printed).length) throw new Error(`mount printed ${JSON.stringify(printed)} but nothing is mounted there`);
    return printed;
  }

  /** `tarstack umount ARG`, which must succeed and leave nothing mounted at dir. */
  async umountInstance(arg: string, dir: string): Promise<void> {
    await this.ok(['umount', arg]);
    if (strayMounts(dir).length) throw new Error(`umount ${arg} exited 0 but ${dir} is still mounted`);
  }

  /** Mounts, runs fn on the mount path, unmounts whatever happens (the session's cleanup forces). */
  async withInstance<T>(instance: string, fn: (dir: string) => Promise<T> | T, dir?: string | null): Promise<T> {
    const at = await this.mountInstance(instance, dir);
    let result: T;
    try {
      result = await fn(at);
    } catch (e) {
      await this.cli(['umount', at]).catch(() => undefined);
      throw e;
    }
    await this.umountInstance(at, at);
    return result;
  }
}
