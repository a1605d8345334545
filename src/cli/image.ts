// `tarstack image <verb>`: definitions only; each handler imports its implementation lazily.
import type { Argv, CommandModule } from 'yargs';
import { Context, type GlobalOptions } from './context.js';

type Args = GlobalOptions & Record<string, unknown>;
const impl = () => import('./impl/image.js');
const mountImpl = () => import('./impl/mount.js');
const buildImpl = () => import('./impl/build.js');
const transferImpl = () => import('./impl/transfer.js');
/** yargs has checked the positionals each builder demands; hand them on with the shape the implementation declares. */
const args = <T>(a: Args): T => a as unknown as T;

export const imageCommand: CommandModule<GlobalOptions, Args> = {
  command: 'image <verb>',
  describe: 'Images: immutable trees served straight from tar files',
  builder: (y: Argv<GlobalOptions>) =>
    y
      .command(
        'add <tar>',
        'Index a tar (never extracted), or reference a directory, and make it an image',
        (c) =>
          c
            .positional('tar', { type: 'string', demandOption: true, describe: 'the tar file, or a directory (a layer served in place)' })
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
      .command(
        'new <image>',
        'Make an image to populate by editing (open until `image close`)',
        (c) => c.positional('image', { type: 'string', demandOption: true }).option('parent', { type: 'string', describe: 'stack it on this image' }),
        async (a) => (await buildImpl()).imageNewCommand(new Context(a), args(a)),
      )
      .command(
        'edit <image> [dir]',
        'Mount an open image writable to populate it (prints the mount path last)',
        (c) => c.positional('image', { type: 'string', demandOption: true }).positional('dir', { type: 'string', describe: 'mount point (default: under the store)' }).option('nonempty', { type: 'boolean', describe: 'allow mounting over a non-empty directory' }).option('allow-other', { type: 'boolean', describe: 'let other users in (with permission checks)' }),
        async (a) => (await buildImpl()).imageEdit(new Context(a), args(a)),
      )
      .command(
        'close <image>',
        'Unmount an image being edited and freeze its changes into its layer (immutable from then on)',
        (c) => c.positional('image', { type: 'string', demandOption: true }),
        async (a) => (await buildImpl()).imageClose(new Context(a), args(a)),
      )
      .command(
        'export <image>',
        'Write the merged tree as one tar, or with --layers the stack as an OCI image archive',
        (c) => c.positional('image', { type: 'string', demandOption: true }).option('output', { alias: 'o', type: 'string', describe: 'file to write (default: stdout)' }).option('layers', { type: 'boolean', describe: 'the layer tars, as an OCI image layout (docker load reads it too)' }),
        async (a) => (await transferImpl()).imageExport(new Context(a), args(a)),
      )
      .command(
        'import <file>',
        'Import a tar layer, or an OCI image layout / docker save archive as a stack of images',
        (c) =>
          c
            .positional('file', { type: 'string', demandOption: true })
            .option('name', { type: 'string', describe: 'name of the (top) image' })
            .option('parent', { type: 'string', describe: 'a tar layer: stack it on this image' })
            .option('prefix', { type: 'string', describe: 'put this before every image name made' }),
        async (a) => (await transferImpl()).imageImport(new Context(a), args(a)),
      )
      .demandCommand(1, 'name an image verb (add, new, edit, close, export, import, list, info, rename, rm, verify, mount)')
      .strict(),
  handler: () => undefined,
};
