// The conformance suite on tarstack-overlay over an upper rotated into the lower list: a first mount
// over the lower copies every case's files up (or runs the case's rotate step: defect 4 renames a
// directory there), then the cases run on a new upper over [that upper, the lower]. Kernel overlayfs
// goes through the same two steps with its own first upper.
import test from 'ava';
import path from 'node:path';
import { mount } from '../helpers/mounted.js';
import type { UserIds } from '../helpers/ordinary-user.js';
import { buildLower, conformanceFile, rotateCases, type ConfigSpec } from './suite.js';

function rotated(name: string, kind: 'kernel' | 'overlay-program', lower: string, other: UserIds, reference: string): ConfigSpec {
  const caller = { other };
  return {
    name, caller, reference,
    async mount(dir) {
      const first = await mount(undefined, path.join(dir, 'first'), { kind, lowers: [lower] });
      try {
        await rotateCases(first, caller);
      } finally {
        await first.unmount();
      }
      return mount(undefined, path.join(dir, 'second'), { kind, lowers: [first.upper!, lower] });
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
