// The throwaway upper of a `--tmp` mount (or of an instance made with `create --tmp`): a copy of the
// instance's upper and hard-link index under instances/<id>/tmp-sessions/<mount>/, served instead
// of the real one and removed when the daemon ends, so changes vanish at unmount and the instance's
// own upper is never written. One cp run keeps the links between upper and index; --reflink makes
// the copy cheap where the filesystem can share blocks. A daemon killed -9 leaves its session,
// which the next mount removes (it holds the instance lock, so nothing else can be using it).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { InstanceRecord, Instances } from '../store/instances.js';
import { UserError } from '../util/errors.js';

export interface TmpUpper {
  upper: string;
  work: string;
  dispose(): void;
}

export function prepareTmpUpper(instances: Instances, inst: InstanceRecord, mountId: string): TmpUpper {
  const sessions = instances.tmpSessions(inst);
  rmSync(sessions, { recursive: true, force: true });
  const root = join(sessions, mountId);
  const work = join(root, 'work');
  mkdirSync(work, { recursive: true, mode: 0o700 });
  const dispose = (): void => rmSync(sessions, { recursive: true, force: true });
  const index = join(instances.work(inst), 'index');
  const sources = [instances.upper(inst), ...(existsSync(index) ? [index] : [])];
  const cp = spawnSync('cp', ['-a', '--reflink=auto', '--sparse=always', ...sources, root], { encoding: 'utf8' });
  if (cp.status !== 0) {
    dispose();
    throw new UserError(`cannot make the throwaway copy of instance "${inst.name}": ${(cp.stderr || cp.error?.message || 'cp failed').trim()}`);
  }
  if (sources.length > 1) renameSync(join(root, 'index'), join(work, 'index'));
  return { upper: join(root, 'upper'), work, dispose };
}
