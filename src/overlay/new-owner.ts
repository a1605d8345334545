// Who owns a new entry, as Linux decides it (BSD group semantics): the maker's uid; the directory's
// gid when the directory is set-gid, else the maker's gid; a directory made in a set-gid directory is
// set-gid too. One rule for what the user asked (the caller in the overlay's directory) and for what
// this process made on the upper (its own ids in the upper's directory), so the two can be compared.
import type { KeptStat } from './kept.js';
import { S_IFDIR, S_IFMT } from '../vfs/mode.js';

const S_ISGID = 0o2000;

export function newEntryOwner(dir: { mode: number; gid: number }, maker: { uid: number; gid: number }, mode: number, rdev = 0): KeptStat {
  const setgid = (dir.mode & S_ISGID) !== 0;
  return { uid: maker.uid, gid: setgid ? dir.gid : maker.gid, mode: mode | (setgid && (mode & S_IFMT) === S_IFDIR ? S_ISGID : 0), rdev };
}
