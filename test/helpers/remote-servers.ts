// Real servers for the remote-layer tests, started on 127.0.0.1 with temp configs and ended by pid:
// Debian's nginx-light serving a directory (Range on, an access log of bytes sent per request), and
// Debian's docker-registry (the distribution registry, filesystem storage; optionally htpasswd auth
// behind TLS). Readiness is waited for as a condition (the port answers), never by sleeping.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { waitFor } from './children.js';
import { execOk } from './exec.js';

export function serverSkipReason(): string | undefined {
  for (const p of ['/usr/sbin/nginx', '/usr/bin/docker-registry', '/usr/bin/skopeo']) if (!fs.existsSync(p)) return `${p} is missing (scripts/system-deps installs it)`;
  return undefined;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.on('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.on('error', () => resolve(false));
  });
}

export interface Server {
  port: number;
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

async function started(child: ChildProcess, port: number, url: string, what: string): Promise<Server> {
  let exited = false;
  child.on('exit', () => (exited = true));
  await waitFor(async () => {
    if (exited) throw new Error(`${what} exited before serving`);
    return answers(port);
  });
  return {
    port,
    url,
    child,
    stop: async () => {
      if (exited) return;
      const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGKILL');
      await gone;
    },
  };
}

export interface Nginx extends Server {
  /** Bytes sent for requests logged so far, each `[request line, status, bytes, range]`. */
  log(): Array<{ request: string; status: number; bytes: number; range: string }>;
  bytesSent(): number;
  settled(): Promise<void>;
}

/**
 * nginx-light serving `root` (Range is on for static files by default), as one process
 * (master_process off): ending the child ends nginx, no worker is left behind.
 */
export async function startNginx(dir: string, root: string): Promise<Nginx> {
  fs.mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const logFile = path.join(dir, 'access.log');
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(
    conf,
    `master_process off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 64; }
http {
  log_format tsv '$request\\t$status\\t$body_bytes_sent\\t$http_range';
  access_log ${logFile} tsv;
  client_body_temp_path ${dir}/tmp;
  proxy_temp_path ${dir}/tmp;
  fastcgi_temp_path ${dir}/tmp;
  uwsgi_temp_path ${dir}/tmp;
  scgi_temp_path ${dir}/tmp;
  server { listen 127.0.0.1:${port}; root ${root}; }
}
`,
  );
  fs.mkdirSync(path.join(dir, 'tmp'), { recursive: true });
  const child = spawn('/usr/sbin/nginx', ['-p', dir, '-e', path.join(dir, 'error.log'), '-c', conf, '-g', 'daemon off; user root;'], { stdio: 'ignore' });
  const s = await started(child, port, `http://127.0.0.1:${port}`, 'nginx');
  const log = () => {
    const text = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '';
    return text.split('\n').filter(Boolean).map((l) => {
      const [request, status, bytes, range] = l.split('\t');
      return { request, status: Number(status), bytes: Number(bytes), range };
    });
  };
  let marks = 0;
  const settled = async () => {
    const mark = `/settled-${++marks}`;
    await new Promise<void>((resolve) => http.get(`${s.url}${mark}`, (res) => res.resume().on('end', resolve)).on('error', () => resolve()));
    await waitFor(() => log().some((e) => e.request.includes(mark)));
  };
  return { ...s, log, bytesSent: () => log().reduce((a, e) => a + e.bytes, 0), settled };
}

export interface Registry extends Server {
  storage: string;
  /** Host:port as references name it. */
  host: string;
  /** Requests logged so far (the access log, combined format): request line, status, bytes sent. */
  log(): Array<{ request: string; status: number; bytes: number }>;
  /** Bytes sent for blob GETs logged so far. */
  blobBytes(): number;
  /** Wait until every request answered before this call is in the access log (a marker request is). */
  settled(): Promise<void>;
  /** The file holding a blob in the registry's filesystem storage. */
  blobFile(digest: string): string;
}

/** The distribution registry on filesystem storage in `dir`; `auth` adds htpasswd auth behind TLS. */
export async function startRegistry(dir: string, auth?: { htpasswd: string; cert: string; key: string }): Promise<Registry> {
  const storage = path.join(dir, 'storage');
  fs.mkdirSync(storage, { recursive: true });
  const port = await freePort();
  const conf = path.join(dir, 'config.yml');
  fs.writeFileSync(
    conf,
    `version: 0.1
log:
  level: error
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: ${storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:${port}
${auth ? `  tls:\n    certificate: ${auth.cert}\n    key: ${auth.key}\nauth:\n  htpasswd:\n    realm: tarstack-test\n    path: ${auth.htpasswd}\n` : ''}`,
  );
  const logFd = fs.openSync(path.join(dir, 'registry.log'), 'a');
  const child = spawn('/usr/bin/docker-registry', ['serve', conf], { stdio: ['ignore', logFd, logFd] });
  fs.closeSync(logFd);
  const s = await started(child, port, `${auth ? 'https' : 'http'}://127.0.0.1:${port}`, 'docker-registry');
  const logFile = path.join(dir, 'registry.log');
  const log = () =>
    fs.readFileSync(logFile, 'utf8').split('\n').flatMap((l) => {
      const m = /"([^"]*)" (\d+) (\d+)/.exec(l);
      return m ? [{ request: m[1], status: Number(m[2]), bytes: Number(m[3]) }] : [];
    });
  let marks = 0;
  const settled = async () => {
    const mark = `/v2/settled-${++marks}/tags/list`;
    await new Promise<void>((resolve) => {
      const req = (auth ? https : http).get(`${s.url}${mark}`, { rejectUnauthorized: false }, (res) => res.resume().on('end', resolve));
      req.on('error', () => resolve());
    });
    await waitFor(() => log().some((e) => e.request.includes(mark)));
  };
  return {
    ...s,
    storage,
    host: `127.0.0.1:${port}`,
    log,
    blobBytes: () => log().filter((e) => /^GET \S+\/blobs\/sha256:/.test(e.request)).reduce((a, e) => a + e.bytes, 0),
    settled,
    blobFile: (digest: string) => path.join(storage, 'docker/registry/v2/blobs/sha256', digest.slice(7, 9), digest.slice(7), 'data'),
  };
}

