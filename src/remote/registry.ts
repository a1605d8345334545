// The OCI distribution API as `image pull` and `image push` use it: references as podman takes
// them (HOST[:PORT]/NAME[:TAG|@sha256:…]), manifests (OCI and Docker schema 2; an index or manifest
// list resolved to this machine's platform, or --platform), blob URLs, uploads. TLS is verified
// unless --tls-verify=false, which (as podman does) also falls back to plain http.
import { createHash } from 'node:crypto';
import { UserError } from '../util/errors.js';
import { HttpError, request } from './http.js';
import { AuthError, registryRequest } from './registry-auth.js';

export const MT = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  emptyConfig: 'application/vnd.oci.empty.v1+json',
  /** tarstack's index of a layer, pushed as an artifact referring to the layer's manifest. */
  tarstackIndex: 'application/vnd.tarstack.layer.index.v1',
  tarstackChunks: 'application/vnd.tarstack.layer.chunks.v1',
  /** The index without its gzip seek windows (the head), the windows (read by range), their chunk digests. */
  tarstackIndexHead: 'application/vnd.tarstack.layer.index-head.v1',
  tarstackWindows: 'application/vnd.tarstack.layer.windows.v1',
  tarstackWindowChunks: 'application/vnd.tarstack.layer.windows.chunks.v1',
};

export interface Ref {
  host: string;
  repo: string;
  /** A tag or a digest. */
  reference: string;
  text: string;
}

