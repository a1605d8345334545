// The conformance suite on tarstack-overlay over a directory lower and over a plain tar lower, each
// compared with kernel overlayfs over the same lower (run by root, with another user for the
// permission cases).
import test from 'ava';
import path from 'node:path';
import { buildLower, conformanceFile, kernelSpec, mountSpec, tarOf } from './suite.js';

conformanceFile(test, 'overlay', ['overlay-dir', 'overlay-tar'], (root, other) => {
  const lower = buildLower(path.join(root, 'layers'));
  const tar = tarOf(lower, path.join(root, 'layers', 'lower.tar'));
  const caller = { other };
  return {
    references: { kernel: kernelSpec('kernel', [lower], caller) },
    configs: [
      mountSpec('overlay-dir', { kind: 'overlay-program', lowers: [lower] }, caller, 'kernel'),
      mountSpec('overlay-tar', { kind: 'overlay-program', lowers: [tar] }, caller, 'kernel'),
    ],
  };
});
