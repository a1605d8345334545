// Top-level mount commands: `umount`, `status`. Definitions only; implementations load lazily.
import type { CommandModule } from 'yargs';
import { Context, type GlobalOptions } from './context.js';

const impl = () => import('./impl/mount.js');

export const umountCommand: CommandModule<GlobalOptions, GlobalOptions & { target?: string; lazy?: boolean; force?: boolean; all?: boolean }> = {
  command: 'umount [target]',
  describe: 'Unmount a tarstack mount (refused while busy unless --lazy)',
  builder: (y) =>
    y
      .positional('target', { type: 'string', describe: 'mount point' })
      .option('lazy', { type: 'boolean', describe: 'detach now, release when the last user leaves' })
      .option('force', { type: 'boolean', describe: 'abort a hung connection, then detach' })
      .option('all', { type: 'boolean', describe: 'unmount every tarstack mount of this store' }),
  handler: async (a) => (await impl()).umount(new Context(a), a),
};

export const statusCommand: CommandModule<GlobalOptions, GlobalOptions> = {
  command: 'status',
  describe: 'Show what is mounted and whether its daemon is alive',
  handler: async (a) => (await impl()).status(new Context(a)),
};
