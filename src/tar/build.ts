// Builds one layer's tree from scanned members, the way `tar -x` would leave it: later duplicates
// win (a directory over a directory only updates its metadata), hard links share their target's
// inode even when the target name is replaced later, parents missing from the archive are implied,
// and OCI whiteouts become whiteout nodes and opaque flags. The result is flattened into IndexData.
import type { Member, ScanWarning } from './scan.js';
import { printable } from './scan.js';
import { isPlainName, NAME_MAX, nameIn, normaliseLinkTarget, normaliseName, OPAQUE_MARKER, WHITEOUT_PREFIX } from './names.js';
import { NodeFlag, type IndexData, type NodeExtra, NONE } from './index-data.js';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG } from '../vfs/mode.js';

class BuildNode {
  children: Map<string, BuildNode> | null = null;
  /** The node holding data and metadata for this name: itself, or a hard link's target. */
  inode: BuildNode = this;
  id = NONE;
  nlink = 0;
  flags = 0;
  mode = S_IFDIR | 0o755;
  uid = 0;
  gid = 0;
  size = 0;
  dataOffset = 0;
  mtimeSec = 0;
  mtimeNsec = 0;
  target = ''; // symlink target
  devmajor = 0;
  devminor = 0;
  extra: NodeExtra | undefined;
  constructor(public name: string, public parent: BuildNode | null) {}
}

export interface BuildOptions {
  /** Time given to directories the archive implies but never lists. */
  impliedMtimeSec: number;
}

export class LayerBuilder {
  private readonly root = new BuildNode('', null);
  private readonly reported = new Set<string>();
  readonly warnings: ScanWarning[] = [];
  memberCount = 0;
  /**
   * The directory of the last member whose name was plain (see isPlainName), by its path as the
   * archive spells it: a sibling's parent is then found without splitting its name and walking from
   * the root (the walk was most of add()'s CPU for a tar of 100k small files). Forgotten whenever a
   * name is taken over or removed (forgetLastDir): a directory it names may be one.
   */
  private lastDir: BuildNode | undefined;
  private lastDirPath = '';

  constructor(private readonly opts: BuildOptions) {
    this.root.children = new Map();
    this.root.flags = NodeFlag.Implicit;
    this.root.mtimeSec = opts.impliedMtimeSec;
  }

  warn(code: string, message: string, offset: number): void {
    if (this.warnings.length < 1000) this.warnings.push({ code, message, offset });
  }

  /** Report a kind of problem once per archive, as GNU tar does for stripped prefixes. */
  private warnOnce(key: string, code: string, message: string, offset: number): void {
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.warn(code, message, offset);
  }

  add(m: Member): void {
    this.memberCount++;
    let parent = this.lastDir;
    let name = parent ? nameIn(this.lastDirPath, m.path) : undefined;
    if (name === undefined) {
      const norm = normaliseName(m.path);
      if (!norm.ok) return this.warn('UNSAFE_NAME', `skipped "${printable(m.path)}": ${norm.reason}`, m.headerOffset);
      if (norm.strippedPrefix) this.warnOnce(`strip:${norm.strippedPrefix}`, 'LEADING_SLASH', `removed leading '${norm.strippedPrefix}' from member names`, m.headerOffset);
      const comps = norm.components;
      if (comps.some((c) => c.length > NAME_MAX)) return this.warn('NAME_TOO_LONG', `skipped "${printable(m.path)}": a name component exceeds ${NAME_MAX} bytes`, m.headerOffset);
      if (comps.length === 0) {
        if (m.type === 'dir') this.setMeta(this.root, m);
        else this.warn('ROOT_NOT_DIR', `skipped "${printable(m.path)}": it names the root but is not a directory`, m.headerOffset);
        return;
      }
      parent = this.ensureDir(comps, comps.length - 1, m);
      if (!parent) return;
      name = comps[comps.length - 1]!;
      if (comps.length > 1 && isPlainName(m.path)) {
        // the next members are most likely this one's siblings: their parent is found by its path
        const end = m.path.charCodeAt(m.path.length - 1) === 0x2f ? m.path.length - 1 : m.path.length;
        this.lastDirPath = m.path.slice(0, m.path.lastIndexOf('/', end - 1));
        this.lastDir = parent;
      }
    }
    this.place(parent!, name, m);
  }

  private forgetLastDir(): void {
    this.lastDir = undefined;
  }

