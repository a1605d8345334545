// ava's settings for `npm test` (scripts/test). Tests run through real FUSE mounts and spend most of
// their time waiting on mounts, servers and child programs, not on the CPU: four files at a time
// keep the two CPUs busy. The files that take longest start first, so none of them is left running
// alone at the end (longest first: the order that keeps a run's length closest to its busiest file).
// The timeout fires only when no test finishes for that long: 5 min covers valgrind passes on a
// loaded machine while a hang still ends the run.
const SLOW_FIRST = [
  'conformance/instance',
  'conformance/overlay',
  'conformance/compressed',
  'conformance/rotated',
  'e2e-compressed',
  'e2e-readonly',
  'instance-programs',
  'instance-model',
  'stackpoint-cli',
  'native-memcheck',
  'e2e-compressed-layers',
  'mountprog/dir-image',
  'rootless',
  'image-build-cli',
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
