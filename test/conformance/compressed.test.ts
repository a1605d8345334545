// The conformance suite on tarstack-overlay over compressed tar lowers (.tar.gz, .tar.zst, .tar.xz),
// each compared with kernel overlayfs over the same tree.
import test from 'ava';
import path from 'node:path';
import { compress } from '../helpers/compressed.js';
import { buildLower, conformanceFile, kernelSpec, mountSpec, tarOf } from './suite.js';

conformanceFile(test, 'compressed', ['overlay-tar.gz', 'overlay-tar.zst', 'overlay-tar.xz'], (root, other) => {
  const layers = path.join(root, 'layers');
  const lower = buildLower(layers);
  const tar = tarOf(lower, path.join(layers, 'lower.tar'));
  const caller = { other };
  return {
    references: { kernel: kernelSpec('kernel', [lower], caller) },
    configs: (['gzip', 'zstd', 'xz'] as const).map((shape, i) =>
      mountSpec(['overlay-tar.gz', 'overlay-tar.zst', 'overlay-tar.xz'][i]!, { kind: 'overlay-program', lowers: [compress(tar, layers, shape).path] }, caller, 'kernel')),
  };
});