  /** The member called `name` in directory `parent` (both resolved and checked). */
  private place(parent: BuildNode, name: string, m: Member): void {
    if (name === OPAQUE_MARKER) {
      parent.flags |= NodeFlag.Opaque;
      return;
    }
    if (name.startsWith(WHITEOUT_PREFIX)) {
      const hidden = name.slice(WHITEOUT_PREFIX.length);
      if (hidden === '' || hidden === '.' || hidden === '..') return this.warn('BAD_WHITEOUT', `skipped whiteout "${printable(m.path)}"`, m.headerOffset);
      // A whiteout hides lower layers only: a real entry of this layer with that name stays, and a
      // directory of this layer then starts empty (deleted, then made again).
      const real = parent.children!.get(hidden);
      if (real) {
        if (real.children) real.flags |= NodeFlag.Opaque;
        return;
      }
      const wh = new BuildNode(hidden, parent);
      wh.flags = NodeFlag.Whiteout;
      wh.mode = 0;
      parent.children!.set(hidden, wh);
      return;
    }

    const existing = parent.children!.get(name);
    if (m.type === 'dir' && existing && existing.flags & NodeFlag.Whiteout) {
      // A directory replacing a whited-out one is new in this layer: nothing below shows through.
      this.forgetLastDir();
      parent.children!.delete(name);
      const dir = this.newNode(name, parent, m);
      dir.flags |= NodeFlag.Opaque;
      return;
    }
    if (m.type === 'dir' && existing && existing.children) {
      this.setMeta(existing, m); // tar -x keeps an existing directory and only updates it
      existing.flags &= ~NodeFlag.Implicit;
      return;
    }
    if (existing?.children?.size && m.type !== 'dir') {
      // tar -x cannot unlink a non-empty directory to put a file there ("File exists").
      return this.warn('DIR_NOT_EMPTY', `skipped "${printable(m.path)}": a non-empty directory of that name exists`, m.headerOffset);
    }
    if (existing) this.forgetLastDir(); // a name taken over (a later duplicate, or a file over an empty directory)
    if (m.type === 'hardlink') {
      const target = this.resolveLinkTarget(m);
      if (!target) return;
      const link = new BuildNode(name, parent);
      link.inode = target.inode;
      parent.children!.set(name, link);
      return;
    }
    this.newNode(name, parent, m);
  }

  private newNode(name: string, parent: BuildNode, m: Member): BuildNode {
    const node = new BuildNode(name, parent);
    this.setMeta(node, m);
    if (m.type === 'dir') node.children = new Map();
    parent.children!.set(name, node);
    return node;
  }

  private setMeta(node: BuildNode, m: Member): void {
    node.mode = m.type === 'symlink' ? S_IFLNK | 0o777 : typeBits(m.type) | m.mode; // Linux symlinks are always 0777
    node.uid = m.uid;
    node.gid = m.gid;
    node.mtimeSec = m.mtimeSec;
    node.mtimeNsec = m.mtimeNsec;
    node.flags &= ~NodeFlag.Implicit;
    if (m.type === 'file') {
      node.size = m.size;
      node.dataOffset = m.dataOffset;
    } else if (m.type === 'symlink') {
      node.target = m.linkname;
    } else if (m.type === 'char' || m.type === 'block') {
      node.devmajor = m.devmajor;
      node.devminor = m.devminor;
    }
    if (!m.xattrs?.length && !m.sparse) {
      node.extra = undefined; // the common member: no object made for nothing
      return;
    }
    const extra: NodeExtra = {};
    if (m.xattrs?.length) extra.xattrs = m.xattrs.map(([k, v]) => [k, v.toString('base64')]);
    if (m.sparse) extra.sparse = m.sparse.map((s) => [s.offset, s.size]);
    node.extra = extra;
  }

  /** Walk to the directory holding component `upto`, creating implied directories on the way. */
  private ensureDir(comps: string[], upto: number, m: Member): BuildNode | undefined {
    let dir = this.root;
    for (let i = 0; i < upto; i++) {
      let next = dir.children!.get(comps[i]);
      let opaque = 0;
      if (next && next.flags & NodeFlag.Whiteout) {
        this.forgetLastDir();
        dir.children!.delete(comps[i]); // whited out, then made again in this layer
        next = undefined;
        opaque = NodeFlag.Opaque;
      }
      if (!next) {
        next = new BuildNode(comps[i], dir);
        next.children = new Map();
        next.flags = NodeFlag.Implicit | opaque;
        next.mtimeSec = this.opts.impliedMtimeSec;
        dir.children!.set(comps[i], next);
      } else if (!next.children) {
        this.warn('PARENT_NOT_DIR', `skipped "${printable(m.path)}": "${printable(comps.slice(0, i + 1).join('/'))}" is not a directory`, m.headerOffset);
        return undefined;
      }
      dir = next;
    }
    return dir;
  }

  private resolveLinkTarget(m: Member): BuildNode | undefined {
    const norm = normaliseLinkTarget(m.linkname);
    const fail = (why: string): undefined => {
      this.warn('BAD_HARDLINK', `skipped hard link "${printable(m.path)}" to "${printable(m.linkname)}": ${why}`, m.headerOffset);
      return undefined;
    };
    if (!norm.ok) return fail(norm.reason);
    let node: BuildNode | undefined = this.root;
    for (const c of norm.components) {
      node = node.children?.get(c);
      if (!node) return fail('no such member before it');
    }
    if (node.children || node.flags & NodeFlag.Whiteout) return fail('target is a directory or a whiteout');
    return node;
  }

