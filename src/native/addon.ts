// Loads tarstack_native.node once: the only place that finds the addon. TARSTACK_NATIVE_ADDON may
// name another build (e.g. one with sanitizers).
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

let loaded: unknown;

export function loadAddon(): unknown {
  if (loaded) return loaded;
  // fileURLToPath, not .pathname: a checkout under a path with spaces or non-ASCII names must load too.
  const path = process.env.TARSTACK_NATIVE_ADDON ?? fileURLToPath(new URL('../../../native-bindings/build/Release/tarstack_native.node', import.meta.url));
  try {
    loaded = createRequire(import.meta.url)(path);
  } catch (err) {
    throw new Error(`cannot load ${path} (run \`npm run build:native\`): ${(err as Error).message}`);
  }
  return loaded;
}
