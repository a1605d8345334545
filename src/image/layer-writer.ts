// Writes tar layers with tar-stream, the way OCI tools and GNU tar read them: a PAX header carries
// what ustar cannot (byte-exact paths, with hdrcharset=BINARY when they are not UTF-8; nanosecond
// mtimes; big ids and sizes; xattrs as SCHILY.xattr.NAME), uname/gname stay empty so readers take
// the stored numeric owners, whiteouts are OCI `.wh.NAME` files and `.wh..wh..opq` markers.
// The file is written beside its destination and renamed into place once complete and synced.
import { closeSync, createWriteStream, fsyncSync, openSync, renameSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import { isUtf8 } from 'node:buffer';
import tarStream from 'tar-stream';
import type { Attr } from '../vfs/api.js';
import { majorOf, minorOf } from '../util/attr.js';
import { namedWriteError, writingTo } from '../util/error-funnel.js';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG } from '../vfs/mode.js';
import { OPAQUE_MARKER, WHITEOUT_PREFIX } from '../tar/names.js';

const TYPES: Record<number, tarStream.Header['type']> = {
  [S_IFREG]: 'file', [S_IFDIR]: 'directory', [S_IFLNK]: 'symlink', [S_IFCHR]: 'character-device', [S_IFBLK]: 'block-device', [S_IFIFO]: 'fifo',
};
const USTAR_ID_MAX = 0o777777; // tar-stream writes ids in 6 octal digits
const USTAR_SIZE_MAX = 0o77777777777;
const USTAR_TIME_MAX = 0o77777777777;

/** One entry to write; paths are byte strings relative to the root ('' is the root). */
export interface LayerEntry {
  path: string;
  attr: Attr;
  xattrs: Array<[string, Buffer]>;
  /** Symlink target (byte string). */
  symlink?: string;
  /** A hard link to this earlier path of the same layer. */
  linkTo?: string;
  /** Body of a regular file (attr.size bytes). */
  body?: () => AsyncIterable<Buffer>;
}

export class LayerWriter {
  private readonly pack = tarStream.pack();
  private readonly done: Promise<void>;
  private readonly tmp: string;
  /** Entries written below the root (files, directories, links, …: what `image info` counts), and their file data. */
  entries = 0;
  whiteouts = 0;
  bytes = 0;
  /** Why the file could not be written (a full disk): what every later failure really is. */
  private failure: unknown;

  /** PAX records for a header, pushed just before tar-stream encodes it (see the constructor). */
  private readonly rawPax = new WeakMap<tarStream.Header, Buffer>();

  constructor(private readonly file: string) {
    this.tmp = `${file}.partial-${process.pid}`;
    // tar-stream's own PAX support takes string values and re-encodes them as UTF-8, which cannot
    // carry a non-UTF-8 name or a binary xattr value. So the extension header ('x') is pushed as
    // raw bytes right before tar-stream encodes the entry's own header, which then always fits ustar.
    const pack = this.pack as unknown as { _encode(h: tarStream.Header): void; push(b: Buffer): boolean };
    const encode = pack._encode.bind(pack);
    pack._encode = (h) => {
      const raw = this.rawPax.get(h);
      if (raw) {
        pack.push(paxHeaderBlock(raw.length, h.mtime ?? new Date(0)));
        pack.push(raw);
        if (raw.length % 512) pack.push(Buffer.alloc(512 - (raw.length % 512)));
      }
      encode(h);
    };
    const out = createWriteStream(this.tmp, { mode: 0o644 });
    this.done = new Promise((resolve, reject) => {
      out.on('close', resolve).on('error', (err) => {
        this.failure = namedWriteError(err, this.tmp);
        reject(this.failure);
        this.pack.destroy(); // entries waiting for room fail instead of waiting forever
      });
      this.pack.on('error', reject);
    });
    this.done.catch(() => undefined); // reported by close()
    this.pack.pipe(out);
  }

