// The throwaway upper of a `--tmp` mount (or of an instance made with `create --tmp`): a copy of the
// instance's upper and hard-link index under instances/<id>/tmp-sessions/<mount>/, served instead
// of the real one and removed when the mount ends, so changes vanish at unmount and the instance's
// own upper is never written. One cp run keeps the links between upper and index; --reflink makes
// the copy cheap where the filesystem can share blocks. Copy and removal run off Node's thread: in
// the server, other mounts are answered meanwhile. A server killed -9 leaves its session, which
// the next mount removes (it holds the instance lock, so nothing else can be using it).
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { InstanceRecord, Instances } from '../store/instances.js';
import { UserError } from '../util/errors.js';

export interface TmpUpper {
  upper: string;
  work: string;
  dispose(): Promise<void>;
}

export async function prepareTmpUpper(instances: Instances, inst: InstanceRecord, mountId: string): Promise<TmpUpper> {
  const sessions = instances.tmpSessions(inst);
  const dispose = (): Promise<void> => rm(sessions, { recursive: true, force: true });
  await dispose();
  const root = join(sessions, mountId);
  const work = join(root, 'work');
  mkdirSync(work, { recursive: true, mode: 0o700 });
  const index = join(instances.work(inst), 'index');
  const sources = [instances.upper(inst), ...(existsSync(index) ? [index] : [])];
  const failed = await new Promise<string | undefined>((resolve) =>
    execFile('cp', ['-a', '--reflink=auto', '--sparse=always', ...sources, root], { encoding: 'utf8' }, (err, _out, stderr) =>
      resolve(err ? (stderr || err.message || 'cp failed').trim() : undefined),
    ),
  );
  if (failed !== undefined) {
    await dispose();
    throw new UserError(`cannot make the throwaway copy of instance "${inst.name}": ${failed}`);
  }
  if (sources.length > 1) renameSync(join(root, 'index'), join(work, 'index'));
  return { upper: join(root, 'upper'), work, dispose };
}
