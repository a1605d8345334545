// FUSE passthrough (kernel 6.9+) as the translator uses it: which opens of an inode go through a
// backing file. The kernel wants every open of an inode alike: while one is passthrough, all are,
// through the same backing id (else the open fails with EIO); while one is cached, none may be
// passthrough. So the first open decides for as long as any is open, and later ones follow it.
import type { OpenReply } from '../vfs/api.js';

/** The session's backing-file registry (lowlevel.ts backingOpen/backingClose). */
export interface Passthrough {
  open(fd: number): number;
  close(id: number): void;
}

export class BackingOpens {
  private pt: Passthrough | null = null;
  /** Inodes open through a backing file: its id and how many of our open replies use it. */
  private readonly passed = new Map<number, { id: number; opens: number }>();
  /** Inodes open in the kernel's page cache (no backing file): how many. */
  private readonly cachedOpens = new Map<number, number>();
  /** Each open handle's inode, and whether it passes through. */
  private readonly handleOf = new Map<number, { ino: number; passed: boolean }>();
  /** Inodes ever opened through a backing file since the kernel last forgot them. */
  private readonly everPassed = new Set<number>();
  private passedOpens = 0;

  /** Passthrough was negotiated: OpenReply.backingFd is used from now on. */
  enable(pt: Passthrough): void {
    this.pt = pt;
  }

  get enabled(): boolean {
    return this.pt !== null;
  }

  /** Opens that went through a backing file so far (for status and tests). */
  opens(): number {
    return this.passedOpens;
  }

  /** Pages the kernel cached before the inode's passthrough opens may be stale. */
  wasPassed(ino: number): boolean {
    return this.everPassed.has(ino);
  }

  /** The kernel forgot the node id: it has no pages left. */
  forgot(ino: number): void {
    this.everPassed.delete(ino);
  }

  /** The backing id for this open (0: none, the page-cache path), counted until its release. */
  backingFor(ino: number, o: OpenReply): number {
    const p = this.passed.get(ino);
    let id = 0;
    if (p) {
      p.opens++;
      id = p.id;
    } else if (o.backingFd !== undefined && o.backingFd >= 0 && !this.cachedOpens.get(ino)) {
      const got = this.pt!.open(o.backingFd);
      if (got > 0) {
        this.passed.set(ino, { id: got, opens: 1 });
        this.everPassed.add(ino);
        id = got;
      }
    }
    if (id === 0) this.cachedOpens.set(ino, (this.cachedOpens.get(ino) ?? 0) + 1);
    else this.passedOpens++;
    this.handleOf.set(o.fh, { ino, passed: id !== 0 });
    return id;
  }

  /** Handle `fh` is released (or its open never reached the kernel). */
  dropOpen(fh: number): void {
    const h = this.handleOf.get(fh);
    if (!h) return;
    this.handleOf.delete(fh);
    if (!h.passed) {
      const n = (this.cachedOpens.get(h.ino) ?? 1) - 1;
      if (n > 0) this.cachedOpens.set(h.ino, n);
      else this.cachedOpens.delete(h.ino);
      return;
    }
    const p = this.passed.get(h.ino);
    if (!p || --p.opens > 0) return;
    this.passed.delete(h.ino);
    this.pt!.close(p.id);
  }
}
