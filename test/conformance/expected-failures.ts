// Defects not fixed yet on main, each case that fails because of one, per configuration (a pattern
// over their names): issue 12's defects by number, and what this suite found beyond them by a short
// name (docs/conformance.md says what each is). The case must fail now; when the fix lands the suite
// says the case passes, and the entry goes.
export interface ExpectedFailure {
  case: string;
  configs: RegExp;
  defect: number | string;
  /** The defect shows or not depending on which names the kernel still caches: the case may pass. */
  sometimes?: true;
}

const OVERLAY = /^overlay-/;
const INSTANCE = /^instance-/;
const TARSTACK = /./;

export const EXPECTED_FAILURES: ExpectedFailure[] = [
  // 1: the daemon's own path to the upper counts against PATH_MAX
  { case: 'defect/1-path-max', configs: TARSTACK, defect: 1 },
  { case: 'names/path-max', configs: TARSTACK, defect: 1 },
  // 2: hard links to special files and symlinks (the link count in a user.* xattr)
  { case: 'defect/2-hard-links-to-special-files', configs: TARSTACK, defect: 2 },
  ...['links/new-l', 'links/new-p', 'links/new-s', 'links/new-c', 'links/new-b', 'links/lower-l', 'links/lower-p']
    .map((c) => ({ case: c, configs: INSTANCE, defect: 2 })),
  // (a user's instance keeps devices in its metadata, and links them)
  ...['links/lower-c', 'links/lower-b'].map((c) => ({ case: c, configs: /^instance-root$/, defect: 2 })),
  // 3: tarstack-overlay keeps one name per inode of a hard-link set
  ...['links/new-f', 'links/new-l', 'links/new-p', 'links/new-s', 'links/new-c', 'links/new-b', 'links/lower-f', 'links/lower-l', 'links/lower-p', 'links/lower-c', 'links/lower-b',
    'rename/hard-links', 'defect/3-stale-names'].map((c) => ({ case: c, configs: OVERLAY, defect: 3 })),
  { case: 'times/links', configs: OVERLAY, defect: 3, sometimes: true },
  // 4: redirects in directory lowers are not followed
  { case: 'defect/4-redirect-in-lower', configs: /^overlay-rotated$/, defect: 4 },
  // 5: mknod c 0 0 makes a whiteout
  { case: 'defect/5-mknod-char-0-0', configs: TARSTACK, defect: 5 },
  // found by this suite: fstat of an open directory after rmdir fails with ENOENT (the kernel: nlink 0)
  { case: 'open/unlink-while-open', configs: TARSTACK, defect: 'fstat-removed-dir' },
  // found by this suite: a new file's atime, mtime and ctime are not always one time (the upper's file is chowned to the caller after it is made, which moves ctime when the clock ticks between)
  { case: 'times/new-file', configs: TARSTACK, defect: 'new-file-times', sometimes: true },
  // found by this suite: a user's instance takes xattrs of any namespace (bogus.x), the kernel EOPNOTSUPP
  { case: 'xattrs/flags', configs: /^instance-user$/, defect: 'xattr-namespace' },
];

export function expectedFailure(name: string, config: string): ExpectedFailure | undefined {
  return EXPECTED_FAILURES.find((e) => e.case === name && e.configs.test(config));
}
