// tarstack-overlay's suites: a per-test root whose teardown unmounts whatever a test mounted below it
// (by any route: the program, mount(8), fstab), ends the daemons serving there and removes the root;
// and small helpers for lowers and uppers. Running and mounting the program: mounted.ts.
import type { ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { removeTree } from '../../src/util/remove-tree.js';
import { unmount } from '../../src/util/unmount.js';
import { endProcesses } from './children.js';
import { exec } from './exec.js';
import { makeTestRoot, overlayDaemons, strayMounts } from './mounted.js';

/** A temp root for one test; teardown unmounts everything below it, ends its daemons, removes it. */
export function mountProgRoot(t: ExecutionContext, label: string): string {
  const root = makeTestRoot(label);
  t.teardown(async () => {
    for (const m of strayMounts(root).reverse()) unmount(m.mountpoint);
    await endProcesses(() => overlayDaemons(root));
    removeTree(root, { mounts: 'refuse' });
  });
  return root;
}

export function mkdirs(root: string, ...names: string[]): string[] {
  return names.map((n) => {
    const p = path.join(root, n);
    fs.mkdirSync(p, { recursive: true });
    return p;
  });
}

/** Every xattr name under a tree (getfattr -R), for checking that an upper holds nothing private. */
export function xattrNamesUnder(dir: string): string[] {
  const r = exec(['getfattr', '-R', '-h', '-m', '-', '--absolute-names', dir]);
  return r.stdout.toString('latin1').split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split('=')[0]!);
}
