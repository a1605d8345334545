// Does a mount serve the shape's tree? File count, directory count and total size from one
// `find`, plus the sha256 of the manifest's sample ranges. A peer that fails gets no ratio.
import { fileURLToPath } from 'node:url';
import type { Shape } from './data.js';
import { run } from './sys.js';
import type { UserIds } from '../test/helpers/ordinary-user.js';

export const WORK_JS = fileURLToPath(new URL('./work.js', import.meta.url));

/** Runs a work.js job; returns its JSON line, or throws with what went wrong. */
export async function workJob<T>(args: string[], timeoutS: number, env?: NodeJS.ProcessEnv, as?: UserIds): Promise<T> {
  const r = await run(process.execPath, [WORK_JS, ...args], { timeoutS, env: { ...process.env, ...env }, as });
  if (r.timedOut) throw new Error(`timed out after ${timeoutS} s`);
  if (r.code !== 0) throw new Error(`work.js ${args[0]}: exit ${r.code}: ${r.stderr.trim().slice(-500)}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as T;
}

/** undefined when root serves shape's tree (seen as `as`), else a short description of the difference. */
export async function wrongTree(root: string, shape: Shape, timeoutS: number, as?: UserIds): Promise<string | undefined> {
  const m = shape.manifest;
  const r = await run('find', [root, '-mindepth', '1', '-printf', '%y %s\n'], { timeoutS, as });
  if (r.timedOut) return `find timed out after ${timeoutS} s`;
  let files = 0, dirs = 0, other = 0, bytes = 0;
  for (const line of r.stdout.split('\n')) {
    if (line === '') continue;
    if (line[0] === 'f') {
      files++;
      bytes += Number(line.slice(2));
    } else if (line[0] === 'd') dirs++;
    else other++;
  }
  const diffs: string[] = [];
  if (r.code !== 0) diffs.push(`find: ${r.stderr.trim().split('\n')[0]}`);
  if (files !== m.files) diffs.push(`${files} files, expected ${m.files}`);
  if (dirs !== m.dirs) diffs.push(`${dirs} dirs, expected ${m.dirs}`);
  if (other !== 0) diffs.push(`${other} entries neither file nor dir`);
  if (bytes !== m.totalBytes) diffs.push(`${bytes} bytes, expected ${m.totalBytes}`);
  if (diffs.length > 0) return diffs.join('; ');
  let hashes: string[];
  try {
    hashes = await workJob<string[]>(['hash', root, JSON.stringify(m.samples)], timeoutS, undefined, as);
  } catch (e) {
    return `sample checksums: ${(e as Error).message}`;
  }
  const bad = m.samples.filter((s, i) => hashes[i] !== s.sha256);
  return bad.length === 0 ? undefined : `${bad.length} of ${m.samples.length} sample checksums differ (e.g. ${bad[0]!.path} @${bad[0]!.offset})`;
}
