// Command handlers that load nothing until their command runs: the store (context.ts) and the verb's
// implementation are imported then, so `--help`, `--version`, completion and a mistyped command never
// pay for them (nx and lerna's command modules do the same).
import type { Context, GlobalOptions } from './context.js';

export type Args = GlobalOptions & Record<string, unknown>;

/** The names of M's exports that are command implementations: (ctx, args) => … */
type Verb<M> = { [K in keyof M]: M[K] extends (ctx: Context, a: never) => unknown ? K : never }[keyof M];

/**
 * The handler of a verb implemented by `load()`'s export `name`. yargs has checked the positionals
 * and options the verb's builder declares, so the parsed arguments are handed on as the shape the
 * implementation declares.
 */
export function run<M>(load: () => Promise<M>, name: Verb<M>): (a: Args) => Promise<void> {
  return async (a) => {
    if (a.cacheSize !== undefined) await useCacheSize(String(a.cacheSize));
    const [{ Context }, m] = await Promise.all([import('./context.js'), load()]);
    const verb = m[name] as unknown as (ctx: Context, a: Args) => unknown;
    await verb(new Context(a), a);
  };
}

/**
 * --cache-size: checked, then the chunk cache's bound for this process and for a server it spawns
 * (which inherits the environment), as TARSTACK_CACHE_SIZE would be.
 */
async function useCacheSize(v: string): Promise<void> {
  const { parseCacheSize } = await import('../remote/chunk-cache.js');
  if (parseCacheSize(v) === undefined) {
    const { UserError } = await import('../util/errors.js');
    throw new UserError(`--cache-size ${v}: give bytes, or a number with K, M or G (e.g. 4G)`);
  }
  process.env.TARSTACK_CACHE_SIZE = v;
}
