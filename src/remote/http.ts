// HTTP(S) for registries and remote layers: one keep-alive agent per TLS mode, requests and whole
// downloads. Range GETs of blobs are fetch-thread.ts's (native, with the retries of connection
// errors, timeouts and 5xx until retryDeadlineMs); both trust what certDirTrust reads.
// Authorization is the caller's: a `Remote` carries the headers its requests need and may renew them.
// node:http and node:https (with TLS) load at the first request: the store's server loads this file
// for every mount (open-image.ts), and most mounts never go on the network.
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { createReadStream, existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

/** Where a blob lives and how to ask for it. */
export interface Remote {
  url: string;
  tlsVerify: boolean;
  /** Headers for every request (Authorization). */
  headers(): Record<string, string>;
  /** A 401 came back: renew the headers (a Bearer token expired); false if nothing changed. */
  renew?(challenge: string | undefined): Promise<boolean>;
  /** A directory of CA certificates (*.crt) and a client pair (*.cert, *.key), as podman's --cert-dir. */
  certDir?: string;
}

export class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly retryable: boolean, readonly challenge?: string) {
    super(message);
  }
}

/** How long a read keeps retrying before it gives up (EIO); TARSTACK_REMOTE_DEADLINE_MS overrides. */
export function retryDeadlineMs(): number {
  const v = Number(process.env.TARSTACK_REMOTE_DEADLINE_MS);
  return Number.isFinite(v) && v > 0 ? v : 15_000;
}
/** A request idle this long (no bytes) is abandoned and retried. */
const IDLE_MS = 5_000;
/**
 * An upload's wait for its answer: a registry reads the whole body, then hashes and moves it before
 * it says a word (seconds for a large layer on a busy machine), so silence then is not a dead peer.
 */
const UPLOAD_IDLE_MS = 120_000;

interface Net {
  http: typeof import('node:http');
  https: typeof import('node:https');
  /** One keep-alive agent per TLS mode. */
  agents: { http: import('node:http').Agent; https: import('node:https').Agent; insecure: import('node:https').Agent };
  /** Agents trusting a cert dir's CAs, by dir. */
  byDir: Map<string, import('node:https').Agent>;
}
let net: Promise<Net> | undefined;

function loadNet(): Promise<Net> {
  net ??= Promise.all([import('node:http'), import('node:https')]).then(([http, https]) => ({
    http,
    https,
    byDir: new Map(),
    agents: {
      http: new http.Agent({ keepAlive: true, maxSockets: 8 }),
      https: new https.Agent({ keepAlive: true, maxSockets: 8 }),
      insecure: new https.Agent({ keepAlive: true, maxSockets: 8, rejectUnauthorized: false }),
    },
  }));
  return net;
}

export interface Response {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  /** A buffer, or a file streamed as the body (uploads of layer blobs). */
  body?: Buffer | { file: string; size: number };
  tlsVerify?: boolean;
  /** Redirects to follow (a registry may send a blob to its storage). */
  redirects?: number;
  /** See Remote.certDir. */
  certDir?: string;
  /**
   * Asked once the status is known: a function that takes the body's bytes as they arrive (the
   * Response's body is then empty), or undefined to collect them. A throw from it ends the request
   * with that error.
   */
  sink?: (status: number) => ((b: Buffer) => void) | undefined;
}

/** Where podman looks for a registry's certificates when no --cert-dir is given. */
export const SYSTEM_CERT_DIRS = ['/etc/containers/certs.d', '/etc/docker/certs.d'];

/** What an https request trusts and presents when a cert dir applies (see certDirTrust). */
export interface CertDirTrust {
  dir: string;
  /** The system's CAs (Node's) and the dir's *.crt, PEM each. */
  ca: string[];
  cert?: string;
  key?: string;
}
const trusts = new Map<string, CertDirTrust>();

/**
 * The cert dir of a request to `host` (given, or the host's in SYSTEM_CERT_DIRS), read as podman and
 * skopeo read one: its *.crt trusted beside the system's CAs, its *.cert/*.key pair presented. Read
 * once per dir; undefined when no dir applies (the system's CAs alone). The https agents and the
 * fetch thread (fetch-thread.ts) both trust what this returns.
 */