  /** An entry of the tree ('' is the root, which is not counted). */
  async add(e: LayerEntry): Promise<void> {
    this.bytes += await this.write(e);
    if (e.path !== '') this.entries++;
  }

  /** Write one member; its file data's size. */
  private async write(e: LayerEntry): Promise<number> {
    const type = e.attr.mode & S_IFMT;
    const isDirEntry = type === S_IFDIR;
    const name = e.path === '' ? './' : isDirEntry ? `${e.path}/` : e.path;
    const pax: Array<[string, Buffer]> = [];
    const header: tarStream.Header = {
      name: fitName(name, pax, 'path'),
      mode: e.attr.mode, // with its type bits: tar-stream would take a bare 0 for "default 0644"
      uid: e.attr.uid,
      gid: e.attr.gid,
      mtime: new Date(Math.min(Math.max(e.attr.mtimeSec, 0), USTAR_TIME_MAX) * 1000),
      type: e.linkTo !== undefined ? 'link' : (TYPES[type] ?? 'file'),
      size: 0,
      linkname: '',
      uname: '',
      gname: '',
      devmajor: 0,
      devminor: 0,
    };
    if (e.linkTo !== undefined) header.linkname = fitName(e.linkTo, pax, 'linkpath');
    else if (type === S_IFLNK) header.linkname = fitName(e.symlink ?? '', pax, 'linkpath');
    else if (type === S_IFREG) header.size = e.attr.size;
    if (header.type === 'character-device' || header.type === 'block-device') {
      header.devmajor = majorOf(e.attr.rdev);
      header.devminor = minorOf(e.attr.rdev);
    }
    if (e.attr.mtimeNsec !== 0 || e.attr.mtimeSec < 0 || e.attr.mtimeSec > USTAR_TIME_MAX) pax.push(['mtime', Buffer.from(paxTime(e.attr.mtimeSec, e.attr.mtimeNsec))]);
    if (e.attr.uid > USTAR_ID_MAX) pax.push(['uid', Buffer.from(String(e.attr.uid))]);
    if (e.attr.gid > USTAR_ID_MAX) pax.push(['gid', Buffer.from(String(e.attr.gid))]);
    if (header.size! > USTAR_SIZE_MAX) pax.push(['size', Buffer.from(String(header.size))]);
    for (const [k, v] of e.xattrs) pax.push([`SCHILY.xattr.${k}`, v]);
    if (pax.some(([k, v]) => (k === 'path' || k === 'linkpath') && !isUtf8(v))) pax.unshift(['hdrcharset', Buffer.from('BINARY')]);
    if (pax.length) this.rawPax.set(header, encodePax(pax));
    const body = header.type === 'file' && header.size ? e.body : undefined;
    await this.entry(header, body);
    return header.size ?? 0;
  }

  /** An OCI whiteout: NAME in directory `dir` is deleted. */
  async whiteout(dir: string, name: string, mtimeSec: number): Promise<void> {
    await this.marker(dir ? `${dir}/${WHITEOUT_PREFIX}${name}` : `${WHITEOUT_PREFIX}${name}`, mtimeSec);
    this.whiteouts++;
  }

  /** An OCI opaque marker: nothing below `dir` shows through. */
  opaque(dir: string, mtimeSec: number): Promise<void> {
    return this.marker(dir ? `${dir}/${OPAQUE_MARKER}` : OPAQUE_MARKER, mtimeSec);
  }

  private async marker(path: string, mtimeSec: number): Promise<void> {
    const attr = { ino: 0, mode: S_IFREG | 0o644, nlink: 1, uid: 0, gid: 0, rdev: 0, size: 0, blocks: 0, atimeSec: mtimeSec, atimeNsec: 0, mtimeSec, mtimeNsec: 0, ctimeSec: mtimeSec, ctimeNsec: 0 };
    await this.write({ path, attr, xattrs: [] });
  }

