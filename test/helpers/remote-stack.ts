// The two-layer stack the registry suites pull (remote-registry, remote-toc): a base of a 6 MiB file,
// 200 small files and a symlink (`extra` adds to it), and a top layer with an OCI whiteout and a new
// file; the same stack as tarstack images exported as an OCI layout archive; GNU tar's extraction of
// its layers merged by kernel overlayfs as the reference; and a CLI session with its own environment.
import type { ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { seededBytes } from './bytes.js';
import { tarstackCli, TarstackSession } from './mount.js';
import { mount } from './mounted.js';
import { extractReference } from './reference.js';
import { snapshotTree } from './tree.js';

export const BIG = 'data/big.bin';

export interface Stack {
  /** The base layer as a plain tar (`${baseTar}.gz` beside it) and the top layer's plain tar. */
  baseTar: string;
  topTar: string;
}

/** The stack's layers, made under `root`; `extra(src)` adds to the base's tree before it is packed. */
export function makeStack(root: string, extra: (src: string) => void = () => undefined): Stack {
  const src = path.join(root, 'src');
  fs.mkdirSync(path.join(src, 'data'), { recursive: true });
  fs.mkdirSync(path.join(src, 'many'));
  fs.writeFileSync(path.join(src, BIG), seededBytes(6 << 20, 1));
  fs.writeFileSync(path.join(src, 'data', 'gone'), 'hidden by the top layer\n');
  for (let i = 0; i < 200; i++) fs.writeFileSync(path.join(src, 'many', `f${i}`), seededBytes(i * 37, 1000 + i).toString('base64'));
  fs.symlinkSync('../data/big.bin', path.join(src, 'many', 'link'));
  extra(src);
  const baseTar = path.join(root, 'base.tar');
  execFileSync('tar', ['-cf', baseTar, '-C', src, 'many', 'data']);
  execFileSync('gzip', ['-k', baseTar]);
  const top = path.join(root, 'top');
  fs.mkdirSync(path.join(top, 'data'), { recursive: true });
  fs.writeFileSync(path.join(top, 'data', '.wh.gone'), '');
  fs.writeFileSync(path.join(top, 'data', 'new'), 'top layer\n');
  const topTar = path.join(root, 'top.tar');
  execFileSync('tar', ['-cf', topTar, '-C', top, 'data']);
  return { baseTar, topTar };
}

/** The stack added as images base (gzip) <- top in a store of its own, exported with `--layers`: the archive's path. */
export async function exportStack(root: string, stack: Stack): Promise<string> {
  const s = new TarstackSession(path.join(root, 'maker'));
  for (const [tar, name, parent] of [[`${stack.baseTar}.gz`, 'base'], [stack.topTar, 'top', 'base']] as const) {
    const r = await s.cli(['image', 'add', tar, '--name', name, ...(parent ? ['--parent', parent] : [])]);
    if (r.code !== 0) throw new Error(r.stderr);
  }
  const archive = path.join(root, 'stack.oci.tar');
  const r = await s.cli(['image', 'export', 'top', '--layers', '-o', archive]);
  if (r.code !== 0) throw new Error(r.stderr);
  return archive;
}

/** GNU tar's extraction of the stack's layers under `dir`, merged by kernel overlayfs: its snapshot. */
export async function referenceTree(t: ExecutionContext, dir: string, stack: Stack): Promise<ReturnType<typeof snapshotTree>> {
  const layers = [stack.topTar, stack.baseTar].map((tar, i) => extractReference(tar, path.join(dir, `ref${i}`)).dir);
  const merged = await mount(t, path.join(dir, 'merged'), { kind: 'kernel', lowers: layers, upper: null, convertOci: true });
  try {
    return snapshotTree(merged.root);
  } finally {
    await merged.unmount();
  }
}

/** A CLI session whose commands also get `env`; `ok` throws the command's stderr on a non-zero exit. */
export class RemoteSession extends TarstackSession {
  constructor(root: string, t: ExecutionContext, private readonly env: NodeJS.ProcessEnv = {}) {
    super(root, t);
  }
  override cli(args: string[], opts: { checkPipes?: boolean } = {}) {
    return tarstackCli(args, { env: { TARSTACK_HOME: this.home, ...this.env }, ...opts });
  }
  async ok(args: string[]): Promise<string> {
    const r = await this.cli(args);
    if (r.code !== 0) throw new Error(`tarstack ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
    return r.stdout;
  }
}
