// An instance as a mount serves it: InstanceFs with its writes' lazy fills copied and synced off
// Node's thread (in the server, the other mounts are answered meanwhile), and the changes that must
// not cross a fill in flight — a truncate, a truncating open, fallocate — waiting for it, as later
// writes already do inside InstanceFs.
import { constants } from 'node:fs';
import type { InstanceFs } from '../overlay/instance-fs.js';
import type { Attr, Caller, OpenReply, SetAttr, WritableFileSystem } from '../vfs/api.js';
import { forwarding } from '../util/forward.js';

export function servedInstance(fs: InstanceFs): WritableFileSystem {
  const inTurn = <T>(ino: number, change: () => T): T | Promise<T> => fs.inTurn(ino, change);
  return forwarding<WritableFileSystem>(fs, {
    open: (ino: number, flags: number): OpenReply | Promise<OpenReply> => (flags & constants.O_TRUNC ? inTurn(ino, () => fs.open(ino, flags)) : fs.open(ino, flags)),
    setattr: (ino: number, set: SetAttr, fh: number | undefined, caller: Caller): Attr | Promise<Attr> =>
      set.size !== undefined ? inTurn(ino, () => fs.setattr(ino, set, fh, caller)) : fs.setattr(ino, set, fh, caller),
    fallocate: (ino: number, fh: number, mode: number, pos: number, len: number): void | Promise<void> => inTurn(ino, () => fs.fallocate(ino, fh, mode, pos, len)),
  });
}
