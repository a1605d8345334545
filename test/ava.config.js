// ava's settings for `npm test` (scripts/test). Tests run through real FUSE mounts and wait on
// mounts, servers and child programs: four files at a time keep the two CPUs busy. The files that take longest start first, so none of them is left running
// alone at the end (longest first: the order that keeps a run's length closest to its busiest file);
// re-measure (CPU of each file alone) when files grow or move.
// The timeout fires only when no test finishes for that long: 5 min covers valgrind passes on a
// loaded machine while a hang still ends the run.
const SLOW_FIRST = [
  // CPU seconds of each file run alone (cgroup cpuacct, load 6-16, Dec 2026), the longest first: with
  // four files on two CPUs a file's length in the run follows its CPU. Files under ~9 s follow by name.
  'remote-registry', // 25 s
  'e2e-compressed', // 24
  'hostile-tars', // 20
  'remote-toc', // 19
  'e2e-readonly', // 19
  'instance-model', // 18
  'instance-programs', // 17
  'mountprog/redirect-lowers', // 17
  'stackpoint-cli', // 16
  'cli-fast-path', // 16
  'server-lifecycle', // 16
  'e2e-compressed-layers', // 16
  'remote-url', // 16
  'codec-memcheck', // 15
  'native-memcheck', // 14
  'conformance/compressed', // 14
  'cli-help', // 14
  'image-build-cli', // 14
  'instance-cli-errors', // 13
  'server-many', // 13
  'load', // 12
  'conformance/instance', // 11
  'root-mounts', // 11
  'instance-cli', // 11
  'e2e-readonly-fuse-native', // 10
  'cli-reports', // 10
  'server-faults', // 10
  'conformance/rotated', // 10
  'conformance/overlay', // 10
  'image-transfer-cli', // 10
  'mountprog/podman', // 9
];

const rank = (file) => {
  const i = SLOW_FIRST.findIndex((name) => file.endsWith(`/dist/test/${name}.test.js`));
  return i < 0 ? SLOW_FIRST.length : i;
};

export default {
  files: ['dist/test/**/*.test.js'],
  timeout: '5m',
  concurrency: 4,
  workerThreads: false,
  sortTestFiles: (a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0),
};
