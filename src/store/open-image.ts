// Opening an image's stack for serving: each tar layer through the one opening path (open-tar.ts:
// identity, sampled member checksums, the decoder of a compressed tar), its failures worded for the
// image; a directory layer is checked to be the same directory (device and inode) and served in place.
import { statSync } from 'node:fs';
import type { Layer } from '../layer/layer.js';
import { DirLayer } from '../layer/dir-layer.js';
import { readIndex, IndexFormatError } from '../tar/index-file.js';
import type { IndexData } from '../tar/index-data.js';
import { FsError, UserError } from '../util/errors.js';
import type { ImageRecord, Images } from './images.js';
import { openRemoteLayer, remoteTarChunks } from '../remote/open-remote.js';
import { closeCheckedTar, openCheckedTar, openTarLayer, SAMPLE, tarChunks, TarCheckError, type OpenTarOptions } from './open-tar.js';

export function openStack(images: Images, stack: ImageRecord[]): Layer[] {
  const layers: Layer[] = [];
  try {
    for (const r of stack) layers.push(openLayer(images, r, 'sample'));
    return layers;
  } catch (err) {
    for (const l of layers) l.close();
    throw err;
  }
}

export function openLayer(images: Images, r: ImageRecord, check: 'sample' | 'all'): Layer {
  if (r.layer.kind === 'dir') return openDirLayer(r);
  const remote = r.layer.remote;
  if (remote) {
    const data = tarOptions(images, r, check).index();
    try {
      return openRemoteLayer(images.root, remote, data, images.chunksPath(r), check);
    } catch (err) {
      if (err instanceof FsError) throw new UserError(`image "${r.name}": ${err.message}`);
      throw err;
    }
  }
  return forImage(r, () => openTarLayer(r.layer.tar, tarOptions(images, r, check)));
}

/** An image's tar as tar readers see it (decoded when compressed), checked as for serving, in chunks. */
export async function* imageTarChunks(images: Images, r: ImageRecord): AsyncGenerator<Buffer> {
  const remote = r.layer.remote;
  if (remote) {
    try {
      yield* remoteTarChunks(images.root, remote, tarOptions(images, r, 'sample').index(), images.chunksPath(r));
    } catch (err) {
      if (err instanceof FsError) throw new UserError(`image "${r.name}": ${err.message}`);
      throw err;
    }
    return;
  }
  const t = forImage(r, () => openCheckedTar(r.layer.tar, tarOptions(images, r, 'sample')));
  try {
    yield* tarChunks(t);
  } catch (err) {
    if (err instanceof FsError) throw worded(r, new TarCheckError('stale', err.message.replace(`${r.layer.tar}: `, '')));
    throw err instanceof TarCheckError ? worded(r, err) : err;
  } finally {
    closeCheckedTar(t);
  }
}

function tarOptions(images: Images, r: ImageRecord, check: 'sample' | 'all'): OpenTarOptions {
  const index = (): IndexData => {
    try {
      return readIndex(images.indexPath(r), { members: check === 'all' ? 'all' : SAMPLE });
    } catch (err) {
      if (err instanceof IndexFormatError || (err as NodeJS.ErrnoException).code) throw new UserError(`image "${r.name}": its index is unreadable: ${(err as Error).message}`);
      throw err;
    }
  };
  return { index, identity: r.layer.identity, check };
}

/** A tar that cannot be served, worded for the image it belongs to. */
function forImage<T>(r: ImageRecord, open: () => T): T {
  try {
    return open();
  } catch (err) {
    throw err instanceof TarCheckError ? worded(r, err) : err;
  }
}

function worded(r: ImageRecord, err: TarCheckError): UserError {
  const tar = r.layer.tar;
  switch (err.kind) {
    case 'open': return new UserError(`image "${r.name}": cannot open its tar ${tar}: ${err.detail}`);
    case 'changed': return new UserError(`image "${r.name}": the tar ${tar} changed since it was indexed (${err.detail}); add it again as a new image`);
    case 'stale': return new UserError(`image "${r.name}": the tar ${tar} no longer matches its index (${err.detail}); add it again as a new image`);
  }
}

function openDirLayer(r: ImageRecord): DirLayer {
  let st;
  try {
    st = statSync(r.layer.tar);
  } catch (err) {
    throw new UserError(`image "${r.name}": cannot open its directory ${r.layer.tar}: ${(err as NodeJS.ErrnoException).code}`);
  }
  if (!st.isDirectory() || st.ino !== r.layer.identity.ino || st.dev !== r.layer.identity.dev) {
    throw new UserError(`image "${r.name}": ${r.layer.tar} is no longer the directory that was added; add it again as a new image`);
  }
  return new DirLayer(r.layer.tar);
}
