// Top-level `commit` (docker commit), and wafers' `stack` / `unstack`: definitions only.
import type { Argv, CommandModule } from 'yargs';
import type { GlobalOptions } from './context.js';
import { run, type Args } from './handler.js';
import { mountOptions } from './mount-options.js';

type Y = Argv<GlobalOptions>;
const impl = () => import('./impl/build.js');

export const stackCommands: Array<CommandModule<GlobalOptions, Args>> = [
  {
    command: 'commit <instance> <image>',
    describe: "Freeze an instance's changes into a new image on top of its own (refused while mounted)",
    builder: (y: Y) =>
      y
        .positional('instance', { type: 'string', demandOption: true, describe: 'the instance whose changes to freeze' })
        .positional('image', { type: 'string', demandOption: true, describe: 'name of the new image' })
        .example('$0 commit work app2', 'app2 = the image of work plus its changes, as one new layer'),
    handler: run(impl, 'commit'),
  },
  {
    command: 'stack <name> [parent]',
    describe: 'Mount an open image writable at $TARSTACK_STACKS/<name> (default: stacks/ in the store), making it on parent first if needed; prints the path last',
    builder: (y: Y) =>
      mountOptions(
        y
          .positional('name', { type: 'string', demandOption: true, describe: 'the image to edit (made the first time, when parent is given)' })
          .positional('parent', { type: 'string', describe: 'image to make it on, the first time' }),
      )
        .example('TARSTACK_STACKS=/var/lib/machines $0 stack box rootfs', 'make image box on rootfs and mount it at /var/lib/machines/box')
        .example('$0 unstack box && $0 image close box', 'unmount it, then freeze it'),
    handler: run(impl, 'stack'),
  },
  {
    command: 'unstack <names..>',
    describe: 'Unmount stacks (their changes stay for the next `stack` or `image close`)',
    builder: (y: Y) =>
      y
        .positional('names', { type: 'string', array: true, demandOption: true, describe: 'images mounted by `tarstack stack`' })
        .option('lazy', { type: 'boolean', describe: 'detach a busy mount instead of refusing' })
        .example('$0 unstack box', ''),
    handler: run(impl, 'unstack'),
  },
];
