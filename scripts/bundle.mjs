#!/usr/bin/env node
// The last step of `npm run build`: the store's server (dist/src/server/main.js), which every first
// mount starts, rebuilt over tsc's output as one file bundling its own modules and lru-cache
// (esbuild, from the TypeScript sources). Unbundled, its start loaded ~90 modules, and Node's ESM
// loader resolving and reading them one by one cost it more CPU than Node's own start; bundled, the
// server reaches its first answer with ~40 % less CPU. The CLI stays as tsc writes it: its fast path
// loads a handful of modules, fewer bytes than a bundle of every command (measured: a bundled CLI
// started slower). Every other module stays as tsc wrote it (tests and tools import those). The
// bundle sits at the same depth below dist/ as tsc's output, so its `new URL('../…', import.meta.url)`
// paths mean the same. Without esbuild in node_modules, tsc's unbundled server is left as it is.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
let esbuild;
try {
  esbuild = await import('esbuild');
} catch {
  console.error('bundle: esbuild is not installed (npm install): the server runs unbundled');
  process.exit(0);
}
await esbuild.build({
  absWorkingDir: root,
  entryPoints: ['src/server/main.ts'],
  outfile: 'dist/src/server/main.js',
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // fuse-native finds its addon from its own directory (node-gyp-build): required where it is used
  external: ['fuse-native'],
  sourcemap: true,
  allowOverwrite: true,
  // bundled CommonJS packages (tar-stream's) require Node's own modules: give them a require
  banner: { js: "import { createRequire as __bundleRequire } from 'node:module';\nconst require = __bundleRequire(import.meta.url);" },
  logLevel: 'warning',
});
