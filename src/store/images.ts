// Images in the store: images/<id>/image.json plus the layer's index. Names are unique and
// changeable; ids are not, so a child keeps its parent through a rename.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { TarIdentity } from '../tar/index-data.js';
import type { Compression } from '../tar/seek-table.js';
import { UserError } from '../util/errors.js';
import { field, META_VERSION, readMeta, writeMeta } from './meta.js';
import { byName, checkName, type StorePaths } from './paths.js';

export interface ImageRecord {
  version: number;
  id: string;
  name: string;
  parent: string | null;
  created: string;
  layer: {
    /** What the layer is: a tar (indexed; the default when absent) or a plain directory served in place. */
    kind?: 'tar' | 'dir';
    /** The layer's source: the tar file, or the directory when kind is 'dir'. */
    tar: string;
    copied: boolean;
    identity: TarIdentity;
    /** Nodes of the layer's index: the root, every name, whiteouts, and hard-link data left without a name. */
    nodes: number;
    /** Names below the root and whiteouts, as layerCounts says them (absent in records made before them). */
    entries?: number;
    whiteouts?: number;
    members: number;
    warnings: number;
    /** Compressed tars only: how reads find their place in it. */
    compression?: LayerCompression;
    /** A layer served from a URL or a registry blob (`tar` is then its URL); its chunk digests are in CHUNKS_FILE. */
    remote?: RemoteLayerRecord;
  };
  /** Made by `image new` and not yet closed: its layer is a placeholder, its edit instance holds the tree. */
  editing?: boolean;
}

export interface LayerCompression {
  format: Compression;
  decodedBytes: number;
  seekPoints: number;
  randomAccess: boolean;
  note: string;
  /** Set when the store holds a seekable zstd copy made by `image add --recompress`. */
  recompressedFrom?: string;
}

/**
 * What every command says about a layer's size in names: its entries (files, directories, links, …
 * below the root; whiteouts apart) and its whiteouts, as counted in its index when it was made. A
 * directory layer is not scanned, so it has neither (null); an older record has only its node count.
 */
export function layerCounts(layer: ImageRecord['layer']): { entries: number | null; whiteouts: number | null } {
  if (layer.kind === 'dir') return { entries: null, whiteouts: null };
  return { entries: layer.entries ?? layer.nodes - 1, whiteouts: layer.whiteouts ?? null };
}

export interface RemoteLayerRecord {
  kind: 'url' | 'registry';
  /** Where the blob is read from by range (a registry's blob URL for kind 'registry'). */
  url: string;
  /** The registry reference pulled, and the manifest's digest. */
  ref?: string;
  manifest?: string;
  /** sha256:HEX of the blob's bytes. */
  digest: string;
  size: number;
  chunkSize: number;
  tlsVerify: boolean;
  /** --cert-dir as given to the pull (absolute): the CAs reads trust. */
  certDir?: string;
  /**
   * How the index was made: a streaming pass, fetched as pushed beside the layer, or from the TOC the
   * layer carries (eStargz, zstd:chunked; its chunks' digests in TOC_SHA_FILE, no CHUNKS_FILE).
   */
  index: 'stream' | 'pushed' | 'estargz' | 'zstd:chunked';
  /**
   * A pushed index's gzip seek windows, left in the registry (a blob of their own) and read by range
   * as seeks need them: the index file then stops where they start. Their chunk digests are in
   * WINDOW_CHUNKS_FILE.
   */
  windows?: { url: string; digest: string; size: number; chunkSize: number };
}

export const IMAGE_META = 'image.json';
/** A remote layer's chunk digests: sha256 of each chunkSize bytes of the blob, concatenated. */
export const CHUNKS_FILE = 'chunks';
export const WINDOW_CHUNKS_FILE = 'windows.chunks';
/** A TOC-indexed layer's sha256 of each TOC chunk's decoded bytes, in its seek table's order. */
export const TOC_SHA_FILE = 'toc.sha';
export const INDEX_FILE = 'index';

function checkImage(o: Record<string, unknown>): void {
  field.str(o, 'id');
  field.str(o, 'name');
  field.strOrNull(o, 'parent');
  const layer = field.obj(o, 'layer');
  field.str(layer, 'tar');
  const id = field.obj(layer, 'identity');
  field.num(id, 'size');
  field.str(id, 'mtimeNs');
  field.num(layer, 'nodes');
}

export class Images {
  constructor(private readonly paths: StorePaths) {}

  list(): ImageRecord[] {
    if (!existsSync(this.paths.images)) return [];
    const out: ImageRecord[] = [];
    for (const id of readdirSync(this.paths.images)) {
      if (id.startsWith('.')) continue; // an image being added
      out.push(readMeta<ImageRecord>(join(this.paths.image(id), IMAGE_META), 'image', checkImage));
    }
    return out.sort(byName);
  }

  find(name: string): ImageRecord | undefined {
    return this.list().find((r) => r.name === name);
  }

