// The options every command that makes a mount takes (image mount and edit, mount, stackpoint
// mount, stack), declared once so they cannot drift apart.
import type { Argv } from 'yargs';

export function mountOptions<T>(y: Argv<T>) {
  return y
    .option('nonempty', { type: 'boolean', describe: 'allow mounting over a non-empty directory' })
    .option('allow-other', { type: 'boolean', describe: 'let other users in (with permission checks)' });
}
