// Whiteout encodings of an upper directory, written and read here only (fuse-overlayfs's
// whiteout.rs): a character device 0/0 named NAME (kernel overlayfs's, which tarstack writes), or a
// `.wh.NAME` file (fuse-overlayfs writes those where mknod is refused; read when the upper may hold
// them). A directory's `.wh..wh..opq` is the OCI opaque marker, never a name.
import * as fs from 'node:fs';
import { RENAME_EXCHANGE, type Sys } from '../native/sys.js';
import { removeTree } from '../util/remove-tree.js';
import { S_IFCHR, S_IFMT } from '../vfs/mode.js';
import { b } from '../util/latin1.js';
import { OPAQUE_MARKER, WHITEOUT_PREFIX } from '../tar/names.js';

/** Is this lstat a whiteout (a character device 0/0)? */
export function isWhiteout(st: fs.BigIntStats): boolean {
  return isWhiteoutNode(Number(st.mode), Number(st.rdev));
}

/** Is a node of this mode and device number (dev_t) a whiteout's encoding, a character device 0/0? */
export const isWhiteoutNode = (mode: number, rdev: number): boolean => (mode & S_IFMT) === S_IFCHR && rdev === 0;

/** link(2) errors that mean this filesystem or its settings refuse the shared whiteout's links. */
const LINKS_REFUSED = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EXDEV']);

export class Whiteouts {
  constructor(
    private readonly sys: Sys,
    /** The encoding written. */
    private readonly kind: 'chardev' | 'files',
    /** The upper may hold `.wh.NAME` files (so they are looked for, and their names are format). */
    readonly readsFiles: boolean,
    /** A fresh temp name in the work dir. */
    private readonly tmp: () => string,
    /** Where the one whiteout inode every whiteout made links to lives (in the work dir's tmp). */
    private readonly sharedPath: string,
  ) {}

  /** Do hard links to the shared whiteout work here (until one is refused: then one inode each)? */
  private linking = true;

  /** A name the format reserves: never a user's entry. */
  reserved(name: string): boolean {
    return this.readsFiles && name.startsWith(WHITEOUT_PREFIX);
  }

  /** A directory entry's name decoded: the name a `.wh.` file whites out, null for a format marker, undefined for a plain name. */
  static decode(name: string): string | null | undefined {
    if (!name.startsWith(WHITEOUT_PREFIX)) return undefined;
    return name === OPAQUE_MARKER ? null : name.slice(WHITEOUT_PREFIX.length);
  }

  /**
   * Is there a whiteout of the `.wh.` kind for `absPath`? tarstack writes character device
   * whiteouts, so only an upper written by another tool is worth the extra stat.
   */
  hasFile(absPath: string): boolean {
    return this.readsFiles && fs.existsSync(b(this.fileFor(absPath)));
  }

  /** Remove the `.wh.` file for `absPath` (a new entry takes the name). */
  dropFile(absPath: string): void {
    fs.rmSync(b(this.fileFor(absPath)), { force: true });
  }

  /** `.wh.NAME` beside `absPath` (.../NAME): where a whiteout file for it lives. */
  private fileFor(absPath: string): string {
    const slash = absPath.lastIndexOf('/');
    return `${absPath.slice(0, slash + 1)}${WHITEOUT_PREFIX}${absPath.slice(slash + 1)}`;
  }

  /** Atomically replace whatever is at `absPath` by a whiteout; a directory goes to the work dir to be removed. */
  over(absPath: string, isDir: boolean): void {
    if (this.kind === 'files') {
      // The `.wh.` file first: until the entry goes, the entry wins, so a crash shows the old state.
      this.at(absPath);
      const aside = this.tmp();
      fs.renameSync(b(absPath), b(aside));
      removeTree(b(aside));
      return;
    }
    const wh = this.tmp();
    this.make(wh);
    if (isDir) {
      this.sys.rename2(wh, absPath, RENAME_EXCHANGE);
      removeTree(b(wh)); // the old directory, now at the temp name
    } else {
      fs.renameSync(b(wh), b(absPath));
    }
  }

  /**
   * Put a whiteout at `absPath`, where nothing is: made in place, since mknod (and an O_EXCL create)
   * make a name whole at once, without a temp name and a rename.
   */
  at(absPath: string): void {
    if (this.kind === 'files') fs.closeSync(fs.openSync(b(this.fileFor(absPath)), 'wx', 0o600));
    else this.make(absPath);
  }

  /**
   * A character device 0/0 at `path` (nothing there): a hard link to one shared whiteout inode, as
   * kernel overlayfs makes them (ovl_whiteout, since Linux 5.8). A link allocates no inode; after
   * many deletions ext4 looks long for a free one it may reuse, which made each `rm` cost far more
   * here than on kernel overlayfs. The shared one is made anew when missing or full (EMLINK).
   */
  private make(path: string): void {
    for (let tries = 0; this.linking && tries < 2; tries++) {
      try {
        return fs.linkSync(b(this.sharedPath), b(path));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? '';
        if (code === 'EEXIST') throw err;
        if (LINKS_REFUSED.has(code)) this.linking = false;
        else if ((code === 'ENOENT' || code === 'EMLINK') && tries === 0) this.renewShared();
        else break; // mknod says what is wrong (no space, no such directory...)
      }
    }
    this.sys.mknod(path, S_IFCHR | 0o000, 0, 0);
  }

  private renewShared(): void {
    const wh = this.tmp();
    this.sys.mknod(wh, S_IFCHR | 0o000, 0, 0);
    fs.renameSync(b(wh), b(this.sharedPath));
  }

  /** Can a rename leave a whiteout at its source atomically (RENAME_WHITEOUT makes character devices)? */
  get atomicOnRename(): boolean {
    return this.kind === 'chardev';
  }
}
