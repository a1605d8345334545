// Every command of tarstack and its global options, in the order help lists them: what main.ts
// hands yargs, and what completion.ts reads to know the words, options and names each one takes.
import type { Argv } from 'yargs';
import type { GlobalOptions } from './context.js';
import { imageCommand } from './image.js';
import { instanceCommand, instanceVerbs } from './instance.js';
import { stackpointCommand } from './stackpoint.js';
import { stackCommands } from './stack.js';
import { completionCommand } from './completion.js';
import { serveCommand } from './serve.js';

export function globalOptions<T>(y: Argv<T>) {
  return y
    .option('store', { type: 'string', global: true, describe: 'store directory (default: $TARSTACK_HOME, /var/lib/tarstack for root, else ~/.local/share/tarstack)' })
    .option('json', { type: 'boolean', global: true, describe: 'machine-readable output' })
    .option('verbose', { type: 'boolean', global: true, describe: 'show stack traces of internal errors' })
    .option('cache-size', { type: 'string', global: true, describe: "bound of the store's chunk cache of remote layers, e.g. 4G (default: $TARSTACK_CACHE_SIZE, else 2G); a mount server the command starts keeps it" });
}

export function commands(y: Argv<GlobalOptions>): Argv<GlobalOptions> {
  return y.command(imageCommand).command(instanceCommand).command(instanceVerbs).command(stackpointCommand).command(stackCommands).command(serveCommand).command(completionCommand);
}
