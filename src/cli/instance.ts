// `tarstack instance <verb>` and tar-overlay's top-level aliases (create, list, info, mount,
// umount, rename, reset, rm, diff/show-changes, status). Definitions only; handlers load lazily.
import type { Argv, CommandModule } from 'yargs';
import { Context, type GlobalOptions } from './context.js';

const impl = () => import('./impl/instance.js');
const mountImpl = () => import('./impl/mount.js');
type Y = Argv<GlobalOptions>;

/** Each verb once, so `instance X` and the top-level `X` cannot drift apart. */
type A = GlobalOptions & Record<string, unknown>;
/** yargs has checked the positionals each builder demands; hand them on with the shape the implementation declares. */
const args = <T>(a: A): T => a as unknown as T;

export const instanceVerbs: Array<CommandModule<GlobalOptions, A>> = [
  {
    command: 'create <instance> <image>',
    describe: 'Make a writable instance of an image',
    builder: (y: Y) =>
      y
        .positional('instance', { type: 'string', demandOption: true })
        .positional('image', { type: 'string', demandOption: true })
        .option('tmp', { type: 'boolean', describe: 'changes live only while mounted and vanish at unmount' })
        .option('size', { type: 'string', describe: 'most file data the instance may hold (e.g. 512M, 1G): ENOSPC past it' })
        .option('dir', { type: 'string', array: true, describe: 'directories to make in it, owned by you (repeatable)' }),
    handler: async (a: A) => (await impl()).instanceCreate(new Context(a), args(a)),
  },
  {
    command: 'list',
    describe: 'List instances',
    handler: async (a: A) => (await impl()).instanceList(new Context(a)),
  },
  {
    command: 'info <instance>',
    describe: 'Show an instance',
    builder: (y: Y) => y.positional('instance', { type: 'string', demandOption: true }),
    handler: async (a: A) => (await impl()).instanceInfo(new Context(a), args(a)),
  },
  {
    command: 'mount [instance] [dir]',
    describe: 'Mount an instance (at dir, else under the store); prints the mount path last',
    builder: (y: Y) =>
      y
        .positional('instance', { type: 'string' })
        .positional('dir', { type: 'string' })
        .option('all', { type: 'boolean', describe: 'mount every instance that is not mounted' })
        .option('tmp', { type: 'boolean', describe: 'throwaway: this mount\'s changes vanish at unmount' })
        .option('foreground', { type: 'boolean', describe: 'serve in this process until unmounted (for systemd)' })
        .option('nonempty', { type: 'boolean', describe: 'allow mounting over a non-empty directory' })
        .option('allow-other', { type: 'boolean', describe: 'let other users in (with permission checks)' })
        .option('owners', { choices: ['mapped', 'stored'] as const, describe: "owners shown to an ordinary user: mapped to them (default) or the tar's (stored)" }),
    handler: async (a: A) => (await mountImpl()).instanceMount(new Context(a), args(a)),
  },
  {
    command: 'umount [target]',
    describe: 'Unmount an instance or mount point (refused while busy unless --lazy)',
    builder: (y: Y) =>
      y
        .positional('target', { type: 'string', describe: 'instance name or mount point' })
        .option('lazy', { type: 'boolean', describe: 'detach now, release when the last user leaves' })
        .option('force', { type: 'boolean', describe: 'abort a hung connection, then detach' })
        .option('all', { type: 'boolean', describe: 'unmount every tarstack mount of this store' }),
    handler: async (a: A) => (await mountImpl()).umount(new Context(a), args(a)),
  },
  {
    command: 'rename <instance> <newName>',
    describe: 'Rename an instance',
    builder: (y: Y) => y.positional('instance', { type: 'string', demandOption: true }).positional('newName', { type: 'string', demandOption: true }),
    handler: async (a: A) => (await impl()).instanceRename(new Context(a), args(a)),
  },
  {
    command: 'reset <instance>',
    describe: 'Undo every change (refused while mounted)',
    builder: (y: Y) => y.positional('instance', { type: 'string', demandOption: true }),
    handler: async (a: A) => (await impl()).instanceReset(new Context(a), args(a)),
  },
  {
    command: 'rm <instance>',
    describe: 'Remove an instance and its changes (refused while mounted)',
    builder: (y: Y) => y.positional('instance', { type: 'string', demandOption: true }),
    handler: async (a: A) => (await impl()).instanceRm(new Context(a), args(a)),
  },
  {
    command: ['diff <instance>', 'show-changes <instance>'],
    describe: 'What changed against the image: a tree, --porcelain (A/M/D lines) or --json',
    builder: (y: Y) => y.positional('instance', { type: 'string', demandOption: true }).option('porcelain', { type: 'boolean', describe: 'one "A|M|D path" line per change' }),
    handler: async (a: A) => (await impl()).instanceDiff(new Context(a), args(a)),
  },
  {
    command: 'status [instance]',
    describe: 'What is mounted, and whether its daemon is alive',
    builder: (y: Y) => y.positional('instance', { type: 'string' }),
    handler: async (a: A) => (await mountImpl()).status(new Context(a), args(a)),
  },
];

export const instanceCommand: CommandModule<GlobalOptions, GlobalOptions> = {
  command: 'instance <verb>',
  describe: 'Instances: writable copy-on-write views of an image',
  builder: (y: Y) => {
    for (const v of instanceVerbs) y.command(v);
    return y.demandCommand(1, 'name an instance verb').strict();
  },
  handler: () => undefined,
};