export function parseRef(text: string): Ref {
  const m = /^([^/]+)\/([a-z0-9._/-]+?)(?::([A-Za-z0-9_][A-Za-z0-9._-]{0,127}))?(?:@(sha256:[0-9a-f]{64}))?$/.exec(text.replace(/^docker:\/\//, ''));
  if (!m || !(/[.:]/.test(m[1]) || m[1] === 'localhost')) throw new UserError(`${text}: not a registry reference (HOST[:PORT]/NAME[:TAG|@sha256:…])`);
  return { host: m[1], repo: m[2], reference: m[4] ?? m[3] ?? 'latest', text };
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { os: string; architecture: string; variant?: string };
  artifactType?: string;
}

export interface Manifest {
  schemaVersion: number;
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export function hostPlatform(): string {
  const arch = ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' } as Record<string, string>)[process.arch] ?? process.arch;
  return `linux/${arch}`;
}

export class Registry {
  private base: string | undefined;

  constructor(readonly host: string, readonly tlsVerify: boolean, readonly certDir?: string) {}

  /** https, or with --tls-verify=false whichever of https and http answers. */
  async baseUrl(): Promise<string> {
    if (this.base) return this.base;
    const https = `https://${this.host}`;
    if (this.tlsVerify) return (this.base = https);
    try {
      await request(`${https}/v2/`, { tlsVerify: false, certDir: this.certDir });
      this.base = https;
    } catch {
      this.base = `http://${this.host}`;
    }
    return this.base;
  }

  async blobUrl(repo: string, digest: string): Promise<string> {
    return `${await this.baseUrl()}/v2/${repo}/blobs/${digest}`;
  }

  /** A request to this registry, its failures worded as one line for the user. */
  async call(path: string, o: { method?: string; headers?: Record<string, string>; body?: Buffer | { file: string; size: number } } = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
    const url = path.startsWith('http') ? path : `${await this.baseUrl()}${path}`;
    try {
      return await registryRequest(url, { ...o, tlsVerify: this.tlsVerify, certDir: this.certDir });
    } catch (err) {
      if (err instanceof AuthError) throw new UserError(err.message);
      if (err instanceof HttpError) throw new UserError(`registry ${this.host}: ${err.message.replace(`${this.host}: `, '')}${/CERT|SELF_SIGNED|VERIFY/.test(err.message) ? ' (use --cert-dir with its CA, or --tls-verify=false for a registry without a trusted certificate)' : ''}`);
      throw err;
    }
  }

  /** The manifest `reference` names (an index resolved to `platform`), its bytes' digest checked when named by digest. */
  async manifest(repo: string, reference: string, platform = hostPlatform()): Promise<{ manifest: Manifest; digest: string; mediaType: string }> {
    const accept = [MT.ociManifest, MT.dockerManifest, MT.ociIndex, MT.dockerList].join(', ');
    const res = await this.call(`/v2/${repo}/manifests/${reference}`, { headers: { accept } });
    if (res.status === 404) throw new UserError(`${this.host}/${repo}:${reference}: no such image in the registry`);
    if (res.status !== 200) throw new UserError(`${this.host}/${repo}: the registry answered HTTP ${res.status} for manifest ${reference}`);
    const digest = sha256(res.body);
    if (reference.startsWith('sha256:') && digest !== reference) throw new UserError(`${this.host}/${repo}@${reference}: the manifest served has digest ${digest}`);
    const body = JSON.parse(res.body.toString()) as Manifest & { manifests?: Descriptor[] };
    const mediaType = body.mediaType ?? String(res.headers['content-type'] ?? '').split(';')[0];
    if (mediaType === MT.ociIndex || mediaType === MT.dockerList || body.manifests) {
      const [os, arch, variant] = platform.split('/');
      const pick = (body.manifests ?? []).find((d) => d.platform?.os === os && d.platform.architecture === arch && (!variant || d.platform.variant === variant));
      if (!pick) throw new UserError(`${this.host}/${repo}:${reference}: no image for ${platform} in its index (it has ${(body.manifests ?? []).map((d) => `${d.platform?.os}/${d.platform?.architecture}`).join(', ') || 'none'}); choose one with --platform`);
      return this.manifest(repo, pick.digest, platform);
    }
    if (mediaType !== MT.ociManifest && mediaType !== MT.dockerManifest) throw new UserError(`${this.host}/${repo}:${reference}: a manifest of type ${mediaType || 'unknown'}, which tarstack does not read`);
    return { manifest: body, digest, mediaType };
  }

  async blob(repo: string, digest: string): Promise<Buffer> {
    const res = await this.call(`/v2/${repo}/blobs/${digest}`);
    if (res.status !== 200) throw new UserError(`${this.host}/${repo}: blob ${digest}: HTTP ${res.status}`);
    if (sha256(res.body) !== digest) throw new UserError(`${this.host}/${repo}: blob ${digest} does not match its digest`);
    return res.body;
  }

  async hasBlob(repo: string, digest: string): Promise<boolean> {
    const res = await this.call(`/v2/${repo}/blobs/${digest}`, { method: 'HEAD' });
    return res.status === 200;
  }

  /** Upload a blob in one monolithic PUT (POST for a session, then PUT with the digest). */
  async putBlob(repo: string, body: Buffer | { file: string; size: number; digest: string }): Promise<string> {
    const digest = Buffer.isBuffer(body) ? sha256(body) : body.digest;
    if (await this.hasBlob(repo, digest)) return digest;
    const start = await this.call(`/v2/${repo}/blobs/uploads/`, { method: 'POST', headers: { 'content-length': '0' } });
    if (start.status !== 202 || !start.headers.location) throw new UserError(`registry ${this.host}: starting an upload to ${repo} answered HTTP ${start.status}`);
    const loc = new URL(String(start.headers.location), await this.baseUrl());
    loc.searchParams.set('digest', digest);
    const data = Buffer.isBuffer(body) ? body : { file: body.file, size: body.size };
    const put = await this.call(loc.toString(), { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: data });
    if (put.status !== 201) throw new UserError(`registry ${this.host}: uploading blob ${digest} to ${repo} answered HTTP ${put.status}: ${put.body.toString().slice(0, 200)}`);
    return digest;
  }

  /** PUT a manifest under a tag or its digest; returns the registry's answer headers. */
  async putManifest(repo: string, reference: string, manifest: Buffer, mediaType: string): Promise<Record<string, string | string[] | undefined>> {
    const res = await this.call(`/v2/${repo}/manifests/${reference}`, { method: 'PUT', headers: { 'content-type': mediaType }, body: manifest });
    if (res.status !== 201) throw new UserError(`registry ${this.host}: storing a manifest in ${repo} answered HTTP ${res.status}: ${res.body.toString().slice(0, 200)}`);
    return res.headers;
  }

  /** Artifacts referring to `digest` (the referrers API, else the tag-schema fallback `sha256-HEX`). */
  async referrers(repo: string, digest: string): Promise<Descriptor[]> {
    const res = await this.call(`/v2/${repo}/referrers/${digest}`, { headers: { accept: MT.ociIndex } });
    if (res.status === 200) return ((JSON.parse(res.body.toString()) as { manifests?: Descriptor[] }).manifests ?? []);
    const tag = await this.call(`/v2/${repo}/manifests/${digest.replace(':', '-')}`, { headers: { accept: MT.ociIndex } });
    if (tag.status !== 200) return [];
    return ((JSON.parse(tag.body.toString()) as { manifests?: Descriptor[] }).manifests ?? []);
  }
}

export { sha256 as digestOf };
