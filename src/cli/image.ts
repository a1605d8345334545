// `tarstack image <verb>`: definitions only; each handler imports its implementation lazily.
import type { Argv, CommandModule } from 'yargs';
import type { GlobalOptions } from './context.js';
import { run, type Args } from './handler.js';
import { mountOptions } from './mount-options.js';

const impl = () => import('./impl/image.js');
const mountImpl = () => import('./impl/mount.js');
const buildImpl = () => import('./impl/build.js');
const transferImpl = () => import('./impl/transfer.js');
const registryImpl = () => import('./impl/registry.js');
type Y = Argv<GlobalOptions>;
const image = (y: Y, describe = 'image name (see `tarstack image list`)') => y.positional('image', { type: 'string', demandOption: true, describe });

export const imageCommand: CommandModule<GlobalOptions, Args> = {
  command: 'image <verb>',
  describe: 'Images: immutable trees served straight from tar files',
  builder: (y: Y) =>
    y
      .command(
        'add <tar>',
        'Index a tar (never extracted), or reference a directory, and make it an image',
        (c) =>
          c
            .positional('tar', { type: 'string', demandOption: true, describe: 'the tar file (plain, gzip, zstd or xz), a directory (a layer served in place), or an http(s) URL of a tar (read by range, cached)' })
            .option('name', { type: 'string', describe: 'image name (default: the file name without extensions)' })
            .option('parent', { type: 'string', describe: 'stack this image on a parent image' })
            .option('copy', { type: 'boolean', describe: 'copy the tar into the store instead of referencing it in place' })
            .option('recompress', { type: 'boolean', describe: 'store a seekable zstd copy (random access for any tar, e.g. a single-frame .zst or single-block .xz)' })
            .option('tls-verify', { type: 'boolean', default: true, describe: 'a URL: check the server\'s TLS certificate' })
            .example('$0 image add rootfs.tar', 'index rootfs.tar where it is, as image "rootfs"')
            .example('$0 image add https://example.org/layer2.tar.gz --parent rootfs', 'a remote layer on top of rootfs, read lazily by range requests'),
        run(impl, 'imageAdd'),
      )
      .command('list', 'List images', (c) => c.example('$0 image list --json', 'every image, as JSON'), run(impl, 'imageList'))
      .command('info <image>', 'Show an image: its stack, tar, counts and mounts', (c) => image(c).example('$0 image info rootfs', ''), run(impl, 'imageInfo'))
      .command(
        'rename <image> <newName>',
        'Rename an image (its children and instances follow)',
        (c) => image(c).positional('newName', { type: 'string', demandOption: true, describe: 'the new name' }).example('$0 image rename rootfs debian12', ''),
        run(impl, 'imageRename'),
      )
      .command('rm <image>', 'Remove an image (refused while it is a parent or in use)', (c) => image(c).example('$0 image rm rootfs', ''), run(impl, 'imageRm'))
      .command('verify <image>', "Check every member of the image's tars against the index", (c) => image(c).example('$0 image verify rootfs', 'exit 1 if a tar changed since it was indexed'), run(impl, 'imageVerify'))
      .command(
        'mount <image> <dir>',
        'Mount an image read-only at dir (prints the mount path last)',
        (c) =>
          mountOptions(image(c).positional('dir', { type: 'string', demandOption: true, describe: 'mount point: an empty directory' }))
            .option('foreground', { type: 'boolean', describe: 'serve in this process until unmounted (for systemd)' })
            .option('backend', { choices: ['fuse-native'] as const, describe: 'FUSE binding' })
            .example('$0 image mount rootfs /mnt/rootfs', '')
            .example('$0 umount /mnt/rootfs', 'and unmount it again'),
        run(mountImpl, 'imageMount'),
      )
      .command(
        'new <image>',
        'Make an image to populate by editing (open until `image close`)',
        (c) =>
          image(c, 'name of the new image')
            .option('parent', { type: 'string', describe: 'stack it on this image' })
            .example('$0 image new app --parent rootfs', 'then `tarstack image edit app`'),
        run(buildImpl, 'imageNewCommand'),
      )
      .command(
        'edit <image> [dir]',
        'Mount an open image writable to populate it (prints the mount path last)',
        (c) =>
          mountOptions(image(c, 'an image made by `image new` and not yet closed').positional('dir', { type: 'string', describe: 'mount point (default: under the store)' }))
            .example('cd "$($0 image edit app | tail -1)"', 'work inside it, then `tarstack image close app`'),
        run(buildImpl, 'imageEdit'),
      )
      .command(
        'close <image>',
        'Unmount an image being edited and freeze its changes into its layer (immutable from then on)',
        (c) => image(c, 'an image being edited').example('$0 image close app', ''),
        run(buildImpl, 'imageClose'),
      )
      .command(
        'export <image>',
        'Write the merged tree as one tar, or with --layers the stack as an OCI image archive',
        (c) =>
          image(c)
            .option('output', { alias: 'o', type: 'string', describe: 'file to write (default: stdout)' })
            .option('layers', { type: 'boolean', describe: 'the layer tars, as an OCI image layout (docker load reads it too)' })
            .example('$0 image export app -o app.tar', 'the merged tree, one tar')
            .example('$0 image export app --layers -o app.oci.tar', 'the stack as an OCI image layout'),
        run(transferImpl, 'imageExport'),
      )
      .command(
        'import <file>',
        'Import a tar layer, or an OCI image layout / docker save archive as a stack of images',
        (c) =>
          c
            .positional('file', { type: 'string', demandOption: true, describe: 'a tar layer, an OCI image layout archive or a `docker save` archive' })
            .option('name', { type: 'string', describe: 'name of the (top) image' })
            .option('parent', { type: 'string', describe: 'a tar layer: stack it on this image' })
            .option('prefix', { type: 'string', describe: 'put this before every image name made' })
            .example('docker save alpine:3.19 -o alpine.tar && $0 image import alpine.tar', 'one image per layer, the top named after the reference'),
        run(transferImpl, 'imageImport'),
      )
      .command(
        'pull <ref>',
        'Make a stack of images from an OCI registry, its layers read lazily by range requests',
        (c) =>
          c
            .positional('ref', { type: 'string', demandOption: true, describe: 'HOST[:PORT]/NAME[:TAG|@sha256:…], as podman takes it' })
            .option('name', { type: 'string', describe: 'name of the (top) image (default: the last part of NAME)' })
            .option('tls-verify', { type: 'boolean', default: true, describe: "check the registry's TLS certificate (false also allows plain http)" })
            .option('cert-dir', { type: 'string', describe: 'a directory of CA certificates (*.crt) and a client certificate (*.cert, *.key) for the registry, as podman takes; default /etc/containers/certs.d/HOST:PORT' })
            .option('platform', { type: 'string', describe: 'os/arch[/variant] to pick from an index (default: this machine)' })
            .option('full', { type: 'boolean', describe: 'then fetch every layer into the chunk cache, for offline use (see --cache-size)' })
            .example('$0 image pull localhost:5000/app:1.0 --tls-verify=false', 'one image per layer, the top named "app"'),
        run(registryImpl, 'imagePull'),
      )
      .command(
        'push <image> <ref>',
        "Push an image's layers (byte for byte), its manifest, and tarstack's index of each layer to a registry",
        (c) =>
          image(c)
            .positional('ref', { type: 'string', demandOption: true, describe: 'HOST[:PORT]/NAME[:TAG]' })
            .option('tls-verify', { type: 'boolean', default: true, describe: "check the registry's TLS certificate (false also allows plain http)" })
            .option('cert-dir', { type: 'string', describe: 'a directory of CA certificates (*.crt) and a client certificate (*.cert, *.key) for the registry, as podman takes; default /etc/containers/certs.d/HOST:PORT' })
            .example('$0 image push app localhost:5000/app:1.0 --tls-verify=false', 'other machines then pull it without reading its layers through'),
        run(registryImpl, 'imagePush'),
      )
      .demandCommand(1, 'name an image verb (add, new, edit, close, export, import, pull, push, list, info, rename, rm, verify, mount)')
      .strict(),
  handler: () => undefined,
};
