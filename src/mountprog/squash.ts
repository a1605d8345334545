// squash_to_uid / squash_to_gid / squash_to_root (fuse-overlayfs's options): every entry is shown as
// owned by the given ids; what is stored is unchanged. A wrapper, so the overlay itself knows nothing.
import type { Attr, FileSystem } from '../vfs/api.js';

type Squash = { uid?: number; gid?: number };

/** Methods whose result carries attributes: an Attr, an Entry ({ attr }), or a CreateReply ({ entry }). */
const WITH_ATTRS = new Set(['lookup', 'getattr', 'setattr', 'mknod', 'mkdir', 'symlink', 'link', 'create']);

export function squashOwners<T extends FileSystem>(fs: T, squash: Squash): T {
  if (squash.uid === undefined && squash.gid === undefined) return fs;
  const fix = (a: Attr): void => {
    if (squash.uid !== undefined) a.uid = squash.uid;
    if (squash.gid !== undefined) a.gid = squash.gid;
  };
  const patch = (r: unknown): unknown => {
    const o = r as { attr?: Attr; entry?: { attr: Attr }; uid?: number };
    if (o?.entry) fix(o.entry.attr);
    else if (o?.attr) fix(o.attr);
    else if (o && typeof o.uid === 'number') fix(o as Attr);
    return r;
  };
  return new Proxy(fs, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      if (!WITH_ATTRS.has(String(prop))) return (v as (...a: unknown[]) => unknown).bind(target);
      return (...args: unknown[]) => {
        const r = (v as (...a: unknown[]) => unknown).apply(target, args);
        return r instanceof Promise ? r.then(patch) : patch(r);
      };
    },
  });
}
