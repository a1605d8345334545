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
    const [{ Context }, m] = await Promise.all([import('./context.js'), load()]);
    const verb = m[name] as unknown as (ctx: Context, a: Args) => unknown;
    await verb(new Context(a), a);
  };
}
