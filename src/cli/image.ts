// `tarstack image <verb>`: definitions only; each handler imports its implementation lazily.
import type { Argv, CommandModule } from 'yargs';
import { Context, type GlobalOptions } from './context.js';

type Args = GlobalOptions & Record<string, unknown>;
const impl = () => import('./impl/image.js');
const mountImpl = () => import('./impl/mount.js');

export const imageCommand: CommandModule<GlobalOptions, Args> = {
  command: 'image <verb>',
  describe: 'Images: immutable trees served straight from tar files',
  builder: (y: Argv<GlobalOptions>) =>
    y
      .command(
        'add <tar>',
        'Index a tar (never extracted) and make it an image',
        (c) =>
          c
            .positional('tar', { type: 'string', demandOption: true, describe: 'the tar file' })
            .option('name', { type: 'string', describe: 'image name (default: the file name without extensions)' })
            .option('parent', { type: 'string', describe: 'stack this image on a parent image' })
            .option('copy', { type: 'boolean', describe: 'copy the tar into the store instead of referencing it in place' })
            .option('recompress', { type: 'boolean', describe: 'store a seekable zstd copy (random access for any tar, e.g. a single-frame .zst or single-block .xz)' }),
        async (a) => (await impl()).imageAdd(new Context(a), a),
      )
      .command('list', 'List images', (c) => c, async (a) => (await impl()).imageList(new Context(a)))
      .command('info <image>', 'Show an image', (c) => c.positional('image', { type: 'string', demandOption: true }), async (a) => (await impl()).imageInfo(new Context(a), a))
      .command(
        'rename <image> <newName>',
        'Rename an image',
        (c) => c.positional('image', { type: 'string', demandOption: true }).positional('newName', { type: 'string', demandOption: true }),
        async (a) => (await impl()).imageRename(new Context(a), a),
      )
      .command('rm <image>', 'Remove an image (refused while it is a parent or in use)', (c) => c.positional('image', { type: 'string', demandOption: true }), async (a) => (await impl()).imageRm(new Context(a), a))
      .command('verify <image>', "Check every member of the image's tars against the index", (c) => c.positional('image', { type: 'string', demandOption: true }), async (a) => (await impl()).imageVerify(new Context(a), a))
      .command(
        'mount <image> <dir>',
        'Mount an image read-only at dir (prints the mount path last)',
        (c) =>
          c
            .positional('image', { type: 'string', demandOption: true })
            .positional('dir', { type: 'string', demandOption: true })
            .option('foreground', { type: 'boolean', describe: 'serve in this process until unmounted (for systemd)' })
            .option('backend', { choices: ['fuse-native'] as const, describe: 'FUSE binding' })
            .option('nonempty', { type: 'boolean', describe: 'allow mounting over a non-empty directory' })
            .option('allow-other', { type: 'boolean', describe: 'let other users in (with permission checks)' }),
        async (a) => (await mountImpl()).imageMount(new Context(a), a),
      )
      .demandCommand(1, 'name an image verb (add, list, info, rename, rm, verify, mount)')
      .strict(),
  handler: () => undefined,
};
