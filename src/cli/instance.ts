// `tarstack instance <verb>` and tar-overlay's top-level aliases (create, list, info, mount,
// umount, rename, reset, rm, diff/show-changes, status). Definitions only; handlers load lazily.
import type { Argv, CommandModule } from 'yargs';
import type { GlobalOptions } from './context.js';
import { run, type Args } from './handler.js';
import { mountOptions } from './mount-options.js';

const impl = () => import('./impl/instance.js');
const mountImpl = () => import('./impl/mount.js');
type Y = Argv<GlobalOptions>;
const instance = (y: Y) => y.positional('instance', { type: 'string', demandOption: true, describe: 'instance name (see `tarstack list`)' });

/** Each verb once, so `instance X` and the top-level `X` cannot drift apart. */
export const instanceVerbs: Array<CommandModule<GlobalOptions, Args>> = [
  {
    command: 'create <instance> <image>',
    describe: 'Make a writable instance of an image',
    builder: (y: Y) =>
      y
        .positional('instance', { type: 'string', demandOption: true, describe: 'name of the new instance' })
        .positional('image', { type: 'string', demandOption: true, describe: 'the image it is a view of (see `tarstack image list`)' })
        .option('tmp', { type: 'boolean', describe: 'changes live only while mounted and vanish at unmount' })
        .option('size', { type: 'string', describe: 'most file data the instance may hold (e.g. 512M, 1G): ENOSPC past it' })
        .option('dir', { type: 'string', array: true, describe: 'directories to make in it, owned by you (repeatable)' })
        .example('$0 create work rootfs', 'then `tarstack mount work`')
        .example('$0 create small app --size 1G --dir /var/cache/app', 'at most 1 GiB of changes; a directory owned by you'),
    handler: run(impl, 'instanceCreate'),
  },
  {
    command: 'list',
    describe: 'List instances',
    builder: (y: Y) => y.example('$0 list', 'each instance, its image and where it is mounted'),
    handler: run(impl, 'instanceList'),
  },
  {
    command: 'info <instance>',
    describe: 'Show an instance: its image, upper, size and mount',
    builder: (y: Y) => instance(y).example('$0 info work --json', ''),
    handler: run(impl, 'instanceInfo'),
  },
  {
    command: 'mount [instance] [dir]',
    describe: 'Mount an instance (at dir, else under the store); prints the mount path last',
    builder: (y: Y) =>
      mountOptions(
        y
          .positional('instance', { type: 'string', describe: 'instance name (see `tarstack list`)' })
          .positional('dir', { type: 'string', describe: 'mount point: an empty directory (default: under the store)' }),
      )
        .option('all', { type: 'boolean', describe: 'mount every dead mount again where it was, then every instance that is not mounted' })
        .option('tmp', { type: 'boolean', describe: "throwaway: this mount's changes vanish at unmount" })
        .option('foreground', { type: 'boolean', describe: 'serve in this process until unmounted (for systemd)' })
        .option('owners', { choices: ['mapped', 'stored'] as const, describe: "owners shown to an ordinary user: mapped to them (default) or the tar's (stored)" })
        .example('cd "$($0 mount work | tail -1)"', 'mount under the store and go there')
        .example('$0 mount work /mnt/work', ''),
    handler: run(mountImpl, 'instanceMount'),
  },
  {
    command: 'umount [target]',
    describe: 'Unmount an instance or mount point (refused while busy unless --lazy)',
    builder: (y: Y) =>
      y
        .positional('target', { type: 'string', describe: 'a mount point (when it has a / or names an existing directory), else an instance name' })
        .option('lazy', { type: 'boolean', describe: 'detach now, release when the last user leaves' })
        .option('force', { type: 'boolean', describe: 'abort a hung connection, then detach' })
        .option('all', { type: 'boolean', describe: 'unmount every tarstack mount of this store' })
        .example('$0 umount work', '')
        .example('$0 umount /mnt/work --lazy', 'detach a busy mount; its users keep it until they leave'),
    handler: run(mountImpl, 'umount'),
  },
  {
    command: 'rename <instance> <newName>',
    describe: 'Rename an instance',
    builder: (y: Y) => instance(y).positional('newName', { type: 'string', demandOption: true, describe: 'the new name' }).example('$0 rename work w2', ''),
    handler: run(impl, 'instanceRename'),
  },
  {
    command: 'reset <instance>',
    describe: 'Undo every change (refused while mounted)',
    builder: (y: Y) => instance(y).example('$0 reset work', 'back to the image'),
    handler: run(impl, 'instanceReset'),
  },
  {
    command: 'rm <instance>',
    describe: 'Remove an instance and its changes (refused while mounted)',
    builder: (y: Y) => instance(y).example('$0 rm work', ''),
    handler: run(impl, 'instanceRm'),
  },
  {
    command: ['diff <instance>', 'show-changes <instance>'],
    describe: 'What changed against the image: a tree, --porcelain (A/M/D lines) or --json',
    builder: (y: Y) =>
      instance(y)
        .option('porcelain', { type: 'boolean', describe: 'one "A|M|D path" line per change' })
        .example('$0 diff work', 'a tree, each change marked [A]dded, [M]odified or [D]eleted')
        .example('$0 diff work --porcelain', ''),
    handler: run(impl, 'instanceDiff'),
  },
  {
    command: 'status [instance]',
    describe: 'What is mounted, and whether its server is alive',
    builder: (y: Y) => y.positional('instance', { type: 'string', describe: 'only this instance' }).example('$0 status', 'every mount of the store'),
    handler: run(mountImpl, 'status'),
  },
];

export const instanceCommand: CommandModule<GlobalOptions, GlobalOptions> = {
  command: 'instance <verb>',
  describe: 'Instances: writable copy-on-write views of an image',
  builder: (y: Y) => {
    for (const v of instanceVerbs) y.command(v);
    return y.demandCommand(1, 'name an instance verb (create, list, info, mount, umount, rename, reset, rm, diff, status)').strict();
  },
  handler: () => undefined,
};
