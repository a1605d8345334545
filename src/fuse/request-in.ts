// What a request brings in the scratch array shared with C besides its arguments (tsn.h's
// TSN_SLOTS): its caller, and a setattr's new values. Valid until its handler returns.
import * as ll from './lowlevel.js';
import { Slot } from './lowlevel.js';
import type { Caller, SetAttr } from '../vfs/api.js';

export function callerIn(x: Float64Array): Caller {
  return { uid: x[Slot.CALLER_UID]!, gid: x[Slot.CALLER_GID]!, pid: x[Slot.CALLER_PID]! };
}

/** SETATTR_* bits and scratch's SET_* slots as a SetAttr. */
export function setAttrIn(x: Float64Array, toSet: number): SetAttr {
  const set: SetAttr = {};
  if (toSet & ll.SETATTR_MODE) set.mode = x[Slot.SET_MODE];
  if (toSet & ll.SETATTR_UID) set.uid = x[Slot.SET_UID];
  if (toSet & ll.SETATTR_GID) set.gid = x[Slot.SET_GID];
  if (toSet & ll.SETATTR_SIZE) set.size = x[Slot.SET_SIZE];
  if (toSet & ll.SETATTR_ATIME_NOW) set.atime = 'now';
  else if (toSet & ll.SETATTR_ATIME) set.atime = { sec: x[Slot.SET_ATIME]!, nsec: x[Slot.SET_ATIME_NSEC]! };
  if (toSet & ll.SETATTR_MTIME_NOW) set.mtime = 'now';
  else if (toSet & ll.SETATTR_MTIME) set.mtime = { sec: x[Slot.SET_MTIME]!, nsec: x[Slot.SET_MTIME_NSEC]! };
  return set;
}
