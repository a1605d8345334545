// What one tarstack-overlay mount serves: each lower opened as a DirLayer (a directory) or a TarLayer
// (a tar, indexed at mount), under a writable InstanceFs that writes a standard overlay upper (whole
// files, kernel whiteouts, overlay xattrs, nothing tarstack-private), or a read-only Overlay.
import * as fs from 'node:fs';
import { join } from 'node:path';
import type { Layer } from '../layer/layer.js';
import { DirLayer } from '../layer/dir-layer.js';
import { indexTarFile } from '../tar/indexer.js';
import { openTarLayer, TarCheckError } from '../store/open-tar.js';
import type { FileSystem } from '../vfs/api.js';
import { loadSys } from '../native/sys.js';
import { tryLockInstance, unlockInstance } from '../store/instance-lock.js';
import type { UpperFormat } from '../overlay/upper.js';
import { squashOwners } from './squash.js';
import { UsageError, type MountRequest } from './options.js';
import { S_IFCHR } from '../vfs/mode.js';
import { toByteString } from '../util/latin1.js';

/** Check what the kernel would check before it mounts, so errors come before any daemon starts. */
export function checkPaths(req: MountRequest): void {
  const statOf = (what: string, p: string): fs.Stats => {
    try {
      return fs.statSync(p);
    } catch (err) {
      throw new UsageError(`${what} ${p}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (err as Error).message}`);
    }
  };
  for (const l of req.lowers) {
    const st = statOf('lowerdir', l);
    if (!st.isDirectory() && !st.isFile()) throw new UsageError(`lowerdir ${l} is neither a directory nor a tar file`);
  }
  if (!statOf('mount point', req.mountpoint).isDirectory()) throw new UsageError(`mount point ${req.mountpoint} is not a directory`);
  if (req.upper !== undefined && req.work !== undefined) {
    const u = statOf('upperdir', req.upper);
    const w = statOf('workdir', req.work);
    if (!u.isDirectory()) throw new UsageError(`upperdir ${req.upper} is not a directory`);
    if (!w.isDirectory()) throw new UsageError(`workdir ${req.work} is not a directory`);
    if (u.dev !== w.dev) throw new UsageError('upperdir and workdir must be on the same filesystem (copy-up renames from one to the other)');
  }
}

/** A directory lower as it is; a tar lower indexed now and opened as the store opens an image's tar. */
function openLower(path: string): Layer {
  if (fs.statSync(path).isDirectory()) return new DirLayer(path);
  try {
    return openTarLayer(path, { index: () => indexTarFile(path).data, check: 'sample' });
  } catch (err) {
    if (!(err instanceof TarCheckError)) throw err;
    switch (err.kind) {
      case 'open': throw new UsageError(`lowerdir ${path}: cannot open it: ${err.detail}`);
      case 'changed': throw new Error(`lowerdir ${path} changed while it was indexed (${err.detail})`);
      case 'stale': throw new Error(`lowerdir ${path} changed while it was indexed (${err.detail})`);
    }
  }
}

/** Char 0/0 whiteouts where this process may mknod in the upper's filesystem, `.wh.` files otherwise. */
function whiteoutKind(work: string): UpperFormat['whiteouts'] {
  const probe = join(work, `.tarstack-mknod-probe-${process.pid}`);
  try {
    loadSys().mknod(toByteString(probe), S_IFCHR, 0, 0);
    fs.rmSync(probe, { force: true });
    return 'chardev';
  } catch {
    return 'files';
  }
}

export interface Opened {
  fs: FileSystem;
  release(): void;
}

export async function openMount(req: MountRequest): Promise<Opened> {
  const layers: Layer[] = [];
  try {
    for (const l of req.lowers) layers.push(openLower(l));
  } catch (err) {
    for (const L of layers) L.close();
    throw err;
  }
  if (req.upper === undefined || req.work === undefined) {
    const { Overlay } = await import('../overlay/overlay.js');
    return { fs: squashOwners(new Overlay(layers), req.squash), release: () => undefined };
  }
  const lock = tryLockInstance(req.work);
  if (lock === undefined) {
    for (const L of layers) L.close();
    throw new UsageError(`workdir ${req.work} is in use by another mount (its lock is held)`);
  }
  try {
    const format: UpperFormat = { xattrs: req.userXattr ? 'user' : 'trusted', whiteouts: whiteoutKind(req.work), privateMetadata: false };
    const { InstanceFs } = await import('../overlay/instance-fs.js');
    const inst = new InstanceFs(layers, req.upper, req.work, { format, wholeFiles: true });
    return { fs: squashOwners(inst, req.squash), release: () => unlockInstance(lock) };
  } catch (err) {
    unlockInstance(lock);
    for (const L of layers) L.close();
    throw err;
  }
}
