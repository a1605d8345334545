// Shared by the image-building, transfer, stackpoint and limits suites: a session over the model
// image with JSON and mount helpers, scripted changes, and tar listings read with tar-stream.
import type { ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import tarStream from 'tar-stream';
import { InstanceSession, instanceSkipReason } from './instances.js';
import { buildModelImage, type ModelImage } from './model-image.js';
import { applyOp, closeAll, type Op } from './model-ops.js';
import { type CliResult, forceUnmount, tarstackCli } from './mount.js';
import { makeTestRoot, removeTestRoot, strayMounts } from './mounted.js';

export { instanceSkipReason };

export class StackSession extends InstanceSession {
  constructor(root: string, t: ExecutionContext, readonly env: NodeJS.ProcessEnv = {}) {
    super(root, t);
  }

  override cli(args: string[], opts: { checkPipes?: boolean } = {}): Promise<CliResult> {
    return tarstackCli(args, { env: { TARSTACK_HOME: this.home, ...this.env }, ...opts });
  }

  async json<T>(args: string[]): Promise<T> {
    return JSON.parse((await this.ok([...args, '--json'])).stdout) as T;
  }

  /** The tar behind an image's own layer. */
  async layerTar(image: string): Promise<string> {
    return (await this.json<{ tar: string }>(['image', 'info', image])).tar;
  }

  /** Runs fn on a read-only mount of the image, unmounting whatever happens. */
  async withImage<T>(image: string, fn: (dir: string) => T | Promise<T>): Promise<T> {
    const dir = path.join(this.root, `img-${image}-${Date.now()}`);
    fs.mkdirSync(dir);
    await this.ok(['image', 'mount', image, dir]);
    try {
      return await fn(dir);
    } finally {
      await this.cli(['umount', dir]);
      if (strayMounts(dir).length) forceUnmount(dir);
    }
  }
}

/** Applies scripted ops to a root; every one must succeed. */
export function apply(dir: string, ops: Op[]): void {
  const state = { root: dir, fds: new Map<number, number>(), sinceNs: 0n };
  for (const op of ops) {
    const r = applyOp(state, op);
    if (!r.startsWith('ok')) throw new Error(`${JSON.stringify(op)} on ${dir}: ${r}`);
  }
  closeAll(state);
}

export interface TarHeader {
  name: string;
  type: string;
  uid: number;
  gid: number;
  linkname: string | null;
  pax: Record<string, string> | null;
}

/** Every header of a tar, as tar-stream reads it. */
export async function tarHeaders(file: string): Promise<TarHeader[]> {
  const out: TarHeader[] = [];
  const ex = tarStream.extract();
  ex.on('entry', (h, stream, next) => {
    out.push({ name: h.name, type: h.type ?? 'file', uid: h.uid ?? 0, gid: h.gid ?? 0, linkname: h.linkname ?? null, pax: (h.pax as Record<string, string> | undefined) ?? null });
    stream.on('end', next);
    stream.resume();
  });
  await new Promise<void>((resolve, reject) => {
    ex.on('finish', resolve).on('error', reject);
    fs.createReadStream(file).on('error', reject).pipe(ex);
  });
  return out;
}

/** A suite's temp root and the model image, with an after-hook that finds nothing left mounted. */
export function suiteRoot(label: string, test: { before(fn: () => void): void; after: { always(fn: () => void): void } }, skip: string | undefined) {
  const root = skip ? '' : makeTestRoot(label);
  const ctx: { root: string; image: ModelImage } = { root, image: undefined as unknown as ModelImage };
  test.before(() => {
    if (!skip) ctx.image = buildModelImage(path.join(root, 'image'));
  });
  test.after.always(() => removeTestRoot(root));
  return ctx;
}
