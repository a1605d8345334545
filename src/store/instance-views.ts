// An instance against its image, as `diff`, `commit` and `image close` read them: the image as a
// read-only overlay and the instance offline (its upper over the same stack, no mount); a fresh
// upper's root made to carry the image root's owner, mode, times and xattrs; and the layer that
// holds only an image's root (an open image's placeholder). `create` loads this module for the
// upper's root only: the instance side, diff, freeze and the tar writer load where they are used.
import { existsSync } from 'node:fs';
import type { Attr } from '../vfs/api.js';
import { ROOT_INO } from '../vfs/api.js';
import { Overlay } from '../overlay/overlay.js';
import type { InstanceFs } from '../overlay/instance-fs.js';
import type { Change } from '../overlay/diff.js';
import { prepareUpperRoot } from '../overlay/upper.js';
import type { FreezeResult } from '../image/freeze.js';
import type { ImageRecord } from './images.js';
import type { InstanceRecord } from './instances.js';
import { openStack } from './open-image.js';
import type { Store } from './store.js';

/**
 * Run `fn` on the instance's image (read-only) and the instance itself (offline: its upper and
 * work dir, or `changes` when they are elsewhere); both closed after.
 */
export async function withInstanceViews<T>(store: Store, r: InstanceRecord, fn: (image: Overlay, inst: InstanceFs) => Promise<T>, changes = ownChanges(store, r)): Promise<T> {
  const { InstanceFs } = await import('../overlay/instance-fs.js');
  const stack = store.images.stack(store.images.byId(r.image));
  const image = new Overlay(openStack(store.images, stack));
  try {
    const inst = new InstanceFs(openStack(store.images, stack), changes.upper, changes.work, { offline: true });
    try {
      return await fn(image, inst);
    } finally {
      inst.destroy();
    }
  } finally {
    image.destroy();
  }
}

const ownChanges = (store: Store, r: InstanceRecord) => ({ upper: store.instances.upper(r), work: store.instances.work(r) });

/** Where the instance's changes are now: a `--tmp` mount keeps them in its throwaway copy until it ends. */
function currentChanges(store: Store, r: InstanceRecord): { upper: string; work: string } {
  const live = store.mounts.list().find((m) => m.kind === 'instance' && m.target === r.id && m.state === 'serving' && !m.detached);
  const session = live && store.instances.tmpSession(r, live.id);
  return session && existsSync(session.upper) ? session : ownChanges(store, r);
}

/** What changed in the instance against its image (while a `--tmp` mount serves it: what that mount changed). */
export async function diffInstance(store: Store, r: InstanceRecord): Promise<Change[]> {
  const { diffTrees } = await import('../overlay/diff.js');
  return withInstanceViews(store, r, (image, inst) => diffTrees(image, inst), currentChanges(store, r));
}

/** The instance's changes against its image written as one layer tar (the caller holds the instance's lock). */
export async function freezeInstance(store: Store, r: InstanceRecord, tar: string): Promise<FreezeResult> {
  const { freezeChanges } = await import('../image/freeze.js');
  return withInstanceViews(store, r, (image, inst) => freezeChanges(image, inst, tar));
}

/** Prepares a fresh upper whose root carries the image root's owner, mode, times and xattrs. */
export function upperPreparer(store: Store, imageId: string): (upper: string) => void {
  return (upper) => {
    const fs = new Overlay(openStack(store.images, store.images.stack(store.images.byId(imageId))));
    try {
      const a = fs.getattr(ROOT_INO);
      prepareUpperRoot(upper, a, fs.listxattr(ROOT_INO).map((name) => [name, fs.getxattr(ROOT_INO, name)]));
    } finally {
      fs.destroy();
    }
  };
}

/** A layer holding only the root directory, with the parent's root metadata (so it changes nothing) or a fresh one's. */
export async function writeRootLayer(store: Store, parent: ImageRecord | null, tar: string): Promise<void> {
  const [{ LayerWriter }, { xattrsOf }] = await Promise.all([import('../image/layer-writer.js'), import('../image/fs-read.js')]);
  let attr: Attr;
  let xattrs: Array<[string, Buffer]> = [];
  if (parent) {
    const fs = new Overlay(openStack(store.images, store.images.stack(parent)));
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
