// Loads tarstack_native.node once: the only place that finds the addon. TARSTACK_NATIVE_ADDON may
// name another build (e.g. one with sanitizers).
import { createRequire } from 'node:module';

let loaded: unknown;

export function loadAddon(): unknown {
  if (loaded) return loaded;
  const path = process.env.TARSTACK_NATIVE_ADDON ?? new URL('../../../native-bindings/build/Release/tarstack_native.node', import.meta.url).pathname;
  try {
    loaded = createRequire(import.meta.url)(path);
  } catch (err) {
    throw new Error(`cannot load ${path} (run \`npm run build:native\`): ${(err as Error).message}`);
  }
  return loaded;
}
