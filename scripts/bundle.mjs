#!/usr/bin/env node
// The last step of `npm run build`: the store's server (dist/src/server/main.js), which every first
// mount starts, rebuilt over tsc's output as one file bundling its own modules and lru-cache
// (esbuild, from the TypeScript sources). Unbundled, its start loaded ~90 modules, and Node's ESM
// loader resolving and reading them one by one cost it more CPU than Node's own start; bundled, the
// server reaches its first answer with ~40 % less CPU. The CLI's entry (dist/src/cli/main.js) is
// rebuilt with its fast path's dozen modules only, not every command (measured: a bundle of every
// command started slower; see below). Every other module stays as tsc wrote it (tests and tools
// import those). Each bundle sits at the same depth below dist/ as tsc's output, so its
// `new URL('../…', import.meta.url)` paths mean the same. Without esbuild in node_modules, tsc's
// unbundled server and CLI are left as they are.
import { dirname, join, relative } from 'node:path';
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

// The CLI's entry (dist/src/cli/main.js) bundles only what its fast path runs (fast-path.ts asking a
// running server: a dozen small modules that Node's ESM loader otherwise resolves, reads and links one
// by one, a third of a `mount`'s CPU above Node's own start). Everything else stays a module of its
// own, imported by the path from dist/src/cli/ (so every command's code loads only when it runs, as
// tsc wrote it), and so does util/errors.ts: its UserError is the one class every module must share
// (the funnel tells a user's mistake from a bug by it). The other hot modules hold no state that must
// be one: an unbundled module importing one of them gets its own copy.
const HOT = /^src\/(cli\/(main|fast-path)|util\/(error-funnel|mounts|proc|latin1)|store\/(paths|lock)|server\/(client|files|protocol)|native\/(sys|addon))\.ts$/;
await partialBundle('src/cli/main.ts', (ts) => HOT.test(ts));

// `image add` of a local tar (dist/src/cli/impl/image.js) with the indexer it runs: ~30 modules
// (store/image-layers.ts, tar/, index-file.ts, …) that Node's loader otherwise resolves, reads and
// links one by one before the first byte is decoded. Kept external (imported from where tsc wrote
// them): what the CLI's handler has loaded already (the store's collections, output.ts, context.ts),
// util/errors.ts (its UserError must be one class), native/addon.ts (it finds the addon relative to
// its own file), and whatever is imported only on demand (a URL, --recompress, a layer opened).
const SHARED = /^src\/(util\/errors|native\/addon|cli\/(output|context)|store\/(store|images|paths|meta|instances|mounts|stackpoints|lock))\.ts$/;
await partialBundle('src/cli/impl/image.ts', (ts, kind) => kind !== 'dynamic-import' && !SHARED.test(ts));

/**
 * `entry` (a .ts under src/) rebuilt over tsc's output as one file holding the modules `inline(path,
 * import kind)` picks (paths relative to the repository); every other relative import stays external,
 * imported from where tsc wrote it.
 */
function partialBundle(entry, inline) {
  const outDir = join(root, dirname(entry));
  return esbuild.build({
    absWorkingDir: root,
    entryPoints: [entry],
    outfile: join('dist', entry.replace(/\.ts$/, '.js')),
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    sourcemap: true,
    allowOverwrite: true,
    logLevel: 'warning',
    plugins: [
      {
        name: 'partial-bundle',
        setup(build) {
          build.onResolve({ filter: /^\.\.?\// }, (a) => {
            if (a.kind === 'entry-point') return undefined;
            const ts = join(a.resolveDir, a.path).replace(/\.js$/, '.ts');
            if (inline(relative(root, ts), a.kind)) return { path: ts };
            let rel = relative(outDir, ts).replace(/\.ts$/, '.js');
            if (!rel.startsWith('.')) rel = `./${rel}`;
            return { path: rel, external: true };
          });
        },
      },
    ],
  });
}
