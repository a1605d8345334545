// Every live name of a hard-linked inode stays usable through unlink and rename (issue 12, defect
// 3): a mount that kept one path per inode lost the file once that one name went. Scripted through
// tarstack-overlay over a directory lower and through an instance over the same files as a tar,
// compared line by line with kernel overlayfs over the same lower, and again after a remount.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { mount, type MountConfig } from '../helpers/mounted.js';
import { mkdirs, mountProgRoot } from '../helpers/mountprog.js';
import { execOk } from '../helpers/exec.js';

const skip = process.getuid?.() !== 0 || !fs.existsSync('/dev/fuse') ? 'needs root (kernel overlayfs) and /dev/fuse' : undefined;

const PRELUDE = String.raw`
exec 2>&1
nl() { stat -c %h "$@" 2>&1 | sed 's/.*: //' | tr '\n' ' '; echo; }
same() { if [ "$(stat -c %i "$1" "$2" 2>&1 | uniq | wc -l)" = 1 ]; then echo "$1 $2 same"; else echo "$1 $2 differ"; fi; }
try() { if out=$("$@" 2>&1); then echo "$*: ok $out"; else echo "$*: $(printf %s "$out" | sed 's/.*: //')"; fi; }
mv2() { perl -e 'rename($ARGV[0], $ARGV[1]) or die "$!\n"' "$1" "$2"; }
`;

/** The three reproductions, then names moved, replaced and removed in every order. */
const SCRIPT = String.raw`
echo "== relink the removed first name"
try touch A; try ln A B; try rm A; try ln B A; nl A B; same A B; echo a > A; try cat B
echo "== the renamed name removed"
try touch C; try ln C D; try mv C E; try rm E; try cat D; nl D
echo "== a lower file's first name removed"
try ln f L; try rm f; try cat L; try ln L f; try cat f; nl f L; same f L
echo "== names in other directories, moved and replaced"
mkdir d1 d2
echo one > d1/x; try ln d1/x d2/y; try ln d2/y z; try mv d1/x d2/x; try mv d2 d3; try rm z
nl d3/x d3/y; try cat d3/y; echo two >> d3/x; try cat d3/y
echo three > w; try mv2 w d3/x; try cat d3/y; nl d3/y d3/x
try rm d3/y; try cat d3/x; nl d3/x
echo "== a name renamed onto another name of the same file"
echo same > p; try ln p q; try mv2 p q; nl p q; try rm p; try cat q; nl q
echo "== a lower file renamed away and linked back"
try mv g h; try ln h g; try rm h; try cat g; nl g
echo "== open while its names go"
echo kept > o; ln o o2
exec 3<o; rm o; mv o2 o3; try cat o3; rm o3; try cat /dev/fd/3; exec 3<&-
`;
const AFTER = String.raw`
nl A B; same A B; try cat A; try cat D; nl f L; same f L; try cat L; nl d3/x q g; try cat d3/x; try cat q; try cat g
`;

async function run(t: import('ava').ExecutionContext, dir: string, config: MountConfig): Promise<string> {
  const m = await mount(t, dir, config);
  const sh = async (script: string) => (await m.run(['sh', '-c', PRELUDE + script], { cwd: m.root })).stdout;
  const before = await sh(SCRIPT);
  await m.remount();
  const after = await sh(AFTER);
  await m.unmount();
  return `${before}-- remounted\n${after}`;
}

test('every name of a hard-linked file stays usable through unlink and rename, as with kernel overlayfs', async (t) => {
  if (skip) return t.pass(skip);
  const root = mountProgRoot(t, 'link-names');
  const [lower] = mkdirs(root, 'lower');
  fs.writeFileSync(path.join(lower!, 'f'), 'lower f\n');
  fs.writeFileSync(path.join(lower!, 'g'), 'lower g\n');
  const tar = path.join(root, 'lower.tar');
  execOk(['tar', '-C', lower!, '-cf', tar, '.']);
  const [reference, overlay, instance] = await Promise.all([
    run(t, path.join(root, 'kernel'), { kind: 'kernel', lowers: [lower!] }),
    run(t, path.join(root, 'overlay'), { kind: 'overlay-program', lowers: [lower!] }),
    run(t, path.join(root, 'instance'), { kind: 'instance', lowers: [tar] }),
  ]);
  t.notRegex(reference, /No such|not permitted|Input\/output|No such device/);
  t.is(overlay, reference, 'tarstack-overlay');
  t.is(instance, reference, 'instance');
});