  /**
   * Refuse a name that is taken, naming a free one: `option` is how the command takes another name
   * (`--name`); without one the name was a positional, and the free name is simply suggested.
   */
  checkFree(name: string, option?: string): void {
    if (!this.find(name)) return;
    let free = '';
    for (let n = 2; !free; n++) if (!this.find(`${name}-${n}`)) free = `${name}-${n}`;
    throw new UserError(`an image named "${name}" already exists: ${option ? `name this one with ${option}, e.g. \`${option} ${free}\`` : `choose another name, e.g. "${free}"`}`);
  }

  get(name: string): ImageRecord {
    const r = this.find(name);
    if (!r) throw new UserError(`no image named "${name}" (see \`tarstack image list\`)`);
    return r;
  }

  byId(id: string): ImageRecord {
    const r = this.read(id);
    if (!r) throw new UserError(`the store refers to image id ${id}, which is missing from ${this.paths.images}`);
    return r;
  }

  /** One record read, or undefined when there is none (the server looks images up by id on every mount: never the whole list). */
  private read(id: string): ImageRecord | undefined {
    const file = join(this.paths.image(id), IMAGE_META);
    if (!/^[0-9a-f]{1,64}$/.test(id) || !existsSync(file)) return undefined;
    return readMeta<ImageRecord>(file, 'image', checkImage);
  }

  /** An image that may be instantiated or stacked on: it exists and is not being edited. */
  closed(name: string, what: string): ImageRecord {
    const r = this.get(name);
    if (r.editing) throw new UserError(`image "${r.name}" is being edited and cannot ${what} until it is closed (\`tarstack image close ${r.name}\`)`);
    return r;
  }

  /** The image and its ancestors, top first. */
  stack(top: ImageRecord): ImageRecord[] {
    const parentOf = (r: ImageRecord): ImageRecord | undefined => {
      if (!r.parent) return undefined;
      const parent = this.read(r.parent);
      if (!parent) throw new UserError(`image "${r.name}" has a missing parent (id ${r.parent})`);
      return parent;
    };
    const out: ImageRecord[] = [];
    for (let r: ImageRecord | undefined = top; r; r = parentOf(r)) {
      if (out.some((x) => x.id === r!.id)) throw new UserError(`image "${top.name}" has a cycle in its parents`);
      out.push(r);
    }
    return out;
  }

  indexPath(r: ImageRecord): string {
    return join(this.paths.image(r.id), INDEX_FILE);
  }

  chunksPath(r: ImageRecord): string {
    return join(this.paths.image(r.id), CHUNKS_FILE);
  }

  /** The store's root (the chunk cache of remote layers lives under it). */
  get root(): string {
    return this.paths.root;
  }

  /** A fresh staging directory for an image being added; `commit` moves it into place. */
  stage(): { id: string; dir: string } {
    const id = randomBytes(8).toString('hex');
    const dir = join(this.paths.images, `.staging-${id}`);
    mkdirSync(dir, { recursive: true });
    return { id, dir };
  }

  /** Publish a staged image (call under the store lock). */
  commit(staged: { id: string; dir: string }, record: Omit<ImageRecord, 'version' | 'id'>): ImageRecord {
    checkName('image', record.name);
    this.checkFree(record.name);
    const full: ImageRecord = { version: META_VERSION, id: staged.id, ...record };
    writeMeta(join(staged.dir, IMAGE_META), full);
    renameSync(staged.dir, this.paths.image(staged.id));
    return full;
  }

  /**
   * Publish staged layers as a chain of images, each on the one before, the first on `parent`: all
   * of them or, when one fails, none (the ones made are removed again). Under the store lock.
   */
  commitChain(staged: Array<{ id: string; dir: string }>, names: string[], layers: Array<ImageRecord['layer']>, parent: string | null): ImageRecord[] {
    const made: ImageRecord[] = [];
    try {
      for (let i = 0; i < staged.length; i++) made.push(this.commit(staged[i], { name: names[i], parent: i === 0 ? parent : made[i - 1].id, created: new Date().toISOString(), layer: layers[i] }));
    } catch (err) {
      for (const m of made.reverse()) this.remove(m);
      throw err;
    }
    return made;
  }

  /**
   * Replace an image's directory by a staged one in one step (rename2 EXCHANGE),
   * then remove the old one: readers see the old image or the new, never a mix. Under the store lock.
   */
  replace(staged: { dir: string }, record: ImageRecord, exchange: (a: string, b: string) => void): void {
    writeMeta(join(staged.dir, IMAGE_META), record);
    exchange(staged.dir, this.paths.image(record.id));
    rmSync(staged.dir, { recursive: true, force: true });
  }

  discard(staged: { dir: string }): void {
    rmSync(staged.dir, { recursive: true, force: true });
  }

  rename(name: string, to: string): ImageRecord {
    checkName('image', to);
    const r = this.get(name);
    this.checkFree(to);
    r.name = to;
    writeMeta(join(this.paths.image(r.id), IMAGE_META), r);
    return r;
  }

  children(r: ImageRecord): ImageRecord[] {
    return this.list().filter((x) => x.parent === r.id);
  }

  remove(r: ImageRecord): void {
    // Rename first so a crash half-way never leaves a half-deleted image that lists.
    const aside = join(this.paths.images, `.removing-${r.id}`);
    renameSync(this.paths.image(r.id), aside);
    rmSync(aside, { recursive: true, force: true });
  }
}
