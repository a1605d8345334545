// The conformance suite on tarstack instances over a tar layer: mounted by root with --allow-other
// (the cases run as root, with another user for the permission cases), and mounted by an ordinary
// user (the cases run as that user, over a layer that is theirs). Each is compared with kernel
// overlayfs over the same layer, run by the same caller.
import test from 'ava';
import path from 'node:path';
import { buildLower, conformanceFile, kernelSpec, mountSpec, tarOf } from './suite.js';

conformanceFile(test, 'instance', ['instance-root', 'instance-user'], (root, other) => {
  const lower = buildLower(path.join(root, 'layers-root'));
  const tar = tarOf(lower, path.join(root, 'layers-root', 'lower.tar'));
  const userLower = buildLower(path.join(root, 'layers-user'), other);
  const userTar = tarOf(userLower, path.join(root, 'layers-user', 'lower.tar'));
  return {
    references: {
      'kernel-root': kernelSpec('kernel-root', [lower], { other }),
      'kernel-user': kernelSpec('kernel-user', [userLower], { user: other }),
    },
    configs: [
      mountSpec('instance-root', { kind: 'instance', lowers: [tar], options: ['--allow-other'] }, { other }, 'kernel-root'),
      mountSpec('instance-user', { kind: 'instance', lowers: [userTar], user: other }, { user: other }, 'kernel-user'),
    ],
  };
});
