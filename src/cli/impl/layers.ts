// Making image layers in the store: a staged image directory receives a tar written by tarstack
// (an instance's changes frozen, an imported blob, or the placeholder root of an image being
// edited), which is indexed there; the caller publishes it under the store lock. Layers made here
// are always copied into the store (`layer.tar`), never referenced in place.
import { join } from 'node:path';
import type { Context } from '../context.js';
import { progress } from '../output.js';
import { indexTarFile } from '../../tar/indexer.js';
import { writeIndex } from '../../tar/index-file.js';
import { TarFormatError } from '../../tar/scan.js';
import { INDEX_FILE, type ImageRecord } from '../../store/images.js';
import type { InstanceRecord } from '../../store/instances.js';
import { openStack } from '../../store/open-image.js';
import { tryLockInstance, unlockInstance } from '../../store/instance-lock.js';
import { Overlay } from '../../overlay/overlay.js';
import { InstanceFs } from '../../overlay/instance-fs.js';
import { ROOT_INO } from '../../vfs/api.js';
import type { Attr } from '../../vfs/api.js';
import { freezeChanges, type FreezeResult } from '../../image/freeze.js';
import { LayerWriter } from '../../image/layer-writer.js';
import { xattrsOf } from '../../image/fs-read.js';
import { UserError } from '../../util/errors.js';
import { holdersOf } from '../../util/proc.js';

export const LAYER_TAR = 'layer.tar';

export interface Staged {
  id: string;
  dir: string;
  tar: string;
}

/**
 * A staged image directory; `fill` writes its layer.tar. Discarded if anything fails. `replacing`:
 * the id of the image whose directory it will replace (else it becomes a new image).
 */
export async function stageLayer(ctx: Context, label: string, fill: (tar: string) => Promise<void>, replacing?: string): Promise<{ staged: Staged; layer: ImageRecord['layer'] }> {
  const s = ctx.images.stage();
  const staged = { ...s, tar: join(s.dir, LAYER_TAR) };
  try {
    await fill(staged.tar);
    return { staged, layer: indexStaged(ctx, staged, label, replacing ?? staged.id) };
  } catch (err) {
    ctx.images.discard(staged);
    throw err;
  }
}

/** Index the staged layer.tar and describe it as it will be once the directory is published. */
function indexStaged(ctx: Context, staged: Staged, label: string, finalId: string): ImageRecord['layer'] {
  const bar = progress(`indexing ${label}`);
  let result;
  try {
    result = indexTarFile(staged.tar, { onProgress: (done, total) => bar.update(done, total) });
  } catch (err) {
    if (err instanceof TarFormatError) throw new UserError(`${label}: ${err.message}`);
    throw err;
  } finally {
    bar.done();
  }
  writeIndex(join(staged.dir, INDEX_FILE), result.data);
  return {
    tar: join(ctx.paths.image(finalId), LAYER_TAR),
    copied: true,
    identity: result.data.source,
    nodes: result.data.nodeCount,
    members: result.data.members.count,
    warnings: result.data.warnings.length,
  };
}

/** A layer holding only the root directory, with the parent's root metadata (so it changes nothing) or a fresh one's. */
export async function writeRootLayer(ctx: Context, parent: ImageRecord | null, tar: string): Promise<void> {
  let attr: Attr;
  let xattrs: Array<[string, Buffer]> = [];
  if (parent) {
    const fs = new Overlay(openStack(ctx.images, ctx.images.stack(parent)));
    try {
      attr = fs.getattr(ROOT_INO);
      xattrs = await xattrsOf(fs, ROOT_INO);
    } finally {
      fs.destroy();
    }
  } else {
    const now = Date.now();
    const sec = Math.floor(now / 1000);
    const nsec = (now % 1000) * 1e6;
    attr = { ino: 1, mode: 0o40755, nlink: 2, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, rdev: 0, size: 0, blocks: 0, atimeSec: sec, atimeNsec: nsec, mtimeSec: sec, mtimeNsec: nsec, ctimeSec: sec, ctimeNsec: nsec };
  }
  const w = new LayerWriter(tar);
  try {
    await w.add({ path: '', attr, xattrs });
    await w.close();
  } catch (err) {
    w.abort();
    throw err;
  }
}

/**
 * Hold an instance's lock (refused while it is mounted, naming who uses the mount) while `fn` runs.
 * Not under the store lock: freezing a big instance takes a while.
 */
export async function holdingInstance<T>(ctx: Context, r: InstanceRecord, what: string, fn: () => Promise<T>): Promise<T> {
  const fd = tryLockInstance(ctx.instances.work(r));
  if (fd === undefined) {
    const m = ctx.mounts.list().find((x) => x.kind === 'instance' && x.target === r.id);
    const users = m ? holdersOf(m.mountpoint, [m.pid, process.pid]) : [];
    const busy = users.length ? `, in use by ${users.map((h) => `pid ${h.pid} (${h.command})`).join(', ')}` : '';
    throw new UserError(`cannot ${what} instance "${r.name}": it is mounted${m ? ` at ${m.mountpoint} (daemon pid ${m.pid})` : ''}${busy}; unmount it first`);
  }
  try {
    return await fn();
  } finally {
    unlockInstance(fd);
  }
}

/** Write an instance's changes against its image as one layer tar (the instance lock is held by the caller). */
export async function freezeInstance(ctx: Context, r: InstanceRecord, tar: string): Promise<FreezeResult> {
  const image = ctx.images.byId(r.image);
  const stack = ctx.images.stack(image);
  const before = new Overlay(openStack(ctx.images, stack));
  const after = new InstanceFs(openStack(ctx.images, stack), ctx.instances.upper(r), ctx.instances.work(r), { offline: true });
  try {
    return await freezeChanges(before, after, tar);
  } finally {
    before.destroy();
    after.destroy();
  }
}
