// A byte-level tar writer for fixtures no tar tool will make on purpose: invalid UTF-8 names,
// base-256 numbers where octal would fit, bad checksums, extension headers placed by hand.
// Layout per POSIX.1-2017 pax "ustar Interchange Format" and GNU tar's manual, "Basic Tar Format".

export type Bytes = Buffer | string;

export interface RawHeader {
  name: Bytes;
  type?: string; // typeflag character: '0' file, '\0' old file, '1' link, '2' symlink, '5' dir, 'x', 'g', 'L', 'K' ...
  mode?: number;
  uid?: number | bigint;
  gid?: number | bigint;
  size?: number | bigint;
  mtime?: number | bigint; // whole seconds, may be negative (then always base-256)
  linkname?: Bytes;
  uname?: string;
  gname?: string;
  devmajor?: number;
  devminor?: number;
  prefix?: Bytes;
  magic?: 'ustar' | 'gnu' | 'v7';
  base256?: Array<'size' | 'uid' | 'gid' | 'mtime'>; // encode these in base-256 even when octal fits
  badChecksum?: boolean;
}

const bytes = (b: Bytes): Buffer => (typeof b === 'string' ? Buffer.from(b, 'utf8') : b);

/** GNU base-256: big-endian two's complement over the whole field, top bit of byte 0 set. */
function putBase256(buf: Buffer, off: number, len: number, value: bigint): void {
  let v = value < 0n ? (1n << BigInt(8 * len)) + value : value;
  for (let i = len - 1; i >= 0; i--) {
    buf[off + i] = Number(v & 0xffn);
    v >>= 8n;
  }
  buf[off] = buf[off]! | 0x80;
}

function putNumber(buf: Buffer, off: number, len: number, value: number | bigint, forceBase256: boolean): void {
  const v = BigInt(value);
  const octal = v >= 0n ? v.toString(8) : '';
  if (forceBase256 || v < 0n || octal.length > len - 1) return putBase256(buf, off, len, v);
  buf.write(octal.padStart(len - 1, '0') + '\0', off, 'latin1');
}

function putBytes(buf: Buffer, off: number, len: number, value: Bytes | undefined): void {
  if (value === undefined) return;
  const b = bytes(value);
  if (b.length > len) throw new Error(`field of ${len} bytes cannot hold ${b.length}`);
  b.copy(buf, off);
}

/** One 512-byte header block. */
export function header(h: RawHeader): Buffer {
  const buf = Buffer.alloc(512);
  const force = new Set(h.base256 ?? []);
  putBytes(buf, 0, 100, h.name);
  putNumber(buf, 100, 8, h.mode ?? 0o644, false);
  putNumber(buf, 108, 8, h.uid ?? 0, force.has('uid'));
  putNumber(buf, 116, 8, h.gid ?? 0, force.has('gid'));
  putNumber(buf, 124, 12, h.size ?? 0, force.has('size'));
  putNumber(buf, 136, 12, h.mtime ?? 1_000_000_000, force.has('mtime'));
  buf.write(h.type ?? '0', 156, 'latin1');
  putBytes(buf, 157, 100, h.linkname);
  const magic = h.magic ?? 'ustar';
  if (magic === 'ustar') buf.write('ustar\u000000', 257, 'latin1');
  if (magic === 'gnu') buf.write('ustar  \u0000', 257, 'latin1');
  if (magic !== 'v7') {
    putBytes(buf, 265, 32, h.uname ?? 'root');
    putBytes(buf, 297, 32, h.gname ?? 'root');
    putNumber(buf, 329, 8, h.devmajor ?? 0, false);
    putNumber(buf, 337, 8, h.devminor ?? 0, false);
    putBytes(buf, 345, 155, h.prefix);
  }
  buf.fill(0x20, 148, 156); // the checksum is summed with its own field as spaces
  let sum = 0;
  for (const b of buf) sum += b;
  if (h.badChecksum) sum += 1;
  buf.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return buf;
}

/** A member body padded to whole blocks. */
export function body(data: Bytes): Buffer {
  const b = bytes(data);
  return Buffer.concat([b, Buffer.alloc((512 - (b.length % 512)) % 512)]);
}

/** A header plus its body; size is taken from the data unless given (a pax size may override it). */
export function entry(h: RawHeader, data: Bytes = Buffer.alloc(0)): Buffer {
  const b = bytes(data);
  return Buffer.concat([header({ size: b.length, ...h }), body(b)]);
}

/** pax records "LEN key=value\n", where LEN counts its own digits (POSIX pax, "pax Extended Header"). */
export function paxRecords(records: Array<[string, Bytes]>): Buffer {
  return Buffer.concat(
    records.map(([key, value]) => {
      const rest = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), bytes(value), Buffer.from('\n')]);
      let len = rest.length + 1;
      while (String(len).length + rest.length !== len) len = String(len).length + rest.length;
      return Buffer.concat([Buffer.from(String(len)), rest]);
    }),
  );
}

/** A pax extended header ('x', next member only) or global header ('g'). */
export function pax(records: Array<[string, Bytes]>, type: 'x' | 'g' = 'x', name: Bytes = 'PaxHeader'): Buffer {
  return entry({ name, type, mtime: 0 }, paxRecords(records));
}

/** A GNU long name ('L') or long link name ('K') header for the next member only; NUL-terminated. */
export function gnuLong(type: 'L' | 'K', value: Bytes): Buffer {
  return entry({ name: '././@LongLink', type, magic: 'gnu', mtime: 0 }, Buffer.concat([bytes(value), Buffer.alloc(1)]));
}

/** The end-of-archive marker: two zero blocks. */
export const END = Buffer.alloc(1024);
