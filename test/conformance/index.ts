// The named conformance suite: every case by name (go-fuse's posixtest.All). A case takes a
// directory of its own in a mounted tree (see case.ts); test/conformance/*.test.ts run them all
// against every configuration and compare each with kernel overlayfs over the same layers.
import type { Case } from './case.js';
import { data } from './cases/data.js';
import { defects } from './cases/defects.js';
import { links } from './cases/links.js';
import { names } from './cases/names.js';
import { open } from './cases/open.js';
import { perms } from './cases/perms.js';
import { readdir } from './cases/readdir.js';
import { rename } from './cases/rename.js';
import { special } from './cases/special.js';
import { timesCases } from './cases/times.js';
import { xattrs } from './cases/xattrs.js';

export const cases: Record<string, Case> = { ...links, ...rename, ...open, ...names, ...timesCases, ...perms, ...xattrs, ...special, ...data, ...readdir, ...defects };
