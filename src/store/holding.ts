// Holding an instance or a stackpoint while a command changes it. An instance is refused while it
// is mounted, naming the mount and the processes using it; a stackpoint while another command
// changes it. The locks are flocks (instance-lock.ts), so a crashed holder never blocks anyone.
import { holdersOf } from '../util/proc.js';
import { UserError } from '../util/errors.js';
import { tryLockDir, tryLockInstance, unlockDir } from './instance-lock.js';
import type { InstanceRecord } from './instances.js';
import type { StackpointRecord } from './stackpoints.js';
import type { Store } from './store.js';

/** The instance's lock if it is free (release it with the function returned), else undefined. */
export function tryHoldInstance(store: Store, r: InstanceRecord): (() => void) | undefined {
  const fd = tryLockInstance(store.instances.work(r));
  return fd === undefined ? undefined : () => unlockDir(fd);
}

/** Run `fn` holding the instance's lock; refused while it is mounted, naming who uses the mount. */
export async function holdInstance<T>(store: Store, r: InstanceRecord, what: string, fn: () => T | Promise<T>): Promise<T> {
  const release = tryHoldInstance(store, r);
  if (!release) {
    const m = store.mounts.list().find((x) => x.kind === 'instance' && x.target === r.id);
    const users = m ? holdersOf(m.mountpoint, [m.pid, process.pid]) : [];
    const busy = users.length ? `, in use by ${users.map((h) => `pid ${h.pid} (${h.command})`).join(', ')}` : '';
    throw new UserError(`cannot ${what} instance "${r.name}": it is mounted${m ? ` at ${m.mountpoint} (daemon pid ${m.pid})` : ''}${busy}; unmount it first`);
  }
  try {
    return await fn();
  } finally {
    release();
  }
}

/** Run `fn` holding the stackpoint's lock: one command at a time changes it. `fn` gets it as it is once held. */
export async function holdStackpoint<T>(store: Store, name: string, fn: (r: StackpointRecord) => Promise<T>): Promise<T> {
  const fd = tryLockDir(store.stackpoints.home(store.stackpoints.get(name)));
  if (fd === undefined) throw new UserError(`stackpoint "${name}" is being changed by another tarstack command; try again when it is done`);
  try {
    return await fn(store.stackpoints.get(name));
  } finally {
    unlockDir(fd);
  }
}