  /** Flatten: ids in breadth-first order with each directory's children contiguous and sorted by name bytes. */
  finish(): Omit<IndexData, 'members' | 'source' | 'warnings'> {
    const order: BuildNode[] = [this.root];
    this.root.id = 0;
    for (let i = 0; i < order.length; i++) {
      const n = order[i];
      if (!n.children) continue;
      const kids = [...n.children.values()];
      if (!inOrder(kids)) kids.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
      for (const k of kids) {
        k.id = order.length;
        order.push(k);
        k.inode.nlink++;
      }
    }
    // Hard-link targets replaced by a later member keep their data under no name.
    const attached = order.length;
    for (let i = 0; i < attached; i++) {
      const owner = order[i].inode;
      if (owner.id === NONE) {
        owner.id = order.length;
        owner.flags |= NodeFlag.Detached;
        order.push(owner);
      }
    }
    return flatten(order);
  }
}

/** Whether names are already sorted (a tar made with `--sort=name`, or of a sorted walk): no sort then. */
function inOrder(kids: BuildNode[]): boolean {
  for (let i = 1; i < kids.length; i++) if (kids[i - 1]!.name > kids[i]!.name) return false;
  return true;
}

function typeBits(t: Member['type']): number {
  switch (t) {
    case 'dir':
      return S_IFDIR;
    case 'symlink':
      return S_IFLNK;
    case 'char':
      return S_IFCHR;
    case 'block':
      return S_IFBLK;
    case 'fifo':
      return S_IFIFO;
    default:
      return S_IFREG;
  }
}

function flatten(order: BuildNode[]): Omit<IndexData, 'members' | 'source' | 'warnings'> {
  const n = order.length;
  const d = {
    nodeCount: n,
    parent: new Uint32Array(n),
    nameOff: new Uint32Array(n),
    nameLen: new Uint16Array(n),
    flags: new Uint8Array(n),
    mode: new Uint32Array(n),
    uid: new Uint32Array(n),
    gid: new Uint32Array(n),
    size: new Float64Array(n),
    dataOff: new Float64Array(n),
    mtimeSec: new Float64Array(n),
    mtimeNsec: new Uint32Array(n),
    a: new Uint32Array(n),
    b: new Uint32Array(n),
    inode: new Uint32Array(n),
    nlink: new Uint32Array(n),
    extra: new Uint32Array(n),
  };
  // Byte strings are one byte per character: size the blobs first, then write without copies.
  let nameTotal = 0;
  let stringTotal = 0;
  for (const node of order) {
    nameTotal += node.name.length;
    if ((node.inode.mode & S_IFMT) === S_IFLNK && !node.children) stringTotal += node.inode.target.length;
  }
  const names = Buffer.allocUnsafe(nameTotal);
  const strings = Buffer.allocUnsafe(stringTotal);
  const extras: NodeExtra[] = [];
  let nameBytes = 0;
  let stringBytes = 0;
  for (let i = 0; i < n; i++) {
    const node = order[i];
    d.parent[i] = node.parent && !(node.flags & NodeFlag.Detached) ? node.parent.id : NONE;
    d.nameOff[i] = nameBytes;
    d.nameLen[i] = node.name.length;
    // byte strings (latin1, made by the scanner): a loop beats a binding call for names this short
    const name = node.name;
    for (let j = 0; j < name.length; j++) names[nameBytes + j] = name.charCodeAt(j);
    nameBytes += name.length;
    d.flags[i] = node.flags;
    const meta = node.inode;
    d.mode[i] = meta.mode;
    d.uid[i] = meta.uid;
    d.gid[i] = meta.gid;
    d.size[i] = meta.size;
    d.dataOff[i] = meta.dataOffset;
    d.mtimeSec[i] = meta.mtimeSec;
    d.mtimeNsec[i] = meta.mtimeNsec;
    d.inode[i] = meta.id;
    d.nlink[i] = meta.nlink;
    if (node.children) {
      let first = NONE;
      let subdirs = 0;
      for (const k of node.children.values()) {
        first = Math.min(first, k.id);
        if (k.children) subdirs++;
      }
      d.a[i] = node.children.size ? first : 0;
      d.b[i] = node.children.size;
      d.nlink[i] = 2 + subdirs;
    } else if ((meta.mode & S_IFMT) === S_IFLNK) {
      d.a[i] = stringBytes;
      d.b[i] = meta.target.length;
      stringBytes += strings.write(meta.target, stringBytes, 'latin1');
    } else if ((meta.mode & S_IFMT) === S_IFCHR || (meta.mode & S_IFMT) === S_IFBLK) {
      d.a[i] = meta.devmajor;
      d.b[i] = meta.devminor;
    }
    if (meta.extra) {
      extras.push(meta.extra);
      d.extra[i] = extras.length; // 0 means none
    }
  }
  return { ...d, names, strings, extras };
}
