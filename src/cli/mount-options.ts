// The options every command that makes a mount takes (image mount and edit, mount, stackpoint
// mount, stack), declared once so they cannot drift apart. What they default to is decided in one
// place (impl/mount-flags.ts): for root what mount(8) gives root, for an ordinary user what
// fusermount3 enforces.
import type { Argv } from 'yargs';

export function mountOptions<T>(y: Argv<T>) {
  return y
    .option('nonempty', { type: 'boolean', describe: 'allow mounting over a non-empty directory' })
    .option('allow-other', {
      type: 'boolean',
      describe: "let other users in, with the kernel's permission checks (default for root; an ordinary user needs user_allow_other in /etc/fuse.conf); --no-allow-other keeps them out",
    })
    .option('nodev', { type: 'boolean', describe: 'device files in the mount cannot be opened (always so for an ordinary user; root gets dev)' })
    .option('nosuid', { type: 'boolean', describe: 'set-user-ID and set-group-ID bits are ignored (always so for an ordinary user; root gets suid)' })
    .option('o', {
      type: 'string',
      requiresArg: true,
      describe: 'mount options, comma-separated, as fuse filesystems take them: ro, nosuid, nodev, noexec, noatime, allow_other, ... (repeatable)',
    });
}
