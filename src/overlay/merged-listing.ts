// A writable directory's listing for one open handle: the upper entries as they were at opendir
// (a snapshot, so entries created or removed while reading are never skipped or repeated), merged in
// name order with the lower layers' stream, which needs no snapshot because it never changes.
// Positions count visible entries; a sequential reader continues, a seek re-merges from the start.
import { DirCursor, type MergedChild } from './dir-cursor.js';
import type { LowerStack, Parts } from './lower-stack.js';

export interface UpperEntry {
  name: string;
  ino: number;
  mode: number;
}

export class MergedListing {
  private position = 0;
  private ui = 0;
  private lower: DirCursor | null;
  private pendingLower: MergedChild | undefined;

  constructor(
    private readonly stack: LowerStack,
    private readonly lowerParts: Parts | null,
    /** Visible upper entries, sorted by name. */
    private readonly upper: UpperEntry[],
    /** Every upper name, whiteouts included: each hides the lower entry of that name. */
    private readonly hides: Set<string>,
  ) {
    this.lower = this.newCursor();
  }

  private newCursor(): DirCursor | null {
    return this.lowerParts ? new DirCursor(this.stack.layers, this.lowerParts, (k, n) => this.stack.inoOf(k, n)) : null;
  }

  /** The last entry `next()` returned, which a seek to its position returns again (see DirCursor.seek). */
  private last: (UpperEntry & { position: number }) | undefined;
  private replay = false;

  seek(position: number): void {
    this.replay = false;
    if (this.last !== undefined && position === this.last.position && this.position === position + 1) {
      this.replay = true;
      return;
    }
    if (position < this.position) {
      this.position = 0;
      this.ui = 0;
      this.lower = this.newCursor();
      this.pendingLower = undefined;
    }
    while (this.position < position && this.next() !== undefined);
  }

  next(): (UpperEntry & { position: number }) | undefined {
    if (this.replay) {
      this.replay = false;
      return this.last;
    }
    this.last = undefined;
    const low = this.peekLower();
    const up = this.upper[this.ui];
    if (!low && !up) return undefined;
    let e: UpperEntry;
    if (up && (!low || up.name <= low.name)) {
      e = up;
      this.ui++;
    } else {
      e = low!;
      this.pendingLower = undefined;
    }
    return (this.last = { ...e, position: this.position++ });
  }

  /** The next lower entry not hidden by an upper name. */
  private peekLower(): MergedChild | undefined {
    while (!this.pendingLower && this.lower) {
      const c = this.lower.next();
      if (!c) {
        this.lower = null;
        break;
      }
      if (!this.hides.has(c.name)) this.pendingLower = c;
    }
    return this.pendingLower;
  }

  /** True when the directory shows no entry at all (rmdir's test). */
  isEmpty(): boolean {
    return this.upper.length === 0 && this.peekLower() === undefined;
  }
}
