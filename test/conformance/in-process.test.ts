// The conformance suite on an InstanceFs in process, no mount (in-process.ts): the cases' fs and sys
// calls go to a worker thread that walks paths and does the kernel VFS's checks, then calls the
// InstanceFs as the FUSE backend would. Compared with kernel overlayfs over the same layer, as root.
// Cases that need what only the kernel serves (other users, mmap, other processes, I/O on fifos and
// devices) are left out, each with its reason (IN_PROCESS_LEFT_OUT).
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { mount, makeTestRoot, removeTestRoot, type Mounted } from '../helpers/mounted.js';
import { cases } from './index.js';
import { buildLower, compare, GROUPS, runNamed, tarOf, type Outcomes } from './suite.js';

/** Cases the in-process configuration cannot run, and why. */
export const IN_PROCESS_LEFT_OUT: Record<string, string> = {
  'perms/*': 'another user acts (a child process with its own uid): permission checks are the kernel\'s',
  'data/mmap': 'shared mmap: the kernel\'s page cache, in another process (python3)',
  'data/holes': 'SEEK_DATA/SEEK_HOLE are asked of the kernel by another process (python3)',
  'special/mkfifo': 'bytes through a fifo are the kernel\'s pipe, not the filesystem\'s',
  'special/socket': 'bind/connect on a socket node are the kernel\'s, in another process (python3)',
  'special/devices': 'reading a device node is the kernel\'s driver, not the filesystem',
};

const leftOut = (name: string): string | undefined =>
  IN_PROCESS_LEFT_OUT[name] ?? Object.entries(IN_PROCESS_LEFT_OUT).find(([k]) => k.endsWith('/*') && name.startsWith(k.slice(0, -1)))?.[1];
const names = Object.keys(cases).filter((n) => !leftOut(n));

/** An instance (the differences listed for instances apply), in process. */
const CONFIG = 'instance-in-process';

let root = '';
let tar = '';
let kernel: Promise<Mounted> | undefined;
test.before(() => {
  root = makeTestRoot('conformance-in-process');
  fs.chmodSync(root, 0o755);
  const lower = buildLower(path.join(root, 'layers'));
  tar = tarOf(lower, path.join(root, 'layers', 'lower.tar'));
  const dir = path.join(root, 'kernel');
  fs.mkdirSync(dir);
  kernel = mount(undefined, dir, { kind: 'kernel', lowers: [lower] }).then((m) => (fs.chmodSync(m.root, 0o755), m));
});
test.after.always(async () => {
  await kernel?.then((m) => m.unmount(), () => undefined);
  removeTestRoot(root);
});

// One child runs every case in process, one on the kernel's mount (a child's start and the worker's
// cost more than most cases); each group's test compares its part.
let both: Promise<[Outcomes, Outcomes]> | undefined;
const runBoth = (): Promise<[Outcomes, Outcomes]> =>
  (both ??= kernel!.then(async (m) => {
    const state = path.join(root, 'in-process');
    fs.mkdirSync(state);
    // the in-process root stands where no mount is, a path as long as the kernel mount's (the long-path cases compare)
    const fake = path.join(path.dirname(m.root), 'i'.repeat(path.basename(m.root).length));
    return Promise.all([
      runNamed(m.root, path.join(root, 'kernel.json'), names),
      runNamed(fake, path.join(root, 'in-process.json'), names, { tar, state }),
    ]);
  }));

for (const group of GROUPS) {
  const mine = new Set(names.filter((n) => n.startsWith(`${group}/`)));
  if (mine.size === 0) continue;
  test(`in-process: ${group}`, async (t) => {
    const [want, got] = await runBoth();
    const part = (o: Outcomes): Outcomes => Object.fromEntries(Object.entries(o).filter(([n]) => mine.has(n)));
    compare(t, CONFIG, part(want), part(got));
  });
}
