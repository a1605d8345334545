// `create --dir`: directories made in a new instance through InstanceFs itself, so they follow the
// overlay's rules exactly as if made through a mount.
import type { Context } from '../context.js';
import type { InstanceRecord } from '../../store/instances.js';
import { openStack } from '../../store/open-image.js';
import { InstanceFs } from '../../overlay/instance-fs.js';
import { ROOT_INO } from '../../vfs/api.js';
import { UserError } from '../../util/errors.js';
import { S_IFDIR, S_IFMT } from '../../vfs/mode.js';

/**
 * `create --dir PATH…` (Apptainer's --create-dir): directories made in the new instance's upper,
 * through the overlay's own rules (parents copied up, opaque over deleted lower directories), owned
 * by the calling user; one the image already has is given to that user.
 */
export async function createDirs(ctx: Context, r: InstanceRecord, paths: string[]): Promise<void> {
  const mask = process.umask(0); // a serving InstanceFs runs with umask 0 (modes come masked); put ours back afterwards
  const fs = new InstanceFs(openStack(ctx.images, ctx.images.stack(ctx.images.byId(r.image))), ctx.instances.upper(r), ctx.instances.work(r));
  const caller = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, pid: process.pid };
  try {
    for (const p of paths) {
      const parts = p.split('/').filter((c) => c !== '' && c !== '.');
      if (parts.length === 0 || parts.includes('..')) throw new UserError(`--dir ${JSON.stringify(p)}: give a path inside the instance, without '..'`);
      let ino = ROOT_INO;
      for (const [i, name] of parts.map((c) => Buffer.from(c).toString('latin1')).entries()) {
        let e;
        try {
          e = fs.lookup(ino, name);
        } catch {
          e = fs.mkdir(ino, name, 0o755, caller);
        }
        if ((e.attr.mode & S_IFMT) !== S_IFDIR) throw new UserError(`--dir ${p}: ${parts.slice(0, i + 1).join('/')} exists and is not a directory`);
        if (i === parts.length - 1 && (e.attr.uid !== caller.uid || e.attr.gid !== caller.gid)) fs.setattr(e.ino, { uid: caller.uid, gid: caller.gid }, undefined, caller);
        ino = e.ino;
      }
    }
  } finally {
    process.umask(mask);
    fs.destroy();
  }
}