export function certDirTrust(host: string, certDir: string | undefined): CertDirTrust | undefined {
  const dir = certDir ?? SYSTEM_CERT_DIRS.map((d) => `${d}/${host}`).find((d) => existsSync(d));
  if (!dir) return undefined;
  let t = trusts.get(dir);
  if (t) return t;
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (err) {
    throw new HttpError(0, `--cert-dir ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, false);
  }
  const read = (f: string): string => readFileSync(`${dir}/${f}`, 'utf8');
  const cas = names.filter((f) => f.endsWith('.crt')).map(read);
  const cert = names.find((f) => f.endsWith('.cert'));
  const key = cert && names.find((f) => f === `${cert.slice(0, -5)}.key`);
  if (cert && !key) throw new HttpError(0, `--cert-dir ${dir}: ${cert} has no ${cert.slice(0, -5)}.key beside it`, false);
  t = { dir, ca: [...systemCAs(), ...cas], ...(cert && key ? { cert: read(cert), key: read(key) } : {}) };
  trusts.set(dir, t);
  return t;
}

/** The CAs Node trusts by default (its https agents' without a cert dir). */
export function systemCAs(): readonly string[] {
  return (createRequire(import.meta.url)('node:tls') as typeof import('node:tls')).rootCertificates;
}

/** The https agent for a request: trusting certDirTrust's CAs, kept per dir (keep-alive). */
function httpsAgent(n: Net, u: URL, tlsVerify: boolean, certDir: string | undefined): import('node:https').Agent {
  if (!tlsVerify) return n.agents.insecure;
  const t = certDirTrust(u.host, certDir);
  if (!t) return n.agents.https;
  let agent = n.byDir.get(t.dir);
  if (agent) return agent;
  agent = new n.https.Agent({ keepAlive: true, maxSockets: 8, ca: t.ca, ...(t.cert && t.key ? { cert: t.cert, key: t.key } : {}) });
  n.byDir.set(t.dir, agent);
  return agent;
}

/** One request, its body read in full; network failures reject (retryable), any status resolves. */
export async function request(url: string, o: RequestOptions = {}): Promise<Response> {
  const n = await loadNet();
  const { http, https, agents } = n;
  const u = new URL(url);
  const tls = u.protocol === 'https:';
  const agent = tls ? httpsAgent(n, u, o.tlsVerify !== false, o.certDir) : agents.http;
  return new Promise((resolve, reject) => {
    const req = (tls ? https : http).request(u, { method: o.method ?? 'GET', headers: { ...o.headers, ...(o.body ? { 'content-length': String(Buffer.isBuffer(o.body) ? o.body.length : o.body.size) } : {}) }, agent }, (res) => {
      const parts: Buffer[] = [];
      const sink = o.sink?.(res.statusCode ?? 0);
      res.on(
        'data',
        sink
          ? (b: Buffer) => {
              try {
                sink(b);
              } catch (err) {
                reject(err);
                req.destroy();
              }
            }
          : (b: Buffer) => parts.push(b),
      );
      res.on('error', (e) => reject(new HttpError(0, `${u.host}: ${e.message}`, true)));
      res.on('aborted', () => reject(new HttpError(0, `${u.host}: the response was cut short`, true)));
      res.on('end', () => {
        if (!res.complete) return reject(new HttpError(0, `${u.host}: the response was cut short`, true));
        const status = res.statusCode ?? 0;
        const loc = res.headers.location;
        if (status >= 300 && status < 400 && loc && (o.redirects ?? 5) > 0) {
          const next = new URL(loc, u).toString();
          const sameHost = new URL(next).host === u.host;
          const headers = { ...o.headers };
          if (!sameHost) delete headers.authorization;
          request(next, { ...o, headers, redirects: (o.redirects ?? 5) - 1 }).then(resolve, reject);
          return;
        }
        resolve({ status, headers: res.headers, body: Buffer.concat(parts) });
      });
    });
    const idle = o.body ? UPLOAD_IDLE_MS : IDLE_MS;
    req.setTimeout(idle, () => req.destroy(new Error(`no answer for ${idle / 1000} s`)));
    req.on('error', (e) => reject(new HttpError(0, `${u.host}: ${(e as NodeJS.ErrnoException).code ?? e.message}`, !/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test((e as NodeJS.ErrnoException).code ?? ''))));
    if (o.body && !Buffer.isBuffer(o.body)) {
      const src = createReadStream(o.body.file);
      src.on('error', (e) => req.destroy(e));
      src.pipe(req);
    } else req.end(o.body);
  });
}

export function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

export function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

/** Where a download's bytes go, as they arrive (in order, each call before the next). */
export interface DownloadSink {
  /** The response started: its Content-Length (0 when the server sent none), and its headers. */
  start?(total: number, headers: IncomingHttpHeaders): void;
  data(b: Buffer): void;
}

/**
 * The whole blob streamed into `sink` (never held in memory), hashed on the way: its sha256 (hex) and
 * size. A 401 is answered once through `r.renew`; `signal` abandons it (the sink failed elsewhere).
 */
export async function download(r: Remote, sink: DownloadSink, onProgress?: (done: number, total: number) => void, signal?: AbortSignal): Promise<{ sha256: string; size: number }> {
  const { createHash } = await import('node:crypto');
  const n = await loadNet();
  const { http, https, agents } = n;
  for (let attempt = 0; ; attempt++) {
    const u = new URL(r.url);
    const tls = u.protocol === 'https:';
    const agent = tls ? httpsAgent(n, u, r.tlsVerify, r.certDir) : agents.http;
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = (tls ? https : http).get(u, { headers: r.headers(), agent, signal }, resolve);
      req.setTimeout(IDLE_MS, () => req.destroy(new Error(`no answer for ${IDLE_MS / 1000} s`)));
      req.on('error', (e) => reject(new HttpError(0, `${u.host}: ${(e as NodeJS.ErrnoException).code ?? e.message}`, true)));
    });
    const status = res.statusCode ?? 0;
    if (status >= 300 && status < 400 && res.headers.location) {
      res.resume();
      return download({ ...r, url: new URL(res.headers.location, r.url).toString(), headers: () => (new URL(res.headers.location!, r.url).host === new URL(r.url).host ? r.headers() : {}) }, sink, onProgress, signal);
    }
    if (status === 401 && attempt === 0 && r.renew && (await r.renew(header(res.headers['www-authenticate'])))) {
      res.resume();
      continue;
    }
    if (status !== 200) {
      res.resume();
      throw new HttpError(status, `${hostOf(r.url)}: HTTP ${status} for ${new URL(r.url).pathname}`, false);
    }
    const total = Number(res.headers['content-length'] ?? 0);
    const hash = createHash('sha256');
    let size = 0;
    await new Promise<void>((resolve, reject) => {
      const fail = (err: unknown): void => {
        res.destroy();
        reject(err);
      };
      try {
        sink.start?.(total, res.headers);
      } catch (err) {
        fail(err);
        return;
      }
      res.on('data', (b: Buffer) => {
        try {
          sink.data(b);
        } catch (err) {
          fail(err);
          return;
        }
        hash.update(b);
        size += b.length;
        onProgress?.(size, total);
      });
      const cutShort = (): void => reject(new HttpError(0, `${hostOf(r.url)}: the download was cut short`, true));
      res.on('aborted', cutShort);
      res.on('error', (e) => reject(signal?.aborted ? signal.reason : new HttpError(0, `${hostOf(r.url)}: ${e.message}`, true)));
      res.on('end', () => (res.complete ? resolve() : cutShort()));
      // Abandoned once the body had all come, a response closes with no 'error' nor 'end': the
      // download must still settle (else nothing keeps the process alive and it exits mid-await).
      res.on('close', () => (signal?.aborted ? reject(signal.reason) : res.complete ? undefined : cutShort()));
      signal?.addEventListener('abort', () => fail(signal.reason), { once: true });
    });
    return { sha256: hash.digest('hex'), size };
  }
}
