// Where the store lives: --store, else $TARSTACK_HOME, else /var/lib/tarstack for root, else
// ${XDG_DATA_HOME:-~/.local/share}/tarstack. Names of things in it are checked here too.
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { UserError } from '../util/errors.js';

export function storeRoot(explicit?: string): string {
  if (explicit) return resolve(explicit);
  if (process.env.TARSTACK_HOME) return resolve(process.env.TARSTACK_HOME);
  if (process.getuid?.() === 0) return '/var/lib/tarstack';
  const data = process.env.XDG_DATA_HOME || join(homedir(), '.local', 'share');
  return join(data, 'tarstack');
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._+@-]{0,127}$/;

/** Image, instance and stackpoint names: one path component, no dot-dot, nothing a shell mangles. */
export function checkName(kind: string, name: string): string {
  if (!NAME.test(name) || name.includes('..')) {
    throw new UserError(`invalid ${kind} name ${JSON.stringify(name)}: use letters, digits and . _ + @ - (at most 128, not starting with a symbol)`);
  }
  return name;
}

/**
 * The order lists show names in: case-insensitive, a lower-case name before its upper-case twin
 * (as localeCompare had it). Not localeCompare itself: its first call loads ICU's collation data,
 * 20-30 ms of every command's start-up.
 */
export function byName(a: { name: string }, b: { name: string }): number {
  const [x, y] = [a.name.toLowerCase(), b.name.toLowerCase()];
  if (x !== y) return x < y ? -1 : 1;
  return a.name > b.name ? -1 : a.name < b.name ? 1 : 0;
}

export class StorePaths {
  constructor(readonly root: string) {}
  get images(): string {
    return join(this.root, 'images');
  }
  image(id: string): string {
    return join(this.images, id);
  }
  get run(): string {
    return join(this.root, 'run');
  }
  get mounts(): string {
    return join(this.run, 'mounts');
  }
  get logs(): string {
    return join(this.run, 'logs');
  }
  get lock(): string {
    return join(this.root, 'lock');
  }
}
