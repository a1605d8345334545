// A tiny eStargz writer for the tests (no tool on this machine makes eStargz: podman and skopeo 1.9
// know gzip, zstd and zstd:chunked only), written from the format's description in
// stargz-snapshotter's docs/estargz.md: the tar's entries gzip'd so that every chunk of a regular
// file's content starts a gzip member of its own (its header, padding and the next headers share the
// member before or after), a landmark entry first, then the TOC `stargz.index.json` in a tar of its
// own in one member, then the 51-byte footer: an empty gzip member whose Extra field holds
// "%016xSTARGZ" (the TOC member's offset) under subfield id 'S','G'. Input: a plain tar whose members
// have names under 100 bytes (ustar / GNU headers, no extension headers).
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';

const BLOCK = 512;
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const str = (b: Buffer, off: number, len: number) => b.toString('latin1', off, off + len).replace(/\0.*$/s, '');
const oct = (b: Buffer, off: number, len: number) => parseInt(str(b, off, len).trim() || '0', 8);
const TYPES: Record<string, string> = { '0': 'reg', '\0': 'reg', '5': 'dir', '2': 'symlink', '1': 'hardlink', '3': 'char', '4': 'block', '6': 'fifo' };

interface TocEntry {
  name: string;
  type: string;
  [k: string]: unknown;
}

/** A ustar header block for `name` with `size` bytes of content (the TOC's and the landmark's). */
function header(name: string, size: number): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 'latin1');
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
  h.write('00000000000\0', 136);
  h.write('0', 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  h.write('        ', 148);
  let sum = 0;
  for (const x of h) sum += x;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return h;
}

const padOf = (n: number) => Buffer.alloc((BLOCK - (n % BLOCK)) % BLOCK);

/** The eStargz blob of a tar, its TOC's digest (the manifest annotation) and its diff_id. */
export function estargz(tarFile: string, chunkSize = 64 << 10): { blob: Buffer; tocDigest: string; diffId: string } {
  const tar = fs.readFileSync(tarFile);
  const out: Buffer[] = [];
  let outLen = 0;
  let cur: Buffer[] = [];
  const flush = () => {
    if (cur.length === 0) return;
    const gz = gzipSync(Buffer.concat(cur));
    out.push(gz);
    outLen += gz.length;
    cur = [];
  };
  const entries: TocEntry[] = [];
  // The landmark first: no prefetch (its content is one byte, 0x0f, as the spec's writer puts it).
  const landmark = Buffer.from([0x0f]);
  cur.push(header('.no.prefetch.landmark', 1));
  flush();
  entries.push({ name: '.no.prefetch.landmark', type: 'reg', size: 1, modtime: '1970-01-01T00:00:00Z', mode: 0o644, digest: sha(landmark), offset: outLen, chunkDigest: sha(landmark) });
  cur.push(landmark, padOf(1));
  for (let at = 0; at + BLOCK <= tar.length; ) {
    const h = tar.subarray(at, at + BLOCK);
    if (h.every((x) => x === 0)) break;
    const flag = String.fromCharCode(h[156]);
    const type = TYPES[flag];
    if (!type) throw new Error(`estargz helper: tar member type '${flag}' is not supported`);
    const prefix = str(h, 345, 155);
    const name = (prefix ? `${prefix}/` : '') + str(h, 0, 100);
    const size = type === 'reg' ? oct(h, 124, 12) : 0;
    const e: TocEntry = {
      name: name.replace(/^\.\//, '') + (type === 'dir' && !name.endsWith('/') ? '/' : ''),
      type,
      modtime: new Date(oct(h, 136, 12) * 1000).toISOString().replace(/\.000Z$/, 'Z'),
      mode: oct(h, 100, 8),
      uid: oct(h, 108, 8),
      gid: oct(h, 116, 8),
      userName: str(h, 265, 32),
      groupName: str(h, 297, 32),
    };
    if (type === 'symlink' || type === 'hardlink') e.linkName = str(h, 157, 100).replace(/^\.\//, '');
    if (type === 'char' || type === 'block') Object.assign(e, { devMajor: oct(h, 329, 8), devMinor: oct(h, 337, 8) });
    cur.push(h);
    at += BLOCK;
    if (type === 'reg') {
      const body = tar.subarray(at, at + size);
      e.size = size;
      e.digest = sha(body);
      for (let from = 0; from < size; from += chunkSize) {
        const len = Math.min(chunkSize, size - from);
        flush();
        const chunk = body.subarray(from, from + len);
        const c: TocEntry = from === 0 ? e : { name: e.name, type: 'chunk' };
        Object.assign(c, { offset: outLen, chunkOffset: from, chunkDigest: sha(chunk) }, len === chunkSize ? { chunkSize } : {});
        if (from > 0) entries.push(c);
        else entries.push(e);
        cur.push(chunk);
      }
      if (size === 0) entries.push(e);
      cur.push(padOf(size));
      at += size + padOf(size).length;
    } else entries.push(e);
  }
  flush();
  const tocOffset = outLen;
  const json = Buffer.from(JSON.stringify({ version: 1, entries }));
  out.push(gzipSync(Buffer.concat([header('stargz.index.json', json.length), json, padOf(json.length), Buffer.alloc(2 * BLOCK)])));
  const footer = Buffer.alloc(51);
  Buffer.from([0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff]).copy(footer, 0);
  footer.writeUInt16LE(26, 10);
  footer.write('SG', 12, 'latin1');
  footer.writeUInt16LE(22, 14);
  footer.write(`${tocOffset.toString(16).padStart(16, '0')}STARGZ`, 16, 'latin1');
  Buffer.from([0x01, 0x00, 0x00, 0xff, 0xff]).copy(footer, 38); // an empty stored block, the last
  out.push(footer); // crc32 and size of nothing: zeros
  const blob = Buffer.concat(out);
  return { blob, tocDigest: sha(json), diffId: sha(gunzipSync(blob)) };
}

/**
 * An OCI layout in `dir` holding one image (tag `tag`) of the given layers, bottom first, each with
 * its annotations, for skopeo to copy into a registry byte for byte.
 */
export function ociLayout(dir: string, tag: string, layers: Array<{ blob: Buffer; diffId: string; mediaType: string; annotations?: Record<string, string> }>, arch: string): void {
  fs.mkdirSync(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  const put = (b: Buffer) => {
    const d = sha(b);
    fs.writeFileSync(path.join(dir, 'blobs', 'sha256', d.slice(7)), b);
    return { digest: d, size: b.length };
  };
  const config = Buffer.from(JSON.stringify({ architecture: arch, os: 'linux', rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) }, config: {} }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...put(config) },
    layers: layers.map((l) => ({ mediaType: l.mediaType, ...put(l.blob), ...(l.annotations ? { annotations: l.annotations } : {}) })),
  }));
  fs.writeFileSync(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  fs.writeFileSync(path.join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...put(manifest), annotations: { 'org.opencontainers.image.ref.name': tag } }] }));
}
