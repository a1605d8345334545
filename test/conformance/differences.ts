// Where tarstack deliberately differs from kernel overlayfs, step by step: the case, the step's
// label, the configurations (a pattern over their names) and what tarstack gives instead (a value,
// or a test of tarstack's and the kernel's outcomes). docs/conformance.md lists each with why.
export interface Difference {
  case: string;
  step: string;
  configs: RegExp;
  tarstack: unknown | ((ours: unknown, kernel: unknown) => boolean);
  why: string;
}

const ALL = /./;
const INSTANCE = /^instance-/;
const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

export const DIFFERENCES: Difference[] = [
  {
    case: 'data/holes', step: 'SEEK_DATA 0, SEEK_HOLE 0', configs: ALL, tarstack: 'False 8392704',
    why: 'no FUSE lseek yet: the kernel answers SEEK_DATA/SEEK_HOLE as for a file without holes, which POSIX allows',
  },
  ...['set trusted.overlay.x', 'list'].map((step) => ({
    case: 'xattrs/overlay-names', step, configs: ALL, tarstack: step === 'list' ? [] : 'EPERM',
    why: 'trusted.overlay.* names are the upper format; kernels from 6.7 escape them for nested overlays, tarstack refuses them as earlier kernels do',
  })),
  // An instance keeps a hard-link set one inode through copy-up (DESIGN: hard links); kernel
  // overlayfs with index=off copies one name up and breaks the set.
  ...([
    ['read g', 'lower+f'], ['read h', 'lower+f'],
    ['nlink f, g', [2, 2]], ['same inode', true], ['nlink f, g, h', [3, 3, 3]], ['nlink g, h', [2, 2]],
  ] as const).map(([step, value]) => ({
    case: 'links/lower-set', step, configs: INSTANCE, tarstack: value,
    why: 'an instance keeps a hard-link set one inode through copy-up; kernel overlayfs with index=off breaks the set at copy-up',
  })),
  // A user's instance shows the layers' trusted.* xattrs to its user, who owns everything in it (as
  // under fakeroot; kept.ts keeps what the host refuses them); the kernel lists trusted.* to CAP_SYS_ADMIN only.
  {
    case: '*xattrs/lower-', step: 'list', configs: /^instance-user$/,
    tarstack: (ours: unknown, kernel: unknown) => Array.isArray(kernel) && same(ours, [...kernel, 'trusted.low'].sort()),
    why: "a user's instance lists the layers' trusted.* xattrs to its user, who owns the whole tree there (as under fakeroot)",
  },
];

export function differenceFor(name: string, step: string, config: string): Difference | undefined {
  return DIFFERENCES.find((d) => (d.case.startsWith('*') ? name.startsWith(d.case.slice(1)) : d.case === name) && d.step === step && d.configs.test(config));
}
