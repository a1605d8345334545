// Iterates a directory merged from several layers in name order, by a k-way merge of each layer's
// sorted children: no per-directory snapshot is built, so a directory of a million entries lists in
// constant memory. Positions count distinct names (hidden ones included), so they are stable cookies
// for immutable layers; a sequential reader continues where it stopped, a seek re-merges from the start.
import type { Layer } from '../layer/layer.js';

export interface MergedChild {
  name: string;
  ino: number;
  mode: number;
  position: number;
}

export class DirCursor {
  private position = 0;
  private readonly heads: number[];
  private readonly headNames: Array<string | undefined>;

  constructor(
    private readonly layers: Layer[],
    private readonly parts: number[],
    private readonly inoOf: (k: number, node: number) => number,
  ) {
    this.heads = new Array<number>(parts.length / 2).fill(0);
    this.headNames = new Array<string | undefined>(parts.length / 2).fill(undefined);
  }

  /** The last child `next()` returned, which a seek to its position returns again. */
  private last: MergedChild | undefined;
  private replay = false;

  /** Make `next()` return the first visible child at or after `position`. */
  seek(position: number): void {
    this.replay = false;
    // The reply that asked for one more entry than fit: resume at it, not from the start (which made
    // listing a directory of n entries O(n²)).
    if (this.last !== undefined && position === this.last.position && this.position === position + 1) {
      this.replay = true;
      return;
    }
    if (this.heads.length === 1) {
      // One layer: a position is a child index, so any seek is O(1) (openless READDIRs each start a
      // fresh cursor at their offset).
      this.position = this.heads[0] = position;
      return;
    }
    if (position < this.position) {
      this.position = 0;
      this.heads.fill(0);
      this.headNames.fill(undefined);
    }
    while (this.position < position && this.step() !== undefined);
  }

  next(): MergedChild | undefined {
    if (this.replay) {
      this.replay = false;
      return this.last;
    }
    this.last = undefined;
    for (;;) {
      const at = this.position;
      const top = this.step();
      if (top === undefined) return undefined;
      if (top < 0) continue; // hidden by a whiteout
      const k = this.parts[top * 2];
      const L = this.layers[k];
      const node = this.current;
      return (this.last = { name: this.currentName, ino: this.inoOf(k, node), mode: L.modeOf(node), position: at });
    }
  }

  private current = 0;
  private currentName = '';

  /**
   * Consume one distinct name; returns the index of the part that decides it (-1 when that entry
   * is a whiteout), or undefined at the end.
   */
  private step(): number | undefined {
    const n = this.heads.length;
    if (n === 1) {
      const L = this.layers[this.parts[0]];
      const dir = this.parts[1];
      if (this.heads[0] >= L.childCount(dir)) return undefined;
      const node = L.childAt(dir, this.heads[0]++);
      this.position++;
      if (L.isWhiteout(node)) return -1;
      this.current = node;
      this.currentName = L.nameOf(node);
      return 0;
    }
    let best: string | undefined;
    let bestPart = -1;
    for (let p = 0; p < n; p++) {
      const name = this.headName(p);
      if (name !== undefined && (best === undefined || name < best)) {
        best = name;
        bestPart = p;
      }
    }
    if (best === undefined) return undefined;
    // The topmost part holding the name decides it; every part holding it moves on.
    const L = this.layers[this.parts[bestPart * 2]];
    const node = L.childAt(this.parts[bestPart * 2 + 1], this.heads[bestPart]);
    for (let p = bestPart; p < n; p++) {
      if (this.headNames[p] === best) {
        this.heads[p]++;
        this.headNames[p] = undefined;
      }
    }
    this.position++;
    if (L.isWhiteout(node)) return -1;
    this.current = node;
    this.currentName = best;
    return bestPart;
  }

  private headName(p: number): string | undefined {
    let name = this.headNames[p];
    if (name === undefined) {
      const L = this.layers[this.parts[p * 2]];
      const dir = this.parts[p * 2 + 1];
      if (this.heads[p] >= L.childCount(dir)) return undefined;
      name = L.nameOf(L.childAt(dir, this.heads[p]));
      this.headNames[p] = name;
    }
    return name;
  }
}
