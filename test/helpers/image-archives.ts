// Image archives written by the tests themselves (never by tarstack): `docker save`'s legacy layout
// (manifest.json, <id>.json config, <id>/layer.tar) and an OCI image layout with gzip layers, so
// import is checked against the formats as their specs describe them.
import crypto from 'node:crypto';
import fs from 'node:fs';
import zlib from 'node:zlib';
import tarStream from 'tar-stream';

const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

async function writeTar(file: string, entries: Array<[string, Buffer]>): Promise<void> {
  const pack = tarStream.pack();
  const done = new Promise<void>((resolve, reject) => {
    const out = fs.createWriteStream(file);
    out.on('close', resolve).on('error', reject);
    pack.pipe(out);
  });
  for (const [name, body] of entries) await new Promise<void>((res, rej) => pack.entry({ name, mtime: new Date(1e12) }, body, (e) => (e ? rej(e) : res())));
  pack.finalize();
  await done;
}

/** `docker save` as Docker before 25 wrote it; layers bottom first. */
export async function writeDockerSave(file: string, layers: string[], repoTag: string): Promise<void> {
  const bodies = layers.map((l) => fs.readFileSync(l));
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: bodies.map((b) => `sha256:${sha(b)}`) } }));
  const ids = bodies.map((b, i) => sha(Buffer.from(`${i}:${sha(b)}`)));
  const manifest = Buffer.from(JSON.stringify([{ Config: `${sha(config)}.json`, RepoTags: [repoTag], Layers: ids.map((id) => `${id}/layer.tar`) }]));
  await writeTar(file, [...bodies.flatMap((b, i): Array<[string, Buffer]> => [[`${ids[i]}/VERSION`, Buffer.from('1.0')], [`${ids[i]}/layer.tar`, b]]), [`${sha(config)}.json`, config], ['manifest.json', manifest]]);
}

/** An OCI image layout whose layers are gzip-compressed blobs; layers bottom first. */
export async function writeOciGzip(file: string, layers: string[], ref: string): Promise<void> {
  const plain = layers.map((l) => fs.readFileSync(l));
  const blobs = plain.map((b) => zlib.gzipSync(b));
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: plain.map((b) => `sha256:${sha(b)}`) } }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${sha(config)}`, size: config.length },
    layers: blobs.map((b) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${sha(b)}`, size: b.length })),
  }));
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${sha(manifest)}`, size: manifest.length, annotations: { 'org.opencontainers.image.ref.name': ref } }] }));
  const all = [...blobs, config, manifest];
  await writeTar(file, [['oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}')], ['index.json', index], ...all.map((b): [string, Buffer] => [`blobs/sha256/${sha(b)}`, b])]);
}

/** Offsets of a member's body in a tar, found by scanning its headers (ustar sizes, no extensions). */
export function memberBody(file: string, name: string): { offset: number; size: number } {
  const buf = fs.readFileSync(file);
  for (let pos = 0; pos + 512 <= buf.length; ) {
    const h = buf.subarray(pos, pos + 512);
    if (h.every((x) => x === 0)) break;
    const n = h.subarray(0, 100).toString('latin1').replace(/\0.*$/s, '');
    const size = parseInt(h.subarray(124, 136).toString('latin1').replace(/\0.*$/s, '').trim() || '0', 8);
    if (n === name) return { offset: pos + 512, size };
    pos += 512 + Math.ceil(size / 512) * 512;
  }
  throw new Error(`${name} not in ${file}`);
}
