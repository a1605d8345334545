// `tarstack stackpoint <verb>` (stacko's stackpoints): definitions only; handlers load lazily.
import type { Argv, CommandModule } from 'yargs';
import type { GlobalOptions } from './context.js';
import { run, type Args } from './handler.js';
import { mountOptions } from './mount-options.js';

type Y = Argv<GlobalOptions>;
const impl = () => import('./impl/stackpoint.js');
const sp = (y: Y) => y.positional('sp', { type: 'string', demandOption: true, describe: 'stackpoint name (see `tarstack stackpoint list`)' });
const lazy = (y: Y) => y.option('lazy', { type: 'boolean', describe: 'a busy mount is detached (its users keep the old instance until they leave) instead of refused' });
const image = (describe: string) => (y: Y) => y.positional('image', { type: 'string', demandOption: true, describe });

export const stackpointCommand: CommandModule<GlobalOptions, Args> = {
  command: 'stackpoint <verb>',
  describe: 'Stackpoints: a mount path that shows one instance, switched by cutover and fallback',
  builder: (y: Y) =>
    y
      .command(
        'create <sp> <image>',
        'Make a stackpoint with a new instance of an image',
        (c) =>
          image('the image its first instance is made of')(c.positional('sp', { type: 'string', demandOption: true, describe: 'name of the new stackpoint' }))
            .option('path', { type: 'string', describe: 'where it mounts (default: under the store)' })
            .example('$0 stackpoint create web app --path /srv/web', 'then `tarstack stackpoint mount web`'),
        run(impl, 'spCreate'),
      )
      .command('mount <sp>', "Mount the stackpoint's instance at its path (prints the path last)", (c) => mountOptions(sp(c)).example('$0 stackpoint mount web', ''), run(impl, 'spMount'))
      .command('umount <sp>', 'Unmount it (refused while busy unless --lazy)', (c) => lazy(sp(c)).example('$0 stackpoint umount web', ''), run(impl, 'spUmount'))
      .command(
        'cutover <sp> <image>',
        'Switch to an instance of another image (made once, then reused), remembering this one',
        (c) => image('the image to switch to')(lazy(sp(c))).example('$0 stackpoint cutover web app2', 'unmount, then mount an instance of app2 at the same path'),
        run(impl, 'spCutover'),
      )
      .command('fallback <sp>', 'Switch back to the previous instance, changes and all', (c) => lazy(sp(c)).example('$0 stackpoint fallback web', ''), run(impl, 'spFallback'))
      .command(
        'set <sp> <instance>',
        'Switch to a given instance',
        (c) => lazy(sp(c)).positional('instance', { type: 'string', demandOption: true, describe: 'the instance to show (see `tarstack list`)' }).example('$0 stackpoint set web web.app.2', ''),
        run(impl, 'spSet'),
      )
      .command('list', 'List stackpoints', (c) => c.example('$0 stackpoint list', ''), run(impl, 'spList'))
      .command('path <sp>', 'Print where it mounts', (c) => sp(c).example('cd "$($0 stackpoint path web)"', ''), run(impl, 'spPath'))
      .command('status <sp>', 'Whether it is mounted, and with which instance', (c) => sp(c).example('$0 stackpoint status web --json', ''), run(impl, 'spStatus'))
      .command(
        'rm <sp>',
        'Remove it (refused while mounted); its instances stay unless --instances',
        (c) => sp(c).option('instances', { type: 'boolean', describe: 'also remove the instances it made, unless another stackpoint uses them' }).example('$0 stackpoint rm web --instances', ''),
        run(impl, 'spRm'),
      )
      .demandCommand(1, 'name a stackpoint verb (create, mount, umount, cutover, fallback, set, list, path, status, rm)')
      .strict(),
  handler: () => undefined,
};