/** Push an OCI archive (from `tarstack image export --layers`) into the registry as REPO:TAG. */
export function skopeoPush(archive: string, ref: string, extra: string[] = []): void {
  execOk(['skopeo', 'copy', '--quiet', '--dest-tls-verify=false', ...extra, `oci-archive:${archive}`, `docker://${ref}`]);
}

/**
 * Another server certificate signed by tlsAndUsers's CA in dir: for subjectAltName `san`, and valid
 * only in 2020 when `expired` (`openssl ca` sets the dates; `x509 -req` cannot set a past end).
 */
export function signedCert(dir: string, name: string, san: string, expired = false): { cert: string; key: string } {
  const f = (n: string) => path.join(dir, n);
  const db = f(`${name}.db`);
  fs.mkdirSync(db, { recursive: true });
  fs.writeFileSync(path.join(db, 'index.txt'), '');
  fs.writeFileSync(path.join(db, 'serial'), '1000\n');
  fs.writeFileSync(f(`${name}.cnf`), [
    '[ca]', 'default_ca = test', '[test]', `dir = ${db}`, 'database = $dir/index.txt', 'new_certs_dir = $dir', 'serial = $dir/serial',
    'default_md = sha256', 'policy = any', 'copy_extensions = none', 'x509_extensions = ext', '[any]', 'commonName = supplied', '[ext]', `subjectAltName = ${san}`, '',
  ].join('\n'));
  execOk(['openssl', 'req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`)]);
  const dates = expired ? ['-startdate', '20200101000000Z', '-enddate', '20200102000000Z'] : ['-days', '2'];
  execOk(['openssl', 'ca', '-batch', '-notext', '-config', f(`${name}.cnf`), '-cert', f('ca.crt'), '-keyfile', f('ca.key'), ...dates, '-in', f(`${name}.csr`), '-out', f(`${name}.crt`)]);
  return { cert: f(`${name}.crt`), key: f(`${name}.key`) };
}

/** A CA and a server certificate for 127.0.0.1 signed by it, and an htpasswd file (bcrypt) for user:password. */
export function tlsAndUsers(dir: string, user: string, password: string): { ca: string; cert: string; key: string; htpasswd: string } {
  fs.mkdirSync(dir, { recursive: true });
  const f = (n: string) => path.join(dir, n);
  execOk(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=tarstack test CA', '-keyout', f('ca.key'), '-out', f('ca.crt')]);
  execOk(['openssl', 'req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', f('server.key'), '-out', f('server.csr')]);
  fs.writeFileSync(f('ext'), 'subjectAltName=IP:127.0.0.1\n');
  execOk(['openssl', 'x509', '-req', '-in', f('server.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', f('ext'), '-out', f('server.crt')]);
  // bcrypt at its lowest cost (2^4): basic auth hashes the password on every request, and at the
  // default 2^12 each took ~0.7 s here, so a mount's concurrent range reads queued past the 5 s idle
  // bound (EIO); what is tested is the auth exchange, not the registry's hashing.
  const hash = execOk(['python3', '-W', 'ignore', '-c', 'import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))', password]).stdout.toString().trim();
  fs.writeFileSync(f('htpasswd'), `${user}:${hash}\n`);
  return { ca: f('ca.crt'), cert: f('server.crt'), key: f('server.key'), htpasswd: f('htpasswd') };
}

export interface ReferrersProxy extends Server {
  host: string;
  /** Referrers lists it answered (GET /v2/REPO/referrers/DIGEST), and manifests with a subject it recorded. */
  served(): string[];
  recorded(): string[];
}

/**
 * The OCI distribution spec 1.1's referrers API in front of a registry without it (Debian's
 * docker-registry is distribution 2.8), as a process of its own (helpers/referrers-proxy.ts: the
 * test's own thread blocks in reads of the mounts it checks, and the store's server reads through
 * this). Everything else passes through to the real registry.
 */
export async function startReferrersProxy(dir: string, reg: Registry): Promise<ReferrersProxy> {
  fs.mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const logFile = path.join(dir, 'referrers.log');
  const script = new URL('./referrers-proxy.js', import.meta.url).pathname;
  const child = spawn(process.execPath, [script, reg.url, String(port), logFile], { stdio: 'ignore' });
  const s = await started(child, port, `http://127.0.0.1:${port}`, 'the referrers proxy');
  const entries = (kind: string) => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '').split('\n').filter((l) => l.startsWith(`${kind} `)).map((l) => l.slice(kind.length + 1));
  return { ...s, host: `127.0.0.1:${port}`, served: () => entries('served'), recorded: () => entries('recorded') };
}
