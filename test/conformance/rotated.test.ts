// The conformance suite on tarstack-overlay over uppers rotated into the lower list, up to 10 lower
// layers: nine mounts one after another, each over the uppers before it (newest on top) and the
// lower, run a rotation round (run-cases.ts): the first copies every case's files up (or runs the
// case's rotate hook: defect 4 renames a directory there), each later one a different share of
// them, so the cases' directories merge across all ten layers; then the cases run on a new upper
// over [the nine uppers, the lower]. Kernel overlayfs goes through the same rounds with its own uppers.
import test from 'ava';
import path from 'node:path';
import { mount } from '../helpers/mounted.js';
import type { UserIds } from '../helpers/ordinary-user.js';
import { buildLower, conformanceFile, rotateCases, type ConfigSpec } from './suite.js';

/** Rotation rounds: the cases run over this many rotated uppers and the lower. */
export const ROUNDS = 9;

function rotated(name: string, kind: 'kernel' | 'overlay-program', lower: string, other: UserIds, reference: string): ConfigSpec {
  const caller = { other };
  return {
    name, caller, reference,
    async mount(dir) {
      const uppers: string[] = [];
      for (let round = 1; round <= ROUNDS; round++) {
        const m = await mount(undefined, path.join(dir, `round-${round}`), { kind, lowers: [...uppers, lower] });
        try {
          await rotateCases(m, caller, round);
        } finally {
          await m.unmount();
        }
        uppers.unshift(m.upper!);
      }
      return mount(undefined, path.join(dir, 'last'), { kind, lowers: [...uppers, lower] });
    },
  };
}

conformanceFile(test, 'rotated', ['overlay-rotated'], (root, other) => {
  const lower = buildLower(path.join(root, 'layers'));
  return {
    references: { kernel: rotated('kernel-rotated', 'kernel', lower, other, 'kernel') },
    configs: [rotated('overlay-rotated', 'overlay-program', lower, other, 'kernel')],
  };
});
