// `tarstack stackpoint <verb>` (stacko's stackpoints): definitions only; handlers load lazily.
import type { Argv, CommandModule } from 'yargs';
import { Context, type GlobalOptions } from './context.js';

type A = GlobalOptions & Record<string, unknown>;
type Y = Argv<GlobalOptions>;
const impl = () => import('./impl/stackpoint.js');
const args = <T>(a: A): T => a as unknown as T;
const sp = (y: Y) => y.positional('sp', { type: 'string', demandOption: true, describe: 'stackpoint name' });
const lazy = (y: Y) => y.option('lazy', { type: 'boolean', describe: 'a busy mount is detached (its users keep the old instance until they leave) instead of refused' });

export const stackpointCommand: CommandModule<GlobalOptions, A> = {
  command: 'stackpoint <verb>',
  describe: 'Stackpoints: a mount path that shows one instance, switched by cutover and fallback',
  builder: (y: Y) =>
    y
      .command('create <sp> <image>', 'Make a stackpoint with a new instance of an image', (c) => sp(c).positional('image', { type: 'string', demandOption: true }).option('path', { type: 'string', describe: 'where it mounts (default: under the store)' }), async (a) => (await impl()).spCreate(new Context(a), args(a)))
      .command('mount <sp>', 'Mount the stackpoint\'s instance at its path (prints the path last)', (c) => sp(c).option('nonempty', { type: 'boolean', describe: 'allow mounting over a non-empty directory' }).option('allow-other', { type: 'boolean', describe: 'let other users in (with permission checks)' }), async (a) => (await impl()).spMount(new Context(a), args(a)))
      .command('umount <sp>', 'Unmount it (refused while busy unless --lazy)', (c) => lazy(sp(c)), async (a) => (await impl()).spUmount(new Context(a), args(a)))
      .command('cutover <sp> <image>', 'Switch to an instance of another image (made once, then reused), remembering this one', (c) => lazy(sp(c)).positional('image', { type: 'string', demandOption: true }), async (a) => (await impl()).spCutover(new Context(a), args(a)))
      .command('fallback <sp>', 'Switch back to the previous instance, changes and all', (c) => lazy(sp(c)), async (a) => (await impl()).spFallback(new Context(a), args(a)))
      .command('set <sp> <instance>', 'Switch to a given instance', (c) => lazy(sp(c)).positional('instance', { type: 'string', demandOption: true }), async (a) => (await impl()).spSet(new Context(a), args(a)))
      .command('list', 'List stackpoints', (c) => c, async (a) => (await impl()).spList(new Context(a)))
      .command('path <sp>', 'Print where it mounts', (c) => sp(c), async (a) => (await impl()).spPath(new Context(a), args(a)))
      .command('status <sp>', 'Whether it is mounted, and with which instance', (c) => sp(c), async (a) => (await impl()).spStatus(new Context(a), args(a)))
      .command('rm <sp>', 'Remove it (refused while mounted); its instances stay unless --instances', (c) => sp(c).option('instances', { type: 'boolean', describe: 'also remove the instances it made, unless another stackpoint uses them' }), async (a) => (await impl()).spRm(new Context(a), args(a)))
      .demandCommand(1, 'name a stackpoint verb (create, mount, umount, cutover, fallback, set, list, path, status, rm)')
      .strict(),
  handler: () => undefined,
};