  private async entry(header: tarStream.Header, body?: () => AsyncIterable<Buffer>): Promise<void> {
    let finished!: Promise<void>;
    const sink = await new Promise<NodeJS.WritableStream & { destroy(err?: Error): void }>((resolve) => {
      finished = new Promise<void>((ok, fail) => resolve(this.pack.entry(header, (err) => (err ? fail(err) : ok())) as never));
    });
    if (body) {
      let written = 0;
      try {
        for await (const chunk of body()) {
          written += chunk.length;
          if (written > header.size!) throw new Error(`${header.name}: more bytes than its size ${header.size}`);
          if (!sink.write(chunk)) await once(sink as never, 'drain');
        }
        if (written !== header.size) throw new Error(`${header.name}: ${written} bytes, expected ${header.size}`);
      } catch (err) {
        sink.destroy(err as Error);
        throw err;
      }
    }
    sink.end(); // a file entry (even an empty one) ends when told; other kinds end by themselves
    await finished;
  }

  /** Finish the archive, sync it, and move it into place. */
  async close(): Promise<void> {
    this.pack.finalize();
    await this.done;
    writingTo(this.tmp, () => {
      const fd = openSync(this.tmp, 'r');
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    });
    renameSync(this.tmp, this.file);
  }

  /** Give up: no partial file stays behind. */
  abort(): void {
    this.pack.destroy();
    rmSync(this.tmp, { force: true });
  }

  /** Write with `body`, then close (or abort on failure); `result` gets the entry and byte counts. */
  async writeAll<R extends { entries: number; bytes: number }>(result: R, body: () => Promise<void>): Promise<R> {
    try {
      await body();
      await this.close();
    } catch (err) {
      this.abort();
      throw this.failure ?? err;
    }
    result.entries = this.entries;
    result.bytes = this.bytes;
    return result;
  }
}

/** The name for the ustar field: itself when plain ASCII of at most 100 bytes, else a stand-in and a PAX record. */
function fitName(name: string, pax: Array<[string, Buffer]>, key: 'path' | 'linkpath'): string {
  // eslint-disable-next-line no-control-regex
  if (name.length <= 100 && /^[\x01-\x7f]*$/.test(name)) return name;
  pax.push([key, Buffer.from(name, 'latin1')]);
  return name.replace(/[^\x20-\x7e]/g, '_').slice(-100);
}

/** Decimal seconds with nine fraction digits; before the epoch the value is negative (-1.25 is sec -2, nsec 750000000). */
export function paxTime(sec: number, nsec: number): string {
  if (sec < 0 && nsec > 0) return `-${-sec - 1}.${String(1e9 - nsec).padStart(9, '0')}`;
  return `${sec}.${String(nsec).padStart(9, '0')}`;
}

/** The ustar header of a PAX extended header (typeflag 'x', POSIX.1-2001) whose body has `size` bytes. */
function paxHeaderBlock(size: number, mtime: Date): Buffer {
  const b = Buffer.alloc(512);
  const oct = (v: number, off: number, len: number): void => void b.write(v.toString(8).padStart(len - 1, '0') + '\0', off, 'latin1');
  b.write('PaxHeader', 0, 'latin1');
  oct(0o644, 100, 8);
  oct(0, 108, 8);
  oct(0, 116, 8);
  oct(size, 124, 12);
  oct(Math.floor(mtime.getTime() / 1000), 136, 12);
  b.write('x', 156, 'latin1');
  b.write('ustar\0' + '00', 257, 'latin1');
  b.fill(0x20, 148, 156); // the checksum counts its own field as spaces
  let sum = 0;
  for (const x of b) sum += x;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return b;
}

/** PAX records "<len> <key>=<value>\n", <len> counting the whole record including itself. */
export function encodePax(records: Array<[string, Buffer]>): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of records) {
    const body = Buffer.concat([Buffer.from(` ${k}=`, 'latin1'), v, Buffer.from('\n')]);
    let len = body.length + String(body.length).length;
    if (String(len).length + body.length !== len) len = body.length + String(len).length;
    parts.push(Buffer.from(String(len), 'latin1'), body);
  }
  return Buffer.concat(parts);
}
