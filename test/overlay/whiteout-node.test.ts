// A character device 0/0 is how an overlay upper encodes a whiteout (issue 12, defect 5): made by a
// user it would hide itself and leave a "non-empty" directory that rmdir removes. Kernel overlayfs
// refuses such a mknod with EPERM; so must an instance (as root and as an ordinary user, who may
// make a 0/0 node on other filesystems) and tarstack-overlay. A rename asking for RENAME_WHITEOUT
// answers as kernel overlayfs does, and an ordinary rename still leaves its whiteout.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { loadSys, RENAME_WHITEOUT } from '../../src/native/sys.js';
import { b } from '../../src/util/latin1.js';
import { makeTestRoot, mount, removeTestRoot, type MountConfig, type Mounted } from '../helpers/mounted.js';
import { ordinaryUser } from '../helpers/ordinary-user.js';
import { pack } from '../helpers/pack.js';

const skip = process.getuid?.() !== 0 || !fs.existsSync('/dev/fuse') ? 'needs root (kernel overlayfs) and /dev/fuse' : undefined;
const root = skip ? '' : makeTestRoot('whiteout-node');
test.after.always(() => removeTestRoot(root));

const SCRIPT = String.raw`
exec 2>&1
try() { if out=$("$@" 2>&1); then echo "$*: ok"; else echo "$*: $(printf %s "$out" | sed 's/.*: //')"; fi; }
mkdir w; try mknod w/c c 0 0; echo "w: $(ls -A w)"; try rmdir w
try mknod top c 0 0; try stat -c %F top
echo x > ld/new; try mknod ld/n c 0 0; echo "ld: $(ls -A ld)"
try mknod lf c 0 0; try cat lf
try mkfifo fifo; try stat -c %F fifo
`;
const AFTER = String.raw`
exec 2>&1
echo "/: $(ls -A)"; echo "ld: $(ls -A ld)"
`;

/** What a RENAME_WHITEOUT rename does, then an ordinary rename of a lower name (the test process is root). */
function renames(m: Mounted): string {
  const sys = loadSys();
  const out: string[] = [];
  const at = (n: string) => b(path.join(m.root, n)).toString('latin1');
  const attempt = (what: string, f: () => void) => {
    try {
      f();
      out.push(`${what}: ok`);
    } catch (err) {
      out.push(`${what}: ${(err as NodeJS.ErrnoException).code}`);
    }
  };
  attempt('rename lf lf2 whiteout', () => sys.rename2(at('lf'), at('lf2'), RENAME_WHITEOUT));
  attempt('rename ld/a ld/b whiteout', () => sys.rename2(at('ld/a'), at('ld/b'), RENAME_WHITEOUT));
  out.push(`after: ${fs.readdirSync(m.root).sort().join(' ')} | ld: ${fs.readdirSync(at('ld')).sort().join(' ')}`);
  attempt('rename ld/a ld/c', () => fs.renameSync(at('ld/a'), at('ld/c')));
  out.push(`after: ld: ${fs.readdirSync(at('ld')).sort().join(' ')}; ld/c: ${fs.readFileSync(at('ld/c'), 'utf8').trim()}`);
  return out.join('\n');
}

async function run(t: import('ava').ExecutionContext, dir: string, config: MountConfig, withRenames: boolean): Promise<string> {
  const m = await mount(t, dir, config);
  const sh = async (script: string) => (await m.run(['sh', '-c', script], { cwd: m.root })).stdout;
  const before = await sh(SCRIPT);
  const moved = withRenames ? renames(m) : '';
  await m.remount();
  const after = await sh(AFTER);
  await m.unmount();
  return `${before}${moved}\n-- remounted\n${after}`;
}

async function lowers(dir: string): Promise<{ lowerDir: string; tar: string }> {
  const lowerDir = path.join(dir, 'lower');
  fs.mkdirSync(path.join(lowerDir, 'ld'), { recursive: true });
  fs.writeFileSync(path.join(lowerDir, 'lf'), 'lower file\n');
  fs.writeFileSync(path.join(lowerDir, 'ld', 'a'), 'a\n');
  const tar = path.join(dir, 'lower.tar');
  fs.writeFileSync(tar, await pack([
    { name: 'lf', body: 'lower file\n', mode: 0o666 },
    { name: 'ld/', type: 'directory', mode: 0o777 },
    { name: 'ld/a', body: 'a\n', mode: 0o666 },
  ]));
  fs.chmodSync(path.join(lowerDir, 'ld'), 0o777);
  return { lowerDir, tar };
}

test('mknod of a char 0/0 node is EPERM and RENAME_WHITEOUT answers as kernel overlayfs, in an instance and in tarstack-overlay', async (t) => {
  if (skip) return t.pass(skip);
  const dir = path.join(root, 'root');
  const { lowerDir, tar } = await lowers(dir);
  const [reference, overlay, instance] = await Promise.all([
    run(t, path.join(dir, 'kernel'), { kind: 'kernel', lowers: [lowerDir] }, true),
    run(t, path.join(dir, 'overlay'), { kind: 'overlay-program', lowers: [lowerDir] }, true),
    run(t, path.join(dir, 'instance'), { kind: 'instance', lowers: [tar] }, true),
  ]);
  t.regex(reference, /mknod w\/c c 0 0: Operation not permitted/);
  t.is(overlay, reference, 'tarstack-overlay');
  t.is(instance, reference, 'instance');
});

test('an ordinary user cannot make a char 0/0 node in an instance either', async (t) => {
  const user = skip ?? ordinaryUser();
  if (typeof user === 'string') return t.pass(user);
  const dir = path.join(root, 'user');
  const { lowerDir, tar } = await lowers(dir);
  const [reference, instance] = await Promise.all([
    run(t, path.join(dir, 'kernel'), { kind: 'kernel', lowers: [lowerDir] }, false),
    run(t, path.join(dir, 'instance'), { kind: 'instance', lowers: [tar], user }, false),
  ]);
  t.is(instance, reference);
});
