// Top-level `commit` (docker commit), and wafers' `stack` / `unstack`: definitions only.
import type { Argv, CommandModule } from 'yargs';
import { Context, type GlobalOptions } from './context.js';

type A = GlobalOptions & Record<string, unknown>;
type Y = Argv<GlobalOptions>;
const impl = () => import('./impl/build.js');
const args = <T>(a: A): T => a as unknown as T;

export const stackCommands: Array<CommandModule<GlobalOptions, A>> = [
  {
    command: 'commit <instance> <image>',
    describe: 'Freeze an instance\'s changes into a new image on top of its own (refused while mounted)',
    builder: (y: Y) => y.positional('instance', { type: 'string', demandOption: true }).positional('image', { type: 'string', demandOption: true, describe: 'name of the new image' }),
    handler: async (a: A) => (await impl()).commit(new Context(a), args(a)),
  },
  {
    command: 'stack <name> [parent]',
    describe: 'Mount an open image writable at $TARSTACK_STACKS/<name> (default: stacks/ in the store), making it on parent first if needed; prints the path last',
    builder: (y: Y) => y.positional('name', { type: 'string', demandOption: true }).positional('parent', { type: 'string', describe: 'image to make it on, the first time' }),
    handler: async (a: A) => (await impl()).stack(new Context(a), args(a)),
  },
  {
    command: 'unstack <names..>',
    describe: 'Unmount stacks (their changes stay for the next `stack` or `image close`)',
    builder: (y: Y) => y.positional('names', { type: 'string', array: true, demandOption: true }).option('lazy', { type: 'boolean', describe: 'detach a busy mount instead of refusing' }),
    handler: async (a: A) => (await impl()).unstack(new Context(a), args(a)),
  },
];
