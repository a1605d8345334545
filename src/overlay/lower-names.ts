// How many names of a copied-up lower hard-link set still show from the lower (not yet linked into
// the upper, not deleted): the one part of a set's link count the upper cannot tell by itself (its
// upper names are the index object's own link count). Kept for every file type alike in a small
// table in the work dir, work/lower-names/<ino>, one decimal number per set, each replaced
// atomically (temp file, fsync, rename); no entry means none. Uppers written before this table kept
// the whole count in user.tarstack.nlink on the index object: read once, then moved here.
import * as fs from 'node:fs';
import type { UpperStore } from './upper.js';
import { X_NLINK } from './upper-format.js';
import { b } from '../util/latin1.js';

export class LowerNames {
  private readonly known = new Map<number, number>();

  constructor(private readonly store: UpperStore) {}

  private path(ino: number): string {
    return this.store.workPath(`lower-names/${ino}`);
  }

  /** Lower names still showing for the set in the index as `ino` (`st`: the index object's lstat). */
  get(ino: number, st: fs.BigIntStats): number {
    const known = this.known.get(ino);
    if (known !== undefined) return known;
    let n = 0;
    try {
      n = Number(fs.readFileSync(b(this.path(ino)), 'latin1')) || 0;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      const legacy = st.isFile() ? this.store.getX(this.store.indexPath(ino), X_NLINK) : null;
      if (legacy) n = Math.max(0, Number(legacy.toString('latin1')) - (Number(st.nlink) - 1));
    }
    this.known.set(ino, n);
    return n;
  }

  /** Record the count (0: the entry goes). */
  set(ino: number, n: number): void {
    const path = this.path(ino);
    if (n <= 0) {
      this.store.removeIfThere(path);
    } else {
      fs.mkdirSync(b(this.store.workPath('lower-names')), { recursive: true, mode: 0o700 });
      const tmp = this.store.tmp();
      const fd = fs.openSync(b(tmp), 'w', 0o600);
      try {
        fs.writeSync(fd, String(n));
        fs.fsyncSync(fd); // the number before its name: a crash shows the old count or the new
      } finally {
        fs.closeSync(fd);
      }
      this.store.rename(tmp, path);
    }
    this.known.set(ino, Math.max(0, n));
    this.dropLegacy(ino);
  }

  /** One lower name of the set is gone (deleted, or linked into the upper). */
  drop(ino: number, st: fs.BigIntStats): void {
    this.set(ino, this.get(ino, st) - 1);
  }

  /** The count lives here now: the old attribute would otherwise speak again once the entry goes. */
  private dropLegacy(ino: number): void {
    try {
      this.store.sys.removexattr(this.store.indexPath(ino), X_NLINK);
    } catch {
      // none (the usual case), no index object, or a type that never carried it
    }
  }
}
