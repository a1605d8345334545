// The read-only end-to-end comparison again on the fuse-native backend (kept for read-only images).
// Its known limits are allowed by name and nothing else: libfuse 2 through fuse-native carries times
// in milliseconds (and wraps those before 1970) and names as UTF-8 strings (invalid bytes are lost).
import test from 'ava';
import path from 'node:path';
import { buildFixtures } from './helpers/fixtures.js';
import { cliAvailable, TarstackSession, withMount } from './helpers/mount.js';
import { makeTestRoot, removeTestRoot } from './helpers/mounted.js';
import { gnuReference } from './helpers/reference.js';
import { compareTrees, snapshotTree } from './helpers/tree.js';

process.env.TARSTACK_BACKEND = 'fuse-native';
const skipReason = !cliAvailable() ? 'the tarstack CLI is not built' : process.getuid?.() !== 0 ? 'needs root' : undefined;
const root = skipReason ? '' : makeTestRoot('e2e-fuse-native');
const fixtures = skipReason ? [] : await buildFixtures(path.join(root, 'fixtures'));
if (skipReason) test.skip(`fuse-native read-only suite skipped: ${skipReason}`, () => undefined);

test.after.always(() => removeTestRoot(root));

/** fuse-native's limits, each a reason; a difference none of them explains fails the test. */
const LIMITS: Array<{ why: string; explains(diff: string): boolean }> = [
  {
    why: 'times pass through fuse-native in whole milliseconds',
    explains: (d) => {
      const m = /: mtimeNs "(-?\d+)", reference "(-?\d+)"$/.exec(d);
      return !!m && BigInt(m[2]) >= 0n && BigInt(m[1]) / 1_000_000n === BigInt(m[2]) / 1_000_000n;
    },
  },
  { why: 'times before 1970 wrap in fuse-native (unsigned milliseconds)', explains: (d) => /: mtimeNs "\d+", reference "-\d+"$/.test(d) },
  {
    why: 'names are UTF-8 strings in fuse-native: invalid bytes cannot pass (they come back as U+FFFD)',
    explains: (d) => d.includes('\\x') || d.includes('\ufffd') || d.includes('\u00ef\u00bf\u00bd'),
  },
];

let seq = 0;
for (const f of fixtures.filter((x) => x.expect !== 'refuse' && x.compare)) {
  test.serial(`fuse-native serves ${f.name} (${f.maker}) as GNU tar extracts it, but for its known limits`, async (t) => {
    const s = new TarstackSession(path.join(root, `${f.name}-${++seq}`), t);
    await s.addImage(f.path, f.name);
    const ref = gnuReference(f.path, path.join(s.root, 'ref'));
    await withMount(s, f.name, (dir) => {
      const diffs = compareTrees(ref.snap, snapshotTree(dir), { ignoreMtimeFor: ref.implicit, limit: 10_000 });
      t.deepEqual(diffs.filter((d) => !LIMITS.some((l) => l.explains(d))), []);
    });
  });
}
