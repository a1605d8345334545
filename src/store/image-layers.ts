// Making image layers: a tar indexed where it is (or copied, or recompressed to seekable zstd, into
// the store), a directory referenced in place, or a layer tar tarstack writes (an instance's changes
// frozen, an imported blob, an open image's placeholder root) staged and indexed in the store. A tar
// is indexed in one place, with progress reported through the store, and a file that is no tar is
// one UserError naming it; the layer part of an image record is built in one place too.
import { constants, copyFileSync, existsSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { indexTarFile, type IndexOptions, type IndexResult } from '../tar/indexer.js';
import { writeIndex } from '../tar/index-file.js';
import type { IndexData } from '../tar/index-data.js';
import { TarFormatError } from '../tar/scan.js';
import { UserError } from '../util/errors.js';
import { writingTo } from '../util/error-funnel.js';
import { INDEX_FILE, type ImageRecord } from './images.js';
import { tarLayerRecord } from './layer-record.js';

export { tarLayerRecord };
import { checkName } from './paths.js';
import type { Store } from './store.js';

/** The tar a staged layer is written to, in the image's directory. */
export const LAYER_TAR = 'layer.tar';

const ARCHIVE_EXT = /(\.tar(\.(gz|bz2|xz|zst|zstd|lz4))?|\.t(gz|bz2|xz|zst))$/i;

export function defaultImageName(tar: string): string {
  return basename(tar).replace(ARCHIVE_EXT, '');
}

/** A tar format problem as the user's one line, starting with `what` (the file as they named it). */
const asUserError = (what: string, err: unknown): unknown => (err instanceof TarFormatError ? new UserError(`${what}: ${err.message}`) : err);

/** Index a tar, its progress reported as `indexing LABEL`; `seek` shapes a compressed tar's seek table. */
export function indexTar(store: Store, file: string, what: string, label: string, seek?: IndexOptions['seek']): IndexResult {
  return store.withProgress(`indexing ${label}`, (onProgress) => {
    try {
      return indexTarFile(file, { onProgress, seek });
    } catch (err) {
      throw asUserError(what, err);
    }
  });
}

/** Write an index where a full disk names the file. */
const writeIndexFile = (path: string, data: IndexData): void => writingTo(path, () => writeIndex(path, data));

export interface AddTar {
  /** The tar, absolute; `given`: as the user named it (in messages). */
  tar: string;
  given: string;
  name?: string;
  parent?: string;
  /** Copy the tar into the store instead of referencing it in place. */
  copy?: boolean;
  /** Store a seekable zstd copy instead. */
  recompress?: boolean;
}

/** A tar as a new image: indexed (never extracted), published under the store lock. */
export async function addTarImage(store: Store, a: AddTar): Promise<{ record: ImageRecord; data: IndexData; bytesRead: number }> {
  const name = checkName('image', a.name ?? defaultImageName(a.tar));
  store.images.checkFree(name, '--name');
  const parent = a.parent ? store.images.closed(a.parent, 'be a parent') : null;
  const staged = store.images.stage();
  try {
    let source = a.tar;
    let stored: string | undefined; // the file in the store, when the image owns one
    if (a.recompress) {
      stored = 'layer.tar.zst';
      source = join(staged.dir, stored);
      const dest = source;
      const { recompressToZstd } = await import('../tar/recompress.js');
      await store.withProgress(`recompressing ${basename(a.tar)}`, (onProgress) => writingTo(dest, () => recompressToZstd(a.tar, dest, onProgress))).catch((err: unknown) => {
        throw asUserError(a.given, err);
      });
    } else if (a.copy) {
      stored = LAYER_TAR;
      source = join(staged.dir, stored);
      copyFileSync(a.tar, source, constants.COPYFILE_FICLONE);
    }
    const { data, bytesRead } = indexTar(store, source, a.given, basename(a.tar));
    writeIndexFile(join(staged.dir, INDEX_FILE), data);
    const record = await store.locked(() => {
      if (parent && !existsSync(store.paths.image(parent.id))) throw new UserError(`parent image "${parent.name}" was removed meanwhile`);
      const tar = stored ? join(store.paths.image(staged.id), stored) : a.tar;
      return store.images.commit(staged, { name, parent: parent?.id ?? null, created: new Date().toISOString(), layer: tarLayerRecord(data, tar, !!stored, a.recompress ? a.tar : undefined) });
    });
    return { record, data, bytesRead };
  } catch (err) {
    store.images.discard(staged);
    throw err;
  }
}

/**
 * A directory as an image layer: referenced in place (never copied, never modified), with its
 * whiteouts (char 0/0, `.wh.`) and opaque markers read as overlayfs reads them. Nothing is scanned.
 */
export async function addDirImage(store: Store, dir: string, a: { name?: string; parent?: string }): Promise<ImageRecord> {
  const name = checkName('image', a.name ?? basename(dir));
  store.images.checkFree(name, '--name');
  const parent = a.parent ? store.images.get(a.parent) : null;
  const st = statSync(dir, { bigint: true });
  const staged = store.images.stage();
  try {
    return await store.locked(() => {
      if (parent && !existsSync(store.paths.image(parent.id))) throw new UserError(`parent image "${parent.name}" was removed meanwhile`);
      return store.images.commit(staged, {
        name,
        parent: parent?.id ?? null,
        created: new Date().toISOString(),
        layer: { kind: 'dir', tar: dir, copied: false, identity: { size: 0, mtimeNs: st.mtimeNs.toString(), ino: Number(st.ino), dev: Number(st.dev) }, nodes: 0, members: 0, warnings: 0 },
      });
    });
  } catch (err) {
    store.images.discard(staged);
    throw err;
  }
}

export interface Staged {
  id: string;
  dir: string;
  tar: string;
}

/**
 * A staged image directory whose layer.tar `fill` writes (always a copy in the store, never a tar
 * referenced in place), indexed and described as it will be once published; discarded if anything
 * fails. `replacing`: the id of the image whose directory it will replace (else it becomes a new one).
 */
export async function stageLayer(store: Store, label: string, fill: (tar: string) => Promise<void>, replacing?: string): Promise<{ staged: Staged; layer: ImageRecord['layer'] }> {
  const s = store.images.stage();
  const staged = { ...s, tar: join(s.dir, LAYER_TAR) };
  try {
    await fill(staged.tar);
    const { data } = indexTar(store, staged.tar, label, label);
    writeIndexFile(join(staged.dir, INDEX_FILE), data);
    return { staged, layer: tarLayerRecord(data, join(store.paths.image(replacing ?? staged.id), LAYER_TAR), true) };
  } catch (err) {
    store.images.discard(staged);
    throw err;
  }
}
